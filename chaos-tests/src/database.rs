//! The PostgreSQL database the coordinators of a cluster share, and what tests read from it.
//!
//! [`Database::create`] makes a fresh database: by default on the test process's shared
//! throwaway server ([`PostgresServer::shared`], started on first use), or on a server of its
//! own that is stopped with it (the benchmark: runs share nothing). Throwaway servers run
//! without durability (`fsync=off`, `synchronous_commit=off`); a server of its own can have
//! it turned back on ([`Durability::Durable`]), so that a benchmark against sled, which
//! fsyncs, compares like with like.
//!
//! [`Connection`] reads the coordinators' tables (`sagas`, `events`, `instances`: see
//! `coordinator/src/store/postgres/`) for what the API does not show: which instance owns
//! which saga (its lease), which instances are alive, and a fingerprint of every saga row and
//! event to prove that nothing was written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use throwaway_postgres::PostgresServer;
use tokio_postgres::NoTls;

/// Whether the server keeps what it commits across a machine crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// As throwaway servers run: `fsync=off`, `synchronous_commit=off`,
    /// `full_page_writes=off`. A crash of the coordinators loses nothing (the server keeps
    /// running); a crash of the machine would.
    #[default]
    Throwaway,
    /// `fsync`, `synchronous_commit` and `full_page_writes` on, as a production server runs:
    /// a commit waits for its WAL to be on disk. Only for a server of its own.
    Durable,
}

/// Where the database lives.
#[derive(Debug)]
enum Server {
    /// The test process's shared server; the database stays until the process ends.
    Shared,
    /// A server of its own, stopped (and its directory removed) when dropped.
    Own(PostgresServer),
}

/// A fresh PostgreSQL database for one cluster.
#[derive(Debug)]
pub struct Database {
    url: String,
    server: Server,
}

impl Database {
    /// Creates a fresh database: on a server of its own when `own_server`, else on the
    /// process's shared server. [`Durability::Durable`] needs a server of its own.
    pub async fn create(own_server: bool, durability: Durability) -> anyhow::Result<Database> {
        anyhow::ensure!(
            own_server || durability == Durability::Throwaway,
            "durability can only be changed on a server of the cluster's own"
        );
        // initdb, the server's start and `psql` block: off the async workers.
        let database = tokio::task::spawn_blocking(move || -> anyhow::Result<Database> {
            static CREATED: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                "cluster_{}_{}",
                std::process::id(),
                CREATED.fetch_add(1, Ordering::Relaxed)
            );
            let server = if own_server {
                Server::Own(PostgresServer::start().context("starting a PostgreSQL server")?)
            } else {
                Server::Shared
            };
            let host = match &server {
                Server::Own(server) => server,
                Server::Shared => PostgresServer::shared(),
            };
            let url = host
                .create_database(&name)
                .with_context(|| format!("creating database {name}"))?;
            Ok(Database { url, server })
        })
        .await
        .context("creating the database panicked")??;
        if durability == Durability::Durable {
            database.make_durable().await?;
        }
        Ok(database)
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`, what the coordinators get as
    /// `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server the database lives on.
    pub fn server(&self) -> &PostgresServer {
        match &self.server {
            Server::Own(server) => server,
            Server::Shared => PostgresServer::shared(),
        }
    }

    /// A new connection to the database.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::open(&self.url).await
    }

    /// Turns durability back on, server-wide: `ALTER SYSTEM` then a reload (all three
    /// settings take effect on reload).
    async fn make_durable(&self) -> anyhow::Result<()> {
        let connection = self.connect().await?;
        for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
            connection
                .client
                .batch_execute(&format!("ALTER SYSTEM SET {setting} = on"))
                .await
                .with_context(|| format!("turning {setting} on"))?;
        }
        connection
            .client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .context("reloading the configuration")?;
        // The reload is asynchronous: wait until a new session sees it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let fresh = self.connect().await?;
            let fsync: String = fresh.client.query_one("SHOW fsync", &[]).await?.get(0);
            if fsync == "on" {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "fsync still {fsync} 10 s after the reload"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// A saga's lease as its row says: who drives it (an instance id) and whether it is still
/// active (not settled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The instance holding (or, once settled, last holding) the saga.
    pub owner: Option<String>,
    /// The lease's fencing epoch: one at creation, one more at every claim or take-over.
    pub epoch: i64,
    /// Not settled yet.
    pub active: bool,
}

/// A digest of every saga row and every event, for "nothing was written" checks. Includes
/// each saga row's `xmin` (the transaction that wrote its current version), so an update
/// that writes the same values changes it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Rows in `sagas`.
    pub sagas: i64,
    /// md5 over every saga row (its `xmin` and every column), in id order.
    pub sagas_digest: String,
    /// Rows in `events`.
    pub events: i64,
    /// md5 over every event (saga, seq, record), in order.
    pub events_digest: String,
}

/// A connection to a cluster's database, with the queries tests need.
#[derive(Debug)]
pub struct Connection {
    client: tokio_postgres::Client,
}

impl Connection {
    /// Connects to `url`; the connection's task runs on the current runtime until the
    /// connection is dropped.
    pub async fn open(url: &str) -> anyhow::Result<Connection> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        tokio::spawn(async move {
            // Ends with an error when the server goes away; nothing to do about it here.
            let _ = connection.await;
        });
        Ok(Connection { client })
    }

    /// The raw client, for queries of its own.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Ids of the active sagas `instance` holds, sorted.
    pub async fn active_sagas_of(&self, instance: &str) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT id FROM sagas WHERE active AND owner = $1 ORDER BY id",
                &[&instance],
            )
            .await
            .context("reading the sagas an instance holds")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// How many sagas are active (not settled), whoever holds them.
    pub async fn active_sagas(&self) -> anyhow::Result<i64> {
        Ok(self
            .client
            .query_one("SELECT count(*) FROM sagas WHERE active", &[])
            .await
            .context("counting active sagas")?
            .get(0))
    }

    /// Active sagas per owner.
    pub async fn active_by_owner(&self) -> anyhow::Result<BTreeMap<String, i64>> {
        let rows = self
            .client
            .query(
                "SELECT coalesce(owner, ''), count(*) FROM sagas WHERE active GROUP BY owner",
                &[],
            )
            .await
            .context("counting active sagas per owner")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The lease of each of `ids` that exists.
    pub async fn ownership(&self, ids: &[String]) -> anyhow::Result<BTreeMap<String, Ownership>> {
        let rows = self
            .client
            .query(
                "SELECT id, owner, epoch, active FROM sagas WHERE id = ANY($1)",
                &[&ids],
            )
            .await
            .context("reading saga leases")?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Ownership {
                        owner: r.get(1),
                        epoch: r.get(2),
                        active: r.get(3),
                    },
                )
            })
            .collect())
    }

    /// Every instance row (live or not): each start and each rejoin adds one.
    pub async fn instances(&self) -> anyhow::Result<BTreeSet<String>> {
        let rows = self
            .client
            .query("SELECT id FROM instances", &[])
            .await
            .context("reading instances")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The instances whose lease has not expired by the database's clock.
    pub async fn live_instances(&self) -> anyhow::Result<BTreeSet<String>> {
        let rows = self
            .client
            .query("SELECT id FROM instances WHERE expires_at > now()", &[])
            .await
            .context("reading live instances")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A digest of every saga row and event (see [`Fingerprint`]).
    pub async fn fingerprint(&self) -> anyhow::Result<Fingerprint> {
        let sagas = self
            .client
            .query_one(
                "SELECT count(*), coalesce(md5(string_agg(s.xmin::text || ':' || s::text, ',' ORDER BY s.id)), '')
                 FROM sagas s",
                &[],
            )
            .await
            .context("digesting sagas")?;
        let events = self
            .client
            .query_one(
                "SELECT count(*), coalesce(md5(string_agg(e.saga_id || ':' || e.seq || ':' || md5(e.record), ','
                                                       ORDER BY e.saga_id, e.seq)), '')
                 FROM events e",
                &[],
            )
            .await
            .context("digesting events")?;
        Ok(Fingerprint {
            sagas: sagas.get(0),
            sagas_digest: sagas.get(1),
            events: events.get(0),
            events_digest: events.get(1),
        })
    }
}
