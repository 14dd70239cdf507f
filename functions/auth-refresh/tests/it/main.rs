//! auth-refresh integration tests, one binary: the token suite (`suite`, the scenarios of issue
//! 13) on one redis-server (`single_redis`, with the function's HTTP contract), a 3-master cluster
//! (`redis_cluster`) and a TLS-only cluster (`redis_cluster_tls`), each signed in as the
//! template's auth-refresh cache user; and sign-in by ID token against a local OIDC issuer and the
//! Users table on moto (`sign_in`).

mod browser;
mod common;
mod redis_cluster;
mod redis_cluster_tls;
mod sign_in;
mod single_redis;
mod suite;
