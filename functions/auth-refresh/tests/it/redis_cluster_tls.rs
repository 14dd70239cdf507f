//! The token-store suite as deployed: a 3-master Redis Cluster that speaks TLS only
//! (`rediss://`, `REDIS_CLUSTER=true`), the test's own CA trusted through `REDIS_CA_BUNDLE`.

use crate::common::Kind;

crate::suite::token_suite!(Kind::ClusterTls);
