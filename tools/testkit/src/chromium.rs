//! Headless Chromium for the browser tests (Debian's `chromium`, which scripts/bootstrap.sh
//! installs): a page loaded in a fresh profile with the flags this closed, loopback-only machine
//! needs, the DOM after the page's script ran, and the JSON the page wrote into
//! `<pre id="result">`. Chromium missing is a test failure, never a skip.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `CHROMIUM` (a path) or `chromium` on PATH.
pub fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// How one page is loaded.
pub struct Page<'a> {
    /// The page's address.
    pub url: &'a str,
    /// Flags beside the fixed ones (host resolver rules, accepted certificate keys, ...).
    pub extra_args: Vec<String>,
    /// Chromium's virtual time budget: how long the page's timers may run before the DOM is dumped.
    pub virtual_time_budget: Duration,
    /// When the process is stopped (by its handle) and the test fails.
    pub timeout: Duration,
}

/// Loads the page in a fresh headless Chromium and returns the DOM after the page's script ran.
pub fn dump_dom(page: &Page<'_>) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            // Without these, Chromium reaches for Google's hosts at start, which this machine's
            // closed network refuses.
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
        ])
        .args(&page.extra_args)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={}", page.virtual_time_budget.as_millis()))
        .args(["--dump-dom", page.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({e}); the browser tests need Debian's chromium: \
                 apt-get install -y chromium (scripts/bootstrap.sh)",
                binary()
            )
        });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if start.elapsed() > page.timeout {
            let _ = child.kill(); // this child only, by its handle
            let _ = child.wait();
            panic!(
                "chromium did not finish within {} s; stderr:\n{}",
                page.timeout.as_secs(),
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}); stderr:\n{stderr}");
    assert!(dom.contains("<html"), "no DOM from chromium; stderr:\n{stderr}");
    dom
}

/// The JSON the page wrote into `<pre id="result">` (HTML-unescaped).
pub fn result_of(dom: &str) -> Value {
    let start = dom.find("<pre id=\"result\">").map(|i| i + "<pre id=\"result\">".len());
    let text = start.and_then(|s| dom[s..].find("</pre>").map(|e| &dom[s..s + e]));
    let text = text.unwrap_or_else(|| panic!("no result element in the DOM:\n{dom}"));
    let text = text.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("result is not JSON ({e}): {text}"))
}
