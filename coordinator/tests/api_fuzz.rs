//! Property-based testing of the whole API from its OpenAPI document, with schemathesis: a
//! thousand or so generated requests (valid, invalid, and sequences following the document)
//! must never get a 5xx, and every answer must match the status codes and schemas the
//! document declares. The coordinator runs as in production: API tokens on (schemathesis
//! holds a token with every scope), outbound calls only to loopback, so that no generated
//! `base_url` or `callback_url` makes it call anywhere else.
//!
//! schemathesis is a Python tool: `.ci/run` installs it into `.ci/venv` from
//! `.ci/requirements.txt`; `SCHEMATHESIS=/path/to/schemathesis` points at another install.

#[allow(dead_code)] // shared by several test binaries, each using part of it
mod setup;

use std::path::PathBuf;
use std::process::Command;

use sha2::Digest;

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
    const TOKEN: &str = "fuzzing-admin-token";
    let digest: String = sha2::Sha256::digest(TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = dir.path().join("auth.toml");
    let file = format!(
        "[[tokens]]\nname = \"schemathesis\"\nsha256 = \"{digest}\"\n\
         scopes = [\"read\", \"submit\", \"operate\", \"admin\"]\n"
    );
    std::fs::write(&auth, file).unwrap();
    let mut options = setup::options(&dir.path().join("c"));
    options.auth_file = Some(auth);
    options.allow_outbound = vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
    let coordinator = coordinator::start(options).await.unwrap();
    let schema = format!("{}/openapi.json", coordinator.url());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool)
            .args(["run", &schema])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance",
            ])
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
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
