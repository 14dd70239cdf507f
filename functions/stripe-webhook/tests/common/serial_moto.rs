//! A moto server that serves one request at a time, for tests of concurrent conditional writes.
//!
//! DynamoDB applies a conditional write atomically per item. moto's server runs each request on
//! its own thread and does not lock items, so two identical conditional PutItems that arrive
//! together can both pass the condition: measured with boto3 alone (no Rust involved), 20 threads
//! racing `attribute_not_exists(#id) OR ...` on one key let two writers through in about 1 round in
//! 300, and the 20-process webhook test saw it about once in 15 runs. Serving requests one at a time
//! restores the per-item atomicity DynamoDB guarantees; the clients still race each other freely.
//!
//! The server is moto's own WSGI app under werkzeug with `threaded=False` (HTTP/1.0, one request
//! per connection). It is stopped through its `Child` handle (by PID) on drop, and exits by itself
//! when the test process's end closes its stdin.

use std::collections::HashMap;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use shared::clients::AwsClients;
use testkit::Provisioned;

/// moto's app on one thread; it exits when its stdin closes (the test process is gone, however it
/// ended), so no server outlives the test.
const SERVE: &str = "import os, sys, threading\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";

pub struct SerialMoto {
    child: Child,
    _lifeline: ChildStdin,
    pub endpoint: String,
}

impl Drop for SerialMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SerialMoto {
    pub fn start() -> Self {
        let port = testkit::free_port();
        let mut child = Command::new(testkit::workspace_root().join(".venv/bin/python"))
            .args(["-c", SERVE, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python with moto (run scripts/bootstrap.sh first)");
        let lifeline = child.stdin.take().expect("piped stdin");
        let moto = SerialMoto { child, _lifeline: lifeline, endpoint: format!("http://127.0.0.1:{port}") };
        testkit::wait_for_port(port, Duration::from_secs(60));
        moto
    }

    /// What `testkit::provision` does, against this server.
    pub fn provision(&self, overrides: &[(&str, &str)]) -> Provisioned {
        let root = testkit::workspace_root();
        let mut cmd = Command::new(root.join(".venv/bin/python"));
        cmd.arg(root.join("scripts/provision.py"))
            .args(["--template", root.join("template.yaml").to_str().expect("utf-8 path")])
            .args(["--endpoint", &self.endpoint, "--prefix", "serial-"]);
        for (k, v) in overrides {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        let out = cmd.stderr(Stdio::null()).output().expect("run provision.py");
        assert!(out.status.success(), "provision.py failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("provision.py prints JSON");
        let to_map = |v: &serde_json::Value| -> HashMap<String, HashMap<String, String>> {
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, inner)| {
                    let m = inner
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter_map(|(ik, iv)| iv.as_str().map(|s| (ik.clone(), s.to_owned())))
                        .collect();
                    (k.clone(), m)
                })
                .collect()
        };
        Provisioned { resources: to_map(&v["resources"]), functions: to_map(&v["functions"]) }
    }

    pub async fn clients(&self) -> AwsClients {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "serial-moto"))
            .load()
            .await;
        AwsClients::new(&sdk, true)
    }
}
