//! The token-store suite as deployed: a 3-master Redis Cluster that speaks TLS only
//! (`rediss://`, `REDIS_CLUSTER=true`), the test's own CA trusted through `REDIS_CA_BUNDLE`.

mod common;
mod suite;

use common::Kind;

suite::token_suite!(Kind::ClusterTls);
