//! The order participant binary; see `example_participants::order`.

use example_participants::{ParticipantKind, cli, order};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Order, order::start).await
}
