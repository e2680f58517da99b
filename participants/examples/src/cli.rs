//! The `main` of the participant binaries: flags, logging, start, wait for a signal, stop.

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::config::{ParticipantArgs, ParticipantConfig, ParticipantKind};
use crate::server::{ParticipantError, RunningParticipant};

/// Runs one participant binary until Ctrl-C or SIGTERM. Prints `listening on {addr}` to
/// stdout once serving, for scripts and the chaos harness to wait on. Exits `2` for a
/// configuration it cannot start with (the message names the flag, and the field of a
/// `--policy` file), `1` if starting fails, `0` after a graceful stop.
pub async fn run<F, Fut>(kind: ParticipantKind, start: F) -> ExitCode
where
    F: FnOnce(ParticipantConfig) -> Fut,
    Fut: Future<Output = Result<RunningParticipant, ParticipantError>>,
{
    let args = ParticipantArgs::parse_for(kind);
    init_tracing();
    let config = match args.into_config(kind) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", kind.name());
            return ExitCode::from(2);
        }
    };
    let running = match start(config).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", running.local_addr());
    tracing::info!(participant = kind.name(), addr = %running.local_addr(), "listening on {}", running.local_addr());
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Logs to stderr; `RUST_LOG` filters, `info` by default.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; waiting for Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
