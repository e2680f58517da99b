//! The README's "The API" section runs top to bottom as written, against the real services:
//! every `sh` block of the section, in order, in one `bash -euo pipefail`, with the default
//! ports (7700-7703) pointed at services started on free ports. So the walkthrough cannot
//! drift from the code: a command that stops working fails this test.

use std::path::Path;
use std::process::Command;

use examples::LocalServices;
use sagas::api::SagaState;
use serde_json::Value;

/// The shell blocks of the README section headed `## {heading}`, in order.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut lines = section[..end].lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_walkthrough_runs_top_to_bottom_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let blocks = shell_blocks(&readme, "The API");
    assert!(
        blocks.len() >= 5,
        "expected the walkthrough's blocks, found {blocks:?}"
    );

    let data = tempfile::tempdir().unwrap();
    let services = LocalServices::start(data.path()).await.unwrap();
    let ports = [
        ("7700", services.coordinator.local_addr().port()),
        ("7701", services.wallet.local_addr().port()),
        ("7702", services.order.local_addr().port()),
        ("7703", services.points.local_addr().port()),
    ];
    let mut script = String::from("set -euo pipefail\n");
    for block in &blocks {
        let mut block = block.clone();
        for (default, port) in ports {
            for host in ["localhost", "127.0.0.1"] {
                block = block.replace(&format!("{host}:{default}"), &format!("127.0.0.1:{port}"));
            }
        }
        script.push_str(&block);
        script.push('\n');
    }
    let work = tempfile::tempdir().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(work.path())
            .output()
            .expect("bash runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );

    // What it did: one committed order of 2500 for alice, paid from the 10000 deposited.
    let client = services.client();
    let sagas = client
        .list_sagas(None, Some("place_order"), None, None)
        .await
        .unwrap()
        .sagas;
    assert_eq!(sagas.len(), 1, "{stdout}");
    assert_eq!(sagas[0].state, SagaState::Committed, "{stdout}");
    assert!(
        stdout.contains(&format!(r#""id":"{}""#, sagas[0].id)),
        "{stdout}"
    );
    let account: Value = reqwest::get(format!("{}/accounts/alice", services.wallet.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account["balance"], 7_500);
    assert_eq!(account["frozen"], 0);
    // The refused operator requests answered in plain words.
    assert!(
        stdout.contains("has already decided") || stdout.contains("has committed"),
        "{stdout}"
    );
    services.shutdown().await;
}
