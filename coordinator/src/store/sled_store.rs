//! [`SagaLog`] and [`RegistryStore`] on sled. Values are [`super::format`] records: a saga's
//! events in the compact version 2 (its plan stored once, in the `plans` tree), registry
//! records in JSON (version 1).
//!
//! **One key per saga while it moves, none once it settled.** A saga's log is one `events`
//! record, `{saga_id}`, that each round extends by a chunk; settling only takes the `active`
//! entry away. Settled sagas then move to the [settled archive](super::archive) in batches
//! ([`SagaLog::archive_settled`]), and every read looks in sled first, then there: sled's
//! memory grows with its number of pages, cached or not, so sled holds only what is still
//! moving (`docs/ARCHITECTURE.md`, "Memory and disk"). Logs written before version 2
//! (`{saga_id}/{first seq}` rounds and snapshots in `sagas`) are read as they are, stay in sled
//! until retention, and a saga that was running in such a log goes on in rounds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sagas::{ParticipantSpec, WorkflowSpec};

use super::archive::{ArchivedSaga, SettledArchive};
use super::format::{self, FormatError, PlanRef, PlanSource};
use super::replay::{SnapshotRecords, corrupt, expand, rebuild};
use super::{
    Creation, Lease, Ownership, RegistryStore, SagaFilter, SagaLog, SagaPage, SagaReads,
    StoreError, StoreFuture, VersionWrite, ready,
};
use crate::engine::{Created, Event, Millis, Plan, Saga};
use crate::telemetry;
use group_commit::{FlushPolicy, GroupCommit};

/// How the sled store runs (a part of [`crate::config::CoordinatorOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// sled's page cache, in bytes. Default 16 MiB: sled's own default (1 GiB) would let pages
    /// read while resuming 100,000 sagas stay resident for good.
    pub cache_bytes: u64,
    /// The settled archive's page cache, in bytes: all the memory that finished sagas cost,
    /// however many are retained. Default 8 MiB (reads of finished sagas are rare; the
    /// archive's writes are batched).
    pub archive_cache_bytes: u64,
    /// Group commit: how flushes of concurrent sagas are batched. Default: linger 1 ms while
    /// busy, at most 64 writers per flush.
    pub flush: FlushPolicy,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 16 << 20,
            archive_cache_bytes: 8 << 20,
            flush: FlushPolicy::default(),
        }
    }
}

/// The saga log and registries in one embedded sled database.
pub struct SledStore {
    /// For a synchronous flush ([`SledStore::flush_blocking`]).
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    db: sled::Db,
    /// `{saga_id}` -> the saga's whole log: every event from sequence 0, one version-2 chunk
    /// per round. In logs written before version 2: `{saga_id}/{first seq: u64 BE}` -> the
    /// events of one round, numbered from `first seq`.
    events: sled::Tree,
    /// Only in logs written before version 2: `{saga_id}` -> snapshot, the saga state and the
    /// sequence number it includes (a version-2 log is replayed whole: it is one record).
    sagas: sled::Tree,
    /// `{plan ref}` -> a plan (version-1 JSON), written once, before the first record naming it.
    plans: sled::Tree,
    /// Plans this process wrote or read (see [`PlanCache`]).
    plan_cache: Mutex<PlanCache>,
    /// Where the retention walk of `events` stopped at its limit, for the next call of the
    /// same sweep; `None` when the last call walked to the end (the next starts over).
    retention_walk: Mutex<Option<Vec<u8>>>,
    /// Settled sagas moved off sled (see [`super::archive`]): sled holds the active ones and
    /// those settled since the last [`SagaLog::archive_settled`].
    archive: SettledArchive,
    /// Where the retention walk of the archive stopped at its limit, as
    /// [`SledStore::retention_walk`] for `events`.
    archive_retention_walk: Mutex<Option<String>>,
    /// `{saga_id}` -> empty: settled sagas not yet moved to the archive, written when a saga
    /// settles and removed when it moved, so a move finds them without walking the log, after
    /// a crash too.
    unarchived: sled::Tree,
    /// `walked` -> empty once the walk below went through `events`.
    archive_state: sled::Tree,
    /// Where a walk of `events` for settled sagas with no `unarchived` entry goes on: a data
    /// directory written before the archive existed is walked once; `None` when done.
    archive_walk: Mutex<Option<Vec<u8>>>,
    /// Held by a move to the archive and by a retention sweep, so they never work on the same
    /// saga at once.
    maintenance: Mutex<()>,
    /// `{saga_id}` -> empty, for sagas not yet terminal.
    active: sled::Tree,
    /// idempotency key -> saga id.
    idempotency: sled::Tree,
    /// `{business key}\0{saga_id}` -> empty: the sagas carrying a business key, in creation
    /// order.
    business_keys: sled::Tree,
    /// `{finished at: u64 BE}{saga_id}` -> empty, for settled sagas of logs written before
    /// version 2, oldest first (retention; version-2 logs are walked instead).
    finished: sled::Tree,
    participants: sled::Tree,
    /// `{name}\0{version: u32 BE}` -> workflow definition; written once per version.
    workflows: sled::Tree,
    /// `{name}` -> the definition the workflow file of that name last loaded, so a file
    /// loads again only when it changed (an operator's later `PUT` is not undone by a restart).
    workflow_files: sled::Tree,
    group_commit: GroupCommit,
    /// Serialises keyed creations within this process, so that a key that names a saga with
    /// no first event can only be left over from a crash (see `write_created`).
    claiming: Mutex<()>,
    /// The active sagas were handed out for recovery (the first claim).
    claimed: std::sync::atomic::AtomicBool,
}

/// The `archive_state` key saying the one walk of `events` for settled sagas is done.
const ARCHIVE_WALKED: &[u8] = b"walked";

/// A move to the archive stops taking sagas once their logs reach this many bytes.
const ARCHIVE_BATCH_BYTES: usize = 16 << 20;

/// Plans by reference, so that each is stored once and decoded once.
#[derive(Default)]
struct PlanCache {
    /// Every plan this process wrote or read, for decoding.
    by_ref: HashMap<PlanRef, Arc<Plan>>,
    /// The plans written last, by pointer: the registry shares one `Arc<Plan>` among the sagas
    /// of a workflow version, so a write usually finds its reference without hashing.
    recent: Vec<(Arc<Plan>, PlanRef)>,
}

/// Past this many bytes a saga's log record is no longer rewritten: its later rounds get keys
/// of their own (`{saga_id}/{first seq}`), so a saga that retries for hours costs each round's
/// bytes, not the whole log again every round.
const LOG_RECORD_MAX: usize = 16 << 10;

/// The settled archive's file, in the store's directory beside sled's files.
const ARCHIVE_FILE: &str = "archive.redb";

/// Plans remembered by pointer; more are hashed again (and found in `by_ref`).
const RECENT_PLANS: usize = 64;

/// `{saga_id}/`: every round key of a saga in a log written before version 2 starts with it.
fn event_prefix(saga_id: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(saga_id.len() + 9);
    prefix.extend_from_slice(saga_id.as_bytes());
    prefix.push(b'/');
    prefix
}

fn event_key(saga_id: &str, seq: u64) -> Vec<u8> {
    let mut key = event_prefix(saga_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence number of an event key that starts with a prefix of `prefix_len` bytes.
fn event_seq(key: &[u8], prefix_len: usize) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key[prefix_len..]
        .try_into()
        .map_err(|_| StoreError::Corrupt {
            tree: "events",
            message: format!("bad key length {}", key.len()),
        })?;
    Ok(u64::from_be_bytes(bytes))
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Must be called inside a tokio runtime (the
    /// group-commit flusher is a task).
    #[cfg(any(test, feature = "testing"))]
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        SledStore::open_with(dir, &StoreOptions::default())
    }

    /// [`SledStore::open`] with explicit options.
    pub fn open_with(dir: &Path, options: &StoreOptions) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_bytes)
            .open()?;
        let events = db.open_tree("events")?;
        let archive_state = db.open_tree("archive_state")?;
        // A data directory written before the archive existed is walked once for its settled
        // sagas; an empty one has none.
        if events.is_empty() {
            archive_state.insert(ARCHIVE_WALKED, &[])?;
        }
        let archive_walk = (!archive_state.contains_key(ARCHIVE_WALKED)?).then(Vec::new);
        Ok(SledStore {
            events,
            sagas: db.open_tree("sagas")?,
            plans: db.open_tree("plans")?,
            plan_cache: Mutex::default(),
            retention_walk: Mutex::default(),
            archive: SettledArchive::open(
                &dir.join(ARCHIVE_FILE),
                usize::try_from(options.archive_cache_bytes).unwrap_or(usize::MAX),
            )?,
            archive_retention_walk: Mutex::default(),
            unarchived: db.open_tree("unarchived")?,
            archive_walk: Mutex::new(archive_walk),
            archive_state,
            maintenance: Mutex::new(()),
            active: db.open_tree("active")?,
            idempotency: db.open_tree("idempotency")?,
            business_keys: db.open_tree("business_keys")?,
            finished: db.open_tree("finished")?,
            participants: db.open_tree("participants")?,
            workflows: db.open_tree("workflows")?,
            workflow_files: db.open_tree("workflow_files")?,
            group_commit: {
                let db = db.clone();
                GroupCommit::start_observed(
                    options.flush,
                    move || {
                        let db = db.clone();
                        async move { db.flush_async().await.map(|_| ()) }
                    },
                    |batch| telemetry::log_flushed(batch.waiters, batch.took),
                )
            },
            claiming: Mutex::new(()),
            claimed: std::sync::atomic::AtomicBool::new(false),
            db,
        })
    }

    /// Flushes synchronously.
    #[cfg(any(test, feature = "testing"))]
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl SledStore {
    /// The first event and the active-index entry. The event goes first: a crash can keep a
    /// prefix of the writes, and an active entry without its event would name nothing.
    fn insert_created(&self, saga_id: &str, first: &Event) -> Result<(), StoreError> {
        let mut value = vec![format::NEWEST_VERSION];
        self.append_chunk(&mut value, std::slice::from_ref(first))?;
        telemetry::log_written(saga_id.len() + value.len());
        self.events.insert(saga_id.as_bytes(), value)?;
        if let Event::Created(created) = first
            && let Some(business_key) = &created.business_key
        {
            self.business_keys
                .insert(business_key_entry(business_key, saga_id), &[])?;
        }
        self.active.insert(saga_id.as_bytes(), &[])?;
        Ok(())
    }

    /// The sagas carrying `business_key` (the index, then each saga), after `cursor`.
    fn read_page_by_business_key(
        &self,
        business_key: &str,
        filter: &SagaFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, StoreError> {
        let ids = merged_ids(
            cursor,
            |after, n| self.business_key_ids_after(business_key, after, n),
            |after, upto, n| {
                self.archive
                    .business_key_ids_in(business_key, after, upto, n)
                    .map_err(StoreError::from)
            },
        );
        self.page_of(ids, filter, limit)
    }

    /// Up to `n` ids of sagas in sled carrying `business_key`, in id order after `after`.
    fn business_key_ids_after(
        &self,
        business_key: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = business_key_entry(business_key, "");
        let start = business_key_entry(business_key, after.unwrap_or(""));
        let from = match after {
            Some(_) => std::ops::Bound::Excluded(start),
            None => std::ops::Bound::Included(start),
        };
        self.business_keys
            .range((from, std::ops::Bound::Unbounded))
            .keys()
            .take_while(|entry| entry.as_ref().map_or(true, |e| e.starts_with(&prefix)))
            .take(n)
            .map(|entry| Ok(String::from_utf8_lossy(&entry?[prefix.len()..]).into_owned()))
            .collect()
    }

    /// Up to `n` ids of sagas with a log in sled, in id order after `after`, each once.
    fn log_ids_after(&self, after: Option<&str>, n: usize) -> Result<Vec<String>, StoreError> {
        let keys = match after {
            Some(a) => self.events.range::<&[u8], _>((
                std::ops::Bound::Excluded(a.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.events.iter(),
        };
        let mut ids: Vec<String> = Vec::new();
        for key in keys.keys() {
            let key = key?;
            // A saga id never holds '/': what follows the first one is a round's number.
            let id = key.split(|&b| b == b'/').next().unwrap_or(&key);
            let id = String::from_utf8_lossy(id);
            // Once each, and never at or before `after` (its own round keys follow it).
            if ids.last().is_some_and(|last| *last == id) || after.is_some_and(|a| id.as_ref() <= a)
            {
                continue;
            }
            ids.push(id.into_owned());
            if ids.len() == n {
                break;
            }
        }
        Ok(ids)
    }

    /// The first `limit` sagas of `ids` (in that order) that `filter` keeps, loaded; sagas
    /// gone meanwhile (retention) or not yet written are passed over. `next_cursor` is the
    /// last one's id when more may follow.
    fn page_of(
        &self,
        ids: impl Iterator<Item = Result<String, StoreError>>,
        filter: &SagaFilter,
        limit: usize,
    ) -> Result<SagaPage, StoreError> {
        let mut sagas = Vec::new();
        let mut next_cursor = None;
        for id in ids {
            let Some((saga, _)) = self.read_saga(&id?)? else {
                continue;
            };
            if !filter.matches(&saga) {
                continue;
            }
            if sagas.len() == limit {
                next_cursor = sagas.last().map(|s: &Saga| s.id.clone());
                break;
            }
            sagas.push(saga);
        }
        Ok(SagaPage { sagas, next_cursor })
    }

    fn has_created(&self, saga_id: &str) -> Result<bool, StoreError> {
        Ok(self.events.contains_key(saga_id.as_bytes())?
            || self.events.contains_key(event_key(saga_id, 0))?
            || self.archive.contains(saga_id)?)
    }

    /// The reference of `plan`, stored first if this process has not stored it yet.
    fn plan_ref(&self, plan: &Arc<Plan>) -> Result<PlanRef, StoreError> {
        {
            let cache = self.plan_cache.lock().expect("plan cache poisoned");
            if let Some((_, r)) = cache.recent.iter().find(|(p, _)| Arc::ptr_eq(p, plan)) {
                return Ok(*r);
            }
        }
        let (plan_ref, bytes) = format::encode_plan(plan);
        let known = self
            .plan_cache
            .lock()
            .expect("plan cache poisoned")
            .by_ref
            .get(&plan_ref)
            .map(|cached| **cached == **plan);
        if known == Some(false) {
            return Err(StoreError::Corrupt {
                tree: "plans",
                message: format!("two plans share the reference {:02x?}", plan_ref.0),
            });
        }
        if known.is_none() {
            // Insert-if-absent: a reference names one plan forever.
            if let Err(existing) =
                self.plans
                    .compare_and_swap(plan_ref.0, None as Option<&[u8]>, Some(&bytes[..]))?
                && existing.current.as_deref() != Some(&bytes[..])
            {
                return Err(StoreError::Corrupt {
                    tree: "plans",
                    message: format!("two plans share the reference {:02x?}", plan_ref.0),
                });
            }
            telemetry::log_written(plan_ref.0.len() + bytes.len());
        }
        let mut cache = self.plan_cache.lock().expect("plan cache poisoned");
        cache.by_ref.insert(plan_ref, plan.clone());
        if cache.recent.len() == RECENT_PLANS {
            cache.recent.remove(0);
        }
        cache.recent.push((plan.clone(), plan_ref));
        Ok(plan_ref)
    }

    /// Appends `events` to a version-2 record as one chunk, the plan of a `Created` among them
    /// stored first.
    fn append_chunk(&self, record: &mut Vec<u8>, events: &[Event]) -> Result<(), StoreError> {
        let mut refs = Vec::new();
        for event in events {
            if let Event::Created(created) = event {
                refs.push((Arc::as_ptr(&created.plan), self.plan_ref(&created.plan)?));
            }
        }
        format::append_chunk(record, events, |plan| {
            refs.iter()
                .find(|(p, _)| std::ptr::eq(*p, plan))
                .map_or_else(|| format::encode_plan(plan).0, |(_, r)| *r)
        });
        Ok(())
    }

    /// How many keys each tree holds, by tree name (tests count what a saga leaves behind).
    #[cfg(test)]
    pub(super) fn key_counts(&self) -> std::collections::BTreeMap<&'static str, usize> {
        [
            ("events", &self.events),
            ("sagas", &self.sagas),
            ("plans", &self.plans),
            ("active", &self.active),
            ("finished", &self.finished),
            ("idempotency", &self.idempotency),
            ("business_keys", &self.business_keys),
            ("unarchived", &self.unarchived),
        ]
        .into_iter()
        .map(|(name, tree)| (name, tree.len()))
        .chain([(
            "archive",
            usize::try_from(self.archive.len().expect("archive readable")).unwrap_or(usize::MAX),
        )])
        .collect()
    }

    /// A round as a coordinator of format version 1 wrote it.
    #[cfg(test)]
    pub(super) fn insert_version_1_round(&self, saga_id: &str, first_seq: u64, events: &[Event]) {
        self.events
            .insert(event_key(saga_id, first_seq), format::encode_round(events))
            .expect("insert");
    }

    /// An active-index entry (what a crash in the middle of settling leaves).
    #[cfg(test)]
    pub(super) fn mark_active(&self, saga_id: &str) {
        self.active.insert(saga_id.as_bytes(), &[]).expect("insert");
    }

    /// A raw value under a saga's log key (a damaged record, say).
    #[cfg(test)]
    pub(super) fn overwrite_log(&self, saga_id: &str, value: &[u8]) {
        self.events
            .insert(saga_id.as_bytes(), value)
            .expect("insert");
    }

    /// What a crash in the middle of [`SledStore::archive_batch`] leaves: the saga archived
    /// and still in sled.
    #[cfg(test)]
    pub(super) fn copy_to_archive(&self, saga_id: &str) {
        let log = self.events.get(saga_id).expect("read").expect("a log");
        let (idempotency_key, business_key) = format::created_keys(&log).expect("keys");
        self.archive
            .insert(&[ArchivedSaga {
                id: saga_id.into(),
                log: log.to_vec(),
                idempotency_key,
                business_key,
            }])
            .expect("archive");
    }

    /// A data directory as a coordinator before the archive left it: no `unarchived` entries,
    /// never walked.
    #[cfg(test)]
    pub(super) fn forget_archive_progress(&self) {
        self.unarchived.clear().expect("clear");
        self.archive_state.clear().expect("clear");
        *self.archive_walk.lock().expect("archive walk poisoned") = Some(Vec::new());
    }

    /// Whether the one walk of `events` for settled sagas is done (and recorded).
    #[cfg(test)]
    pub(super) fn archive_walked(&self) -> bool {
        self.archive_walk
            .lock()
            .expect("archive walk poisoned")
            .is_none()
            && self
                .archive_state
                .contains_key(ARCHIVE_WALKED)
                .expect("read")
    }

    /// What a crash can leave behind: a key claimed for a saga whose first event was lost.
    #[cfg(test)]
    pub(super) fn claim_without_saga(&self, key: &str, saga_id: &str) {
        self.idempotency
            .insert(key, saga_id.as_bytes())
            .expect("insert");
    }
}

/// The synchronous operations behind the traits: sled reads and buffered writes do not wait.
impl SledStore {
    /// No sled transaction (it locks every tree of the database): an unkeyed saga is two
    /// plain inserts, and a key is claimed by compare-and-swap under a process-local lock.
    fn write_created(
        &self,
        first: &Event,
        saga_id: &str,
        key: Option<&str>,
    ) -> Result<Creation, StoreError> {
        let Some(key) = key else {
            self.insert_created(saga_id, first)?;
            return Ok(Creation::Created);
        };
        let _claiming = self.claiming.lock().expect("claim lock poisoned");
        let mut expected: Option<sled::IVec> = None;
        loop {
            match self.idempotency.compare_and_swap(
                key,
                expected.as_ref(),
                Some(saga_id.as_bytes()),
            )? {
                Ok(()) => break,
                Err(current) => {
                    let Some(existing) = current.current else {
                        // Removed meanwhile (retention): claim it afresh.
                        expected = None;
                        continue;
                    };
                    let existing_id = String::from_utf8_lossy(&existing).into_owned();
                    // Creations in this process finish under the lock, so a claim without
                    // its first event was lost with the rest of an unflushed submission
                    // when the process died; that submission was never acknowledged.
                    if self.has_created(&existing_id)? {
                        return Ok(Creation::Existing(existing_id));
                    }
                    expected = Some(existing);
                }
            }
        }
        // The key was free in sled; it may name an archived saga (the archive is written
        // before sled lets a key go, so a key moved meanwhile is found there).
        let archived = self.archive.saga_for_key(key);
        if !matches!(archived, Ok(None)) {
            // Named by an archived saga, or unknown: the claim goes (an error leaves nothing).
            let _ = self.idempotency.compare_and_swap(
                key,
                Some(saga_id.as_bytes()),
                None as Option<&[u8]>,
            )?;
        }
        if let Some(existing_id) = archived? {
            return Ok(Creation::Existing(existing_id));
        }
        self.insert_created(saga_id, first)?;
        Ok(Creation::Created)
    }

    fn write_round(
        &self,
        saga_id: &str,
        first_seq: u64,
        events: &[Event],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Only this saga's task writes its log, so reading and writing it back is no race.
        match self.events.get(saga_id.as_bytes())? {
            Some(log) if log.len() < LOG_RECORD_MAX => {
                let mut value = log.to_vec();
                self.append_chunk(&mut value, events)?;
                telemetry::log_written(saga_id.len() + value.len());
                self.events.insert(saga_id.as_bytes(), value)?;
            }
            // A saga begun in a log written before version 2, or whose log outgrew one record
            // (a settle phase waiting out a long outage), goes on in rounds.
            _ => {
                let key = event_key(saga_id, first_seq);
                let mut value = vec![format::NEWEST_VERSION];
                self.append_chunk(&mut value, events)?;
                telemetry::log_written(key.len() + value.len());
                self.events.insert(key, value)?;
            }
        }
        Ok(())
    }

    /// A version-2 log is one record that a load replays whole, so a running saga needs no
    /// snapshot; a settled one leaves the active index (a crash before that leaves it active,
    /// and recovery, finding it settled, comes back here). A saga of an older log also gets
    /// its `finished` entry, first, and its snapshot goes.
    fn write_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError> {
        let _ = seq;
        if !saga.is_settled() {
            return Ok(());
        }
        // A version-2 log says itself when the saga finished (retention walks the logs) and
        // moves to the archive; a saga of an older log is found through the `finished` index;
        // an archived saga (resumed by a resubmission of its key) has nothing left to do.
        let in_log = self.events.contains_key(saga.id.as_bytes())?;
        if !in_log && self.events.contains_key(event_key(&saga.id, 0))? {
            let mut key = saga.updated_at.to_be_bytes().to_vec();
            key.extend_from_slice(saga.id.as_bytes());
            telemetry::log_written(key.len());
            self.finished.insert(key, &[])?;
        }
        self.sagas.remove(saga.id.as_bytes())?;
        self.active.remove(saga.id.as_bytes())?;
        // After the active entry went: a move skips (and keeps for later) a saga still active.
        if in_log {
            self.unarchived.insert(saga.id.as_bytes(), &[])?;
        }
        Ok(())
    }

    /// Settled sagas that finished before `finished_before`, at most `limit`: those of logs
    /// written before version 2 through the `finished` index, then version-2 logs by walking
    /// `events` in id order, which is creation order, up to the first saga created after the
    /// cutoff (a version-2 saga has no `finished` entry: one key less per retained saga).
    fn delete_expired(&self, finished_before: Millis, limit: usize) -> Result<usize, StoreError> {
        // Not alongside a move to the archive (see `archive_batch`).
        let _maintenance = self.maintenance.lock().expect("maintenance lock poisoned");
        let mut expired = 0;
        for item in self
            .finished
            .range(..finished_before.to_be_bytes().to_vec())
            .take(limit)
        {
            let (key, _) = item?;
            self.remove_saga(&String::from_utf8_lossy(&key[8..]), None)?;
            // Last: after a crash in between, the next sweep finishes the job.
            self.finished.remove(key)?;
            expired += 1;
        }
        // Where the previous call of this sweep stopped at its limit (a sweep calls until
        // nothing is left): each call goes on from there instead of replaying the same prefix.
        let mut walk = self.retention_walk.lock().expect("retention walk poisoned");
        let mut from = walk.take().unwrap_or_default();
        loop {
            if expired == limit {
                *walk = Some(from);
                break;
            }
            let Some(item) = self.events.range(from.clone()..).next() else {
                break;
            };
            let (key, log) = item?;
            // Round keys (`{id}/{seq}`): an old log's (expired through `finished` above) or a
            // long log's tail (read with its log): skip every round of that saga at once.
            if let Some(slash) = key.iter().position(|&b| b == b'/') {
                from = key[..slash].to_vec();
                from.push(b'/' + 1);
                continue;
            }
            from = key.to_vec();
            from.push(0);
            let id = String::from_utf8_lossy(&key).into_owned();
            let saga = match rebuild(&id, self, None, self.log_records(&id, log.clone())) {
                Ok(Some((saga, _))) => saga,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(saga = %id, error = %e, "retention: the saga's log does not load; kept");
                    continue;
                }
            };
            if saga.created_at >= finished_before {
                break;
            }
            if saga.is_settled() && saga.updated_at < finished_before {
                self.remove_saga(&id, Some(log))?;
                expired += 1;
            }
        }
        drop(walk);
        if expired < limit {
            expired += self.delete_expired_archived(finished_before, limit - expired)?;
        }
        Ok(expired)
    }

    /// [`SledStore::delete_expired`] in the archive: the same walk in id (creation) order, up
    /// to the first saga created after the cutoff, its deletions in one transaction.
    fn delete_expired_archived(
        &self,
        finished_before: Millis,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut walk = self
            .archive_retention_walk
            .lock()
            .expect("retention walk poisoned");
        let mut after = walk.clone();
        let mut expired = Vec::new();
        // Where the next call goes on from: the last saga looked at when the limit is reached;
        // `None` (start over) at the first saga created after the cutoff, or at the end.
        let mut resume_at = None;
        'walk: loop {
            let logs = self.archive.logs_after(after.as_deref(), LISTING_WINDOW)?;
            if logs.is_empty() {
                break;
            }
            for (id, log) in logs {
                let saga = match rebuild(&id, self, None, [Ok::<_, StoreError>((0, &log))]) {
                    Ok(Some((saga, _))) => saga,
                    Ok(None) => {
                        after = Some(id);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(saga = %id, error = %e, "retention: the archived saga's log does not load; kept");
                        after = Some(id);
                        continue;
                    }
                };
                if saga.created_at >= finished_before {
                    break 'walk;
                }
                after = Some(id.clone());
                if saga.updated_at < finished_before {
                    expired.push(ArchivedSaga {
                        id,
                        idempotency_key: saga.idempotency_key.clone(),
                        business_key: saga.business_key.clone(),
                        log,
                    });
                    if expired.len() == limit {
                        resume_at = after;
                        break 'walk;
                    }
                }
            }
        }
        self.archive.remove(&expired)?;
        // Only once they are gone: after a failed removal the next call looks at them again.
        *walk = resume_at;
        Ok(expired.len())
    }

    /// Sagas that may be moved to the archive, at most `limit`, each with whether it is known
    /// settled: those with an `unarchived` entry (written only when a saga settled), and, in a
    /// data directory written before the archive existed, the version-2 logs not active found
    /// by walking `events` (once, in slices), which a move must replay to know.
    fn archive_candidates(&self, limit: usize) -> Result<Vec<(String, bool)>, StoreError> {
        let mut ids = self
            .unarchived
            .iter()
            .keys()
            .take(limit)
            .map(|key| Ok((String::from_utf8_lossy(&key?).into_owned(), true)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let mut walk = self.archive_walk.lock().expect("archive walk poisoned");
        let Some(from) = walk.clone() else {
            return Ok(ids);
        };
        // One pass over `events` beside one over `active` (both in key order), not a lookup
        // per log.
        let mut active = self
            .active
            .range(from.clone()..)
            .keys()
            .map(|key| key.map_err(StoreError::from))
            .peekable();
        let mut next = None;
        for key in self.events.range(from..).keys() {
            let key = key?;
            // Round keys (`{id}/{seq}`): an old log or a long log's tail, both staying.
            if key.contains(&b'/') {
                continue;
            }
            if ids.len() >= limit {
                next = Some(key.to_vec());
                break;
            }
            let is_active = loop {
                match active.peek() {
                    Some(Ok(entry)) if entry.as_ref() < key.as_ref() => {
                        active.next();
                    }
                    Some(Ok(entry)) => break entry.as_ref() == key.as_ref(),
                    Some(Err(_)) => {
                        if let Some(Err(e)) = active.next() {
                            return Err(e);
                        }
                    }
                    None => break false,
                }
            };
            if !is_active {
                ids.push((String::from_utf8_lossy(&key).into_owned(), false));
            }
        }
        if next.is_none() {
            self.archive_state.insert(ARCHIVE_WALKED, &[])?;
        }
        // Only now: after an error the next call walks the same slice again.
        *walk = next;
        Ok(ids)
    }

    /// Moves up to `limit` settled sagas to the archive: makes sled's writes durable (the
    /// archive only ever holds what sled's durable log says), writes the sagas to the archive
    /// in one durable transaction, then lets sled go of each: its idempotency key and business
    /// key, then its log, last, so that a crash in between leaves the log for the next move
    /// to find, and its `unarchived` entry last of all. A saga in both is read and listed
    /// once. Active sagas, logs that outgrew one record and logs written before version 2 stay
    /// in sled, where retention finds them. Returns how many left sled.
    fn archive_batch(&self, limit: usize) -> Result<usize, StoreError> {
        // Not alongside retention: a saga retention removes from sled while it is being
        // archived would come back in the archive.
        let _maintenance = self.maintenance.lock().expect("maintenance lock poisoned");
        let candidates = self.archive_candidates(limit)?;
        let mut sagas = Vec::new();
        let mut logs = Vec::new();
        // Entries of sagas that stay in sled for good (or are gone): nothing to move later.
        let mut staying = Vec::new();
        let mut bytes = 0;
        for (id, known_settled) in candidates {
            // Settling removes the active entry before it writes the `unarchived` one; an
            // active saga here (a crash's leftover, resumed) keeps its entry for later.
            if self.active.contains_key(id.as_bytes())? {
                continue;
            }
            let Some(log) = self.events.get(id.as_bytes())? else {
                staying.push(id);
                continue;
            };
            if log.len() >= LOG_RECORD_MAX {
                staying.push(id);
                continue;
            }
            // A walk's find is replayed to know whether it settled; an `unarchived` entry says
            // so already, and its keys are read from the first event without replaying.
            let keys = if known_settled {
                format::created_keys(&log).map_err(|e| e.to_string())
            } else {
                match rebuild(&id, self, None, [Ok::<_, StoreError>((0, &log))]) {
                    Ok(Some((saga, _))) if saga.is_settled() => {
                        Ok((saga.idempotency_key, saga.business_key))
                    }
                    // Not settled: a submission a crash cut short before it was acknowledged.
                    Ok(_) => {
                        staying.push(id);
                        continue;
                    }
                    Err(e) => Err(e.to_string()),
                }
            };
            let (idempotency_key, business_key) = match keys {
                Ok(keys) => keys,
                Err(e) => {
                    // Retention reports it (and keeps it) when its time comes.
                    tracing::debug!(saga = %id, error = %e, "archive: the saga's log does not load; kept in sled");
                    staying.push(id);
                    continue;
                }
            };
            bytes += log.len();
            sagas.push(ArchivedSaga {
                id,
                log: log.to_vec(),
                idempotency_key,
                business_key,
            });
            logs.push(log);
            if bytes >= ARCHIVE_BATCH_BYTES {
                break;
            }
        }
        for id in &staying {
            self.unarchived.remove(id.as_bytes())?;
        }
        if sagas.is_empty() {
            return Ok(0);
        }
        self.db.flush()?;
        self.archive.insert(&sagas)?;
        let mut released = 0;
        for (saga, log) in sagas.iter().zip(logs) {
            if let Some(key) = &saga.idempotency_key {
                let _ = self.idempotency.compare_and_swap(
                    key.as_bytes(),
                    Some(saga.id.as_bytes()),
                    None as Option<&[u8]>,
                )?;
            }
            if let Some(key) = &saga.business_key {
                self.business_keys
                    .remove(business_key_entry(key, &saga.id))?;
            }
            // Only the log that was archived (a settled saga's does not change; the archived
            // copy reads the same either way).
            let removed = self.events.compare_and_swap(
                saga.id.as_bytes(),
                Some(&log),
                None as Option<&[u8]>,
            )?;
            released += usize::from(removed.is_ok());
            // Last: until then the next move finds the saga again (and finishes the job).
            self.unarchived.remove(saga.id.as_bytes())?;
        }
        Ok(released)
    }

    /// Removes a settled saga: its keys, then its log, rounds, snapshot and active entry.
    /// `log` is its version-2 log when the caller has read it already.
    fn remove_saga(&self, id: &str, log: Option<sled::IVec>) -> Result<(), StoreError> {
        // The keys from the saga's first record; an unreadable one is reported and the saga
        // removed all the same (retention must not stop at one bad record).
        let first = match log {
            Some(log) => Some(log),
            None => match self.events.get(id.as_bytes())? {
                Some(log) => Some(log),
                None => self.events.get(event_key(id, 0))?,
            },
        };
        let keys = match first.as_deref().map(format::created_keys).transpose() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(saga = %id, error = %e, "retention: the saga's first record does not decode; removed without its idempotency and business keys");
                None
            }
        };
        if let Some((idempotency_key, business_key)) = keys {
            if let Some(k) = &idempotency_key {
                // Only while it names this saga: after a crash mid-sweep a new saga may have
                // claimed the key.
                let _ = self.idempotency.compare_and_swap(
                    k.as_bytes(),
                    Some(id.as_bytes()),
                    None as Option<&[u8]>,
                )?;
            }
            if let Some(k) = &business_key {
                self.business_keys.remove(business_key_entry(k, id))?;
            }
        }
        // In an older log the saga's snapshot goes first: a reader finds the snapshot, then the
        // rounds, then (if they are gone) checks the snapshot again, so it sees the saga whole
        // or not at all. The log and every round in one batch (sled applies a batch whole): a
        // log's tail of rounds never outlives it.
        self.sagas.remove(id.as_bytes())?;
        let mut batch = sled::Batch::default();
        batch.remove(id.as_bytes());
        for event_key in self.events.scan_prefix(event_prefix(id)).keys() {
            batch.remove(event_key?);
        }
        self.events.apply_batch(batch)?;
        // Left behind if settling was cut short by a crash and the saga expired before
        // recovery got to it.
        self.active.remove(id.as_bytes())?;
        self.unarchived.remove(id.as_bytes())?;
        Ok(())
    }

    /// A saga's round records (`{saga_id}/{first seq}`) from `from` on, in order.
    fn rounds_from(
        &self,
        saga_id: &str,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> {
        let prefix = event_prefix(saga_id);
        self.events
            .range(event_key(saga_id, from)..)
            .take_while(move |item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(&prefix))
            })
            .map(move |item| {
                let (key, value) = item?;
                Ok((event_seq(&key, saga_id.len() + 1)?, value))
            })
    }

    /// A version-2 log and the rounds after it (if it outgrew one record), from sequence 0.
    fn log_records(
        &self,
        saga_id: &str,
        log: sled::IVec,
    ) -> impl Iterator<Item = Result<(u64, sled::IVec), StoreError>> {
        std::iter::once(Ok((0, log))).chain(self.rounds_from(saga_id, 0))
    }

    /// Sled first, then the archive: a saga is archived before sled lets it go, so a saga
    /// moved between the two reads is found in the second.
    fn read_events(&self, saga_id: &str) -> Result<Vec<(u64, Event)>, StoreError> {
        if let Some(log) = self.events.get(saga_id.as_bytes())? {
            return expand(self, self.log_records(saga_id, log));
        }
        if let Some(log) = self.archive.log(saga_id)? {
            return expand(self, [Ok::<_, StoreError>((0, log))]);
        }
        expand(self, self.rounds_from(saga_id, 0))
    }

    /// Sled first, then the archive (see [`SledStore::read_events`]), then a log written
    /// before version 2.
    fn read_saga(&self, saga_id: &str) -> Result<Option<(Saga, u64)>, StoreError> {
        if let Some(log) = self.events.get(saga_id.as_bytes())? {
            return rebuild(saga_id, self, None, self.log_records(saga_id, log));
        }
        if let Some(log) = self.archive.log(saga_id)? {
            return rebuild(saga_id, self, None, [Ok::<_, StoreError>((0, log))]);
        }
        self.read_rounds(saga_id)
    }

    /// A saga of a log written before version 2: its snapshot and the rounds after it.
    fn read_rounds(&self, saga_id: &str) -> Result<Option<(Saga, u64)>, StoreError> {
        let snapshot = self.sagas.get(saga_id.as_bytes())?;
        let (records, from) = match &snapshot {
            Some(bytes) => {
                let Some(first_round) = self.events.get(event_key(saga_id, 0))? else {
                    // Reads of two trees are not one snapshot: a retention sweep may have
                    // removed the saga between them.
                    if !self.sagas.contains_key(saga_id.as_bytes())? {
                        return Ok(None);
                    }
                    return Err(StoreError::Corrupt {
                        tree: "events",
                        message: format!("saga {saga_id} has a snapshot but no first event"),
                    });
                };
                let (_, seq) = format::decode_snapshot(bytes).map_err(corrupt("sagas"))?;
                (Some((bytes.clone(), first_round)), seq + 1)
            }
            None => (None, 0),
        };
        let rounds = self.rounds_from(saga_id, from);
        let snapshot = records
            .as_ref()
            .map(|(snapshot, first_round)| SnapshotRecords {
                snapshot,
                first_round,
            });
        rebuild(saga_id, self, snapshot, rounds)
    }

    fn read_active_ids(&self) -> Result<Vec<String>, StoreError> {
        self.active
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Every saga has its first event in `events` (as its whole log `{id}`, or as round
    /// `{id}/0` in a log written before version 2), so the listing walks that tree's keys in id
    /// order, each saga once, and loads each saga.
    fn read_page(
        &self,
        filter: &SagaFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, StoreError> {
        if let Some(business_key) = &filter.business_key {
            return self.read_page_by_business_key(business_key, filter, cursor, limit);
        }
        // Archived sagas are settled: a listing of running or stuck sagas need not walk them.
        let wants_unsettled_only = filter.state.is_some_and(|s| !s.is_terminal());
        let ids = merged_ids(
            cursor,
            |after, n| self.log_ids_after(after, n),
            |after, upto, n| {
                if wants_unsettled_only {
                    return Ok(Vec::new());
                }
                self.archive
                    .ids_in(after, upto, n)
                    .map_err(StoreError::from)
            },
        );
        self.page_of(ids, filter, limit)
    }

    fn read_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(id) = self.idempotency.get(key)? {
            return Ok(Some(String::from_utf8_lossy(&id).into_owned()));
        }
        Ok(self.archive.saga_for_key(key)?)
    }
}

/// Plans of version-2 records: from this process's cache, else the `plans` tree.
impl PlanSource for SledStore {
    fn plan(&self, plan_ref: PlanRef) -> Result<Arc<Plan>, FormatError> {
        let cached = self
            .plan_cache
            .lock()
            .expect("plan cache poisoned")
            .by_ref
            .get(&plan_ref)
            .cloned();
        if let Some(plan) = cached {
            return Ok(plan);
        }
        let missing = |message: String| FormatError::Malformed {
            version: format::NEWEST_VERSION,
            message,
        };
        let bytes = self
            .plans
            .get(plan_ref.0)
            .map_err(|e| missing(format!("reading plan {:02x?}: {e}", plan_ref.0)))?
            .ok_or_else(|| missing(format!("plan {:02x?} is not stored", plan_ref.0)))?;
        let plan = Arc::new(format::decode_plan(&bytes)?);
        self.plan_cache
            .lock()
            .expect("plan cache poisoned")
            .by_ref
            .insert(plan_ref, plan.clone());
        Ok(plan)
    }
}

impl SagaLog for SledStore {
    fn create<'a>(&'a self, first: &'a Created, key: Option<&'a str>) -> StoreFuture<'a, Creation> {
        Box::pin(async move {
            let event = Event::Created(Box::new(first.clone()));
            let creation = self.write_created(&event, &first.id, key)?;
            // Rule 1; an existing saga's first submission may still wait for its flush too.
            self.group_commit.flush().await?;
            Ok(creation)
        })
    }

    fn append(&self, saga: &Saga, first_seq: u64, events: &[Event]) -> Result<(), StoreError> {
        self.write_round(&saga.id, first_seq, events)
    }

    fn save_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError> {
        self.write_snapshot(saga, seq)
    }

    fn flush(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move { Ok(self.group_commit.flush().await?) })
    }

    fn archive_settled(&self, limit: usize) -> Result<usize, StoreError> {
        self.archive_batch(limit)
    }

    fn lost(&self, _saga_id: &str) -> bool {
        false
    }
}

impl SagaReads for SledStore {
    fn events<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Vec<(u64, Event)>> {
        ready(self.read_events(saga_id))
    }

    fn load<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, Option<(Saga, u64)>> {
        ready(self.read_saga(saga_id))
    }

    fn list<'a>(
        &'a self,
        filter: &'a SagaFilter,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, SagaPage> {
        ready(self.read_page(filter, cursor, limit))
    }

    fn saga_for_key<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        ready(self.read_key(key))
    }

    fn expire_finished(&self, finished_before: Millis, limit: usize) -> StoreFuture<'_, usize> {
        ready(self.delete_expired(finished_before, limit))
    }
}

/// One instance drives every active saga: the first claim hands out all of them.
impl Ownership for SledStore {
    fn claim_orphans(&self, _limit: usize) -> StoreFuture<'_, Vec<String>> {
        let first = !self.claimed.swap(true, std::sync::atomic::Ordering::AcqRel);
        ready(if first {
            self.read_active_ids()
        } else {
            Ok(Vec::new())
        })
    }

    fn take_over<'a>(&'a self, saga_id: &'a str) -> StoreFuture<'a, bool> {
        ready(
            self.active
                .contains_key(saga_id.as_bytes())
                .map_err(StoreError::from),
        )
    }

    fn renew(&self) -> StoreFuture<'_, Lease> {
        ready(Ok(Lease::Held(None)))
    }

    fn rejoin(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }

    fn clustered(&self) -> bool {
        false
    }

    fn leave(&self) -> StoreFuture<'_, ()> {
        ready(Ok(()))
    }
}

/// The registry's synchronous operations.
impl SledStore {
    fn write_participant(&self, name: &str, spec: &ParticipantSpec) -> Result<(), StoreError> {
        self.participants
            .insert(name.as_bytes(), format::encode_participant(spec))?;
        Ok(())
    }

    fn read_participants(&self) -> Result<Vec<(String, ParticipantSpec)>, StoreError> {
        self.participants
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    format::decode_participant(&v).map_err(corrupt("participants"))?,
                ))
            })
            .collect()
    }

    /// Insert-if-absent: a version, once written, is never overwritten.
    fn write_workflow(
        &self,
        name: &str,
        version: u32,
        spec: &WorkflowSpec,
    ) -> Result<VersionWrite, StoreError> {
        let value = format::encode_workflow(spec);
        match self.workflows.compare_and_swap(
            workflow_key(name, version),
            None as Option<&[u8]>,
            Some(value),
        )? {
            Ok(()) => Ok(VersionWrite::Written),
            Err(existing) => {
                let stored = existing
                    .current
                    .map(|bytes| format::decode_workflow(&bytes).map_err(corrupt("workflows")));
                match stored.transpose()? {
                    Some(stored) if stored == *spec => Ok(VersionWrite::Written),
                    _ => Ok(VersionWrite::Taken),
                }
            }
        }
    }

    fn read_workflows(&self) -> Result<Vec<(String, u32, WorkflowSpec)>, StoreError> {
        // Keys sort by name then version, so the last entry of each name is its newest.
        let mut newest: Vec<(String, u32, WorkflowSpec)> = Vec::new();
        for item in self.workflows.iter() {
            let (k, v) = item?;
            let split = k
                .len()
                .checked_sub(5)
                .filter(|&i| k[i] == 0)
                .ok_or_else(|| StoreError::Corrupt {
                    tree: "workflows",
                    message: "bad key".into(),
                })?;
            let name = String::from_utf8_lossy(&k[..split]).into_owned();
            let version = u32::from_be_bytes(k[split + 1..].try_into().unwrap_or([0; 4]));
            let spec = format::decode_workflow(&v).map_err(corrupt("workflows"))?;
            match newest.last_mut() {
                Some(last) if last.0 == name => *last = (name, version, spec),
                _ => newest.push((name, version, spec)),
            }
        }
        Ok(newest)
    }

    fn read_workflow_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<WorkflowSpec>, StoreError> {
        self.workflows
            .get(workflow_key(name, version))?
            .map(|v| format::decode_workflow(&v).map_err(corrupt("workflows")))
            .transpose()
    }

    fn read_file_workflow(&self, name: &str) -> Result<Option<WorkflowSpec>, StoreError> {
        self.workflow_files
            .get(name.as_bytes())?
            .map(|v| format::decode_workflow(&v).map_err(corrupt("workflow_files")))
            .transpose()
    }

    fn write_file_workflow(&self, name: &str, spec: &WorkflowSpec) -> Result<(), StoreError> {
        self.workflow_files
            .insert(name.as_bytes(), format::encode_workflow(spec))?;
        Ok(())
    }
}

/// Registry writes are durable when their future resolves: written, then flushed.
impl RegistryStore for SledStore {
    fn put_participant<'a>(
        &'a self,
        name: &'a str,
        spec: &'a ParticipantSpec,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.write_participant(name, spec)?;
            Ok(self.group_commit.flush().await?)
        })
    }

    fn participants(&self) -> StoreFuture<'_, Vec<(String, ParticipantSpec)>> {
        ready(self.read_participants())
    }

    fn put_workflow<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, VersionWrite> {
        Box::pin(async move {
            let written = self.write_workflow(name, version, spec)?;
            self.group_commit.flush().await?;
            Ok(written)
        })
    }

    fn workflows(&self) -> StoreFuture<'_, Vec<(String, u32, WorkflowSpec)>> {
        ready(self.read_workflows())
    }

    fn workflow_version<'a>(
        &'a self,
        name: &'a str,
        version: u32,
    ) -> StoreFuture<'a, Option<WorkflowSpec>> {
        ready(self.read_workflow_version(name, version))
    }

    fn file_workflow<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<WorkflowSpec>> {
        ready(self.read_file_workflow(name))
    }

    fn put_file_workflow<'a>(
        &'a self,
        name: &'a str,
        spec: &'a WorkflowSpec,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.write_file_workflow(name, spec)?;
            Ok(self.group_commit.flush().await?)
        })
    }

    fn registry_generation(&self) -> StoreFuture<'_, u64> {
        ready(Ok(0))
    }
}

/// How many ids a listing reads at a time from sled, and from the archive.
const LISTING_WINDOW: usize = 256;

/// Ids in id order after `cursor`, from sled (`sled(after, n)`: up to `n` ids after `after`)
/// and the archive (`archive(after, upto, n)`: up to `n` ids after `after` and at most `upto`),
/// each once, read a window at a time. In each window sled is read first and the archive, for
/// the same range of ids, after it: a saga is in the archive before sled lets it go, so a saga
/// moved in between is found by the second read (reading the archive first could miss it in
/// both). A saga in both (a move cut short by a crash) is listed once.
fn merged_ids<'a>(
    cursor: Option<&str>,
    mut sled: impl FnMut(Option<&str>, usize) -> Result<Vec<String>, StoreError> + 'a,
    mut archive: impl FnMut(Option<&str>, Option<&str>, usize) -> Result<Vec<String>, StoreError> + 'a,
) -> impl Iterator<Item = Result<String, StoreError>> + 'a {
    let mut after = cursor.map(str::to_owned);
    let mut pending = std::collections::VecDeque::new();
    let mut done = false;
    std::iter::from_fn(move || {
        loop {
            if let Some(id) = pending.pop_front() {
                return Some(Ok(id));
            }
            if done {
                return None;
            }
            let window = match sled(after.as_deref(), LISTING_WINDOW) {
                Ok(ids) => ids,
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            };
            // A full window may have more after it: this round covers ids up to its last.
            let sled_upto = if window.len() == LISTING_WINDOW {
                window.last().cloned()
            } else {
                None
            };
            let archived = match archive(after.as_deref(), sled_upto.as_deref(), LISTING_WINDOW) {
                Ok(ids) => ids,
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            };
            // ... or up to the archive's last, if its window is full and ends first.
            let upto = match (sled_upto, archived.last()) {
                (sled_upto, Some(last)) if archived.len() == LISTING_WINDOW => {
                    Some(sled_upto.map_or(last.clone(), |s| s.min(last.clone())))
                }
                (sled_upto, _) => sled_upto,
            };
            let within = |id: &String| upto.as_ref().is_none_or(|u| id <= u);
            let mut sled_ids = window.into_iter().filter(within).peekable();
            let mut archive_ids = archived.into_iter().filter(within).peekable();
            loop {
                let next = match (sled_ids.peek(), archive_ids.peek()) {
                    (None, None) => break,
                    (Some(_), None) => sled_ids.next(),
                    (None, Some(_)) => archive_ids.next(),
                    (Some(a), Some(b)) => match a.cmp(b) {
                        std::cmp::Ordering::Less => sled_ids.next(),
                        std::cmp::Ordering::Greater => archive_ids.next(),
                        std::cmp::Ordering::Equal => {
                            archive_ids.next();
                            sled_ids.next()
                        }
                    },
                };
                pending.extend(next);
            }
            done = upto.is_none();
            after = upto;
        }
    })
}

/// `{business key}\0{saga id}`: every saga of a key sits under the prefix `{key}\0`.
fn business_key_entry(business_key: &str, saga_id: &str) -> Vec<u8> {
    let mut entry = Vec::with_capacity(business_key.len() + 1 + saga_id.len());
    entry.extend_from_slice(business_key.as_bytes());
    entry.push(0);
    entry.extend_from_slice(saga_id.as_bytes());
    entry
}

/// `{name}\0{version: u32 BE}`.
fn workflow_key(name: &str, version: u32) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

#[cfg(test)]
mod listing_tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::{LISTING_WINDOW, StoreError, merged_ids};

    /// Sagas move from sled to the archive while a listing walks both (before each read, every
    /// third saga still in sled moves, ahead of the listing or behind it): each is listed once,
    /// in id order, and a cursor in the middle goes on from there.
    #[test]
    fn a_listing_sees_every_saga_once_while_sagas_move_to_the_archive() {
        let all: Vec<String> = (0..3 * LISTING_WINDOW + 7)
            .map(|i| format!("s{i:05}"))
            .collect();
        for cursor in [None, Some("s00300")] {
            let sled: RefCell<BTreeSet<String>> = RefCell::new(all.iter().cloned().collect());
            let archive: RefCell<BTreeSet<String>> = RefCell::default();
            let range = |set: &BTreeSet<String>, after: Option<&str>, upto: Option<&str>, n| {
                set.iter()
                    .filter(|id| after.is_none_or(|a| id.as_str() > a))
                    .filter(|id| upto.is_none_or(|u| id.as_str() <= u))
                    .take(n)
                    .cloned()
                    .collect::<Vec<_>>()
            };
            // A move: into the archive first, then out of sled.
            let move_some = || {
                let moving: Vec<String> = sled.borrow().iter().step_by(3).cloned().collect();
                for id in moving {
                    archive.borrow_mut().insert(id.clone());
                    sled.borrow_mut().remove(&id);
                }
            };
            let listed: Vec<String> = merged_ids(
                cursor,
                |after, n| {
                    move_some();
                    Ok(range(&sled.borrow(), after, None, n))
                },
                |after, upto, n| {
                    move_some();
                    Ok::<_, StoreError>(range(&archive.borrow(), after, upto, n))
                },
            )
            .collect::<Result<_, _>>()
            .unwrap();
            let expected: Vec<String> = all
                .iter()
                .filter(|id| cursor.is_none_or(|c| id.as_str() > c))
                .cloned()
                .collect();
            assert_eq!(listed, expected, "cursor {cursor:?}");
        }
    }
}
