//! Seeding a coordinator data directory with sagas in flight, through the coordinator's own
//! store ([`SledStore`]) and registry, so the log is byte for byte what a running coordinator
//! writes, without the hours a live load would need to leave 100,000 sagas unfinished.
//!
//! Every saga is a `place_order` saga whose first step was called once and failed
//! transiently: its log holds the `Created` event and one round `[CallStarted, CallEnded]`
//! with a retry [`RETRY_DELAY_MS`] away, exactly what the runtime appends when a call fails
//! (the round goes to the log when the saga turns idle). After a restart the coordinator
//! resumes each one and arms its retry timer, and no saga calls anybody during the benchmark:
//! what is measured is recovery, not 100,000 calls to a participant that is not there.

use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chaos_tests::binaries;
use coordinator::engine::{CallOutcome, CallRef, Created, Event, Millis, Plan, Saga};
use coordinator::testing::{Creation, Registry, SagaLog, SledStore, Store};
use futures::StreamExt;
use sagas::{ActionEndpoints, ParticipantSpec};
use serde::Serialize;
use serde_json::json;

/// The workflow every seeded saga runs.
pub const WORKFLOW: &str = "place_order";

/// How far away each seeded saga's retry is: far beyond any benchmark run, so no saga wakes
/// up and calls a participant while it is measured.
pub const RETRY_DELAY_MS: Millis = 24 * 3600 * 1000;

/// Where the seeded participants say they live. Nothing listens there and nothing is called.
const UNUSED_BASE_URL: &str = "http://127.0.0.1:9";

/// What seeding wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedReport {
    /// Sagas written.
    pub sagas: usize,
    /// Registering, writing every saga and the final flush.
    pub seconds: f64,
    /// The data directory's size: blocks allocated on disk (`du`).
    pub data_dir_bytes: u64,
    /// The sum of the files' lengths (`du --apparent-size`).
    pub data_dir_apparent_bytes: u64,
}

impl SeedReport {
    /// Bytes on disk per saga in flight.
    pub fn bytes_per_saga(&self) -> Option<f64> {
        (self.sagas > 0).then(|| self.data_dir_bytes as f64 / self.sagas as f64)
    }
}

/// Writes `sagas` in-flight `place_order` sagas into a new saga log in `dir` (the three example
/// participants and the workspace's workflow files registered as the coordinator would), and
/// closes it. Runs on a thread of its own: sled's calls block.
pub async fn seed(dir: &Path, sagas: usize) -> anyhow::Result<SeedReport> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || seed_blocking(&dir, sagas))
        .await
        .context("the seeding thread panicked")?
}

fn seed_blocking(dir: &Path, sagas: usize) -> anyhow::Result<SeedReport> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A runtime of its own: the store's group-commit flusher is a task on it, and dropping
    // the runtime drops that task's handle on the database, so sled has closed it when this
    // returns.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the seeding runtime")?;
    let started = Instant::now();
    runtime.block_on(write_sagas(dir, sagas))?;
    drop(runtime);
    let seconds = started.elapsed().as_secs_f64();
    let size = dir_size(dir)?;
    Ok(SeedReport {
        sagas,
        seconds,
        data_dir_bytes: size.allocated,
        data_dir_apparent_bytes: size.apparent,
    })
}

async fn write_sagas(dir: &Path, sagas: usize) -> anyhow::Result<()> {
    let sled = Arc::new(
        SledStore::open(dir).with_context(|| format!("opening a saga log in {}", dir.display()))?,
    );
    let store: Arc<dyn Store> = sled.clone();
    let registry = Registry::load(store)
        .await
        .context("loading the registry")?;
    for (name, spec) in participants() {
        registry
            .put_participant(name, spec)
            .await
            .with_context(|| format!("registering {name}"))?;
    }
    let workflows = binaries::workflows_dir();
    registry
        .load_dir(&workflows)
        .await
        .with_context(|| format!("loading the workflows in {}", workflows.display()))?;
    let workflow = registry
        .workflow(WORKFLOW)
        .with_context(|| format!("no {WORKFLOW} workflow in {}", workflows.display()))?;
    let plan = registry
        .plan(&workflow.spec)
        .with_context(|| format!("resolving {WORKFLOW}"))?;
    let now = now_ms();
    let round = waiting_round(&plan, now)?;
    // Creations are durable one by one; concurrent ones share their flushes (group commit).
    let mut seeded = futures::stream::iter(0..sagas)
        .map(|index| {
            let (sled, round, created) =
                (&sled, &round, created(index, workflow.version, &plan, now));
            async move {
                let key = created.idempotency_key.clone();
                match sled.create(&created, key.as_deref()).await? {
                    Creation::Created => {}
                    Creation::Existing(other) => {
                        bail!(
                            "{} already names saga {other}; seed a fresh directory",
                            key.unwrap_or_default()
                        )
                    }
                }
                let mut saga = Saga::create(&created)?;
                for event in round {
                    saga.apply(event)?;
                }
                sled.append(&saga, 1, round)?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(256);
    while let Some(done) = seeded.next().await {
        done?;
    }
    drop(seeded);
    SagaLog::flush(sled.as_ref())
        .await
        .context("flushing the seeded log")?;
    Ok(())
}

/// The example participants as they register themselves (`participants/src/{wallet,order,
/// points}.rs`): wallet's `freeze` is TCC, order's `create` and points' `award` are SAGA.
pub fn participants() -> Vec<(&'static str, ParticipantSpec)> {
    let spec = |action: &str, endpoints: ActionEndpoints| ParticipantSpec {
        base_url: UNUSED_BASE_URL.into(),
        actions: [(action.to_string(), endpoints)].into(),
        policy: None,
    };
    vec![
        (
            "wallet",
            spec(
                "freeze",
                ActionEndpoints::Tcc {
                    try_path: "/freeze/try".into(),
                    confirm: "/freeze/confirm".into(),
                    cancel: "/freeze/cancel".into(),
                },
            ),
        ),
        (
            "order",
            spec(
                "create",
                ActionEndpoints::Saga {
                    action: "/create".into(),
                    compensate: "/create/compensate".into(),
                },
            ),
        ),
        (
            "points",
            spec(
                "award",
                ActionEndpoints::Saga {
                    action: "/award".into(),
                    compensate: "/award/compensate".into(),
                },
            ),
        ),
    ]
}

/// The first event of seeded saga number `index`, as `Runtime::submit` records it.
pub fn created(index: usize, workflow_version: u32, plan: &Plan, now: Millis) -> Created {
    Created {
        id: uuid::Uuid::now_v7().to_string(),
        workflow: WORKFLOW.into(),
        workflow_version,
        input: json!({
            "order_id": format!("seed-order-{index}"),
            "account": format!("seed-acct-{}", index % 16),
            "amount": 100,
            "points": 1,
        })
        .into(),
        callback_url: None,
        idempotency_key: Some(format!("recovery-seed-{index}")),
        business_key: None,
        callback_max_attempts: coordinator::engine::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan: std::sync::Arc::new(plan.clone()),
        at: now,
    }
}

/// The round a saga logs when its first call fails transiently: the call of the forward phase
/// of the first step (the one with no dependencies), and its end with a retry
/// [`RETRY_DELAY_MS`] after `now`. Appended at sequence 1, after `Created`.
pub fn waiting_round(plan: &Plan, now: Millis) -> anyhow::Result<[Event; 2]> {
    let (step, first) = plan
        .steps
        .iter()
        .enumerate()
        .find(|(_, step)| step.deps.is_empty())
        .context("the plan has no step without dependencies")?;
    let call = CallRef {
        step,
        phase: first.kind.forward(),
        attempt: 1,
    };
    Ok([
        Event::CallStarted { call, at: now },
        Event::CallEnded {
            call,
            outcome: CallOutcome::Transient,
            http_status: Some(503),
            latency_ms: 1,
            error: Some("seeded".into()),
            retry_at: now + RETRY_DELAY_MS,
            at: now,
        },
    ])
}

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Sizes of every file under a directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirSize {
    /// Blocks allocated on disk.
    pub allocated: u64,
    /// Sum of the files' lengths.
    pub apparent: u64,
}

/// The size of the files under `dir`, recursively.
pub fn dir_size(dir: &Path) -> anyhow::Result<DirSize> {
    use std::os::unix::fs::MetadataExt;
    let mut size = DirSize::default();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let inner = dir_size(&entry.path())?;
            size.allocated += inner.allocated;
            size.apparent += inner.apparent;
        } else {
            // st_blocks counts 512-byte units whatever the file system's block size.
            size.allocated += meta.blocks() * 512;
            size.apparent += meta.len();
        }
    }
    Ok(size)
}

/// Copies the files under `from` into `to` (created if missing), recursively.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!("copying {} to {}", entry.path().display(), target.display())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coordinator::engine::{Command, Lifecycle, StepStatus, decide};
    use coordinator::testing::{Ownership, SagaReads};

    use super::*;

    /// What the registry makes of `place_order` with the example participants.
    async fn place_order_plan(dir: &Path) -> Plan {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        let registry = Registry::load(store).await.unwrap();
        for (name, spec) in participants() {
            registry.put_participant(name, spec).await.unwrap();
        }
        registry.load_dir(&binaries::workflows_dir()).await.unwrap();
        registry
            .plan(&registry.workflow(WORKFLOW).unwrap().spec)
            .unwrap()
    }

    #[tokio::test]
    async fn a_seeded_saga_runs_and_only_waits_for_its_retry() {
        let dir = tempfile::tempdir().unwrap();
        let plan = place_order_plan(dir.path()).await;
        let now = 1_700_000_000_000;
        let round = waiting_round(&plan, now).unwrap();
        // create_order (order.create, a SAGA step) comes first and depends on nothing.
        let Event::CallStarted { call, .. } = &round[0] else {
            panic!("{round:?}")
        };
        assert_eq!(plan.steps[call.step].name, "create_order");
        assert_eq!(call.phase, sagas::Phase::Action);

        let mut saga = Saga::create(&created(7, 1, &plan, now)).unwrap();
        for event in &round {
            saga.apply(event).unwrap();
        }
        assert_eq!(saga.lifecycle, Lifecycle::Running);
        let retry_at = now + RETRY_DELAY_MS;
        assert_eq!(decide(&saga, now), [Command::WakeAt(retry_at)]);

        // And so after a restart: resuming sends nothing until the retry falls due.
        let later = now + 60_000;
        saga.apply(&Event::Resumed { at: later }).unwrap();
        assert_eq!(decide(&saga, later), [Command::WakeAt(retry_at)]);
        assert!(matches!(
            saga.steps[call.step].status,
            StepStatus::Waiting { until, .. } if until == retry_at
        ));
        assert!(matches!(decide(&saga, retry_at)[..], [Command::Call(_)]));
    }

    #[tokio::test]
    async fn the_seeded_log_holds_every_saga_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let report = seed(&data, 25).await.unwrap();
        assert_eq!(report.sagas, 25);
        assert!(report.data_dir_bytes > 0 && report.data_dir_apparent_bytes > 0);
        let copy = dir.path().join("copy");
        copy_dir(&data, &copy).unwrap();
        assert_eq!(
            dir_size(&copy).unwrap().apparent,
            report.data_dir_apparent_bytes
        );

        // What the coordinator finds when it opens the log (the copy, as a run does): 25
        // active sagas, each waiting.
        let store = SledStore::open(&copy).unwrap();
        let ids = store.claim_orphans(usize::MAX).await.unwrap();
        assert_eq!(ids.len(), 25);
        for id in &ids {
            let (saga, seq) = store.load(id).await.unwrap().unwrap();
            assert_eq!(seq, 2, "Created, CallStarted, CallEnded");
            assert_eq!(saga.lifecycle, Lifecycle::Running);
            assert!(matches!(
                &decide(&saga, saga.updated_at)[..],
                [Command::WakeAt(_)]
            ));
        }
        let key = store.saga_for_key("recovery-seed-3").await.unwrap();
        assert!(key.is_some_and(|id| ids.contains(&id)));
    }
}
