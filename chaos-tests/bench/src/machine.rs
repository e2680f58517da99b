//! What the numbers were measured on: CPU, kernel, the commit of the code.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine and the code a benchmark ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `git rev-parse HEAD` of the workspace, `-dirty` when it has uncommitted changes.
    pub git_commit: Option<String>,
}

impl Machine {
    /// Reads what is available; a missing piece is `None`, never an error.
    pub fn detect() -> Machine {
        let workspace = chaos_tests::binaries::workspace_dir();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|info| cpu_model(&info)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
            git_commit: git_commit(&workspace),
        }
    }

    /// `2 × Intel(R) Xeon(R) ..., Linux 6.8.0, commit abc1234`.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} × {}",
            self.nproc,
            self.cpu_model.as_deref().unwrap_or("unknown CPU")
        );
        if let Some(kernel) = &self.kernel {
            out.push_str(&format!(", Linux {kernel}"));
        }
        if let Some(commit) = &self.git_commit {
            out.push_str(&format!(", commit {}", short_commit(commit)));
        }
        out
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

fn git_commit(workspace: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"]).filter(|h| !h.is_empty())?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// The first 10 hex digits, keeping a `-dirty` suffix.
fn short_commit(commit: &str) -> String {
    match commit.split_once('-') {
        Some((hash, suffix)) => format!("{}-{suffix}", &hash[..hash.len().min(10)]),
        None => commit[..commit.len().min(10)].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_model_and_describes_the_machine() {
        let info =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Example CPU @ 2.20GHz\n";
        let machine = Machine {
            nproc: 2,
            cpu_model: cpu_model(info),
            kernel: Some("6.8.0".into()),
            git_commit: Some("0123456789abcdef-dirty".into()),
        };
        assert_eq!(
            machine.describe(),
            "2 × Example CPU @ 2.20GHz, Linux 6.8.0, commit 0123456789-dirty"
        );
        assert!(Machine::detect().nproc >= 1);
    }
}
