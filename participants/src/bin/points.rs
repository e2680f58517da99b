//! The points participant binary; see `participants::points`.

use participants::{ParticipantKind, cli, points};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Points, points::start).await
}
