//! upload-presign integration tests, one binary: presigned uploads (`upload_presign`), what the signature
//! refuses on s3s-fs (`signature_refusals`), avatars (`avatars`) and the browser flow in Chromium (`browser`).

mod avatars;
mod browser;
mod common;
mod signature_refusals;
mod upload_presign;
