//! posts-write: `POST /posts`, `PATCH /posts/{id}`, `DELETE /posts/{id}` for the author, with
//! conditional writes and cache invalidation after each one.

pub mod handler;
pub mod settings;
