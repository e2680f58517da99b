//! The quickstart: starts the coordinator and the wallet, order and points participants on
//! loopback (fresh data directories, real HTTP between them), funds an account, runs a few
//! `place_order` sagas (three commit, one aborts for insufficient funds) and prints what
//! happened to each and to the books.
//!
//! Run it with `cargo run -p examples --bin quickstart`.

use std::time::Duration;

use anyhow::{Context, bail};
use examples::LocalServices;
use sagas::CoordinatorClient;
use sagas::api::{SagaState, SagaView};
use serde_json::{Value, json};

const ACCOUNT: &str = "alice";
const FUNDS: i64 = 10_000;

/// (order id, amount, points): the third cannot be paid for once the first two commit.
const ORDERS: [(&str, i64, i64); 4] = [
    ("order-1001", 2_500, 25),
    ("order-1002", 4_000, 40),
    ("order-1003", 9_000, 90),
    ("order-1004", 1_000, 10),
];

/// Starts a coordinator and the three example participants on loopback (fresh data
/// directories, real HTTP between them), funds an account, runs four `place_order` sagas (three
/// commit, one aborts for insufficient funds) and prints what happened to each and to the
/// books. Takes no options.
#[derive(clap::Parser)]
#[command(name = "quickstart", version)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    <Args as clap::Parser>::parse();
    let data = tempfile::tempdir().context("creating a data directory")?;
    let services = LocalServices::start(data.path()).await?;
    let url = services.coordinator.url();
    let client = services.client();
    let (wallet, order, points) = (&services.wallet, &services.order, &services.points);

    println!("Saga coordinator quickstart");
    println!(
        "  coordinator  {url}   (saga log in {})",
        data.path().display()
    );
    for p in [wallet, order, points] {
        println!("  {:<12} {}", p.kind().name(), p.url());
    }

    let http = reqwest::Client::new();
    http.post(format!("{}/accounts/{ACCOUNT}/deposit", wallet.url()))
        .json(&json!({"amount": FUNDS}))
        .send()
        .await?
        .error_for_status()?;
    println!("\nFunded account {ACCOUNT} with {FUNDS}.\n");

    println!(
        "{:<11} {:>6} {:>6}  {:<10} steps",
        "order", "amount", "points", "outcome"
    );
    let mut committed_amount = 0;
    let mut committed_points = 0;
    for (order_id, amount, pts) in ORDERS {
        let input =
            json!({"order_id": order_id, "account": ACCOUNT, "amount": amount, "points": pts});
        // The order id doubles as the idempotency key: resubmitting it never pays twice.
        let saga = client
            .submit("place_order", input, Some(order_id), Some(30_000))
            .await?
            .saga;
        let saga = wait_terminal(&client, saga).await?;
        if saga.state == SagaState::Committed {
            committed_amount += amount;
            committed_points += pts;
        }
        println!(
            "{order_id:<11} {amount:>6} {pts:>6}  {:<10} {}",
            saga.state.as_str(),
            steps_line(&saga)
        );
        if let Some(error) = &saga.error {
            println!("{:<36} why: {error}", "");
        }
    }

    let account: Value = http
        .get(format!("{}/accounts/{ACCOUNT}", wallet.url()))
        .send()
        .await?
        .json()
        .await?;
    let awarded: Value = http
        .get(format!("{}/points/{ACCOUNT}", points.url()))
        .send()
        .await?
        .json()
        .await?;
    println!("\nBooks");
    println!(
        "  wallet {ACCOUNT}: balance {} (funded {FUNDS}), frozen {}",
        account["balance"], account["frozen"]
    );
    println!(
        "  points {ACCOUNT}: {} (committed sagas awarded {committed_points})",
        awarded["points"]
    );
    for (order_id, _, _) in ORDERS {
        let response = http
            .get(format!("{}/orders/{order_id}", order.url()))
            .send()
            .await?;
        let status = if response.status().is_success() {
            response.json::<Value>().await?["status"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        } else {
            "absent".to_string()
        };
        println!("  order {order_id}: {status}");
    }
    let balance = account["balance"].as_i64().unwrap_or(-1);
    let conserved = balance + committed_amount == FUNDS && account["frozen"] == 0;
    println!(
        "  money conserved: {FUNDS} funded = {balance} balance + {committed_amount} paid by committed sagas: {}",
        if conserved { "yes" } else { "NO" }
    );

    services.shutdown().await;
    if !conserved {
        bail!("the books do not balance");
    }
    println!("\nTry the API yourself: see README.md, section \"The API\".");
    Ok(())
}

fn steps_line(saga: &SagaView) -> String {
    saga.steps
        .iter()
        .map(|s| format!("{}={:?}", s.name, s.status).to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn wait_terminal(client: &CoordinatorClient, mut saga: SagaView) -> anyhow::Result<SagaView> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !saga.state.is_terminal() {
        if tokio::time::Instant::now() > deadline {
            bail!("saga {} still {} after 60 s", saga.id, saga.state);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        saga = client.get_saga(&saga.id).await?;
    }
    Ok(saga)
}
