//! The wallet participant binary; see `example_participants::wallet`.

use example_participants::{ParticipantKind, cli, wallet};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Wallet, wallet::start).await
}
