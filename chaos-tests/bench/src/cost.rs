//! What the measured load cost besides time and the coordinators' CPU (which
//! [`crate::loadgen`] reports), per saga: the participants' CPU, and on PostgreSQL what the
//! database did.
//!
//! A [`Probe`] takes a [`Snapshot`] right before the load and right after it
//! ([`crate::loadgen::run_between`], so funding and the books check are not counted);
//! [`Probe::cost`] divides the differences by the sagas submitted. The database figures:
//!
//! - **CPU**: the server's process tree (postmaster, a backend per connection, the WAL
//!   writer, the checkpointer, ...), from `/proc`;
//! - **WAL bytes**: how far `pg_current_wal_lsn()` moved: every byte the database logged to
//!   make the commits durable (server-wide; only this run's database is busy);
//! - **round trips, bytes to and from the server**: the kernel's counters of the coordinators'
//!   sockets to the server ([`crate::wire`]).

use std::time::Duration;

use anyhow::Context;
use chaos_tests::database::Connection;
use serde::Serialize;

use crate::procfs;
use crate::wire::{self, Traffic};

/// Where to look.
#[derive(Debug)]
pub struct Probe {
    /// Every coordinator process (whose sockets to the database are counted).
    pub coordinators: Vec<u32>,
    /// The participants' processes.
    pub participants: Vec<u32>,
    /// The database server, on PostgreSQL.
    pub database: Option<DatabaseProbe>,
}

/// The database server of a run and a connection to read its log position.
#[derive(Debug)]
pub struct DatabaseProbe {
    /// The postmaster.
    pub pid: u32,
    /// The port the coordinators connect to.
    pub port: u16,
    /// A connection of the benchmark's own (its traffic is not counted).
    pub connection: Connection,
}

/// The counters at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    participants_cpu: Duration,
    database: Option<DatabaseSnapshot>,
}

#[derive(Debug, Clone)]
struct DatabaseSnapshot {
    cpu: Duration,
    wal_lsn: String,
    /// `None` where `ss` cannot be run.
    wire: Option<Traffic>,
}

impl Probe {
    /// Reads every counter now.
    pub async fn snapshot(&self) -> anyhow::Result<Snapshot> {
        let database = match &self.database {
            Some(db) => Some(DatabaseSnapshot {
                cpu: procfs::tree_cpu_time(db.pid)?,
                wal_lsn: db
                    .connection
                    .client()
                    .query_one("SELECT pg_current_wal_lsn()::text", &[])
                    .await
                    .context("reading the WAL position")?
                    .get(0),
                wire: wire::traffic_to(db.port, &self.coordinators).ok(),
            }),
            None => None,
        };
        Ok(Snapshot {
            participants_cpu: total_cpu(&self.participants)?,
            database,
        })
    }

    /// The cost per saga of `sagas` sagas between `before` and `after`.
    pub async fn cost(
        &self,
        before: &Snapshot,
        after: &Snapshot,
        sagas: u64,
    ) -> anyhow::Result<Cost> {
        let per_saga = |total: f64| (sagas > 0).then(|| total / sagas as f64);
        let us = |before: Duration, after: Duration| {
            per_saga(after.saturating_sub(before).as_micros() as f64)
        };
        let database = match (&self.database, &before.database, &after.database) {
            (Some(db), Some(b), Some(a)) => {
                let wal_bytes: f64 = db
                    .connection
                    .client()
                    .query_one(
                        "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                        &[&a.wal_lsn, &b.wal_lsn],
                    )
                    .await
                    .context("measuring the WAL written")?
                    .get(0);
                let wire = b.wire.zip(a.wire).map(|(b, a)| b.until(&a));
                Some(DatabaseCost {
                    cpu_us_per_saga: us(b.cpu, a.cpu),
                    wal_bytes_per_saga: per_saga(wal_bytes),
                    round_trips_per_saga: wire.and_then(|w| per_saga(w.data_segments_sent as f64)),
                    bytes_sent_per_saga: wire.and_then(|w| per_saga(w.bytes_sent as f64)),
                    bytes_received_per_saga: wire.and_then(|w| per_saga(w.bytes_received as f64)),
                })
            }
            _ => None,
        };
        Ok(Cost {
            participants_cpu_us_per_saga: us(before.participants_cpu, after.participants_cpu),
            database,
        })
    }
}

fn total_cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    pids.iter().map(|&pid| procfs::cpu_time(pid)).sum()
}

/// The measured load's cost per submitted saga.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cost {
    /// CPU (user + system) of the three participants together.
    pub participants_cpu_us_per_saga: Option<f64>,
    /// What the database did, on PostgreSQL.
    pub database: Option<DatabaseCost>,
}

/// What the database server did per submitted saga.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DatabaseCost {
    /// CPU of the server's processes.
    pub cpu_us_per_saga: Option<f64>,
    /// Write-ahead log written.
    pub wal_bytes_per_saga: Option<f64>,
    /// Requests the coordinators sent (client data segments; each waits for its answer).
    pub round_trips_per_saga: Option<f64>,
    /// Bytes the coordinators sent to the server.
    pub bytes_sent_per_saga: Option<f64>,
    /// Bytes the coordinators received from the server.
    pub bytes_received_per_saga: Option<f64>,
}
