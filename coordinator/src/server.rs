//! Wires the store, registry, runtime and API into a running coordinator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api;
use crate::clock::Clock;
use crate::config::CoordinatorConfig;
use crate::registry::{Registry, RegistryError, Store};
use crate::runtime::Runtime;
use crate::store::{SledStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data dir {dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error("cannot open the saga log: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct RunningCoordinator {
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
    grace: Duration,
}

/// Opens the log, loads workflow files, starts serving, and resumes active sagas in the
/// background (`/readyz` turns 200 when done).
pub async fn start(config: CoordinatorConfig) -> Result<RunningCoordinator, StartError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open_with(
        &config.data_dir,
        &config.store_options(),
    )?);
    let registry = Arc::new(Registry::load(store.clone())?);
    if let Some(dir) = config.workflow_dir() {
        let loaded = registry.load_dir(&dir).await?;
        tracing::info!(dir = %dir.display(), workflows = ?loaded, "workflow files loaded");
    }
    crate::telemetry::handle();
    let runtime = Runtime::new(store, registry, Clock::new());
    let retention = Duration::from_secs(config.retention_secs);
    // Sweep about ten times per retention period, at most once a minute, at least every 100 ms.
    let sweep_every = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    runtime.start_retention(retention, sweep_every);
    runtime.start_wakeups();
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;

    let (stop_http, stopped) = oneshot::channel::<()>();
    let app = api::router(runtime.clone(), config.submit_rate_limit);
    let http = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    let recovering = runtime.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match recovering.recover().await {
            Ok(n) => tracing::info!(
                resumed = n,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovery done; ready"
            ),
            Err(e) => tracing::error!(error = %e, "recovery failed; not ready"),
        }
    });

    tracing::info!(%addr, "coordinator listening on {addr}");
    Ok(RunningCoordinator {
        addr,
        runtime,
        stop_http,
        http,
        grace: Duration::from_millis(config.shutdown_grace_ms),
    })
}

impl RunningCoordinator {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Stops accepting submissions (503), lets in-flight calls finish within the grace period,
    /// flushes the log and stops serving.
    pub async fn shutdown(self) {
        self.runtime.shutdown(self.grace).await;
        let _ = self.stop_http.send(());
        let _ = self.http.await;
    }
}
