//! Property-based testing of the whole API from its OpenAPI document, with schemathesis: a
//! thousand or so generated requests (valid, invalid, and sequences following the document)
//! must never get a 5xx, and every answer must match the status codes and schemas the
//! document declares.
//!
//! schemathesis is a Python tool: `.ci/run` installs it into `.ci/venv` from
//! `.ci/requirements.txt`; `SCHEMATHESIS=/path/to/schemathesis` points at another install.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod setup;

use std::path::PathBuf;
use std::process::Command;

/// The schemathesis executable: `$SCHEMATHESIS`, else the one `.ci/run` installs.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return path.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed: run .ci/run, or\n  python3 -m venv .ci/venv && \
         .ci/venv/bin/pip install -r .ci/requirements.txt\n(or set SCHEMATHESIS to its path)"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_get_a_server_error_and_match_the_document() {
    let tool = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let coordinator = coordinator::start(setup::options(&dir.path().join("c")))
        .await
        .unwrap();
    let schema = format!("{}/openapi.json", coordinator.url());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool)
            .args(["run", &schema, "--checks", "all"])
            // The document states types, not every rule (a name's pattern, a URL's scheme, a
            // range), so a request of the right types may still be refused with a 400.
            .args(["--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "40", "--seed", "20261130", "--no-color"])
            .current_dir(&work)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    coordinator.shutdown().await;
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
