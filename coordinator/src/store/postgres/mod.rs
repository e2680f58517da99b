//! The store on PostgreSQL, shared by every coordinator of a cluster.
//!
//! - **Durability**: writes are queued in memory and committed in one transaction per
//!   group-commit batch, covering the writes of every saga of this instance; the commit is the
//!   flush of the durability rules. A batch whose commit fails is retried (its statements are
//!   idempotent) until it succeeds or the instance's lease runs out, after which the instance
//!   stops driving every saga (what was not committed is then an unflushed tail, as after a
//!   crash).
//! - **Leases and fencing**: each active saga row has an `owner` (an instance) and an `epoch`.
//!   An instance holds its sagas while its own row in `instances` is renewed (`expires_at`);
//!   once it expires, other instances claim its sagas (`FOR UPDATE SKIP LOCKED`, epoch + 1). Every
//!   write of a saga is conditional on the epoch this instance holds: the batch locks the rows it
//!   writes (`FOR SHARE`) and drops, and reports as lost, the writes of sagas whose epoch moved.
//! - **Registry**: every registry write bumps `registry_generation`, so other instances know to
//!   reload theirs before their next submission.
//!
//! Records are the same bytes as in sled ([`super::format`]).

mod schema;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::oneshot;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use group_commit::{FlushPolicy, GroupCommit};
use sagas::{ParticipantSpec, WorkflowSpec};

use super::format;
use super::format::NoPlans;
use super::replay::{SnapshotRecords, corrupt, expand, rebuild};
use super::{
    Creation, Lease, Ownership, RegistryStore, SagaFilter, SagaLog, SagaPage, SagaReads,
    StoreError, StoreFuture, VersionWrite,
};
use crate::engine::{Created, Event, Millis, Saga};
use crate::telemetry;

/// Why the PostgreSQL store failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database refused or the connection broke.
    #[error("postgres: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("postgres pool: {0}")]
    Pool(String),
    /// The database was migrated by a newer coordinator.
    #[error(
        "the database schema is version {found}, newer than this coordinator knows ({known}); \
         run a coordinator at least as new as the one that migrated it"
    )]
    SchemaTooNew {
        /// The database's schema version.
        found: i32,
        /// The newest this coordinator knows.
        known: i32,
    },
    /// The database URL does not parse.
    #[error("invalid database URL: {0}")]
    Url(String),
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> PgError {
        PgError::Pool(e.to_string())
    }
}

/// How the PostgreSQL store runs (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// How long an instance holds its sagas without renewing: after it dies, others take its
    /// sagas over once this has passed. Default 5 s.
    pub lease: Duration,
    /// Connections in the pool. Default 16.
    pub pool_size: usize,
    /// How concurrent writers' commits are batched. Default: linger 1 ms while busy, at most
    /// 64 writers per transaction.
    pub flush: FlushPolicy,
}

impl PgOptions {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions {
            url: url.into(),
            lease: Duration::from_secs(5),
            pool_size: 16,
            flush: FlushPolicy::default(),
        }
    }
}

/// A saga created in a batch, answered once its commit is known.
struct NewSaga {
    id: String,
    workflow: String,
    business_key: Option<String>,
    created_at: i64,
    key: Option<String>,
    first_round: Vec<u8>,
    reply: oneshot::Sender<Result<Creation, StoreError>>,
}

/// What a saga's row says after the batch.
#[derive(Clone)]
struct Summary {
    state: &'static str,
    updated_at: i64,
    active: bool,
    finished_at: Option<i64>,
    snapshot: Option<(i64, Vec<u8>)>,
}

/// Writes waiting for the next commit.
#[derive(Default)]
struct Batch {
    creates: Vec<NewSaga>,
    /// `(saga, first seq, round)`.
    rounds: Vec<(String, i64, Vec<u8>)>,
    summaries: HashMap<String, Summary>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.rounds.is_empty() && self.summaries.is_empty()
    }
}

/// What the store and its committer share.
struct Shared {
    pool: Pool,
    lease: Duration,
    /// This incarnation's row in `instances`.
    instance: Mutex<String>,
    pending: Mutex<Batch>,
    /// The epoch this instance holds, per saga it drives.
    held: Mutex<HashMap<String, i64>>,
    /// Sagas whose writes were refused: another instance drives them now.
    lost: Mutex<HashSet<String>>,
}

/// The saga log and registry on PostgreSQL.
pub struct PgStore {
    shared: Arc<Shared>,
    group_commit: GroupCommit,
}

impl PgStore {
    /// Connects, migrates the schema and joins the cluster as a new instance. Must be called
    /// inside a tokio runtime.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, PgError> {
        let config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| PgError::Url(e.to_string()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(2))
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let shared = Arc::new(Shared {
            pool,
            lease: options.lease,
            instance: Mutex::new(String::new()),
            pending: Mutex::new(Batch::default()),
            held: Mutex::new(HashMap::new()),
            lost: Mutex::new(HashSet::new()),
        });
        shared.join().await?;
        let committer = shared.clone();
        let group_commit = GroupCommit::start_observed(
            options.flush,
            move || {
                let shared = committer.clone();
                async move { shared.commit_pending().await }
            },
            |batch| telemetry::log_flushed(batch.waiters, batch.took),
        );
        // Lazy writes (no one waits for them) are committed within this much time.
        let background = group_commit.clone();
        let idle = Arc::downgrade(&shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(shared) = idle.upgrade() else { return };
                let waiting = !shared
                    .pending
                    .lock()
                    .expect("batch lock poisoned")
                    .is_empty();
                drop(shared);
                if waiting && background.flush().await.is_err() {
                    tracing::warn!("background commit of lazy writes failed; retried");
                }
            }
        });
        Ok(PgStore {
            shared,
            group_commit,
        })
    }

    /// This instance's id in `instances`.
    pub fn instance(&self) -> String {
        self.shared.instance()
    }
}

/// The row of a saga as this instance writes it.
fn summary(saga: &Saga) -> Summary {
    Summary {
        state: saga.lifecycle.name(),
        updated_at: saga.updated_at as i64,
        active: !saga.is_settled(),
        finished_at: saga.is_settled().then_some(saga.updated_at as i64),
        snapshot: None,
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(PgError::Db(e).to_string())
}

fn pool(e: deadpool_postgres::PoolError) -> StoreError {
    StoreError::Postgres(PgError::from(e).to_string())
}

impl Shared {
    fn instance(&self) -> String {
        self.instance
            .lock()
            .expect("instance lock poisoned")
            .clone()
    }

    /// Registers a new incarnation of this instance, holding nothing.
    async fn join(&self) -> Result<(), PgError> {
        let id = uuid::Uuid::now_v7().to_string();
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("INSERT INTO instances (id, expires_at) VALUES ($1, now() + make_interval(secs => $2))").await?,
                &[&id, &self.lease.as_secs_f64()],
            )
            .await?;
        // Rows of instances long gone are of no use to anyone.
        client
            .execute(
                &client
                    .prepare_cached(
                        "DELETE FROM instances WHERE expires_at < now() - interval '1 hour'",
                    )
                    .await?,
                &[],
            )
            .await?;
        *self.instance.lock().expect("instance lock poisoned") = id;
        self.held.lock().expect("held lock poisoned").clear();
        self.lost.lock().expect("lost lock poisoned").clear();
        Ok(())
    }

    /// Commits everything queued, retrying a failed commit (its statements are idempotent)
    /// for as long as this instance's lease lasts.
    async fn commit_pending(&self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.pending.lock().expect("batch lock poisoned"));
        if batch.is_empty() {
            return Ok(());
        }
        let rounds = Arc::new(batch.rounds);
        let summaries = Arc::new(batch.summaries);
        let creates: Vec<&NewSaga> = batch.creates.iter().collect();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let attempt = || {
            let retry = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0;
            self.commit(&creates, &rounds, &summaries, retry)
        };
        let outcome = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(20))
                    .with_max_delay(Duration::from_millis(500))
                    .with_total_delay(Some(self.lease)),
            )
            .notify(|e, after| tracing::warn!(error = %e, ?after, "commit failed; retrying"))
            .await;
        match outcome {
            Ok(created) => {
                // A settled saga is no longer driven by anyone, once its last write is in: the
                // settling round and its snapshot are queued apart and may land in two
                // batches, and the snapshot still needs the epoch to pass the fencing check.
                let mut held = self.held.lock().expect("held lock poisoned");
                for (id, summary) in summaries.iter() {
                    if !summary.active && summary.snapshot.is_some() {
                        held.remove(id);
                    }
                }
                drop(held);
                for new in batch.creates {
                    let answer = created.get(&new.id).cloned().ok_or_else(|| {
                        StoreError::Postgres(format!("saga {} missing from its commit", new.id))
                    });
                    let _ = new.reply.send(answer);
                }
                Ok(())
            }
            Err(e) => {
                // Nothing of the batch is known durable: its sagas cannot go on here.
                let mut lost = self.lost.lock().expect("lost lock poisoned");
                lost.extend(rounds.iter().map(|(id, _, _)| id.clone()));
                lost.extend(summaries.keys().cloned());
                drop(lost);
                for new in batch.creates {
                    let _ = new
                        .reply
                        .send(Err(StoreError::Postgres(format!("commit failed: {e}"))));
                }
                Err(e)
            }
        }
    }

    /// One transaction for a batch: creations, then the writes of sagas whose lease this
    /// instance still holds. Returns what each creation became.
    async fn commit(
        &self,
        creates: &[&NewSaga],
        rounds: &[(String, i64, Vec<u8>)],
        summaries: &HashMap<String, Summary>,
        retry: bool,
    ) -> Result<HashMap<String, Creation>, StoreError> {
        let me = self.instance();
        let mut client = self.pool.get().await.map_err(pool)?;
        let tx = client.transaction().await.map_err(db)?;
        let mut created = HashMap::new();
        if !creates.is_empty() {
            let ids: Vec<&str> = creates.iter().map(|c| c.id.as_str()).collect();
            let workflows: Vec<&str> = creates.iter().map(|c| c.workflow.as_str()).collect();
            let at: Vec<i64> = creates.iter().map(|c| c.created_at).collect();
            let keys: Vec<Option<&str>> = creates.iter().map(|c| c.key.as_deref()).collect();
            let business_keys: Vec<Option<&str>> =
                creates.iter().map(|c| c.business_key.as_deref()).collect();
            // Idempotent, for a retried commit: `ON CONFLICT DO NOTHING` and the owner check.
            let inserted = tx
                .query(
                    &tx.prepare_cached("INSERT INTO sagas (id, workflow, state, created_at, updated_at, idempotency_key, business_key, owner, epoch, active)
                     SELECT id, workflow, 'running', at, at, key, business_key, $6, 1, true
                     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[])
                          AS n(id, workflow, at, key, business_key)
                     ON CONFLICT DO NOTHING
                     RETURNING id").await.map_err(db)?,
                    &[&ids, &workflows, &at, &keys, &business_keys, &me],
                )
                .await
                .map_err(db)?;
            let mut ours: HashSet<String> = inserted.iter().map(|r| r.get(0)).collect();
            // A retried commit whose first attempt did commit finds its own rows taken by the
            // insert above.
            if retry {
                let already = tx
                    .query(
                        &tx.prepare_cached(
                            "SELECT id FROM sagas WHERE id = ANY($1) AND owner = $2",
                        )
                        .await
                        .map_err(db)?,
                        &[&ids, &me],
                    )
                    .await
                    .map_err(db)?;
                ours.extend(already.iter().map(|r| r.get::<_, String>(0)));
            }
            let taken_keys: Vec<&str> = creates
                .iter()
                .filter(|c| !ours.contains(&c.id))
                .filter_map(|c| c.key.as_deref())
                .collect();
            let existing: HashMap<String, String> = tx
                .query(
                    &tx.prepare_cached(
                        "SELECT idempotency_key, id FROM sagas WHERE idempotency_key = ANY($1)",
                    )
                    .await
                    .map_err(db)?,
                    &[&taken_keys],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let (mut first_ids, mut first_rounds) = (Vec::new(), Vec::new());
            for new in creates {
                if ours.contains(&new.id) {
                    first_ids.push(new.id.as_str());
                    first_rounds.push(new.first_round.as_slice());
                    created.insert(new.id.clone(), Creation::Created);
                } else {
                    let key = new.key.clone().unwrap_or_default();
                    let id = existing.get(&key).cloned().ok_or_else(|| {
                        StoreError::Postgres(format!(
                            "saga {} was neither created nor found by its key",
                            new.id
                        ))
                    })?;
                    created.insert(new.id.clone(), Creation::Existing(id));
                }
            }
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO events (saga_id, seq, record)
                 SELECT id, 0, record FROM UNNEST($1::text[], $2::bytea[]) AS f(id, record)
                 ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(db)?,
                &[&first_ids, &first_rounds],
            )
            .await
            .map_err(db)?;
        }

        // Fencing: one conditional UPDATE writes each saga's summary where this instance still
        // holds the epoch it drives the saga under, and locks those rows until the commit (a
        // take-over's epoch bump waits for it, or this UPDATE sees the bump and skips the row).
        // Only the sagas it updated get their rounds appended.
        let mut written: Vec<&str> = rounds
            .iter()
            .map(|(id, _, _)| id.as_str())
            .chain(summaries.keys().map(String::as_str))
            .collect();
        written.sort_unstable();
        written.dedup();
        let mut allowed = HashSet::new();
        if !written.is_empty() {
            let held = self.held.lock().expect("held lock poisoned").clone();
            let fenced: Vec<(&str, i64, Option<&Summary>)> = written
                .iter()
                .filter_map(|id| Some((*id, *held.get(*id)?, summaries.get(*id))))
                .collect();
            let ids: Vec<&str> = fenced.iter().map(|(id, _, _)| *id).collect();
            let epochs: Vec<i64> = fenced.iter().map(|(_, epoch, _)| *epoch).collect();
            let field = |f: &dyn Fn(&Summary) -> Option<i64>| -> Vec<Option<i64>> {
                fenced.iter().map(|(_, _, s)| s.and_then(f)).collect()
            };
            let states: Vec<Option<&str>> =
                fenced.iter().map(|(_, _, s)| s.map(|s| s.state)).collect();
            let updated = field(&|s| Some(s.updated_at));
            let active: Vec<Option<bool>> =
                fenced.iter().map(|(_, _, s)| s.map(|s| s.active)).collect();
            let finished = field(&|s| s.finished_at);
            let snapshots: Vec<Option<&[u8]>> = fenced
                .iter()
                .map(|(_, _, s)| s.and_then(|s| s.snapshot.as_ref().map(|(_, b)| b.as_slice())))
                .collect();
            let snapshot_seqs = field(&|s| s.snapshot.as_ref().map(|(seq, _)| *seq));
            let params: [&(dyn ToSql + Sync); 9] = [
                &ids,
                &epochs,
                &states,
                &updated,
                &active,
                &finished,
                &snapshots,
                &snapshot_seqs,
                &me,
            ];
            let rows = tx
                .query(
                    &tx.prepare_cached(
                        "UPDATE sagas AS s SET state = COALESCE(u.state, s.state),
                            updated_at = COALESCE(u.updated_at, s.updated_at),
                            active = COALESCE(u.active, s.active),
                            finished_at = COALESCE(u.finished_at, s.finished_at),
                            snapshot = COALESCE(u.snapshot, s.snapshot),
                            snapshot_seq = COALESCE(u.snapshot_seq, s.snapshot_seq)
                         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[], $5::bool[],
                                     $6::int8[], $7::bytea[], $8::int8[])
                              AS u(id, epoch, state, updated_at, active, finished_at, snapshot,
                                   snapshot_seq)
                         WHERE s.id = u.id AND s.owner = $9 AND s.epoch = u.epoch
                         RETURNING s.id",
                    )
                    .await
                    .map_err(db)?,
                    &params,
                )
                .await
                .map_err(db)?;
            allowed.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            let mut lost = self.lost.lock().expect("lost lock poisoned");
            for id in &written {
                if !allowed.contains(*id) && lost.insert(id.to_string()) {
                    tracing::warn!(saga = %id, "saga is driven by another coordinator now; its writes here are dropped");
                }
            }
        }
        let rounds: Vec<&(String, i64, Vec<u8>)> = rounds
            .iter()
            .filter(|(id, _, _)| allowed.contains(id))
            .collect();
        if !rounds.is_empty() {
            let ids: Vec<&str> = rounds.iter().map(|(id, _, _)| id.as_str()).collect();
            let seqs: Vec<i64> = rounds.iter().map(|(_, seq, _)| *seq).collect();
            let records: Vec<&[u8]> = rounds.iter().map(|(_, _, r)| r.as_slice()).collect();
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO events (saga_id, seq, record)
                 SELECT * FROM UNNEST($1::text[], $2::int8[], $3::bytea[])
                 ON CONFLICT DO NOTHING",
                )
                .await
                .map_err(db)?,
                &[&ids, &seqs, &records],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    /// Queues a saga's summary (state, activity, optional snapshot) for the next commit.
    fn queue_summary(&self, saga_id: &str, summary: Summary) {
        let mut pending = self.pending.lock().expect("batch lock poisoned");
        match pending.summaries.get_mut(saga_id) {
            Some(queued) => {
                let snapshot = summary.snapshot.or_else(|| queued.snapshot.take());
                *queued = Summary {
                    snapshot,
                    ..summary
                };
            }
            None => {
                pending.summaries.insert(saga_id.to_string(), summary);
            }
        }
    }

    fn is_lost(&self, saga_id: &str) -> bool {
        self.lost
            .lock()
            .expect("lost lock poisoned")
            .contains(saga_id)
    }

    async fn load(&self, saga_id: &str) -> Result<Option<(Saga, u64)>, StoreError> {
        let client = self.pool.get().await.map_err(pool)?;
        // One statement, so one snapshot of the database: the saga's row (as seq -1) and its
        // first event and those after the snapshot. Two queries would let a retention sweep
        // delete the saga between them, leaving a row without its events.
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "WITH s AS (SELECT snapshot, snapshot_seq FROM sagas WHERE id = $1)
                 SELECT -1::int8, snapshot, snapshot_seq FROM s
                 UNION ALL
                 SELECT e.seq, e.record, NULL FROM events e, s
                 WHERE e.saga_id = $1 AND (e.seq = 0 OR e.seq >=
                     CASE WHEN s.snapshot IS NULL THEN 0 ELSE s.snapshot_seq + 1 END)
                 ORDER BY 1",
                    )
                    .await
                    .map_err(db)?,
                &[&saga_id],
            )
            .await
            .map_err(db)?;
        let mut rows = rows.iter();
        // No row: no saga (never created, or removed after its retention).
        let Some(head) = rows.next() else {
            return Ok(None);
        };
        let snapshot: Option<Vec<u8>> = head.get(1);
        let mut records: Vec<(u64, Vec<u8>)> = rows
            .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))
            .collect();
        match &snapshot {
            Some(snapshot) => {
                if records.first().map(|(seq, _)| *seq) != Some(0) {
                    return Err(StoreError::Corrupt {
                        tree: "events",
                        message: format!("saga {saga_id} has a snapshot but no first event"),
                    });
                }
                let first_round = records.remove(0).1;
                let snapshot = SnapshotRecords {
                    snapshot,
                    first_round: &first_round,
                };
                rebuild(
                    saga_id,
                    &NoPlans,
                    Some(snapshot),
                    records.into_iter().map(Ok),
                )
            }
            None => rebuild(saga_id, &NoPlans, None, records.into_iter().map(Ok)),
        }
    }
}

impl SagaLog for PgStore {
    fn create<'a>(&'a self, first: &'a Created, key: Option<&'a str>) -> StoreFuture<'a, Creation> {
        Box::pin(async move {
            let (reply, created) = oneshot::channel();
            let first_round = format::encode_round(&[Event::Created(Box::new(first.clone()))]);
            telemetry::log_written(first_round.len() + first.id.len());
            self.shared
                .held
                .lock()
                .expect("held lock poisoned")
                .insert(first.id.clone(), 1);
            self.shared
                .pending
                .lock()
                .expect("batch lock poisoned")
                .creates
                .push(NewSaga {
                    id: first.id.clone(),
                    workflow: first.workflow.clone(),
                    business_key: first.business_key.clone(),
                    created_at: first.at as i64,
                    key: key.map(str::to_string),
                    first_round,
                    reply,
                });
            // Rule 1: committed (or found by its key) before it is acknowledged.
            self.group_commit.flush().await?;
            let creation = created
                .await
                .map_err(|_| StoreError::Postgres("the commit dropped a creation".into()))??;
            if creation != Creation::Created {
                self.shared
                    .held
                    .lock()
                    .expect("held lock poisoned")
                    .remove(&first.id);
            }
            Ok(creation)
        })
    }

    fn append(&self, saga: &Saga, first_seq: u64, events: &[Event]) -> Result<(), StoreError> {
        if self.shared.is_lost(&saga.id) {
            return Err(StoreError::Fenced(saga.id.clone()));
        }
        if events.is_empty() {
            return Ok(());
        }
        let record = format::encode_round(events);
        telemetry::log_written(record.len() + saga.id.len() + 8);
        self.shared
            .pending
            .lock()
            .expect("batch lock poisoned")
            .rounds
            .push((saga.id.clone(), first_seq as i64, record));
        self.shared.queue_summary(&saga.id, summary(saga));
        Ok(())
    }

    fn save_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError> {
        if self.shared.is_lost(&saga.id) {
            return Err(StoreError::Fenced(saga.id.clone()));
        }
        let snapshot = format::encode_snapshot(saga, seq);
        telemetry::log_written(snapshot.len() + saga.id.len());
        let mut row = summary(saga);
        row.snapshot = Some((seq as i64, snapshot));
        self.shared.queue_summary(&saga.id, row);
        Ok(())
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(self.group_commit.flush().await?) })
    }

    fn lost(&self, saga_id: &str) -> bool {
        self.shared.is_lost(saga_id)
    }
}

impl SagaReads for PgStore {
    fn events<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Vec<(u64, Event)>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT seq, record FROM events WHERE saga_id = $1 ORDER BY seq",
                        )
                        .await
                        .map_err(db)?,
                    &[&saga_id],
                )
                .await
                .map_err(db)?;
            expand(
                &NoPlans,
                rows.iter()
                    .map(|r| Ok((r.get::<_, i64>(0) as u64, r.get::<_, Vec<u8>>(1)))),
            )
        })
    }

    fn load<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Option<(Saga, u64)>> {
        Box::pin(self.shared.load(saga_id))
    }

    fn list<'a>(
        &'a self,
        filter: &'a SagaFilter,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, SagaPage> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            // Only the filters given, as literal conditions, so the planner can use an index
            // for each (one cached statement per combination); `active` for the states of an
            // unsettled saga lets it read only the sagas in flight.
            let state = filter.state.map(|s| s.as_str());
            let from = filter.created_from.map(|t| t as i64);
            let until = filter.created_until.map(|t| t as i64);
            let page = limit as i64 + 1;
            let mut conditions: Vec<String> = Vec::new();
            let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
            let given: [(&str, Option<&(dyn ToSql + Sync)>); 6] = [
                ("state = ", state.as_ref().map(|v| v as _)),
                ("workflow = ", filter.workflow.as_ref().map(|v| v as _)),
                (
                    "business_key = ",
                    filter.business_key.as_ref().map(|v| v as _),
                ),
                ("created_at >= ", from.as_ref().map(|v| v as _)),
                ("created_at < ", until.as_ref().map(|v| v as _)),
                ("id > ", cursor.as_ref().map(|v| v as _)),
            ];
            for (test, param) in given {
                if let Some(param) = param {
                    params.push(param);
                    conditions.push(format!("{test}${}", params.len()));
                }
            }
            if filter.state.is_some_and(|s| !s.is_terminal()) {
                conditions.push("active".into());
            }
            params.push(&page);
            let sql = format!(
                "SELECT id FROM sagas {} ORDER BY id LIMIT ${}",
                if conditions.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", conditions.join(" AND "))
                },
                params.len()
            );
            let rows = client
                .query(&client.prepare_cached(&sql).await.map_err(db)?, &params)
                .await
                .map_err(db)?;
            drop(client);
            let mut sagas = Vec::with_capacity(rows.len().min(limit));
            for row in rows.iter().take(limit) {
                let id: String = row.get(0);
                // Gone meanwhile (retention): nothing to show.
                if let Some((saga, _)) = self.shared.load(&id).await? {
                    sagas.push(saga);
                }
            }
            let next_cursor = (rows.len() > limit)
                .then(|| sagas.last().map(|s: &Saga| s.id.clone()))
                .flatten();
            Ok(SagaPage { sagas, next_cursor })
        })
    }

    fn saga_for_key<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT id FROM sagas WHERE idempotency_key = $1")
                        .await
                        .map_err(db)?,
                    &[&key],
                )
                .await
                .map_err(db)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn expire_finished(&self, finished_before: Millis, limit: usize) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            // Events go with their saga in the same statement (the events table has no foreign
            // key: checking one on every append costs a lock on the saga's row).
            let deleted = client
                .query_one(
                    &client
                        .prepare_cached(
                            "WITH gone AS (
                        DELETE FROM sagas WHERE id IN (
                            SELECT id FROM sagas WHERE NOT active AND finished_at < $1
                            ORDER BY finished_at LIMIT $2)
                        RETURNING id),
                     events_gone AS (
                        DELETE FROM events e USING gone WHERE e.saga_id = gone.id)
                     SELECT count(*) FROM gone",
                        )
                        .await
                        .map_err(db)?,
                    &[&(finished_before as i64), &(limit as i64)],
                )
                .await
                .map_err(db)?
                .get::<_, i64>(0);
            Ok(deleted as usize)
        })
    }
}

impl Ownership for PgStore {
    fn claim_orphans(&self, limit: usize) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let me = self.shared.instance();
            let client = self.shared.pool.get().await.map_err(pool)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "WITH orphans AS (
                        SELECT s.id FROM sagas s
                        WHERE s.active AND NOT EXISTS (
                            SELECT 1 FROM instances i WHERE i.id = s.owner AND i.expires_at > now())
                        ORDER BY s.id LIMIT $2
                        FOR UPDATE OF s SKIP LOCKED)
                     UPDATE sagas s SET owner = $1, epoch = s.epoch + 1
                     FROM orphans o WHERE s.id = o.id
                     RETURNING s.id, s.epoch",
                        )
                        .await
                        .map_err(db)?,
                    &[&me, &(limit as i64)],
                )
                .await
                .map_err(db)?;
            let mut held = self.shared.held.lock().expect("held lock poisoned");
            let mut lost = self.shared.lost.lock().expect("lost lock poisoned");
            Ok(rows
                .iter()
                .map(|row| {
                    let id: String = row.get(0);
                    held.insert(id.clone(), row.get(1));
                    lost.remove(&id);
                    id
                })
                .collect())
        })
    }

    fn take_over<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let me = self.shared.instance();
            let client = self.shared.pool.get().await.map_err(pool)?;
            let row = client
                .query_opt(
                    &client.prepare_cached("UPDATE sagas SET owner = $1, epoch = epoch + 1 WHERE id = $2 AND active
                     RETURNING epoch").await.map_err(db)?,
                    &[&me, &saga_id],
                )
                .await
                .map_err(db)?;
            let Some(row) = row else { return Ok(false) };
            self.shared
                .held
                .lock()
                .expect("held lock poisoned")
                .insert(saga_id.to_string(), row.get(0));
            self.shared
                .lost
                .lock()
                .expect("lost lock poisoned")
                .remove(saga_id);
            Ok(true)
        })
    }

    fn renew(&self) -> StoreFuture<'_, Lease> {
        Box::pin(async move {
            let me = self.shared.instance();
            let lease = self.shared.lease;
            let client = self.shared.pool.get().await.map_err(pool)?;
            let renewed = client
                .execute(
                    &client
                        .prepare_cached(
                            "UPDATE instances SET expires_at = now() + make_interval(secs => $2)
                     WHERE id = $1 AND expires_at > now()",
                        )
                        .await
                        .map_err(db)?,
                    &[&me, &lease.as_secs_f64()],
                )
                .await
                .map_err(db)?;
            Ok(if renewed == 1 {
                Lease::Held(Some(lease))
            } else {
                Lease::Lost
            })
        })
    }

    fn rejoin(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.shared
                .join()
                .await
                .map_err(|e| StoreError::Postgres(e.to_string()))
        })
    }

    fn clustered(&self) -> bool {
        true
    }

    fn leave(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let me = self.shared.instance();
            let client = self.shared.pool.get().await.map_err(pool)?;
            client
                .execute(
                    &client
                        .prepare_cached("UPDATE instances SET expires_at = now() WHERE id = $1")
                        .await
                        .map_err(db)?,
                    &[&me],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }
}

/// A registry write and the bump of the registry generation, in one transaction.
async fn registry_write(
    shared: &Shared,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    let mut client = shared.pool.get().await.map_err(pool)?;
    let tx = client.transaction().await.map_err(db)?;
    let changed = tx.execute(sql, params).await.map_err(db)?;
    if changed > 0 {
        tx.execute(
            &tx.prepare_cached(
                "UPDATE registry_generation SET generation = generation + 1 WHERE id = 1",
            )
            .await
            .map_err(db)?,
            &[],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(changed)
}

impl RegistryStore for PgStore {
    fn put_participant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ParticipantSpec,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let record = format::encode_participant(spec);
            registry_write(
                &self.shared,
                "INSERT INTO participants (name, spec) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec",
                &[&name, &record],
            )
            .await?;
            Ok(())
        })
    }

    fn participants(&self) -> StoreFuture<'_, Vec<(String, ParticipantSpec)>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached("SELECT name, spec FROM participants ORDER BY name")
                        .await
                        .map_err(db)?,
                    &[],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let spec: Vec<u8> = r.get(1);
                    Ok((
                        r.get(0),
                        format::decode_participant(&spec).map_err(corrupt("participants"))?,
                    ))
                })
                .collect()
        })
    }

    fn put_workflow<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, VersionWrite> {
        Box::pin(async move {
            let record = format::encode_workflow(spec);
            let version = version as i32;
            let inserted = registry_write(
                &self.shared,
                "INSERT INTO workflows (name, version, spec) VALUES ($1, $2, $3)
                 ON CONFLICT (name, version) DO NOTHING",
                &[&name, &version, &record],
            )
            .await?;
            if inserted == 1 {
                return Ok(VersionWrite::Written);
            }
            let stored = self.workflow_version(name, version as u32).await?;
            Ok(if stored.as_ref() == Some(spec) {
                VersionWrite::Written
            } else {
                VersionWrite::Taken
            })
        })
    }

    fn workflows(&self) -> StoreFuture<'_, Vec<(String, u32, WorkflowSpec)>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let rows = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT DISTINCT ON (name) name, version, spec FROM workflows
                     ORDER BY name, version DESC",
                        )
                        .await
                        .map_err(db)?,
                    &[],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    let spec: Vec<u8> = r.get(2);
                    Ok((
                        r.get(0),
                        r.get::<_, i32>(1) as u32,
                        format::decode_workflow(&spec).map_err(corrupt("workflows"))?,
                    ))
                })
                .collect()
        })
    }

    fn workflow_version<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<WorkflowSpec>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached(
                            "SELECT spec FROM workflows WHERE name = $1 AND version = $2",
                        )
                        .await
                        .map_err(db)?,
                    &[&name, &(version as i32)],
                )
                .await
                .map_err(db)?;
            row.map(|r| {
                let spec: Vec<u8> = r.get(0);
                format::decode_workflow(&spec).map_err(corrupt("workflows"))
            })
            .transpose()
        })
    }

    fn file_workflow<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<WorkflowSpec>> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let row = client
                .query_opt(
                    &client
                        .prepare_cached("SELECT spec FROM workflow_files WHERE name = $1")
                        .await
                        .map_err(db)?,
                    &[&name],
                )
                .await
                .map_err(db)?;
            row.map(|r| {
                let spec: Vec<u8> = r.get(0);
                format::decode_workflow(&spec).map_err(corrupt("workflow_files"))
            })
            .transpose()
        })
    }

    fn put_file_workflow<'a>(
        &'a self,
        name: &'a str,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            client
                .execute(
                    &client
                        .prepare_cached(
                            "INSERT INTO workflow_files (name, spec) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec",
                        )
                        .await
                        .map_err(db)?,
                    &[&name, &format::encode_workflow(spec)],
                )
                .await
                .map_err(db)?;
            Ok(())
        })
    }

    fn registry_generation(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let client = self.shared.pool.get().await.map_err(pool)?;
            let row = client
                .query_one(
                    &client
                        .prepare_cached("SELECT generation FROM registry_generation WHERE id = 1")
                        .await
                        .map_err(db)?,
                    &[],
                )
                .await
                .map_err(db)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}
