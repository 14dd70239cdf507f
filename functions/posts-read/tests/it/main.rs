//! posts-read integration tests, one binary: the handler on one plaintext redis-server (`posts_read`), and
//! the cache suites on 3-master clusters, plaintext and TLS, as ElastiCache Serverless runs them
//! (`cache_modes`); and the X-Ray subsegments of the real bootstrap (`xray`).

mod cache_modes;
mod common;
mod posts_read;
mod xray;
