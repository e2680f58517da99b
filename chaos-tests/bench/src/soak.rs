//! The soak suite: one long closed-loop run at steady load (issue 14: memory and disk that do
//! not grow with history). Every `every` (30 s) it samples the VmRSS and the data directory
//! size of each process (coordinator, wallet, order, points); at the end it reports, per
//! process, the growth from the first sample at or after the warm-up (60 s) to the last one,
//! and the coordinator's disk per finished saga. A figure to read, not a timed test: the
//! suite fails only when the books are wrong or the run could not be made.
//!
//! ```sh
//! cargo run --release -p saga-bench --bin bench -- --only soak --soak-minutes 4
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chaos_tests::cluster::{Cluster, ClusterOptions, Participant};
use clap::Parser;
use serde::Serialize;

use crate::{loadgen, procfs};

/// Selected by `--only soak`.
pub const SUITE: &str = "soak";

/// How the soak runs.
#[derive(Debug, Clone)]
pub struct SoakSettings {
    /// Length of the load.
    pub duration: Duration,
    /// Closed-loop clients.
    pub clients: usize,
    /// Share of sagas that must abort.
    pub abort_ratio: f64,
    /// Time between samples.
    pub every: Duration,
    /// Growth is measured from the first sample at or after this time into the load.
    pub warmup: Duration,
    /// Extra flags for the coordinator.
    pub coordinator_args: Vec<OsString>,
    /// The participants' retention (their `--retention-secs`), swept every 5 s; `None`: their
    /// default (an hour, longer than a soak). Shorter than the load, the books are not checked
    /// afterwards: the order rows of settled sagas are gone by then.
    pub participant_retention: Option<Duration>,
}

impl Default for SoakSettings {
    /// 4 minutes at 32 clients with 10 % aborts, a sample every 30 s, growth after 60 s.
    fn default() -> Self {
        SoakSettings {
            duration: Duration::from_secs(240),
            clients: 32,
            abort_ratio: 0.1,
            every: Duration::from_secs(30),
            warmup: Duration::from_secs(60),
            coordinator_args: Vec::new(),
            participant_retention: None,
        }
    }
}

/// One process at one sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessSample {
    /// `coordinator`, `wallet`, `order`, `points`.
    pub name: String,
    /// VmRSS in MiB; `None` when the process could not be read.
    pub rss_mb: Option<f64>,
    /// Space its data directory takes on the file system (allocated blocks, as `du` counts
    /// them), in MiB: a file grown ahead of its data (redb doubles its file up to 4 GiB) takes
    /// only what was written.
    pub disk_mb: f64,
}

/// Every process at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// In the order coordinator, wallet, order, points.
    pub processes: Vec<ProcessSample>,
}

/// How one process grew after the warm-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Growth {
    /// The process.
    pub name: String,
    /// VmRSS (MiB) at the first sample at or after the warm-up.
    pub rss_after_warmup_mb: Option<f64>,
    /// VmRSS (MiB) at the last sample.
    pub rss_at_end_mb: Option<f64>,
    /// `(end - after warm-up) / after warm-up`, in percent.
    pub rss_growth_pct: Option<f64>,
    /// Disk at the last sample minus disk after the warm-up, in MiB.
    pub disk_growth_mb: f64,
}

/// What the soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    /// Closed-loop clients.
    pub clients: usize,
    /// Share of sagas that had to abort.
    pub abort_ratio: f64,
    /// Length of the load, in seconds.
    pub duration_s: f64,
    /// Seconds into the load where growth is measured from.
    pub warmup_s: f64,
    /// Sagas answered `committed` or `aborted`.
    pub finished: u64,
    /// Finished sagas per second.
    pub throughput: f64,
    /// Every sample, the first at the start of the load, the last at its end.
    pub samples: Vec<Sample>,
    /// Per process, growth after the warm-up.
    pub growth: Vec<Growth>,
    /// The coordinator's data directory at the end (allocated blocks) divided by the finished
    /// sagas, in bytes.
    pub coordinator_disk_bytes_per_saga: Option<f64>,
    /// The same with the files' lengths, space grown ahead of the data included.
    pub coordinator_file_bytes_per_saga: Option<f64>,
    /// VmRSS (MiB) of the coordinator started again on the soak's data directory (every saga
    /// retained, none active), once it is ready and a second has passed: what history costs a
    /// restart.
    pub restart_rss_mb: Option<f64>,
    /// The same for a coordinator started on an empty data directory, for comparison.
    pub idle_rss_mb: Option<f64>,
    /// The participants' retention, when the soak set one (seconds).
    pub participant_retention_s: Option<f64>,
    /// The books were clean and no must-abort saga committed (with a participants' retention
    /// shorter than the load: every saga answered committed or aborted; books not checked).
    pub ok: bool,
}

/// Runs the soak on a fresh cluster (sled, real participants).
pub async fn run(settings: &SoakSettings) -> anyhow::Result<SoakResult> {
    let retention_args: Vec<OsString> = settings
        .participant_retention
        .map(|r| {
            [
                "--retention-secs".to_string(),
                r.as_secs().max(1).to_string(),
                "--retention-sweep-secs".to_string(),
                "5".to_string(),
            ]
            .map(OsString::from)
            .to_vec()
        })
        .unwrap_or_default();
    let options = ClusterOptions {
        coordinator_args: settings.coordinator_args.clone(),
        wallet_args: retention_args.clone(),
        order_args: retention_args.clone(),
        points_args: retention_args,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start_with(options)
        .await
        .context("soak: starting the cluster")?;
    let idle_rss_mb = settled_rss(&cluster).await;
    let coordinator_dir = cluster.coordinator(0).process().data_dir().to_path_buf();
    let mut watched = vec![(
        "coordinator".to_string(),
        cluster.coordinator(0).process().pid(),
        coordinator_dir.clone(),
    )];
    for participant in Participant::ALL {
        let process = cluster.participant_process(participant);
        watched.push((
            participant.name().to_string(),
            process.pid(),
            process.data_dir().to_path_buf(),
        ));
    }

    let mut args = loadgen::Args::parse_from(["loadgen"]);
    args.coordinator = vec![cluster.coordinator_url()];
    args.clients = settings.clients;
    args.duration = Some(settings.duration.as_secs_f64());
    args.abort_ratio = settings.abort_ratio;
    args.tag = Some("bench-soak".into());
    args.quiet = true;
    args.wallet = Some(cluster.wallet_url());
    args.order = Some(cluster.order_url());
    args.points = Some(cluster.points_url());
    // The books need every order of the run (see chaos_tests::books).
    args.verify = settings
        .participant_retention
        .is_none_or(|r| r > settings.duration + Duration::from_secs(60));

    let (start, started) = tokio::sync::oneshot::channel::<()>();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let every = settings.every;
    let sampler = tokio::spawn(async move {
        // The clock starts with the load (accounts are funded before it).
        let _ = started.await;
        let start = Instant::now();
        let mut samples = vec![sample(&watched, 0.0)];
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    samples.push(sample(&watched, start.elapsed().as_secs_f64()));
                }
                _ = &mut stopped => {
                    // The end, unless a sample was just taken.
                    let t_s = start.elapsed().as_secs_f64();
                    if samples.last().is_none_or(|last| t_s - last.t_s >= 1.0) {
                        samples.push(sample(&watched, t_s));
                    }
                    return samples;
                }
            }
        }
    });
    let (report, (), ()) = loadgen::run_between(
        args,
        async || {
            let _ = start.send(());
        },
        async || {
            let _ = stop.send(());
        },
    )
    .await
    .context("soak: the load")?;
    let samples = sampler.await.context("soak: the sampler")?;
    // Both at one moment (the archive moves sagas every second).
    let coordinator_disk_bytes = dir_bytes(&coordinator_dir, allocated_bytes);
    let coordinator_file_bytes = dir_bytes(&coordinator_dir, |m| m.len());
    cluster
        .restart_coordinator()
        .await
        .context("soak: restarting the coordinator on its history")?;
    let restart_rss_mb = settled_rss(&cluster).await;
    drop(cluster);

    let json = report.json;
    let outcome = |label: &str| json["outcomes"][label].as_u64().unwrap_or(0);
    let finished = outcome("committed") + outcome("aborted");
    let growth = growth(&samples, settings.warmup.as_secs_f64());
    let coordinator_disk_bytes_per_saga =
        (finished > 0).then(|| coordinator_disk_bytes as f64 / finished as f64);
    let coordinator_file_bytes_per_saga =
        (finished > 0).then(|| coordinator_file_bytes as f64 / finished as f64);
    Ok(SoakResult {
        clients: settings.clients,
        abort_ratio: settings.abort_ratio,
        duration_s: settings.duration.as_secs_f64(),
        warmup_s: settings.warmup.as_secs_f64(),
        finished,
        throughput: json["throughput"].as_f64().unwrap_or(0.0),
        samples,
        growth,
        coordinator_disk_bytes_per_saga,
        coordinator_file_bytes_per_saga,
        restart_rss_mb,
        idle_rss_mb,
        participant_retention_s: settings.participant_retention.map(|r| r.as_secs_f64()),
        ok: report.ok,
    })
}

/// The first coordinator's VmRSS (MiB) a second after it answered `/readyz`.
async fn settled_rss(cluster: &Cluster) -> Option<f64> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster
        .coordinator(0)
        .process()
        .pid()
        .and_then(procfs::rss_mb)
}

fn sample(watched: &[(String, Option<u32>, PathBuf)], t_s: f64) -> Sample {
    Sample {
        t_s,
        processes: watched
            .iter()
            .map(|(name, pid, dir)| ProcessSample {
                name: name.clone(),
                rss_mb: pid.and_then(procfs::rss_mb),
                disk_mb: dir_bytes(dir, allocated_bytes) as f64 / (1024.0 * 1024.0),
            })
            .collect(),
    }
}

/// Space a file takes on the file system: its allocated 512-byte blocks.
fn allocated_bytes(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(metadata) * 512
}

/// `size` summed over every file under `dir` (0 for what cannot be read: a file removed
/// meanwhile).
fn dir_bytes(dir: &Path, size: fn(&std::fs::Metadata) -> u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path(), size),
            Ok(m) => size(&m),
            Err(_) => 0,
        })
        .sum()
}

/// Per process, from the first sample at or after `warmup_s` (or the last, if none is) to the
/// last.
pub fn growth(samples: &[Sample], warmup_s: f64) -> Vec<Growth> {
    let (Some(last), Some(first)) = (
        samples.last(),
        samples
            .iter()
            .find(|s| s.t_s >= warmup_s)
            .or(samples.last()),
    ) else {
        return Vec::new();
    };
    first
        .processes
        .iter()
        .zip(&last.processes)
        .map(|(from, to)| Growth {
            name: from.name.clone(),
            rss_after_warmup_mb: from.rss_mb,
            rss_at_end_mb: to.rss_mb,
            rss_growth_pct: from
                .rss_mb
                .zip(to.rss_mb)
                .filter(|(from, _)| *from > 0.0)
                .map(|(from, to)| (to - from) / from * 100.0),
            disk_growth_mb: to.disk_mb - from.disk_mb,
        })
        .collect()
}

/// The soak's section of `results.md`: the samples and the growth.
pub fn markdown(result: &SoakResult) -> String {
    let mut md = format!(
        "## Soak\n\n{} clients, {:.0} % aborts, {:.0} s of load; {} sagas finished ({:.0}/s); \
         growth from the first sample at or after {:.0} s to the end. Books {}.\n\n",
        result.clients,
        result.abort_ratio * 100.0,
        result.duration_s,
        result.finished,
        result.throughput,
        result.warmup_s,
        match (result.ok, result.participant_retention_s) {
            (false, _) => "WRONG".to_string(),
            (true, Some(r)) if r <= result.duration_s + 60.0 => format!(
                "not checked (participants' retention {r:.0} s, shorter than the run: settled \
                 orders are swept)"
            ),
            (true, _) => "clean".to_string(),
        },
    );
    md.push_str("![RSS and disk of every process over the soak](soak.svg)\n\n");
    let names: Vec<&str> = result
        .samples
        .first()
        .map(|s| s.processes.iter().map(|p| p.name.as_str()).collect())
        .unwrap_or_default();
    md.push_str("| t (s) |");
    for name in &names {
        md.push_str(&format!(" {name} RSS (MiB) | {name} disk (MiB) |"));
    }
    md.push_str("\n| ---: |");
    md.push_str(&" ---: | ---: |".repeat(names.len()));
    md.push('\n');
    let mb = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for sample in &result.samples {
        md.push_str(&format!("| {:.0} |", sample.t_s));
        for p in &sample.processes {
            md.push_str(&format!(" {} | {:.1} |", mb(p.rss_mb), p.disk_mb));
        }
        md.push('\n');
    }
    md.push_str(
        "\n| process | RSS after warm-up (MiB) | RSS at end (MiB) | RSS growth | disk growth (MiB) |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
    );
    for g in &result.growth {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} |\n",
            g.name,
            mb(g.rss_after_warmup_mb),
            mb(g.rss_at_end_mb),
            g.rss_growth_pct
                .map_or("-".to_string(), |p| format!("{p:+.1} %")),
            g.disk_growth_mb
        ));
    }
    if let Some(bytes) = result.coordinator_disk_bytes_per_saga {
        md.push_str(&format!(
            "\nCoordinator disk per finished saga: {bytes:.0} bytes allocated"
        ));
        if let Some(length) = result.coordinator_file_bytes_per_saga {
            md.push_str(&format!(
                " ({length:.0} bytes of file length, space grown ahead included)"
            ));
        }
        md.push_str(".\n");
    }
    if let (Some(restart), Some(idle)) = (result.restart_rss_mb, result.idle_rss_mb) {
        md.push_str(&format!(
            "\nCoordinator restarted on this history (nothing active): {restart:.1} MiB RSS once \
             ready; on an empty data directory: {idle:.1} MiB; {:.0} bytes per retained saga.\n",
            (restart - idle) * 1024.0 * 1024.0 / result.finished.max(1) as f64
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t_s: f64, rss: f64, disk: f64) -> Sample {
        Sample {
            t_s,
            processes: vec![ProcessSample {
                name: "coordinator".into(),
                rss_mb: Some(rss),
                disk_mb: disk,
            }],
        }
    }

    #[test]
    fn growth_counts_from_the_first_sample_after_the_warm_up() {
        let samples = [
            at(0.0, 50.0, 0.0),
            at(30.0, 90.0, 10.0),
            at(60.0, 100.0, 20.0),
            at(90.0, 110.0, 30.0),
            at(120.0, 120.0, 40.0),
        ];
        let growth = growth(&samples, 60.0);
        assert_eq!(growth.len(), 1);
        assert_eq!(growth[0].rss_after_warmup_mb, Some(100.0));
        assert_eq!(growth[0].rss_at_end_mb, Some(120.0));
        assert!((growth[0].rss_growth_pct.unwrap() - 20.0).abs() < 1e-9);
        assert!((growth[0].disk_growth_mb - 20.0).abs() < 1e-9);
        // A run shorter than the warm-up measures from its last sample: no growth.
        let short = super::growth(&samples[..2], 60.0);
        assert_eq!(short[0].rss_growth_pct, Some(0.0));
        let md = markdown(&SoakResult {
            clients: 32,
            abort_ratio: 0.1,
            duration_s: 120.0,
            warmup_s: 60.0,
            finished: 1000,
            throughput: 8.3,
            samples: samples.to_vec(),
            growth,
            coordinator_disk_bytes_per_saga: Some(41943.04),
            coordinator_file_bytes_per_saga: Some(50000.0),
            restart_rss_mb: Some(60.0),
            idle_rss_mb: Some(50.0),
            participant_retention_s: None,
            ok: true,
        });
        assert!(
            md.contains("| coordinator | 100.0 | 120.0 | +20.0 % | 20.0 |"),
            "{md}"
        );
        assert!(
            md.contains("41943 bytes allocated (50000 bytes of file length"),
            "{md}"
        );
        // 10 MiB over 1,000 retained sagas.
        assert!(
            md.contains("60.0 MiB RSS") && md.contains("10486 bytes per retained saga"),
            "{md}"
        );
    }

    #[test]
    fn a_directory_counts_the_files_under_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path(), |m| m.len()), 15);
        assert_eq!(dir_bytes(&dir.path().join("missing"), |m| m.len()), 0);
        // A file grown ahead of its data takes only the blocks written.
        let sparse = std::fs::File::create(dir.path().join("sparse")).unwrap();
        sparse.set_len(64 << 20).unwrap();
        let allocated = dir_bytes(dir.path(), allocated_bytes);
        assert!(allocated < 1 << 20, "{allocated} bytes allocated");
        assert_eq!(dir_bytes(dir.path(), |m| m.len()), (64 << 20) + 15);
    }
}
