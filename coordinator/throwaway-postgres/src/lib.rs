//! Throwaway PostgreSQL servers for tests.
//!
//! [`PostgresServer::start`] runs `initdb` on a fresh cluster in a new directory under the
//! system temp dir, starts `postgres` on a free loopback port and waits until it accepts
//! connections. Dropping the server (or [`PostgresServer::stop`]) shuts it down at once and
//! removes the directory. [`PostgresServer::shared`] is one server per test process, started on
//! first use; give each test its own database with [`PostgresServer::create_database`].
//!
//! ```no_run
//! use throwaway_postgres::PostgresServer;
//!
//! let server = PostgresServer::shared();
//! let url = server.create_database("orders_test")?;
//! assert_eq!(url, server.url("orders_test"));
//! # Ok::<(), throwaway_postgres::Error>(())
//! ```
//!
//! **Durability is off**: the server runs with `fsync=off`, `synchronous_commit=off` and
//! `full_page_writes=off`, and `initdb` with `--no-sync`. That is right for tests and
//! benchmarks of our own code, and wrong for anything that must survive a machine crash.
//! Authentication is `trust`: anyone on the machine can connect to `127.0.0.1:{port}` as the
//! superuser `postgres`, without a password.
//!
//! # Where the binaries come from
//! `PG_BIN_DIR` if set, else `/usr/lib/postgresql/15/bin` (Debian's `postgresql-15`), else
//! `pg_config --bindir`. Otherwise [`Error::BinariesNotFound`].
//!
//! # Users
//! PostgreSQL refuses to run as root. As root, `initdb` and the server run as the `postgres`
//! system user (created by the `postgresql-15` package), and the server's directory is
//! chowned to it (so the system temp dir must be reachable by that user); otherwise they run
//! as the current user.
//!
//! # No orphans
//! Every postmaster is spawned from one dedicated thread that lives as long as the process,
//! through `setpriv --pdeathsig KILL` (util-linux), so the kernel kills the postmaster when the
//! test process ends, however it ends; the postmaster's own children exit when it dies. The
//! parent-death signal fires when the *thread* that spawned the process exits, hence the
//! dedicated thread: a server started on a short-lived thread (a `spawn_blocking` task, a
//! scoped thread) stays up. The directory of a server that was never dropped (the shared
//! one, or any server of a killed process) is left behind; each process removes such stale
//! directories (with the shared-memory segment of their dead postmaster) on its first start.
//! A live server's directory is recognised by an `flock` its process holds.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::FlockOperation;
use rustix::process::{Pid, Signal};

/// Prefix of every server directory under the system temp dir.
const DIR_PREFIX: &str = "throwaway-postgres-";
/// Prefix of the shared server's directory (it also starts with [`DIR_PREFIX`]).
const SHARED_DIR_PREFIX: &str = "throwaway-postgres-shared-";
/// Held (flock) by the owning process for the server's lifetime.
const LOCK_FILE: &str = "lock";
/// The server's stdout and stderr.
const SERVER_LOG: &str = "server.log";
/// The output of `initdb`.
const INITDB_LOG: &str = "initdb.log";
/// The cluster, inside the server's directory (which also holds the Unix socket).
const DATA_DIR: &str = "data";
/// Debian's `postgresql-15`.
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Fresh ports tried when the chosen one was taken before the server could bind it.
const PORT_ATTEMPTS: usize = 5;
/// A directory without a lock file younger than this may still be being created.
const STALE_UNLOCKED_AGE: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;

/// Why a server could not be started, used or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error(
        "PostgreSQL server binaries not found ({searched}); install postgresql-15 \
         (apt-get install postgresql-15) or set PG_BIN_DIR to the directory holding \
         `initdb` and `postgres`"
    )]
    BinariesNotFound {
        /// Where we looked.
        searched: String,
    },
    /// Running as root, which PostgreSQL refuses, and there is no `postgres` user to run as.
    #[error(
        "running as root, which PostgreSQL refuses, and the `postgres` system user to run the \
         server as was not found ({detail}); install postgresql-15 \
         (apt-get install postgresql-15), which creates it"
    )]
    NoPostgresUser {
        /// What the lookup said.
        detail: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A PostgreSQL program (`initdb`, `psql`) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The program and its arguments.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// Its output (the tail, for long output).
        output: String,
    },
    /// The server exited or did not accept connections in time.
    #[error("PostgreSQL did not start: {reason}\n--- tail of {} ---\n{log_tail}", log.display())]
    StartFailed {
        /// What went wrong.
        reason: String,
        /// The server's log file (removed with the server's directory).
        log: PathBuf,
        /// The last lines of the log.
        log_tail: String,
    },
    /// A database name [`PostgresServer::create_database`] does not accept.
    #[error(
        "invalid database name {0:?}: use 1 to 63 ASCII letters, digits, `_` or `-`, not \
         starting with `-`"
    )]
    InvalidDatabaseName(String),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A PostgreSQL server of its own: a fresh cluster in a temp directory, listening on
/// `127.0.0.1` on a free port, with trust authentication for the superuser `postgres`.
///
/// Dropping it shuts the server down immediately (no checkpoint: data is thrown away) and
/// removes its directory.
#[derive(Debug)]
pub struct PostgresServer {
    /// Holds `data/` (the cluster), the Unix socket, `server.log`, `initdb.log` and `lock`.
    dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    port: u16,
    /// `None` once stopped (or before it is spawned).
    postmaster: Option<Child>,
    /// Flocked for our lifetime: tells other processes' sweeps that the directory is live.
    _lock: File,
    removed: bool,
}

impl PostgresServer {
    /// Creates a cluster in a new directory under the system temp dir and starts a server on
    /// a free loopback port, returning once it accepts connections (at most 30 s, else
    /// [`Error::StartFailed`] with the tail of its log).
    pub fn start() -> Result<PostgresServer, Error> {
        Self::start_with_prefix(DIR_PREFIX)
    }

    /// The process-wide shared server, started on first use. Give each test its own database
    /// with [`create_database`](Self::create_database).
    ///
    /// It is never dropped; it dies with the process (see the crate docs), and the next
    /// process to start a server removes its directory.
    ///
    /// # Panics
    /// If the server cannot be started (on every call, with the first attempt's error).
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<Result<PostgresServer, Error>> = OnceLock::new();
        match SHARED.get_or_init(|| Self::start_with_prefix(SHARED_DIR_PREFIX)) {
            Ok(server) => server,
            Err(e) => panic!("could not start the shared PostgreSQL server: {e}"),
        }
    }

    /// The URL of `database` on this server, as the superuser `postgres`:
    /// `postgres://postgres@127.0.0.1:{port}/{database}`. The name is not escaped.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port the server listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.postmaster.as_ref().map_or(0, Child::id)
    }

    /// The server's directory: the cluster in `data/`, the Unix socket, and the server's
    /// output in `server.log`. Removed when the server is dropped.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the PostgreSQL binaries this server runs (`psql`, `pg_dump`, ... are
    /// there too).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Creates the database `name` (owned by `postgres`) with `psql` and returns its
    /// [`url`](Self::url). Names are 1 to 63 ASCII letters, digits, `_` or `-`, so they need
    /// no escaping in SQL identifiers or URLs.
    pub fn create_database(&self, name: &str) -> Result<String, Error> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(Error::InvalidDatabaseName(name.to_owned()));
        }
        let mut psql = pg_command(&self.bin_dir.join("psql"));
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url("postgres"))
            .arg("-c")
            .arg(format!("CREATE DATABASE \"{name}\""))
            .env("PGCONNECT_TIMEOUT", "10");
        run(psql)?;
        Ok(self.url(name))
    }

    /// Stops the server at once (immediate shutdown) and removes its directory. Dropping
    /// does the same, ignoring errors.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    /// Removes the directories of servers whose process is gone (the shared server's after
    /// every run, and any server of a process that was killed), killing a postmaster still
    /// running in one and removing its shared-memory segment. Returns how many were
    /// removed. The first start in each process does this.
    pub fn remove_stale() -> usize {
        remove_stale_dirs(&std::env::temp_dir())
    }

    fn start_with_prefix(prefix: &str) -> Result<PostgresServer, Error> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| {
            Self::remove_stale();
        });

        let bin_dir = find_bin_dir(std::env::var_os("PG_BIN_DIR").as_deref())?;
        let run_as = RunAs::for_current_user()?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(std::env::temp_dir())
            .map_err(io_error(
                "creating the server's directory under the temp dir",
            ))?
            .keep();
        let lock = match lock_new_dir(&dir) {
            Ok(lock) => lock,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // From here on, dropping `server` on an error kills what was started and removes the
        // directory.
        let mut server = PostgresServer {
            dir,
            bin_dir,
            run_as,
            port: 0,
            postmaster: None,
            _lock: lock,
            removed: false,
        };
        server.init()?;
        server.launch()?;
        Ok(server)
    }

    fn init(&mut self) -> Result<(), Error> {
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&self.dir, Some(user.uid), Some(user.gid)).map_err(
                io_error(format!("chown {} to postgres", self.dir.display())),
            )?;
        }
        let log_path = self.dir.join(INITDB_LOG);
        let log = File::create(&log_path).map_err(io_error("creating initdb.log"))?;
        let mut initdb = self.command(&self.bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(self.dir.join(DATA_DIR))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(log.try_clone().map_err(io_error("cloning a file handle"))?)
            .stderr(log);
        let status = initdb
            .status()
            .map_err(io_error(format!("running {:?}", initdb.get_program())))?;
        if !status.success() {
            return Err(Error::CommandFailed {
                command: describe(&initdb),
                status,
                output: log_tail(&log_path),
            });
        }
        Ok(())
    }

    fn launch(&mut self) -> Result<(), Error> {
        let log_path = self.dir.join(SERVER_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error("creating server.log"))?;
        let mut reason = String::new();
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            let mut postgres = self.command(Path::new("setpriv"));
            postgres
                .args(["--pdeathsig", "KILL", "--"])
                .arg(self.bin_dir.join("postgres"))
                .arg("-D")
                .arg(self.dir.join(DATA_DIR))
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(&self.dir)
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off"])
                .stdout(log.try_clone().map_err(io_error("cloning a file handle"))?)
                .stderr(log.try_clone().map_err(io_error("cloning a file handle"))?);
            let log_start = log_len(&log_path);
            let child = spawn_from_long_lived_thread(postgres).map_err(|e| Error::Io {
                context: "running setpriv (util-linux) to start postgres".into(),
                source: e,
            })?;
            self.postmaster = Some(child);
            match self.wait_until_ready() {
                Ok(()) => return Ok(()),
                Err(why) => {
                    reason = why;
                    let clash = log_since(&log_path, log_start).contains("Address already in use");
                    self.kill_postmaster();
                    if !clash {
                        break;
                    }
                }
            }
        }
        Err(Error::StartFailed {
            reason,
            log_tail: log_tail(&log_path),
            log: log_path,
        })
    }

    /// Polls until the postmaster reports `ready` in `postmaster.pid` and takes a TCP
    /// connection; `Err` says why not.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid_file = self.dir.join(DATA_DIR).join("postmaster.pid");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Some(child) = self.postmaster.as_mut() else {
            return Err("no postmaster".into());
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Err(format!("the postmaster exited ({status})")),
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for the postmaster: {e}")),
            }
            let ready = fs::read_to_string(&pid_file).is_ok_and(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines.first().map(|l| l.trim()) == Some(&child.id().to_string())
                    && lines.get(7).map(|l| l.trim()) == Some("ready")
            });
            if ready && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not accepting connections on {addr} after {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = pg_command(program);
        command.current_dir(&self.dir);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    /// Immediate shutdown: SIGQUIT makes the postmaster stop its children, wait for them,
    /// release its shared memory and exit. SIGKILL if that takes too long.
    fn kill_postmaster(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = rustix::process::kill_process(Pid::from_child(&child), Signal::QUIT);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while let Ok(None) = child.try_wait() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    break;
                }
                thread::sleep(POLL_INTERVAL);
            }
        }
        let _ = child.wait();
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        self.kill_postmaster();
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        fs::remove_dir_all(&self.dir).map_err(io_error(format!("removing {}", self.dir.display())))
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The user `initdb` and the server run as, when it is not the current user.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `None` unless we are root; then the `postgres` system user.
    fn for_current_user() -> Result<Option<RunAs>, Error> {
        if !rustix::process::getuid().is_root() {
            return Ok(None);
        }
        // `getent` asks NSS like getpwnam(3) would; fall back to /etc/passwd without it.
        let entry = match Command::new("getent").args(["passwd", "postgres"]).output() {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            Ok(out) => {
                return Err(Error::NoPostgresUser {
                    detail: format!("`getent passwd postgres`: {}", out.status),
                });
            }
            Err(_) => fs::read_to_string("/etc/passwd")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("postgres:"))
                .unwrap_or_default()
                .to_owned(),
        };
        let fields: Vec<&str> = entry.trim().split(':').collect();
        match (
            fields.get(2).and_then(|f| f.parse().ok()),
            fields.get(3).and_then(|f| f.parse().ok()),
        ) {
            (Some(uid), Some(gid)) if fields[0] == "postgres" => Ok(Some(RunAs { uid, gid })),
            _ => Err(Error::NoPostgresUser {
                detail: format!("passwd entry {:?}", entry.trim()),
            }),
        }
    }
}

/// A command with no stdin and none of the caller's `PG*` variables (`PGDATA`, `PGPORT`,
/// `PGOPTIONS`, ...), which would otherwise steer our programs elsewhere.
fn pg_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `command`, capturing its output for the error.
fn run(mut command: Command) -> Result<(), Error> {
    let out = command
        .output()
        .map_err(io_error(format!("running {:?}", command.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Err(Error::CommandFailed {
        command: describe(&command),
        status: out.status,
        output,
    })
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

/// `PG_BIN_DIR` (`env`) if set, else Debian's directory, else `pg_config --bindir`.
fn find_bin_dir(env: Option<&OsStr>) -> Result<PathBuf, Error> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server(&dir) {
            Ok(dir)
        } else {
            Err(Error::BinariesNotFound {
                searched: format!(
                    "PG_BIN_DIR={} has no `postgres` and `initdb`",
                    dir.display()
                ),
            })
        };
    }
    let default = Path::new(DEFAULT_BIN_DIR);
    if has_server(default) {
        return Ok(default.to_owned());
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match from_pg_config {
        Some(dir) if has_server(&dir) => Ok(dir),
        _ => Err(Error::BinariesNotFound {
            searched: format!(
                "PG_BIN_DIR unset, not in {DEFAULT_BIN_DIR}, not via `pg_config --bindir`"
            ),
        }),
    }
}

/// A loopback port nobody listens on right now. Someone may take it before the server binds
/// it; [`PostgresServer::launch`] then retries with another.
fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io_error("reading a bound port"))?
        .port();
    Ok(port)
}

/// Creates `dir/lock` already locked: it is created and flocked under another name, then
/// renamed, so a sweep never sees an unlocked `lock` in a live directory.
fn lock_new_dir(dir: &Path) -> Result<File, Error> {
    let tmp = dir.join("lock.new");
    let file = File::create(&tmp).map_err(io_error("creating the lock file"))?;
    rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive)
        .map_err(|e| io_error("locking the lock file")(e.into()))?;
    fs::rename(&tmp, dir.join(LOCK_FILE)).map_err(io_error("renaming the lock file"))?;
    Ok(file)
}

/// Removes every `throwaway-postgres-*` directory in `temp_dir` whose lock no live process
/// holds; see [`PostgresServer::remove_stale`].
fn remove_stale_dirs(temp_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(temp_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let dir = entry.path();
        // Held while we clean up, so that concurrent sweeps skip this directory.
        let _lock = match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => {
                if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
                    continue; // its process is alive
                }
                Some(file)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_none_or(|age| age < STALE_UNLOCKED_AGE) {
                    continue; // perhaps being created right now
                }
                None
            }
            Err(_) => continue, // not ours to judge (another user's)
        };
        if kill_orphaned_postmaster(&dir) && fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// If `dir/data/postmaster.pid` names a live postmaster of this directory, kills it; then
/// removes its System V shared-memory segment, which a killed postmaster leaves behind.
/// `false` if the postmaster is still running.
fn kill_orphaned_postmaster(dir: &Path) -> bool {
    let data = dir.join(DATA_DIR);
    let Ok(pid_file) = fs::read_to_string(data.join("postmaster.pid")) else {
        return true;
    };
    let lines: Vec<&str> = pid_file.lines().collect();
    let Some(pid) = lines.first().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return true;
    };
    let of_this_dir = || {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let data_arg = data.as_os_str().as_encoded_bytes();
        is_running(pid) && cmdline.split(|&b| b == 0).any(|arg| arg == data_arg)
    };
    if of_this_dir() {
        if let Some(raw) = Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(raw, Signal::KILL);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while of_this_dir() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
    // Line 7 is "<key> <shmid>". The segment with that id created by that (dead) postmaster
    // is marked for removal; the kernel frees it once its dying children detach.
    let Some(shmid) = lines.get(6).and_then(|l| l.split_whitespace().nth(1)) else {
        return true;
    };
    let segments = fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let created_by_it = segments.lines().skip(1).any(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        cols.get(1) == Some(&shmid) && cols.get(4) == Some(&pid.to_string().as_str())
    });
    if created_by_it {
        let _ = Command::new("ipcrm")
            .args(["-m", shmid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    true
}

/// Whether process `pid` exists and is not a zombie.
fn is_running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain anything.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

type SpawnRequest = (Command, mpsc::SyncSender<io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the process, so that a parent-death
/// signal set in the child fires when the process ends, not when the calling thread does.
fn spawn_from_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);
    let sender = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        if spawner.is_none() {
            let (tx, rx) = mpsc::channel::<SpawnRequest>();
            thread::Builder::new()
                .name("throwaway-postgres-spawner".into())
                .spawn(move || {
                    // Ends only with the process: the sender lives in a static.
                    for (mut command, reply) in rx {
                        let _ = reply.send(command.spawn());
                    }
                })?;
            *spawner = Some(tx);
        }
        spawner.clone().unwrap_or_else(|| unreachable!())
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let gone = || io::Error::other("the throwaway-postgres spawner thread is gone");
    sender.send((command, reply_tx)).map_err(|_| gone())?;
    reply_rx.recv().map_err(|_| gone())?
}

fn log_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// What was appended to the log at `path` since it was `start` bytes long.
fn log_since(path: &Path, start: u64) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file
            .seek(SeekFrom::Start(start))
            .and_then(|_| file.read_to_end(&mut text));
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The last lines of the file at `path`.
fn log_tail(path: &Path) -> String {
    let text = fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned());
    match text {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_tell_how_to_install_them() {
        let err = find_bin_dir(Some(OsStr::new("/nonexistent/pg/bin"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apt-get install postgresql-15"), "{text}");
        assert!(text.contains("PG_BIN_DIR=/nonexistent/pg/bin"), "{text}");
    }

    #[test]
    fn pg_bin_dir_wins() {
        let dir = find_bin_dir(None).expect("PostgreSQL installed");
        assert_eq!(find_bin_dir(Some(dir.as_os_str())).unwrap(), dir);
    }

    #[test]
    fn bad_database_names_are_refused() {
        let server = PostgresServer::shared();
        for name in ["", "a\"b", "a b", "-x", "é", &"x".repeat(64)] {
            assert!(
                matches!(
                    server.create_database(name),
                    Err(Error::InvalidDatabaseName(_))
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn stale_directories_are_removed_live_ones_kept() {
        let temp = tempfile::tempdir().unwrap();
        let live = temp.path().join(format!("{DIR_PREFIX}live"));
        let dead = temp.path().join(format!("{DIR_PREFIX}dead"));
        let fresh = temp.path().join(format!("{DIR_PREFIX}being-created"));
        let other = temp.path().join("somebody-else");
        for dir in [&live, &dead, &fresh, &other] {
            fs::create_dir(dir).unwrap();
        }
        let _held = lock_new_dir(&live).unwrap();
        drop(lock_new_dir(&dead).unwrap());
        fs::create_dir_all(other.join(DATA_DIR)).unwrap();

        assert_eq!(remove_stale_dirs(temp.path()), 1);
        assert!(live.exists() && fresh.exists() && other.exists());
        assert!(!dead.exists());
    }
}
