//! The local stack the checks run against, and the function binaries they run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The stack's environment: the one `make test` started, or one of our own for this process.
pub struct Stack {
    /// Every variable the stack's dotenv file sets (endpoints, names, dev secrets).
    pub env: Vec<(String, String)>,
    /// The folder of a stack this process started, stopped on drop.
    own: Option<PathBuf>,
}

impl Stack {
    /// `BUNDLE_STACK_ENV` (set by `make test`), or a new stack from `scripts/stack.sh up` with
    /// resources under `prefix`.
    pub fn get(prefix: &str) -> Stack {
        if let Ok(path) = std::env::var("BUNDLE_STACK_ENV") {
            let env = lambda_harness::env::read_env_file(Path::new(&path)).expect("the stack's env file");
            return Stack { env, own: None };
        }
        let dir = std::env::temp_dir().join(format!("e2e-stack-{}-{prefix}", std::process::id()));
        run(Command::new(script("stack.sh")).arg("up").arg(&dir).arg(prefix));
        let env = lambda_harness::env::read_env_file(&dir.join("env")).expect("the stack's env file");
        Stack { env, own: Some(dir) }
    }

    /// The value of `key`.
    pub fn var(&self, key: &str) -> &str {
        testkit::stack_env::get(&self.env, key)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(dir) = self.own.take() {
            let _ = Command::new(script("stack.sh")).arg("down").arg(&dir).status();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `target/debug`, with every binary of the workspace built (a no-op after `make test`'s build).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).args(["build", "--workspace", "--bins", "--locked", "-q"]).current_dir(root()));
        // This test runs from target/debug/deps/.
        let exe = std::env::current_exe().expect("the test's path");
        exe.parent().and_then(Path::parent).expect("target/debug").to_path_buf()
    })
}

/// The workspace root.
pub fn root() -> PathBuf {
    testkit::workspace_root()
}

/// The JSON of `events/<name>`.
pub fn event(name: &str) -> serde_json::Value {
    let path = root().join("events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn script(name: &str) -> PathBuf {
    root().join("scripts").join(name)
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}
