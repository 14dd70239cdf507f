//! How the uploads feature's errors reach HTTP: a refused upload names the limit it broke
//! (`allowed` types, `maxBytes`), so a client can tell its user what to change.

use http::StatusCode;

use crate::http::Problem;
use crate::uploads::{AVATAR_TYPES, AvatarError, AvatarRefused, KeyRefused, RecordError};
use crate::uploads::{PresignError, UploadRefused};

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

/// A refused record says what was wrong with the key or the object: 400 for a key this service
/// never issues, 403 for another user's key, 404 while nothing is uploaded under it, 422 for an
/// object that is not what was signed (which is deleted).
impl From<AvatarRefused> for Problem {
    fn from(e: AvatarRefused) -> Self {
        let detail = e.to_string();
        match e {
            AvatarRefused::Key(KeyRefused::Malformed(_)) => {
                Problem::bad_request("invalid-upload-key", "Invalid upload key", detail)
            }
            AvatarRefused::Key(KeyRefused::OtherUser) => {
                Problem::new(StatusCode::FORBIDDEN, "upload-key-forbidden", "Not your upload", detail)
            }
            AvatarRefused::NotAnAvatarType => {
                Problem::bad_request("avatar-type-not-allowed", "Not an avatar type", detail)
                    .with_extra(serde_json::json!({ "allowed": AVATAR_TYPES }))
            }
            AvatarRefused::NotUploaded => Problem::new(StatusCode::NOT_FOUND, "upload-not-found", "No upload", detail),
            AvatarRefused::Empty => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "upload-empty", "Empty upload", detail)
            }
            AvatarRefused::TooLarge { max, .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "upload-too-large", "Upload too large", detail)
                    .with_extra(serde_json::json!({ "maxBytes": max }))
            }
            AvatarRefused::WrongType { .. } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "upload-type-mismatch", "Wrong stored type", detail)
            }
            AvatarRefused::ContentMismatch { expected, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "upload-content-mismatch",
                "Content does not match its type",
                detail,
            )
            .with_extra(serde_json::json!({ "expected": expected })),
        }
    }
}

/// S3 or DynamoDB trouble is the caller's to retry: 503 with `Retry-After`; logged with its chain.
impl From<AvatarError> for Problem {
    fn from(e: AvatarError) -> Self {
        tracing::error!(error = %e, source = ?std::error::Error::source(&e), "avatar storage failed");
        match e {
            AvatarError::Presign(_) | AvatarError::BadItem(_) | AvatarError::AccessDenied { .. } => Problem::internal(),
            AvatarError::S3 { .. } | AvatarError::Dynamo(_) | AvatarError::Contended => {
                Problem::unavailable("storage is busy or unavailable; try again")
            }
        }
    }
}

impl From<RecordError> for Problem {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Refused(r) => r.into(),
            RecordError::Failed(f) => f.into(),
        }
    }
}
