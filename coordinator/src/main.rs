//! The `coordinator` binary: `coordinator --listen 127.0.0.1:7700 --data-dir DIR [--workflows DIR]`.

use std::io::IsTerminal;

use clap::Parser;
use coordinator::CoordinatorArgs;
use coordinator::config::LogFormat;
use tracing_subscriber::EnvFilter;

// The saga path allocates many small, short-lived buffers across threads; mimalloc handles
// that pattern with less contention than glibc's allocator.
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `--features dhat-heap`: every allocation counted by call stack, `dhat-heap.json` written at
// shutdown (peak and end-of-run live bytes per site); see the README's memory section.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let config = match CoordinatorArgs::parse().into_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("coordinator: invalid option {e}");
            std::process::exit(2);
        }
    };
    init_logging(config.log_format);
    let running = match coordinator::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coordinator: {e}");
            std::process::exit(1);
        }
    };
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): plain text, coloured only on a
/// terminal, or JSON lines. Spans (`--otlp-endpoint`) do not go through this subscriber: each
/// coordinator exports its sagas' spans itself and flushes them in its shutdown, below.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler succeeds on unix");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
