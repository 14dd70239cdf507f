//! The only place HTTP shapes are made, knowing no feature: [`problem`]+json errors, JSON
//! responses and [`respond`](mod@respond), [`cors`], [`cookies`], [`request`] decoding and
//! each function's route table ([`routes`]).
//!
//! Handlers return `Result<Response<Body>, Problem>`; [`respond()`] turns that into the final
//! response. Each feature maps its own errors to problems (`features/*/problem.rs`); a function
//! maps what only it decides (the webhook's retry policy).

pub mod cookies;
pub mod cors;
pub mod problem;
pub mod request;
pub mod respond;
pub mod routes;
mod upstream;

pub use cookies::{cookie_values, set_cookie};
pub use cors::{API_METHODS, Cors};
pub use problem::{PROBLEM_JSON, Problem};
pub use request::{body_bytes, int_param, json_body, path_segments, query_param};
pub use respond::{empty, json, respond};
pub use routes::{Matched, Route, Routes};
