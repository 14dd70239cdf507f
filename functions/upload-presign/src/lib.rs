//! upload-presign: `POST /uploads` returns a presigned S3 PUT for one file whose type and size
//! are signed, under a key the server chooses. The file itself never passes through the function.

pub mod handler;
pub mod settings;
