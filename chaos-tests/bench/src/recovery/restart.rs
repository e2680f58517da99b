//! One measured restart: the real coordinator binary started on a fresh copy of the seeded
//! data directory, timed from spawn to its first `/readyz` 200, with its memory and CPU read
//! from `/proc` and its active-saga gauge from `/metrics`.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chaos_tests::process::{ServiceConfig, ServiceProcess};
use chaos_tests::{binaries, ports};
use serde::Serialize;

use super::seed;
use crate::{procfs, prometheus};

/// How a restart is measured.
#[derive(Debug, Clone)]
pub struct RestartSettings {
    /// How often `/healthz` and `/readyz` are polled: the resolution of the times.
    pub poll: Duration,
    /// A coordinator not ready by then fails the run.
    pub ready_deadline: Duration,
    /// How long after ready the memory and the gauge are read again, once every resumed saga's
    /// task has run its first round.
    pub settle: Duration,
    /// Extra flags for the coordinator.
    pub coordinator_args: Vec<OsString>,
}

impl Default for RestartSettings {
    fn default() -> Self {
        RestartSettings {
            poll: Duration::from_millis(20),
            ready_deadline: Duration::from_secs(120),
            settle: Duration::from_secs(2),
            coordinator_args: Vec::new(),
        }
    }
}

/// What one restart measured. Times are from spawning the process, in seconds; memory in MiB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestartMetrics {
    /// 1-based.
    pub run: usize,
    /// Sagas in flight in the seeded log.
    pub sagas: usize,
    /// To the first `/healthz` 200: the log opened, workflows loaded, the API serving.
    pub healthy_s: f64,
    /// To the first `/readyz` 200: every active saga resumed.
    pub ready_s: f64,
    /// CPU time (user + system) the coordinator used up to ready.
    pub cpu_to_ready_s: Option<f64>,
    /// VmRSS and VmHWM (the peak so far) when ready.
    pub rss_at_ready_mb: Option<f64>,
    /// VmHWM when ready.
    pub peak_rss_at_ready_mb: Option<f64>,
    /// VmRSS and VmHWM after the settle time.
    pub rss_settled_mb: Option<f64>,
    /// VmHWM after the settle time.
    pub peak_rss_mb: Option<f64>,
    /// The `sagas_active` gauge when ready and after the settle time; both must be `sagas`.
    pub active_at_ready: Option<f64>,
    /// The gauge after the settle time.
    pub active_settled: Option<f64>,
    /// `coordinator_log_bytes_total` after the settle time: what resuming wrote to the log.
    pub recovery_log_bytes: Option<f64>,
    /// SIGTERM to exit; `None` if it had to be killed.
    pub shutdown_s: Option<f64>,
    /// Every saga seen active, at ready and after settling.
    pub ok: bool,
    /// Data directory and log of a failed run, kept for a post-mortem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_dir: Option<String>,
}

/// Starts the coordinator on a copy of `seeded` (a data directory holding `sagas` sagas in
/// flight), measures its recovery, and stops it.
pub async fn measure(
    seeded: &Path,
    sagas: usize,
    settings: &RestartSettings,
    run: usize,
) -> anyhow::Result<RestartMetrics> {
    let mut extra_args: Vec<OsString> =
        vec!["--workflows".into(), binaries::workflows_dir().into()];
    extra_args.extend(settings.coordinator_args.iter().cloned());
    let mut process = ServiceProcess::prepare(ServiceConfig {
        name: "coordinator".into(),
        binary: binaries::binary("coordinator")?,
        listen: ports::free_addr()?,
        health_path: "/readyz".into(),
        extra_args,
        log_filter: None,
    })?;
    // Recovery writes to the log, so every run starts from its own copy.
    seed::copy_dir(seeded, process.data_dir())?;
    match measure_on(&mut process, sagas, settings, run).await {
        Ok(mut metrics) => {
            if !metrics.ok {
                process.keep_dir();
                metrics.kept_dir = Some(process.root().display().to_string());
            }
            Ok(metrics)
        }
        Err(e) => {
            process.keep_dir();
            Err(e.context(format!(
                "recovery run {run} failed; data and log kept in {}\n{}",
                process.root().display(),
                process.log_tail(30)
            )))
        }
    }
}

async fn measure_on(
    process: &mut ServiceProcess,
    sagas: usize,
    settings: &RestartSettings,
    run: usize,
) -> anyhow::Result<RestartMetrics> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building an HTTP client")?;
    let url = process.url();
    let spawned = Instant::now();
    process.start()?;
    let pid = process.pid().context("the coordinator did not start")?;

    let mut healthy = None;
    let (healthy, ready) = loop {
        if !process.is_running() {
            bail!("the coordinator exited before it was ready");
        }
        if healthy.is_none() && answers_ok(&http, &format!("{url}/healthz")).await {
            healthy = Some(spawned.elapsed());
        }
        if let Some(healthy) = healthy
            && answers_ok(&http, &format!("{url}/readyz")).await
        {
            break (healthy, spawned.elapsed());
        }
        if spawned.elapsed() >= settings.ready_deadline {
            bail!(
                "the coordinator was not ready within {:?} ({})",
                settings.ready_deadline,
                if healthy.is_some() {
                    "it served /healthz"
                } else {
                    "it never served /healthz"
                }
            );
        }
        tokio::time::sleep(settings.poll).await;
    };
    let cpu = procfs::cpu_time(pid).ok();
    let at_ready = procfs::memory(pid).ok();
    let active_at_ready = active_sagas(&http, &url).await;

    tokio::time::sleep(settings.settle).await;
    let settled = procfs::memory(pid).ok();
    let text = prometheus::fetch(&http, &url).await.ok();
    let sample = |name| {
        text.as_deref()
            .and_then(|t| prometheus::sample_sum(t, name))
    };
    let active_settled = sample(prometheus::SAGAS_ACTIVE);
    let recovery_log_bytes = sample(prometheus::LOG_BYTES);

    let stopping = Instant::now();
    let exited = process
        .terminate(Duration::from_secs(30))
        .await
        .context("stopping the coordinator")?;
    let expected = Some(sagas as f64);
    Ok(RestartMetrics {
        run,
        sagas,
        healthy_s: healthy.as_secs_f64(),
        ready_s: ready.as_secs_f64(),
        cpu_to_ready_s: cpu.map(|d| d.as_secs_f64()),
        rss_at_ready_mb: at_ready.map(|m| m.rss_mb()),
        peak_rss_at_ready_mb: at_ready.map(|m| m.hwm_mb()),
        rss_settled_mb: settled.map(|m| m.rss_mb()),
        peak_rss_mb: settled.map(|m| m.hwm_mb()),
        active_at_ready,
        active_settled,
        recovery_log_bytes,
        shutdown_s: exited.map(|_| stopping.elapsed().as_secs_f64()),
        ok: active_at_ready == expected && active_settled == expected,
        kept_dir: None,
    })
}

async fn answers_ok(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .send()
        .await
        .is_ok_and(|resp| resp.status().is_success())
}

async fn active_sagas(http: &reqwest::Client, url: &str) -> Option<f64> {
    let text = prometheus::fetch(http, url).await.ok()?;
    prometheus::sample_sum(&text, prometheus::SAGAS_ACTIVE)
}
