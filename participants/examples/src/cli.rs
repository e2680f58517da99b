//! The `main` of the participant binaries: flags, logging, start, wait for a signal, stop.

use std::future::Future;
use std::process::ExitCode;

use crate::config::{ParticipantArgs, ParticipantConfig, ParticipantKind};
use crate::logging;
use crate::server::{ParticipantError, RunningParticipant};

/// Runs one participant binary until Ctrl-C or SIGTERM. Exits `2` for a configuration it
/// cannot start with (the message names the flag, and the field of a `--policy` file), `1` if
/// starting fails, `0` after a graceful stop. Where it listens is logged once, by `start`.
pub async fn run<F, Fut>(kind: ParticipantKind, start: F) -> ExitCode
where
    F: FnOnce(ParticipantConfig) -> Fut,
    Fut: Future<Output = Result<RunningParticipant, ParticipantError>>,
{
    let args = ParticipantArgs::parse_for(kind);
    logging::init(args.log_format);
    let config = match args.into_config(kind) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", kind.name());
            return ExitCode::from(2);
        }
    };
    // Before starting: a SIGTERM that arrives once the server is up must find the handler,
    // not the default action (which would kill the process without a graceful stop).
    let stop = stop_signal();
    let running = match start(config).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    stop.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. On unix the handlers are installed when this is
/// called, not when the future is first polled.
fn stop_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
        async move {
            match handlers {
                Ok((mut term, mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for signals; waiting for Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
