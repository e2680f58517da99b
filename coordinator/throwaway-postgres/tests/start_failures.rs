//! A server that does not start: a clear error with its log; a port taken before the server
//! could bind it: another port. Both run the real `initdb` and a fake `postgres` from a bin
//! dir given in `PG_BIN_DIR`, in a child process (this test binary again), since the
//! environment of a running test process cannot safely be changed.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::{Command, Stdio};

use throwaway_postgres::{Error, PostgresServer};

const MODE: &str = "THROWAWAY_POSTGRES_FAKE_BIN_MODE";

/// Runs the test `name` of this binary in a child process whose `PG_BIN_DIR` holds the real
/// `initdb` and a `postgres` script with `body`; fails if the child fails.
fn run_with_fake_postgres(name: &str, body: &str) {
    let real = PostgresServer::shared().bin_dir().to_owned();
    let fake = tempfile::tempdir().unwrap();
    // The server may run as the `postgres` user, who must reach the script.
    fs::set_permissions(fake.path(), fs::Permissions::from_mode(0o755)).unwrap();
    symlink(real.join("initdb"), fake.path().join("initdb")).unwrap();
    let script = fake.path().join("postgres");
    let real_postgres = real.join("postgres");
    let text = format!(
        "#!/bin/sh\n{}\n",
        body.replace("REAL_POSTGRES", &real_postgres.to_string_lossy())
    );
    fs::write(&script, text).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--test-threads=1"])
        .env(MODE, "1")
        .env("PG_BIN_DIR", fake.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_server_that_will_not_start_is_an_error_with_its_log() {
    run_with_fake_postgres(
        "will_not_start_child",
        "echo 'FATAL:  the fake postgres refuses to start' >&2; exit 3",
    );
}

#[test]
fn will_not_start_child() {
    if std::env::var_os(MODE).is_none() {
        return;
    }
    let err = PostgresServer::start().unwrap_err();
    let Error::StartFailed {
        reason,
        log,
        log_tail,
    } = &err
    else {
        panic!("{err}")
    };
    assert!(reason.contains("exited"), "{reason}");
    assert!(
        log_tail.contains("the fake postgres refuses to start"),
        "{log_tail}"
    );
    assert!(
        err.to_string()
            .contains("the fake postgres refuses to start"),
        "{err}"
    );
    assert!(
        !log.parent().unwrap().exists(),
        "the failed server's directory is removed"
    );
}

#[test]
fn a_port_taken_meanwhile_means_another_port() {
    // Fails once per server directory (its working directory) as if the port were taken.
    run_with_fake_postgres(
        "port_taken_child",
        "if [ ! -e port-was-taken ]; then\n  : > port-was-taken\n  \
         echo 'LOG:  could not bind IPv4 address \"127.0.0.1\": Address already in use' >&2\n  \
         exit 1\nfi\nexec REAL_POSTGRES \"$@\"",
    );
}

#[test]
fn port_taken_child() {
    if std::env::var_os(MODE).is_none() {
        return;
    }
    let server = PostgresServer::start().expect("started on the second port");
    assert!(server.dir().join("port-was-taken").exists());
    let log = fs::read_to_string(server.dir().join("server.log")).unwrap();
    assert!(log.contains("Address already in use"), "{log}");
    server.stop().unwrap();
}
