//! Runs each drill several times, and once more with the CPU saturated by a load this module
//! starts and stops itself, because a drill that passes 10 times in 11 proves little: a drill
//! passes only when every repetition passes.

use std::future::Future;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};

use crate::drills::DrillResult;

/// One busy process per core, for as long as this value lives; each is killed by its PID on drop.
pub struct CpuLoad {
    children: Vec<Child>,
}

impl CpuLoad {
    pub fn saturate() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let children = (0..cores)
            .map(|_| {
                Command::new("sh").args(["-c", "while :; do :; done"]).stdout(Stdio::null()).spawn().expect("busy loop")
            })
            .collect();
        Self { children }
    }

    pub fn processes(&self) -> usize {
        self.children.len()
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub type DrillFuture<'a> = Pin<Box<dyn Future<Output = DrillResult> + 'a>>;

/// A drill's repetitions: what each saw, and the report of the one worth reading (the first
/// failure, else the last run).
pub struct Repeated {
    pub name: &'static str,
    pub runs: Vec<(String, DrillResult)>,
}

impl Repeated {
    pub fn passed(&self) -> usize {
        self.runs.iter().filter(|(_, r)| r.passed).count()
    }

    pub fn all_passed(&self) -> bool {
        self.passed() == self.runs.len()
    }

    pub fn markdown(&self) -> String {
        let shown = self.runs.iter().find(|(_, r)| !r.passed).or(self.runs.last());
        let mut md = shown.map(|(_, r)| r.markdown.clone()).unwrap_or_default();
        md.push_str(&format!(
            "Repetitions of `{}` ({} of {} passed; the report above is {}):\n\n\
             | run | machine | result | figures |\n| --- | --- | --- | --- |\n",
            self.name,
            self.passed(),
            self.runs.len(),
            if self.all_passed() { "the last run" } else { "the first failed run" },
        ));
        for (i, (load, r)) in self.runs.iter().enumerate() {
            md.push_str(&format!(
                "| {} | {load} | {} | {} |\n",
                i + 1,
                if r.passed { "pass" } else { "FAIL" },
                r.summary
            ));
        }
        md.push('\n');
        md
    }
}

/// `repeat` runs on an idle machine, then one with the CPU saturated.
pub async fn repeated<'a>(name: &'static str, repeat: usize, drill: impl Fn() -> DrillFuture<'a>) -> Repeated {
    let mut runs = Vec::new();
    for i in 0..repeat {
        eprintln!("drill {name}: run {}/{}", i + 1, repeat + 1);
        runs.push(("idle".to_owned(), drill().await));
    }
    eprintln!("drill {name}: run {}/{} under CPU load", repeat + 1, repeat + 1);
    let load = CpuLoad::saturate();
    let label = format!("CPU saturated ({} busy processes)", load.processes());
    let r = drill().await;
    drop(load);
    runs.push((label, r));
    Repeated { name, runs }
}
