//! Uploads: presigned S3 PUTs that browsers send directly ([`presign`]: types, sizes, filenames,
//! the signed headers), avatars recorded after the upload ([`avatars`]) and the
//! whole-file image checks they pass ([`structure`]), and the problems every
//! caller agrees on (`problem.rs`, as problem+json).

pub mod avatars;
pub mod presign;
mod problem;
pub mod structure;

pub use avatars::*;
pub use presign::*;
pub use structure::{NotAnImage, check_image};
