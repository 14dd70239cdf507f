//! posts-read: `GET /posts` and `GET /posts/{id}`, cache-aside over DynamoDB.

pub mod handler;
pub mod settings;
