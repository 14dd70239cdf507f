//! The one error type of the harness.
//!
//! A function error (the handler returned `Err`, or it panicked and the runtime reported it) is *not*
//! a `HarnessError`: it is a successful invocation whose [`crate::Invocation::is_error`] is true,
//! exactly as Lambda reports it. `HarnessError` is for everything that stops the harness from getting
//! an answer at all: a binary that cannot start, a process that dies, a timeout, bad input files.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while emulating Lambda.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The loopback Runtime API server could not bind its socket.
    #[error("cannot start the Runtime API server on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),

    /// The function binary does not exist or is not a file.
    #[error("function binary {path} not found: {source}")]
    BinaryNotFound {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The cgroup the function should run in cannot be joined (no such group, or no right to it).
    #[error("cannot put the function into cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The operating system refused to start the function binary.
    #[error("cannot start function binary {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The function process exited (crash, panic with `panic = "abort"`, bad configuration) before it
    /// answered. `status` is the process's exit status as the OS reports it.
    #[error("function process exited before answering ({status})")]
    ProcessExited { status: String },

    /// The runtime reported an initialisation failure through `/runtime/init/error`.
    #[error("function failed to initialise: {error_type}: {message}")]
    InitError { error_type: String, message: String },

    /// No answer within the invocation timeout (Lambda would stop the execution environment here).
    #[error("no answer from the function within {0:?}")]
    Timeout(Duration),

    /// The Runtime API server stopped while an invocation was waiting.
    #[error("the Runtime API server stopped")]
    ServerStopped,

    /// The event could not be serialised to JSON.
    #[error("event is not serialisable JSON: {0}")]
    Event(#[source] serde_json::Error),

    /// The function's answer is not JSON (it is kept as raw bytes in the [`crate::Invocation`]).
    #[error("function answer is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),

    /// A file given to the harness (event, manifest, env file) could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file given to the harness could not be written (a log file).
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// An event or manifest file is not the JSON it should be.
    #[error("{path} is not valid: {source}")]
    InvalidJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A `KEY=VALUE` setting (from `--env` or an env file) is malformed.
    #[error("{origin}: {reason}")]
    InvalidEnv { origin: String, reason: String },

    /// Peak memory of the process could not be read from `/proc/<pid>/status`.
    #[error("cannot read peak RSS of process {pid}: {reason}")]
    Rss { pid: u32, reason: String },
}
