//! The points participant binary; see `example_participants::points`.

use example_participants::{ParticipantKind, cli, points};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Points, points::start).await
}
