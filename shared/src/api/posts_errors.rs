//! How the posts layer's errors reach HTTP.

use super::Problem;

impl From<crate::posts::InvalidPostId> for Problem {
    fn from(e: crate::posts::InvalidPostId) -> Self {
        Problem::bad_request("invalid-id", "Invalid post id", e.to_string())
    }
}

impl From<crate::posts::PostsError> for Problem {
    fn from(e: crate::posts::PostsError) -> Self {
        tracing::error!(error = %e, "posts store failed");
        match e {
            crate::posts::PostsError::Store(_) => Problem::unavailable("the posts store did not answer; retry shortly"),
            crate::posts::PostsError::Malformed(_) => Problem::internal(),
        }
    }
}
