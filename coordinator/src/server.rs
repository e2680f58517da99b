//! Wires the store, registry, runtime and API into a running coordinator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::alerts::{AlertWorker, Alerts};
use crate::api;
use crate::auth::{AuthFileError, Tokens};
use crate::clock::Clock;
use crate::config::{ConfigError, CoordinatorOptions};
use crate::dispatch::Reporting;
use crate::otlp::{OtlpError, SpanExport};
use crate::outbound::{Outbound, OutboundGuard};
use crate::registry::{FileLoad, Registry, RegistryError};
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::{PgError, PgOptions, PgStore, SledStore, StoreError};
use crate::tls::{TlsError, TlsListener};
use sagas::SigningKeys;

/// Why a coordinator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// An option outside its documented range.
    #[error("invalid option {0}")]
    Config(#[from] ConfigError),
    /// The data directory cannot be created.
    #[error("cannot create data dir {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// The saga log cannot be opened (locked by another process, unreadable, corrupt).
    #[error("cannot open the saga log: {0}")]
    Store(#[from] StoreError),
    /// The PostgreSQL database cannot be reached, migrated or joined.
    #[error("cannot use the database: {0}")]
    Postgres(#[from] PgError),
    /// The registry cannot be loaded, or a workflow file cannot work (the error names the
    /// file, the field and the rule).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Span export (`--otlp-endpoint`) cannot be set up.
    #[error(transparent)]
    Otlp(#[from] OtlpError),
    /// The auth file (`--auth-file`) cannot be read or breaks a rule.
    #[error(transparent)]
    Auth(#[from] AuthFileError),
    /// A TLS file (`--tls-cert`, `--tls-key`, `--ca-cert`) cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How often the metrics recorder folds histogram samples into buckets (see
/// `Runtime::start_metrics_upkeep`): often enough that samples between two upkeeps stay small.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// How often settled sagas move to the embedded store's archive (`Runtime::start_archiving`):
/// sled then holds about a second of settled sagas besides the active ones. Each move ends in
/// fsyncs that the log's own flushes queue behind. `bench --only 64c-no-work`, 3 alternating
/// pairs against the coordinator without the archive: every 1 s, p99 and p999 about +25 %,
/// throughput within noise; every 5 s, p999 +60 % (larger moves); every 250 ms, tails about
/// +15 % but median throughput 16 % lower (more fsyncs).
const ARCHIVE_EVERY: Duration = Duration::from_secs(1);

/// A coordinator that is serving. Stop it with [`RunningCoordinator::shutdown`].
pub struct RunningCoordinator {
    addr: SocketAddr,
    /// `https` with `--tls-cert`, else `http`.
    scheme: &'static str,
    runtime: Arc<Runtime>,
    /// Ends the HTTP server's graceful shutdown.
    stop_http: oneshot::Sender<()>,
    http: JoinHandle<()>,
    /// How long shutdown waits for in-flight calls.
    grace: Duration,
    /// Delivers queued alerts, when a webhook is set.
    alerts: Option<AlertWorker>,
    /// Span export, when on: flushed on shutdown.
    spans: Option<SpanExport>,
}

/// Opens the log, loads workflow files, starts serving, and resumes active sagas in the
/// background (`/readyz` turns 200 when done).
pub async fn start(config: CoordinatorOptions) -> Result<RunningCoordinator, StartError> {
    config.validate()?;
    let tokens = load_tokens(&config)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let ca_certs = match &config.ca_cert {
        Some(path) => crate::tls::ca_certificates(path)?,
        None => Vec::new(),
    };
    // First, so that the registry can declare its workflows' and participants' series.
    crate::telemetry::handle();
    // Bound first: the address names this instance in alerts and spans.
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
    let instance = format!("{}/{addr}", crate::alerts::host_name());
    let spans = match &config.otlp.endpoint {
        Some(endpoint) => {
            let spans = SpanExport::start(endpoint, config.otlp.export_interval, &instance)?;
            tracing::info!(url = %crate::otlp::traces_url(endpoint), "exporting spans over OTLP/HTTP");
            Some(spans)
        }
        None => None,
    };
    let clock = Clock::new();
    // A cluster's lease counts from the join request, which is sent while the store opens.
    let joined = clock.now();
    let store = open_store(&config).await?;
    let registry = Arc::new(Registry::load(store.clone()).await?);
    let outbound = Outbound::new(
        OutboundGuard::new(config.allow_outbound.clone()),
        SigningKeys::new(config.signing_keys.clone()),
        config.outbound_address,
    )
    .trusting(ca_certs);
    match &config.signing_keys[..] {
        [] => tracing::info!("outbound calls are not signed (no --signing-key)"),
        [signer, ..] => tracing::info!(
            kid = signer.id(),
            keys = config.signing_keys.len(),
            "outbound calls signed (Saga-Signature)"
        ),
    }
    let (alerts, alert_worker) = Alerts::start(&config.alerts, instance, clock, &outbound);
    if let Some(webhook) = &config.alerts.webhook {
        tracing::info!(%webhook, "alerts go to the webhook");
    }
    let runtime = Runtime::new(
        store,
        registry.clone(),
        clock,
        joined,
        &config,
        Reporting {
            alerts,
            spans: spans.clone(),
        },
        outbound,
    );
    // First of all, before the rest of start-up can take longer than the lease.
    runtime.start_lease_keeping(config.lease);
    if let Err(e) = load_workflow_files(&registry, &config).await {
        // Leaves the cluster (if in one) and stops what was started.
        runtime.shutdown(Duration::ZERO).await;
        if let Some(alerts) = alert_worker {
            alerts.stop(Duration::ZERO).await;
        }
        if let Some(spans) = spans {
            spans.shutdown().await;
        }
        return Err(e);
    }
    let retention = config.retention;
    // Sweep about ten times per retention period, at most once a minute, at least every 100 ms.
    let sweep_every = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    runtime.start_retention(retention, sweep_every);
    runtime.start_wakeups();
    runtime.start_metrics_upkeep(METRICS_UPKEEP_EVERY);
    runtime.start_archiving(ARCHIVE_EVERY);
    runtime.start_claiming(config.lease);

    let (stop_http, stopped) = oneshot::channel::<()>();
    // The dashboard sits beside the API, outside its middleware: it must load to ask for a token.
    let app = api::router(runtime.clone(), config.submit_rate_limit, tokens)
        .merge(crate::dashboard::routes());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let stopped = async {
        let _ = stopped.await;
    };
    let http = match tls {
        Some(tls) => {
            let listener =
                TlsListener::new(listener, tls).map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
            tokio::spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "HTTPS server failed");
                }
            })
        }
        None => tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }),
    };

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

    tracing::info!(%addr, "coordinator listening on {scheme}://{addr}");
    Ok(RunningCoordinator {
        addr,
        scheme,
        runtime,
        stop_http,
        http,
        grace: config.shutdown_grace,
        alerts: alert_worker,
        spans,
    })
}

/// The API tokens of `--auth-file`; without one, a loud warning that anyone who reaches the
/// port may do anything.
fn load_tokens(config: &CoordinatorOptions) -> Result<Option<Arc<Tokens>>, StartError> {
    let Some(path) = &config.auth_file else {
        tracing::warn!(
            "AUTHENTICATION IS OFF: no --auth-file, so anyone who can reach the API may submit \
             sagas, abort them, register participants and change workflows. Give --auth-file \
             FILE outside a trusted test setup (README, \"Security\")"
        );
        return Ok(None);
    };
    let tokens = Tokens::load(path)?;
    if tokens.is_empty() {
        tracing::warn!(file = %path.display(), "the auth file holds no token: every protected route answers 401");
    } else {
        tracing::info!(file = %path.display(), tokens = tokens.len(), "API tokens required");
    }
    Ok(Some(Arc::new(tokens)))
}

/// The store: PostgreSQL, shared by a cluster, when a database URL is given; else the embedded
/// sled store in the data directory.
async fn open_store(config: &CoordinatorOptions) -> Result<Arc<dyn Store>, StartError> {
    if let Some(url) = &config.database_url {
        let options = PgOptions {
            lease: config.lease,
            flush: config.store.flush,
            ..PgOptions::new(url.clone())
        };
        let store = PgStore::connect(&options).await?;
        tracing::info!(instance = %store.instance(), "joined the cluster on PostgreSQL");
        return Ok(Arc::new(store));
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
        dir: config.data_dir.display().to_string(),
        source,
    })?;
    Ok(Arc::new(SledStore::open_with(
        &config.data_dir,
        &config.store,
    )?))
}

/// Loads the workflow directory, saying which one and what each file did, or that there is
/// none (a coordinator started outside the repository finds no `sagas/`).
async fn load_workflow_files(
    registry: &Registry,
    config: &CoordinatorOptions,
) -> Result<(), StartError> {
    let Some(dir) = config.workflow_dir() else {
        let cwd = std::env::current_dir().unwrap_or_default();
        tracing::info!(
            "no workflow files: --workflows not given and no sagas/ directory in {}; \
             workflows defined through the API only",
            cwd.display()
        );
        return Ok(());
    };
    let loaded = registry.load_dir(&dir).await?;
    if loaded.is_empty() {
        tracing::warn!(dir = %dir.display(), "no workflow files (*.json, *.yaml, *.yml) in the workflow directory");
    }
    for (name, outcome) in loaded {
        match outcome {
            FileLoad::Loaded { version } => {
                tracing::info!(dir = %dir.display(), workflow = %name, version, "workflow file loaded")
            }
            FileLoad::Unchanged { version } => tracing::info!(
                dir = %dir.display(), workflow = %name, version,
                "workflow file unchanged since it last loaded; the workflow stays at its current version"
            ),
            FileLoad::KeptStored { version } => tracing::warn!(
                dir = %dir.display(), workflow = %name, version,
                "workflow file differs from the stored workflow, which was changed through the API; \
                 keeping the stored version (edit the file to load it)"
            ),
        }
    }
    Ok(())
}

impl RunningCoordinator {
    /// The address actually bound (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7700` (`https://` with TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting submissions (503), lets in-flight calls finish within the grace period,
    /// flushes the log and stops serving; then delivers the alerts still queued (within the
    /// grace period again) and sends the spans still batched.
    pub async fn shutdown(self) {
        self.runtime.shutdown(self.grace).await;
        let _ = self.stop_http.send(());
        let _ = self.http.await;
        if let Some(alerts) = self.alerts {
            alerts.stop(self.grace).await;
        }
        if let Some(spans) = self.spans {
            spans.shutdown().await;
        }
    }
}
