//! The PostgreSQL database the coordinators of a cluster share, and what tests read from it.
//!
//! [`Database::create`] makes a fresh database: by default on the test process's shared
//! throwaway server ([`PostgresServer::shared`], started on first use), or on a server of its
//! own that is stopped with it (runs share nothing). Throwaway servers run without
//! durability (`fsync=off`, `synchronous_commit=off`, `full_page_writes=off`, given on the
//! command line, which no `ALTER SYSTEM` can override), which is right for tests; a
//! benchmark that needs a durable server starts its own and hands its URL over
//! ([`Database::existing`]).
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

/// Where the database of a cluster is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DatabaseChoice {
    /// A fresh database on the test process's shared throwaway server.
    #[default]
    SharedServer,
    /// A fresh database on a throwaway server of the cluster's own, stopped with it.
    OwnServer,
    /// An existing, empty database (its URL), on a server someone else runs.
    Existing(String),
}

/// Where the database lives.
#[derive(Debug)]
enum Server {
    /// The test process's shared server; the database stays until the process ends.
    Shared,
    /// A server of its own, stopped (and its directory removed) when dropped.
    Own(PostgresServer),
    /// Someone else's.
    External,
}

/// A fresh PostgreSQL database for one cluster.
#[derive(Debug)]
pub struct Database {
    url: String,
    server: Server,
}

impl Database {
    /// The database `choice` names: a fresh one on a throwaway server, or an existing one.
    pub async fn open(choice: &DatabaseChoice) -> anyhow::Result<Database> {
        match choice {
            DatabaseChoice::SharedServer => Database::create(false).await,
            DatabaseChoice::OwnServer => Database::create(true).await,
            DatabaseChoice::Existing(url) => Ok(Database::existing(url.clone())),
        }
    }

    /// An existing database on a server someone else runs.
    pub fn existing(url: String) -> Database {
        Database {
            url,
            server: Server::External,
        }
    }

    /// Creates a fresh database: on a throwaway server of its own when `own_server`, else on
    /// the process's shared one.
    pub async fn create(own_server: bool) -> anyhow::Result<Database> {
        // initdb, the server's start and `psql` block: off the async workers.
        tokio::task::spawn_blocking(move || -> anyhow::Result<Database> {
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
            let database = Database {
                url: String::new(),
                server,
            };
            let url = database
                .server()
                .expect("a throwaway server")
                .create_database(&name)
                .with_context(|| format!("creating database {name}"))?;
            Ok(Database { url, ..database })
        })
        .await
        .context("creating the database panicked")?
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`, what the coordinators get as
    /// `--database-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The throwaway server the database lives on (`None` for an existing database).
    pub fn server(&self) -> Option<&PostgresServer> {
        match &self.server {
            Server::Own(server) => Some(server),
            Server::Shared => Some(PostgresServer::shared()),
            Server::External => None,
        }
    }

    /// A new connection to the database.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::open(&self.url).await
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
