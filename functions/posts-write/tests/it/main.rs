//! posts-write integration tests, one binary: writes, invalidation and races on one plaintext
//! redis-server (`posts_write`), and the cache side on 3-master clusters, plaintext and TLS
//! (`cache_modes`); `common` holds the requests both send.

mod cache_modes;
mod common;
mod posts_write;
