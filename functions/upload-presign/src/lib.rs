//! upload-presign: the three steps of a browser upload, of which the function serves two.
//! `POST /uploads` returns a presigned S3 PUT for one file whose type and size are signed, under a
//! key the server chooses (the file itself never passes through the function); the browser PUTs
//! it to S3; `PUT /users/me/avatar` checks what arrived and records it as the caller's avatar,
//! which `GET /users/{id}` shows.

pub mod handler;
pub mod settings;
