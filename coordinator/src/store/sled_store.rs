//! [`SagaLog`] and [`RegistryStore`] on sled. Records are JSON: easy to inspect with any sled
//! tool, and small next to the fsync that dominates a write.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use sagas::{ParticipantSpec, WorkflowSpec};

use super::group_commit::GroupCommit;
use super::{Creation, FlushFuture, RegistryStore, SagaLog, SagaPage, StoreError};
use crate::engine::{Event, Millis, Saga};

pub struct SledStore {
    db: sled::Db,
    /// `{saga_id}/{seq: u64 BE}` -> event.
    events: sled::Tree,
    /// `{saga_id}` -> snapshot: the saga state and the sequence number it includes.
    sagas: sled::Tree,
    /// `{saga_id}` -> empty, for sagas not yet terminal.
    active: sled::Tree,
    /// idempotency key -> saga id.
    idempotency: sled::Tree,
    /// `{finished at: u64 BE}{saga_id}` -> empty, for settled sagas, oldest first (retention).
    finished: sled::Tree,
    participants: sled::Tree,
    /// `{name}\0{version: u32 BE}` -> workflow definition.
    workflows: sled::Tree,
    group_commit: GroupCommit,
}

#[derive(Deserialize)]
struct Snapshot {
    seq: u64,
    saga: Saga,
}

/// What a [`Snapshot`] is written from, without cloning the saga.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    seq: u64,
    saga: &'a Saga,
}

/// `{saga_id}/`: every event key of the saga starts with it.
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

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("log records are plain data and always serialize")
}

fn decode<'a, T: Deserialize<'a>>(tree: &'static str, bytes: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        message: e.to_string(),
    })
}

impl SledStore {
    /// Opens (or creates) the database in `dir`. Must be called inside a tokio runtime (the
    /// group-commit flusher is a task).
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let db = sled::Config::new().path(dir).open()?;
        Ok(SledStore {
            events: db.open_tree("events")?,
            sagas: db.open_tree("sagas")?,
            active: db.open_tree("active")?,
            idempotency: db.open_tree("idempotency")?,
            finished: db.open_tree("finished")?,
            participants: db.open_tree("participants")?,
            workflows: db.open_tree("workflows")?,
            group_commit: GroupCommit::start(db.clone()),
            db,
        })
    }

    /// Flushes synchronously; for shutdown.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl SagaLog for SledStore {
    fn create(
        &self,
        first: &Event,
        saga: &Saga,
        key: Option<&str>,
    ) -> Result<Creation, StoreError> {
        let id = saga.id.as_bytes();
        let event = encode(first);
        let snapshot = encode(&SnapshotRef { seq: 0, saga });
        let result = (&self.idempotency, &self.events, &self.sagas, &self.active).transaction(
            |(idem, events, sagas, active)| {
                if let Some(key) = key {
                    if let Some(existing) = idem.get(key)? {
                        let existing = String::from_utf8_lossy(&existing).into_owned();
                        return Ok::<_, ConflictableTransactionError<()>>(Creation::Existing(
                            existing,
                        ));
                    }
                    idem.insert(key, id)?;
                }
                events.insert(event_key(&saga.id, 0), event.as_slice())?;
                sagas.insert(id, snapshot.as_slice())?;
                active.insert(id, &[])?;
                Ok(Creation::Created)
            },
        );
        match result {
            Ok(creation) => Ok(creation),
            Err(TransactionError::Storage(e)) => Err(e.into()),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    fn append(&self, saga_id: &str, seq: u64, event: &Event) -> Result<(), StoreError> {
        self.events.insert(event_key(saga_id, seq), encode(event))?;
        Ok(())
    }

    fn save_snapshot(&self, saga: &Saga, seq: u64) -> Result<(), StoreError> {
        self.sagas
            .insert(saga.id.as_bytes(), encode(&SnapshotRef { seq, saga }))?;
        if saga.is_settled() {
            self.active.remove(saga.id.as_bytes())?;
            let mut key = saga.updated_at.to_be_bytes().to_vec();
            key.extend_from_slice(saga.id.as_bytes());
            self.finished.insert(key, &[])?;
        }
        Ok(())
    }

    fn expire_finished(&self, finished_before: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut expired = 0;
        for item in self
            .finished
            .range(..finished_before.to_be_bytes().to_vec())
            .take(limit)
        {
            let (key, _) = item?;
            let id = String::from_utf8_lossy(&key[8..]).into_owned();
            if let Some(bytes) = self.sagas.get(id.as_bytes())? {
                let snapshot: Snapshot = decode("sagas", &bytes)?;
                if let Some(k) = &snapshot.saga.idempotency_key {
                    self.idempotency.remove(k.as_bytes())?;
                }
            }
            let prefix = event_prefix(&id);
            let mut batch = sled::Batch::default();
            for event_key in self.events.scan_prefix(&prefix).keys() {
                batch.remove(event_key?);
            }
            self.events.apply_batch(batch)?;
            self.sagas.remove(id.as_bytes())?;
            self.finished.remove(key)?;
            expired += 1;
        }
        Ok(expired)
    }

    fn events(&self, saga_id: &str) -> Result<Vec<(u64, Event)>, StoreError> {
        let prefix = event_prefix(saga_id);
        self.events
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, value) = item?;
                Ok((event_seq(&key, prefix.len())?, decode("events", &value)?))
            })
            .collect()
    }

    fn load(&self, saga_id: &str) -> Result<Option<(Saga, u64)>, StoreError> {
        let Some(bytes) = self.sagas.get(saga_id.as_bytes())? else {
            return Ok(None);
        };
        let Snapshot { seq, mut saga } = decode("sagas", &bytes)?;
        let mut last = seq;
        let prefix = event_prefix(saga_id);
        for item in self.events.range(event_key(saga_id, seq + 1)..) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let event: Event = decode("events", &value)?;
            saga.apply(&event).map_err(|e| StoreError::Corrupt {
                tree: "events",
                message: e.to_string(),
            })?;
            last = event_seq(&key, prefix.len())?;
        }
        Ok(Some((saga, last)))
    }

    fn active_ids(&self) -> Result<Vec<String>, StoreError> {
        self.active
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    fn list(
        &self,
        filter: &dyn Fn(&Saga) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<SagaPage, StoreError> {
        let iter = match cursor {
            Some(c) => self.sagas.range::<&[u8], _>((
                std::ops::Bound::Excluded(c.as_bytes()),
                std::ops::Bound::Unbounded,
            )),
            None => self.sagas.iter(),
        };
        let mut sagas = Vec::new();
        let mut next_cursor = None;
        for item in iter {
            let (_, value) = item?;
            let snapshot: Snapshot = decode("sagas", &value)?;
            if !filter(&snapshot.saga) {
                continue;
            }
            if sagas.len() == limit {
                next_cursor = sagas.last().map(|s: &Saga| s.id.clone());
                break;
            }
            sagas.push(snapshot.saga);
        }
        Ok(SagaPage { sagas, next_cursor })
    }

    fn saga_for_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .idempotency
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn flush(&self) -> FlushFuture<'_> {
        Box::pin(async move { self.group_commit.flush().await.map_err(StoreError::Flush) })
    }
}

impl RegistryStore for SledStore {
    fn put_participant(&self, name: &str, spec: &ParticipantSpec) -> Result<(), StoreError> {
        self.participants.insert(name.as_bytes(), encode(spec))?;
        Ok(())
    }

    fn participants(&self) -> Result<Vec<(String, ParticipantSpec)>, StoreError> {
        self.participants
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode("participants", &v)?,
                ))
            })
            .collect()
    }

    fn put_workflow(
        &self,
        name: &str,
        version: u32,
        spec: &WorkflowSpec,
    ) -> Result<(), StoreError> {
        let mut key = name.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(&version.to_be_bytes());
        self.workflows.insert(key, encode(spec))?;
        Ok(())
    }

    fn workflows(&self) -> Result<Vec<(String, u32, WorkflowSpec)>, StoreError> {
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
            let spec = decode("workflows", &v)?;
            match newest.last_mut() {
                Some(last) if last.0 == name => *last = (name, version, spec),
                _ => newest.push((name, version, spec)),
            }
        }
        Ok(newest)
    }
}
