//! How the posts layer's errors reach HTTP.

use crate::http::Problem;

impl From<crate::posts::InvalidPostId> for Problem {
    fn from(e: crate::posts::InvalidPostId) -> Self {
        Problem::bad_request("invalid-id", "Invalid post id", e.to_string())
    }
}

impl From<crate::posts::PostsError> for Problem {
    fn from(e: crate::posts::PostsError) -> Self {
        match e {
            crate::posts::PostsError::Store(_) => {
                tracing::error!(error = %e, "posts store failed");
                Problem::unavailable("the posts store did not answer; retry shortly")
            }
            crate::posts::PostsError::Malformed(_) => {
                tracing::error!(error = %e, "posts store failed");
                Problem::internal()
            }
            // Logged where it happened (the cache); waiting longer would only add load.
            crate::posts::PostsError::OutOfTime(_) => {
                Problem::unavailable("the posts are being loaded by another request; retry shortly")
            }
        }
    }
}

/// A cursor that is not one this service issued for this list and limit.
impl From<crate::posts::CursorError> for Problem {
    fn from(e: crate::posts::CursorError) -> Self {
        Problem::bad_request("invalid-cursor", "Invalid cursor", e.to_string())
            .with_extra(serde_json::json!({ "parameter": "cursor" }))
    }
}

impl From<crate::posts::InvalidFields> for Problem {
    fn from(e: crate::posts::InvalidFields) -> Self {
        Problem::bad_request("invalid-fields", "Invalid fields", "one or more fields are invalid; see errors")
            .with_extra(serde_json::json!({ "errors": e.0 }))
    }
}

impl From<crate::posts::PostWriteError> for Problem {
    fn from(e: crate::posts::PostWriteError) -> Self {
        use crate::posts::PostWriteError as E;
        use http::StatusCode;
        match e {
            E::NotFound => Problem::not_found("no such post"),
            E::Forbidden => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", "only the author may change this post")
            }
            E::VersionMismatch { precondition: true } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                "the post is not at the version named by If-Match; fetch it again",
            ),
            E::VersionMismatch { precondition: false } => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                "the post was changed by another request at the same time; fetch it and retry",
            ),
            E::Store(detail) => {
                tracing::error!(error = %detail, "posts store failed");
                Problem::unavailable("the posts store did not answer; retry shortly")
            }
        }
    }
}
