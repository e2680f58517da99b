//! The wallet participant binary; see `participants::wallet`.

use participants::{ParticipantKind, cli, wallet};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::run(ParticipantKind::Wallet, wallet::start).await
}
