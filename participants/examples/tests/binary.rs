//! The `wallet` binary as a process: its start-up checks.

mod support;

use support::process::{run_to_exit, wallet_command};

/// A `--policy` file (or `WALLET_POLICY`) is checked before anything starts: a broken rule
/// exits 2 with a message that names the file and the field.
#[test]
fn a_bad_policy_file_stops_the_start_with_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "retry:\n  max_attempts: 0\n").unwrap();

    let (status, stderr) = run_to_exit(wallet_command(
        &dir,
        &["--policy", policy.to_str().unwrap()],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field retry.max_attempts"), "{stderr}");
    assert!(stderr.contains("policy.yaml"), "{stderr}");

    let mut from_env = wallet_command(&dir, &[]);
    from_env.env("WALLET_POLICY", &policy);
    let (status, stderr) = run_to_exit(from_env);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("field retry.max_attempts"), "{stderr}");

    let unknown = dir.path().join("policy.json");
    std::fs::write(&unknown, r#"{"timeout": 5}"#).unwrap();
    let (status, stderr) = run_to_exit(wallet_command(
        &dir,
        &["--policy", unknown.to_str().unwrap()],
    ));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown field `timeout`"), "{stderr}");
}
