//! A PostgreSQL server that keeps what it commits (`fsync`, `synchronous_commit` and
//! `full_page_writes` at their defaults: on), for rows that compare PostgreSQL with sled,
//! which fsyncs every group commit.
//!
//! The workspace's `throwaway-postgres` starts its servers with all three off on the
//! command line, which no `ALTER SYSTEM` can override, so a durable one is started here the
//! same way without them: `initdb` in a fresh directory under the system temp dir, the
//! postmaster on a free loopback port through `setpriv --pdeathsig KILL` (it dies with this
//! process), as the `postgres` user when running as root (PostgreSQL refuses root). Dropping
//! it stops it at once (SIGQUIT, SIGKILL after 15 s) and removes the directory. The binaries
//! are found as `throwaway-postgres` finds them: `PG_BIN_DIR`, Debian's
//! `/usr/lib/postgresql/15/bin`, or `pg_config --bindir`.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal};
use tokio_postgres::NoTls;

/// Debian's `postgresql-15`.
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running durable server with one database, `bench`.
#[derive(Debug)]
pub struct DurableServer {
    dir: Option<tempfile::TempDir>,
    postmaster: Child,
    port: u16,
}

impl DurableServer {
    /// Creates a cluster, starts the server and creates the database `bench`.
    pub async fn start() -> anyhow::Result<DurableServer> {
        let bin_dir = bin_dir()?;
        let owner = postgres_user()?;
        let dir = tempfile::Builder::new()
            .prefix("saga-bench-postgres-")
            .tempdir()
            .context("creating the server's directory")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("handing the server's directory to the postgres user")?;
        }
        let data = dir.path().join("data");
        let log = |name: &str| File::create(dir.path().join(name));
        let mut initdb = command(&bin_dir.join("initdb"), owner);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .stdout(log("initdb.log")?)
            .stderr(log("initdb.err")?);
        let status = initdb.status().context("running initdb")?;
        anyhow::ensure!(
            status.success(),
            "initdb failed ({status}); see {}",
            dir.path().display()
        );
        let port = chaos_tests::ports::free_addr()?.port();
        let mut postgres = command(Path::new("setpriv"), owner);
        postgres
            .args(["--pdeathsig", "KILL", "--"])
            .arg(bin_dir.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .stdout(log("server.log")?)
            .stderr(log("server.err")?);
        let postmaster = postgres.spawn().context("starting postgres")?;
        let server = DurableServer {
            dir: Some(dir),
            postmaster,
            port,
        };
        server.wait_ready().await?;
        let (client, connection) = tokio_postgres::connect(&server.url("postgres"), NoTls).await?;
        let connection = tokio::spawn(connection);
        client
            .batch_execute("CREATE DATABASE bench")
            .await
            .context("creating the database")?;
        drop(client);
        let _ = connection.await;
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/bench`.
    pub fn database_url(&self) -> String {
        self.url("bench")
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.postmaster.id()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match tokio_postgres::connect(&self.url("postgres"), NoTls).await {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the durable PostgreSQL server did not accept connections in 30 s: {last}")
    }
}

impl Drop for DurableServer {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster stops its children and releases its memory.
        let _ = rustix::process::kill_process(Pid::from_child(&self.postmaster), Signal::QUIT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while let Ok(None) = self.postmaster.try_wait() {
            if Instant::now() >= deadline {
                let _ = self.postmaster.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.postmaster.wait();
        drop(self.dir.take());
    }
}

/// A command without stdin or the caller's `PG*` variables, run as `owner` when given.
fn command(program: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut command = Command::new(program);
    command.stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

/// `PG_BIN_DIR`, Debian's directory, or `pg_config --bindir`: the first holding `postgres`
/// and `initdb`.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    let from_pg_config = || {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        out.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    std::env::var_os("PG_BIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(DEFAULT_BIN_DIR)])
        .chain(from_pg_config())
        .find(|dir| has_server(dir))
        .context("PostgreSQL server binaries not found (PG_BIN_DIR, /usr/lib/postgresql/15/bin, pg_config)")
}

/// The `postgres` user's uid and gid when running as root (PostgreSQL refuses root); `None`
/// otherwise.
fn postgres_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !rustix::process::getuid().is_root() {
        return Ok(None);
    }
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .context("running getent")?;
    let entry = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = entry.trim().split(':').collect();
    match (
        fields.get(2).and_then(|f| f.parse().ok()),
        fields.get(3).and_then(|f| f.parse().ok()),
    ) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => bail!("running as root and no `postgres` user to run the server as"),
    }
}
