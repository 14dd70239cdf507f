//! auth-refresh integration tests, one binary: the token suite (`suite`, the scenarios of issue
//! 13) on one redis-server (`single_redis`, with the function's HTTP contract), a 3-master cluster
//! (`redis_cluster`) and a TLS-only cluster (`redis_cluster_tls`), each signed in as the
//! template's auth-refresh cache user.

mod common;
mod redis_cluster;
mod redis_cluster_tls;
mod single_redis;
mod suite;
