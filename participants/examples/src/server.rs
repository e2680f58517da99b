//! Start-up and shutdown shared by the participants: open the sled database, bind, register
//! with the coordinator in the background, serve until asked to stop.
//!
//! Every answer that is not a success carries `{"error": {"code", "message"}}`: the barrier's
//! and the branch extractor's errors, the admin routes' (through the `extract` module), a body
//! over [`MAX_BODY_BYTES`] (`413`), an unknown route (`404`) and a method a route does not
//! take (`405`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use participants::branch::MAX_BODY_BYTES;
use participants::registration::Registration;
use participants::retention::{CoordinatorStates, RetentionTask};
use participants::signature::{SignatureCheck, require_signature};
use participants::{AgedBranch, Barrier, BarrierRecord, BranchReply, SledStore, SledTx, TxError};
use sagas::wire::Phase;
use sagas::{ActionEndpoints, CoordinatorClient, ParticipantSpec};
use serde_json::json;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::barrier_mode::BarrierMode;
use crate::config::{ConfigError, ParticipantConfig, ParticipantKind};
use crate::faults::{self, ConnectionSwitch, FaultInjector, FaultListener};
use crate::ledger::Ledger;
use crate::no_work;

/// Why a participant did not start.
#[derive(Debug, Error)]
pub enum ParticipantError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// sled could not open the database (locked by another process, corrupt, ...).
    #[error("cannot open the database in {}: {source}", path.display())]
    OpenDatabase {
        /// The data directory.
        path: PathBuf,
        /// Why.
        source: sled::Error,
    },
    /// sled could not open a tree.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The registration built from the configuration is invalid (e.g. an advertised URL
    /// with a path).
    #[error("invalid participant spec: {0}")]
    Spec(String),
}

/// A participant that is serving. Stop it with [`RunningParticipant::shutdown`], which also
/// flushes the database; dropping it stops registration and starts the same graceful stop
/// without waiting for it.
#[derive(Debug)]
pub struct RunningParticipant {
    kind: ParticipantKind,
    local_addr: SocketAddr,
    url: String,
    db: sled::Db,
    barrier: Barrier<SledStore>,
    registration: Registration,
    /// The retention sweep; `None` when retention is off.
    retention: Option<RetentionTask>,
    /// Set to `true` to stop: ends graceful shutdown's wait and cuts injected hangs short.
    stopping: watch::Sender<bool>,
    serving: JoinHandle<std::io::Result<()>>,
}

impl RunningParticipant {
    /// Which participant this is.
    pub fn kind(&self) -> ParticipantKind {
        self.kind
    }

    /// The address actually bound (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL registered with the coordinator, e.g. `http://127.0.0.1:7701`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The background registration with the coordinator.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The barrier over the participant's store (its records, its business tree).
    pub fn barrier(&self) -> &Barrier<SledStore> {
        &self.barrier
    }

    /// The retention sweep, `None` when retention is off (`--retention-secs 0`).
    pub fn retention(&self) -> Option<&RetentionTask> {
        self.retention.as_ref()
    }

    /// Stops accepting requests, lets in-flight ones finish, stops registering and flushes
    /// the database. Failures are logged: there is nothing a caller could do about them.
    pub async fn shutdown(self) {
        self.registration.stop();
        if let Some(retention) = self.retention {
            retention.shutdown().await;
        }
        // The server's handle on the store is then the last: when the server ends, the store's
        // group-commit flusher (which holds the database) stops before this returns, so the
        // database can be opened again at once.
        drop(self.barrier);
        let _ = self.stopping.send(true);
        match self.serving.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server failed"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
        if let Err(e) = self.db.flush_async().await {
            tracing::error!(error = %e, "flush at shutdown failed");
        }
        tracing::info!(participant = self.kind.name(), "stopped");
    }
}

const BRANCH_PHASES: [Phase; 5] = [
    Phase::Try,
    Phase::Confirm,
    Phase::Cancel,
    Phase::Action,
    Phase::Compensate,
];

/// What a participant deletes of its own with the barrier records of a settled saga (see
/// `participants::retention::Forget`).
pub(crate) type ForgetBusiness =
    fn(&SledTx<'_>, &AgedBranch, &BarrierRecord) -> Result<(), TxError>;

/// For a participant without per-saga business records (balances are shared by sagas and
/// never deleted): nothing to delete besides the barrier records.
pub(crate) fn no_business_records(
    _: &SledTx<'_>,
    _: &AgedBranch,
    _: &BarrierRecord,
) -> Result<(), TxError> {
    Ok(())
}

/// Opens the database and the business tree `tree`, binds, starts registering `actions` (with
/// the configured policy, if any) and serves `routes`; sweeps the records of settled sagas
/// (with `forget`'s) when retention is on. Logs one `listening on {addr}` line.
pub(crate) async fn start(
    kind: ParticipantKind,
    config: ParticipantConfig,
    tree: &str,
    actions: BTreeMap<String, ActionEndpoints>,
    routes: Router<Ledger>,
    forget: ForgetBusiness,
) -> Result<RunningParticipant, ParticipantError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ParticipantError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    // Blocking, but only once at start-up, before this participant serves anything.
    let db = participants::sled_store::open_database(&config.data_dir).map_err(|source| {
        ParticipantError::OpenDatabase {
            path: config.data_dir.clone(),
            source,
        }
    })?;
    let barrier = Barrier::new(SledStore::open(&db, tree)?);
    let ledger = Ledger {
        barrier: barrier.clone(),
        mode: config.barrier,
    };
    if config.barrier == BarrierMode::UnsafeDisabled {
        tracing::warn!(
            "branch barrier DISABLED: duplicate, early and late branch calls are not handled"
        );
    }

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ParticipantError::Bind {
                addr: config.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ParticipantError::Bind {
            addr: config.listen,
            source,
        })?;
    let url = match &config.advertise_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let mut reachable = local_addr;
            if reachable.ip().is_unspecified() {
                reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{reachable}")
        }
    };

    let spec = ParticipantSpec {
        base_url: url.clone(),
        actions,
        // None keeps the policy the coordinator has; only an explicit --policy replaces it.
        policy: config.policy.clone(),
    };
    spec.validate()
        .map_err(|e| ParticipantError::Spec(e.to_string()))?;

    let (stopping, stop_requested) = watch::channel(false);
    let mut routes = routes.with_state(ledger);
    if config.no_work {
        tracing::warn!(
            "--no-work: branch calls are answered 200 without doing anything (benchmarks only)"
        );
        routes = no_work::install(routes, branch_paths(&spec));
    }
    // Outside the no-work layer, so that faults can still be injected in front of it.
    let injector = config.faults.map(|plan| {
        tracing::warn!(
            ?plan,
            "fault injection enabled: PUT {} changes it",
            faults::FAULTS_PATH
        );
        FaultInjector::new(plan, branch_paths(&spec), stop_requested.clone())
    });
    let with_faults = injector.is_some();
    // Inside the fault layer: an injected fault answers before the signature is checked, as a
    // broken network would.
    if let Some(keys) = sagas::SigningKeys::new(config.signing_keys.clone()) {
        tracing::info!(
            keys = config.signing_keys.len(),
            "branch calls must be signed (Saga-Signature)"
        );
        let check = SignatureCheck::new(keys).only(branch_paths(&spec));
        routes = routes.layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(check),
            require_signature,
        ));
    }
    if let Some(injector) = injector {
        routes = injector.install(routes);
    }
    let app = routes
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { BranchReply::error(404, "not_found", "no such route") })
        // Last: it applies to the routes that exist by now.
        .method_not_allowed_fallback(|| async {
            BranchReply::error(
                405,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let stop_signal = {
        let mut stop_requested = stop_requested;
        async move {
            // `Err` means the sender was dropped with the `RunningParticipant`: stop then too.
            let _ = stop_requested.wait_for(|stop| *stop).await;
        }
    };
    let serving = if with_faults {
        // Connections that a dropped reply or an ended hang can cut (see `faults`).
        let app = app.into_make_service_with_connect_info::<ConnectionSwitch>();
        let listener = FaultListener::new(listener);
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal)
                .await
        })
    } else {
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop_signal)
                .await
        })
    };
    let mut coordinators = Vec::with_capacity(config.coordinator_urls.len());
    for url in &config.coordinator_urls {
        let client =
            CoordinatorClient::with_token(url.clone(), config.coordinator_token.as_deref())
                .map_err(|_| ConfigError::CoordinatorToken)?;
        coordinators.push(client);
    }
    let retention = config.retention.map(|retention| {
        tracing::info!(
            min_age_secs = retention.min_age.as_secs(),
            sweep_every_secs = retention.sweep_every.as_secs(),
            "retention on: records of settled sagas are deleted once old enough"
        );
        RetentionTask::spawn(
            barrier.store().clone(),
            CoordinatorStates::new(coordinators.clone()),
            forget,
            retention,
        )
    });
    let registration = Registration::spawn(coordinators, kind.name().to_string(), spec);
    tracing::info!(
        participant = kind.name(),
        addr = %local_addr,
        %url,
        barrier = ?config.barrier,
        no_work = config.no_work,
        policy = config.policy.is_some(),
        "listening on {local_addr}"
    );
    Ok(RunningParticipant {
        kind,
        local_addr,
        url,
        db,
        barrier,
        registration,
        retention,
        stopping,
        serving,
    })
}

/// The paths of every branch call of `spec` (every phase of every action).
fn branch_paths(spec: &ParticipantSpec) -> BTreeSet<String> {
    spec.actions
        .values()
        .flat_map(|endpoints| BRANCH_PHASES.iter().filter_map(|p| endpoints.path(*p)))
        .map(str::to_string)
        .collect()
}
