//! Posts: the DynamoDB table and its feed index ([`store`]), the bounded summaries list pages
//! carry ([`summary`]), cache-aside reads in front of it
//! ([`cached`]), writes that invalidate the cache ([`writes`]), signed keyset cursors
//! ([`cursor`]), the settings both posts functions read ([`settings`]), and the problems every
//! caller agrees on (`problem.rs`, as problem+json).

pub mod cached;
pub mod cursor;
mod problem;
pub mod settings;
pub mod store;
pub mod summary;
pub mod writes;

pub use cached::*;
pub use cursor::*;
pub use settings::PostsSettings;
pub use store::*;
pub use summary::*;
pub use writes::*;
