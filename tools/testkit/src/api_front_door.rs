//! API Gateway's CORS layer in front of a test's HTTP server: `scripts/api_front_door.py`, the
//! same front door `make dev` runs, reading the HttpApi's CorsConfiguration from template.yaml.
//! With it, a preflight is answered before any function sees it and the functions' CORS headers
//! are replaced by the configured ones, as in AWS.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, venv_bin, wait_for_port, workspace_root};

/// A running front door; stopped (this child, by its handle) on drop.
pub struct ApiFrontDoor {
    pub port: u16,
    child: Child,
}

impl ApiFrontDoor {
    /// Listens on a free loopback port, forwards to `127.0.0.1:upstream_port`, and allows `origins`
    /// (the AllowedOrigins parameter's list).
    pub fn start(upstream_port: u16, origins: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(venv_bin("python"))
            .arg(workspace_root().join("scripts/api_front_door.py"))
            .args(["--port", &port.to_string()])
            .args(["--upstream", &format!("http://127.0.0.1:{upstream_port}")])
            .args(["--origins", &origins.join(",")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("scripts/api_front_door.py (run scripts/bootstrap.sh first)");
        wait_for_port(port, Duration::from_secs(20));
        ApiFrontDoor { port, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ApiFrontDoor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
