//! CPU at the share of a memory size, the way Lambda gives it: a cgroup whose CPU quota is
//! `memory / 1,769 MB` of one CPU per period (Lambda documents 1,769 MB as one vCPU; the share is
//! proportional below it). The period is the kernel's default, 100 ms: Lambda does not publish
//! its own, and the figures say so beside them.
//!
//! cgroup v2 (`cpu.max`) or v1 (the `cpu` controller's `cpu.cfs_quota_us`), whichever this machine
//! mounts. A group that cannot be made is an error the bench stops on: measuring without the
//! limit would publish whole-core figures as Lambda's.

use std::path::{Path, PathBuf};

/// Memory (MB) at which Lambda gives one full vCPU.
pub const ONE_VCPU_MB: u64 = 1769;
/// The CFS period the quota is a share of.
pub const PERIOD_US: u64 = 100_000;

/// Why a CPU share cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup cpu controller mounted (neither /sys/fs/cgroup/cpu.max's hierarchy nor /sys/fs/cgroup/cpu)")]
    NoController,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Where groups are made: the v2 root (with `+cpu` delegated to its children) or v1's cpu folder.
fn hierarchy() -> Result<(PathBuf, Version), CgroupError> {
    let v2 = Path::new("/sys/fs/cgroup");
    if v2.join("cgroup.controllers").exists() {
        let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).map_err(io(v2))?;
        if controllers.split_whitespace().any(|c| c == "cpu") {
            let control = v2.join("cgroup.subtree_control");
            std::fs::write(&control, "+cpu").map_err(io(&control))?;
            return Ok((v2.to_path_buf(), Version::V2));
        }
    }
    let v1 = v2.join("cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Ok((v1, Version::V1));
    }
    Err(CgroupError::NoController)
}

/// Removes the groups of earlier bench processes that are gone: a release build aborts on a panic
/// (`panic = "abort"`), so a run that stopped on one never ran [`CpuShare`]'s drop. An empty group
/// of a dead process is all that can be left; one with processes in it is left alone.
pub fn remove_stale() {
    let Ok((parent, _)) = hierarchy() else { return };
    let Ok(entries) = std::fs::read_dir(&parent) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("bench-").and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// The quota of `memory_mb`'s share per [`PERIOD_US`], in microseconds.
pub fn quota_us(memory_mb: u64) -> u64 {
    PERIOD_US * memory_mb / ONE_VCPU_MB
}

/// One cgroup with a CPU quota (or none: `memory_mb = None`, the unthrottled init's group);
/// removed on drop, any process still in it moved back to the parent first.
pub struct CpuShare {
    dir: PathBuf,
    parent: PathBuf,
}

impl CpuShare {
    /// A fresh group named `name` (unique per bench process), limited to `memory_mb`'s share.
    pub fn create(name: &str, memory_mb: Option<u64>) -> Result<Self, CgroupError> {
        let (parent, version) = hierarchy()?;
        let dir = parent.join(format!("bench-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).map_err(io(&dir))?;
        let share = Self { dir, parent };
        let (file, value) = match (version, memory_mb) {
            (Version::V2, Some(mb)) => ("cpu.max", format!("{} {PERIOD_US}", quota_us(mb))),
            (Version::V2, None) => ("cpu.max", format!("max {PERIOD_US}")),
            (Version::V1, Some(mb)) => ("cpu.cfs_quota_us", quota_us(mb).to_string()),
            (Version::V1, None) => ("cpu.cfs_quota_us", "-1".to_owned()),
        };
        if version == Version::V1 {
            let period = share.dir.join("cpu.cfs_period_us");
            std::fs::write(&period, PERIOD_US.to_string()).map_err(io(&period))?;
        }
        let path = share.dir.join(file);
        std::fs::write(&path, value).map_err(io(&path))?;
        Ok(share)
    }

    /// The group's folder: what `lambda_harness::SpawnOptions::cgroup` takes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves process `pid` (all its threads) into this group.
    pub fn adopt(&self, pid: u32) -> Result<(), CgroupError> {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(io(&procs))
    }

    /// Throttled periods and time so far (`cpu.stat`: `nr_throttled`, `throttled_usec` or v1's
    /// `throttled_time` in ns), to show the quota was what limited a run.
    pub fn throttled(&self) -> (u64, std::time::Duration) {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field =
            |name: &str| stat.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok());
        let time = field("throttled_usec ")
            .map(std::time::Duration::from_micros)
            .or_else(|| field("throttled_time ").map(std::time::Duration::from_nanos))
            .unwrap_or_default();
        (field("nr_throttled ").unwrap_or(0), time)
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        // A group with processes cannot be removed: hand any stragglers back to the parent.
        let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_the_memory_share_of_one_cpu() {
        assert_eq!(quota_us(1769), PERIOD_US);
        assert_eq!(quota_us(128), 7235);
        assert_eq!(quota_us(256), 14471);
        assert_eq!(quota_us(1024), 57885);
    }
}
