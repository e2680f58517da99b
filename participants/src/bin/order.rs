//! The order participant binary; see `participants::order`.

use participants::{ParticipantKind, cli, order};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Order, order::start).await
}
