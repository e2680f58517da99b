//! Starting, using and stopping throwaway servers; no server outlives its process.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use throwaway_postgres::PostgresServer;

/// Runs `sql` with `psql` against `url` and returns its unaligned, tuples-only output.
fn psql(server: &PostgresServer, url: &str, sql: &str) -> String {
    let out = Command::new(server.bin_dir().join("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql {url} -c {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for its reaper).
fn is_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1) == Some(&pid.to_string().as_str()) && fields[0] != "Z" {
            found.push(child);
        }
    }
    found
}

fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_serves_several_databases() {
    let server = PostgresServer::start().expect("start PostgreSQL");
    TcpStream::connect(("127.0.0.1", server.port())).expect("TCP connection accepted");

    let orders = server.create_database("orders").unwrap();
    let wallets = server.create_database("wallets").unwrap();
    assert_eq!(
        orders,
        format!("postgres://postgres@127.0.0.1:{}/orders", server.port())
    );
    assert_eq!(wallets, server.url("wallets"));
    for (url, name) in [(&orders, "orders"), (&wallets, "wallets")] {
        assert_eq!(psql(&server, url, "select 1"), "1");
        assert_eq!(psql(&server, url, "select current_database()"), name);
    }
    // Durability is off, on purpose.
    assert_eq!(psql(&server, &orders, "show fsync"), "off");
    // Creating it twice is an error that says why.
    let err = server.create_database("orders").unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    server.stop().unwrap();
}

#[test]
fn the_shared_server_starts_once_and_serves_concurrent_tests() {
    let servers: Vec<(&'static PostgresServer, String)> = thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    let server = PostgresServer::shared();
                    (
                        server,
                        server.create_database(&format!("shared_{i}")).unwrap(),
                    )
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let first = servers[0].0;
    assert!(is_running(first.pid()));
    for (server, url) in &servers {
        assert!(std::ptr::eq(*server, first));
        assert_eq!(psql(server, url, "select 1"), "1");
    }
}

#[test]
fn dropping_a_server_removes_its_directory_and_processes() {
    let server = PostgresServer::start().expect("start PostgreSQL");
    let (pid, dir) = (server.pid(), server.dir().to_owned());
    let backends = children(pid);
    assert!(dir.join("data").is_dir() && is_running(pid) && !backends.is_empty());

    drop(server);
    assert!(!dir.exists(), "{} still there", dir.display());
    eventually(
        "the postmaster and its children exit",
        Duration::from_secs(10),
        || !is_running(pid) && backends.iter().all(|&b| !is_running(b)),
    );
}

#[test]
fn a_server_started_on_a_short_lived_thread_outlives_the_thread() {
    let server = thread::spawn(|| PostgresServer::start().expect("start PostgreSQL"))
        .join()
        .unwrap();
    // The parent-death signal follows the spawning thread; ours is the long-lived spawner.
    thread::sleep(Duration::from_millis(200));
    assert!(is_running(server.pid()));
    assert_eq!(psql(&server, &server.url("postgres"), "select 1"), "1");
}

const ORPHAN_CHILD: &str = "THROWAWAY_POSTGRES_ORPHAN_CHILD";

/// Run only as the child of [`the_server_dies_with_its_process`]: starts the shared server,
/// reports it, and waits to be killed.
#[test]
fn orphan_child() {
    if std::env::var_os(ORPHAN_CHILD).is_none() {
        return;
    }
    let server = PostgresServer::shared();
    println!("SERVER {} {}", server.pid(), server.dir().display());
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn the_server_dies_with_its_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "orphan_child", "--nocapture", "--test-threads=1"])
        .env(ORPHAN_CHILD, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (pid, dir) = loop {
        let line = lines.next().expect("the child reports its server").unwrap();
        // libtest prints "test orphan_child ... " first, without a newline.
        if let Some((_, rest)) = line.split_once("SERVER ") {
            let (pid, dir) = rest.split_once(' ').unwrap();
            break (pid.parse::<u32>().unwrap(), PathBuf::from(dir));
        }
    };
    assert!(is_running(pid));

    // SIGKILL: no destructor, no exit handler; only the kernel can clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    eventually(
        "the orphaned postmaster dies",
        Duration::from_secs(10),
        || !is_running(pid),
    );

    // Its directory stays until a sweep, which any start does once per process.
    assert!(dir.exists());
    eventually(
        "the stale directory is removed",
        Duration::from_secs(10),
        || {
            PostgresServer::remove_stale();
            !Path::new(&dir).exists()
        },
    );
}
