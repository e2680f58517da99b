//! The settled archive: finished sagas kept off the embedded log's hot path.
//!
//! sled keeps an in-memory entry for every page of its database, cached or not, so a sled
//! store's memory grows with every saga it retains (about 115 bytes per finished saga after a
//! 4-minute soak; at 1,000 sagas/s and a 7-day retention, tens of GB). The archive is a redb
//! B-tree file (`archive.redb` in the data directory) whose memory is its page cache, bounded
//! by [`crate::store::StoreOptions::archive_cache_bytes`]: what it retains costs disk, not
//! memory. [`super::SledStore`] moves each settled saga here in batches (its log record as
//! it is, and its idempotency and business keys) and reads here whatever sled no longer has.
//!
//! Tables:
//! - `logs`: saga id -> the saga's whole log, a format version 2 record;
//! - `idempotency`: idempotency key -> saga id;
//! - `business_keys`: `{business key}\0{saga id}` -> nothing, the sagas of a key in creation
//!   order.
//!
//! Every write is one transaction, durable when it returns (redb commits copy-on-write with a
//! checksummed header swap: after a crash the archive is as of the last commit). Errors are
//! redb's: an error means the operation did not happen.

use std::ops::Bound;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

const LOGS: TableDefinition<&str, &[u8]> = TableDefinition::new("logs");
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const BUSINESS_KEYS: TableDefinition<&str, ()> = TableDefinition::new("business_keys");

/// A settled saga as the archive holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ArchivedSaga {
    /// The saga's id (a UUID v7, so ids sort by creation).
    pub id: String,
    /// Its whole log: one version-2 record (version byte included).
    pub log: Vec<u8>,
    /// The idempotency key it was submitted with.
    pub idempotency_key: Option<String>,
    /// The business key it carries.
    pub business_key: Option<String>,
}

/// The archive file. Reads may run alongside a write; writes are serialised by redb.
pub(super) struct SettledArchive {
    db: Database,
}

/// `{business key}\0{saga id}`; every saga of a key sits under the prefix `{key}\0`.
fn business_key_entry(business_key: &str, saga_id: &str) -> String {
    format!("{business_key}\0{saga_id}")
}

impl SettledArchive {
    /// Opens (or creates) the archive at `path` with a page cache of `cache_bytes`. After an
    /// unclean shutdown redb checks the file first; every commit saves its allocator state
    /// (quick repair), so that check does not walk the whole file.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<SettledArchive, redb::Error> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let archive = SettledArchive { db };
        // Every table exists from the start, so reads never meet a missing one.
        archive.write(|_, _, _| Ok(()))?;
        Ok(archive)
    }

    /// One durable transaction over the three tables.
    fn write(
        &self,
        body: impl FnOnce(
            &mut redb::Table<&str, &[u8]>,
            &mut redb::Table<&str, &str>,
            &mut redb::Table<&str, ()>,
        ) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        // redb's default durability: the commit is on disk when it returns.
        let mut tx = self.db.begin_write()?;
        tx.set_quick_repair(true);
        {
            let mut logs = tx.open_table(LOGS)?;
            let mut keys = tx.open_table(IDEMPOTENCY)?;
            let mut business = tx.open_table(BUSINESS_KEYS)?;
            body(&mut logs, &mut keys, &mut business)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds `sagas` in one transaction (a saga archived before is replaced).
    pub fn insert(&self, sagas: &[ArchivedSaga]) -> Result<(), redb::Error> {
        if sagas.is_empty() {
            return Ok(());
        }
        self.write(|logs, keys, business| {
            for saga in sagas {
                logs.insert(saga.id.as_str(), saga.log.as_slice())?;
                if let Some(key) = &saga.idempotency_key {
                    keys.insert(key.as_str(), saga.id.as_str())?;
                }
                if let Some(key) = &saga.business_key {
                    business.insert(business_key_entry(key, &saga.id).as_str(), ())?;
                }
            }
            Ok(())
        })
    }

    /// Removes `sagas` in one transaction: each log and business-key entry, and each
    /// idempotency key while it still names that saga.
    pub fn remove(&self, sagas: &[ArchivedSaga]) -> Result<(), redb::Error> {
        if sagas.is_empty() {
            return Ok(());
        }
        self.write(|logs, keys, business| {
            for saga in sagas {
                logs.remove(saga.id.as_str())?;
                if let Some(key) = &saga.idempotency_key {
                    let names_saga = keys
                        .get(key.as_str())?
                        .is_some_and(|id| id.value() == saga.id);
                    if names_saga {
                        keys.remove(key.as_str())?;
                    }
                }
                if let Some(key) = &saga.business_key {
                    business.remove(business_key_entry(key, &saga.id).as_str())?;
                }
            }
            Ok(())
        })
    }

    /// A saga's log.
    pub fn log(&self, saga_id: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        let tx = self.db.begin_read()?;
        let logs = tx.open_table(LOGS)?;
        Ok(logs.get(saga_id)?.map(|log| log.value().to_vec()))
    }

    /// The saga an idempotency key names.
    pub fn saga_for_key(&self, key: &str) -> Result<Option<String>, redb::Error> {
        let tx = self.db.begin_read()?;
        let keys = tx.open_table(IDEMPOTENCY)?;
        Ok(keys.get(key)?.map(|id| id.value().to_owned()))
    }

    /// Up to `limit` sagas in id order after `after` (from the first if `None`), with their
    /// logs.
    pub fn logs_after(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
        self.scan_logs(after, None, limit, |id, log| (id.to_owned(), log.to_vec()))
    }

    /// Up to `limit` ids of sagas in id order after `after` (from the first if `None`) and at
    /// most `upto` (to the last if `None`).
    pub fn ids_in(
        &self,
        after: Option<&str>,
        upto: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, redb::Error> {
        self.scan_logs(after, upto, limit, |id, _| id.to_owned())
    }

    /// `each(id, log)` of up to `limit` sagas in id order after `after` and at most `upto`, in
    /// one read transaction.
    fn scan_logs<T>(
        &self,
        after: Option<&str>,
        upto: Option<&str>,
        limit: usize,
        each: impl Fn(&str, &[u8]) -> T,
    ) -> Result<Vec<T>, redb::Error> {
        let tx = self.db.begin_read()?;
        let logs = tx.open_table(LOGS)?;
        let range = logs.range::<&str>((
            after.map_or(Bound::Unbounded, Bound::Excluded),
            upto.map_or(Bound::Unbounded, Bound::Included),
        ))?;
        range
            .take(limit)
            .map(|item| {
                let (id, log) = item?;
                Ok(each(id.value(), log.value()))
            })
            .collect()
    }

    /// Up to `limit` ids of the sagas carrying `business_key`, in id order after `after` and at
    /// most `upto`.
    pub fn business_key_ids_in(
        &self,
        business_key: &str,
        after: Option<&str>,
        upto: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, redb::Error> {
        let tx = self.db.begin_read()?;
        let business = tx.open_table(BUSINESS_KEYS)?;
        let prefix = business_key_entry(business_key, "");
        let start = business_key_entry(business_key, after.unwrap_or(""));
        let range = business.range::<&str>((
            if after.is_some() {
                Bound::Excluded(start.as_str())
            } else {
                Bound::Included(start.as_str())
            },
            Bound::Unbounded,
        ))?;
        let mut ids = Vec::new();
        for item in range {
            let (entry, _) = item?;
            let Some(id) = entry.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            if upto.is_some_and(|u| id > u) || ids.len() == limit {
                break;
            }
            ids.push(id.to_owned());
        }
        Ok(ids)
    }

    /// Whether the archive holds a saga.
    pub fn contains(&self, saga_id: &str) -> Result<bool, redb::Error> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(LOGS)?.get(saga_id)?.is_some())
    }

    /// How many sagas the archive holds.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn len(&self) -> Result<u64, redb::Error> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(LOGS)?.len()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saga(id: &str, key: Option<&str>, business: Option<&str>) -> ArchivedSaga {
        ArchivedSaga {
            id: id.into(),
            log: id.as_bytes().to_vec(),
            idempotency_key: key.map(Into::into),
            business_key: business.map(Into::into),
        }
    }

    #[test]
    fn sagas_are_found_by_id_key_and_business_key_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.redb");
        let archive = SettledArchive::open(&path, 1 << 20).unwrap();
        let a = saga("a", Some("k1"), Some("order-1"));
        let b = saga("b", None, Some("order-1"));
        let c = saga("c", Some("k2"), Some("order-10"));
        archive.insert(&[a.clone(), b.clone(), c.clone()]).unwrap();
        drop(archive);

        let archive = SettledArchive::open(&path, 1 << 20).unwrap();
        assert_eq!(archive.log("b").unwrap(), Some(b"b".to_vec()));
        assert_eq!(archive.log("z").unwrap(), None);
        assert_eq!(archive.saga_for_key("k2").unwrap().as_deref(), Some("c"));
        assert_eq!(archive.ids_in(None, None, 10).unwrap(), ["a", "b", "c"]);
        assert_eq!(archive.ids_in(Some("a"), None, 1).unwrap(), ["b"]);
        assert_eq!(archive.ids_in(None, Some("b"), 10).unwrap(), ["a", "b"]);
        assert!(archive.contains("c").unwrap() && !archive.contains("z").unwrap());
        assert_eq!(
            archive.logs_after(Some("b"), 10).unwrap(),
            [("c".to_owned(), b"c".to_vec())]
        );
        // `order-1` is a prefix of `order-10`: its listing stops at its own entries.
        assert_eq!(
            archive
                .business_key_ids_in("order-1", None, None, 10)
                .unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            archive
                .business_key_ids_in("order-1", Some("a"), None, 10)
                .unwrap(),
            ["b"]
        );
        assert_eq!(
            archive
                .business_key_ids_in("order-1", None, Some("a"), 10)
                .unwrap(),
            ["a"]
        );

        // A key claimed again by a newer saga is not taken from it.
        archive.insert(&[saga("d", Some("k1"), None)]).unwrap();
        archive.remove(&[a, c]).unwrap();
        assert_eq!(archive.saga_for_key("k1").unwrap().as_deref(), Some("d"));
        assert_eq!(archive.saga_for_key("k2").unwrap(), None);
        assert_eq!(
            archive
                .business_key_ids_in("order-1", None, None, 10)
                .unwrap(),
            ["b"]
        );
        assert_eq!(archive.ids_in(None, None, 10).unwrap(), ["b", "d"]);
        assert_eq!(archive.len().unwrap(), 2);
    }
}
