//! The Node baseline (`../shared/anchors/node-seed`, the seed's patterns as Node Lambda handlers
//! under a tiny custom runtime), run by the same harness, under the same TLS endpoints and CPU
//! shares, one after the other with the Rust functions in one run.
//!
//! The folder is shared read-only, so it is copied to a temporary folder and `npm ci` installs
//! its locked dependencies there; `node tools/make-events.mjs` writes its events.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::endpoints::TlsEndpoints;

/// The Stripe secret the Node events are signed with (make-events.mjs's default).
const NODE_STRIPE_SECRET: &str = "whsec_test_secret";

/// Why the baseline cannot run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the Node baseline is not at {0} (set NODE_SEED to its folder)")]
    Missing(PathBuf),
    #[error("{command}: {detail}")]
    Command { command: String, detail: String },
}

/// A copy of node-seed with its dependencies installed and its events written.
pub struct NodeSeed {
    dir: tempfile::TempDir,
}

fn run(command: &mut Command) -> Result<(), NodeError> {
    let name = format!("{command:?}");
    let out = command.output().map_err(|e| NodeError::Command { command: name.clone(), detail: e.to_string() })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr).into_owned();
        return Err(NodeError::Command { command: name, detail });
    }
    Ok(())
}

impl NodeSeed {
    /// `NODE_SEED`, else `../shared/anchors/node-seed` beside the repository.
    pub fn source() -> PathBuf {
        std::env::var_os("NODE_SEED")
            .map(PathBuf::from)
            .unwrap_or_else(|| testkit::workspace_root().join("../shared/anchors/node-seed"))
    }

    pub fn prepare() -> Result<Self, NodeError> {
        let source = Self::source();
        if !source.join("package-lock.json").is_file() {
            return Err(NodeError::Missing(source));
        }
        let dir = tempfile::Builder::new()
            .prefix("node-seed-")
            .tempdir()
            .map_err(|e| NodeError::Command { command: "mkdtemp".into(), detail: e.to_string() })?;
        run(Command::new("cp").arg("-r").arg(source.join(".")).arg(dir.path()))?;
        // The copy keeps the read-only modes of the shared folder; npm must write into it.
        run(Command::new("chmod").args(["-R", "u+w"]).arg(dir.path()))?;
        run(Command::new("npm").args(["ci", "--silent", "--no-audit", "--no-fund"]).current_dir(dir.path()))?;
        run(Command::new("node")
            .args(["tools/make-events.mjs", "events"])
            .env("STRIPE_WEBHOOK_SECRET", NODE_STRIPE_SECRET)
            .current_dir(dir.path()))?;
        Ok(Self { dir })
    }

    /// The custom runtime's bootstrap (it takes the handler from `_HANDLER`).
    pub fn bootstrap(&self) -> PathBuf {
        self.dir.path().join("bootstrap-node")
    }

    pub fn event(&self, name: &str) -> Value {
        crate::perf::read_event(&self.dir.path().join("events"), name)
    }

    /// The environment of handler `handler` against the TLS endpoints: its keys in Redis database
    /// 1 (apart from the Rust functions' keys), the stack's tables and bucket, the bench's CA
    /// trusted through `NODE_EXTRA_CA_CERTS` (what Node reads at start for TLS and `fetch`).
    pub fn env(&self, handler: &str, endpoints: &TlsEndpoints) -> Vec<(String, String)> {
        let get = |k: &str| testkit::stack_env::get(&endpoints.env, k).to_owned();
        vec![
            ("_HANDLER".into(), handler.into()),
            ("REDIS_URL".into(), endpoints.redis_url_db(1)),
            ("AWS_ENDPOINT_URL".into(), endpoints.dynamodb_url()),
            ("NODE_EXTRA_CA_CERTS".into(), endpoints.ca()),
            ("AWS_REGION".into(), get("AWS_REGION")),
            // What Lambda hands every runtime from the execution role.
            ("AWS_ACCESS_KEY_ID".into(), get("AWS_ACCESS_KEY_ID")),
            ("AWS_SECRET_ACCESS_KEY".into(), get("AWS_SECRET_ACCESS_KEY")),
            ("POSTS_TABLE".into(), get("POSTS_TABLE")),
            ("ORDERS_TABLE".into(), get("ORDERS_TABLE")),
            ("UPLOAD_BUCKET".into(), get("UPLOADS_BUCKET")),
            ("STRIPE_WEBHOOK_SECRET".into(), NODE_STRIPE_SECRET.into()),
            ("JWT_SECRET".into(), "bench-node-jwt-secret".into()),
            ("NODE_ENV".into(), "production".into()),
        ]
    }
}
