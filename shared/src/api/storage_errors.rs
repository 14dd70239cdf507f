//! How the storage layer's errors reach HTTP: a refused upload names the limit it broke
//! (`allowed` types, `maxBytes`), so a client can tell its user what to change.

use http::StatusCode;

use super::Problem;
use crate::storage::{PresignError, UploadRefused};

impl From<UploadRefused> for Problem {
    fn from(e: UploadRefused) -> Self {
        let detail = e.to_string();
        match e {
            UploadRefused::TypeNotAllowed { allowed } => {
                Problem::bad_request("upload-type-not-allowed", "Content type not allowed", detail)
                    .with_extra(serde_json::json!({ "allowed": allowed }))
            }
            UploadRefused::Empty => Problem::bad_request("upload-empty", "Empty upload", detail)
                .with_extra(serde_json::json!({ "minBytes": 1 })),
            UploadRefused::TooLarge { max, .. } => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large", "Upload too large", detail)
                    .with_extra(serde_json::json!({ "maxBytes": max }))
            }
            UploadRefused::InvalidFilename => Problem::bad_request("invalid-filename", "Invalid filename", detail),
        }
    }
}

impl From<PresignError> for Problem {
    fn from(e: PresignError) -> Self {
        tracing::error!(error = %e, "presigning an upload failed");
        Problem::internal()
    }
}
