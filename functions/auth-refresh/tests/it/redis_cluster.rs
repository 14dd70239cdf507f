//! The token-store suite against a 3-master Redis Cluster on loopback (`REDIS_CLUSTER=true`):
//! every script must be single-slot, which the `{userId}` hash tag guarantees.

use crate::common::Kind;

crate::suite::token_suite!(Kind::Cluster);
