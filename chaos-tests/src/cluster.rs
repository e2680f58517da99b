//! A coordinator and the three example participants, each a child process on a free loopback
//! port with a fresh data directory.
//!
//! [`Cluster::start`] returns once the coordinator's `/readyz` answers, the `place_order`
//! workflow is loaded and every participant is registered (`GET /v1/participants/{name}` is
//! 200). If the thread is panicking when the cluster is dropped (a failed assertion), the
//! tail of every process log is printed, so the failure shows what the services saw.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sagas::CoordinatorClient;

use crate::binaries;
use crate::participant_api::{OrderApi, PointsApi, WalletApi};
use crate::ports;
use crate::process::{ServiceConfig, ServiceProcess};

/// How long start-up and restarts may take (CI runners are small and busy compiling).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many log lines [`Cluster::log_tails`] prints per process by default.
pub const TAIL_LINES: usize = 40;

/// One of the example participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Participant {
    /// `wallet`: TCC funds freeze.
    Wallet,
    /// `order`: SAGA order creation.
    Order,
    /// `points`: SAGA loyalty points.
    Points,
}

impl Participant {
    /// Every participant, in the cluster's order.
    pub const ALL: [Participant; 3] =
        [Participant::Wallet, Participant::Order, Participant::Points];

    /// Its binary name and the name it registers under.
    pub fn name(self) -> &'static str {
        match self {
            Participant::Wallet => "wallet",
            Participant::Order => "order",
            Participant::Points => "points",
        }
    }

    fn index(self) -> usize {
        match self {
            Participant::Wallet => 0,
            Participant::Order => 1,
            Participant::Points => 2,
        }
    }
}

/// Extra command-line arguments per service (fault-injection flags, say).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra flags of the coordinator.
    pub coordinator_args: Vec<OsString>,
    /// Extra flags of the wallet.
    pub wallet_args: Vec<OsString>,
    /// Extra flags of the order service.
    pub order_args: Vec<OsString>,
    /// Extra flags of the points service.
    pub points_args: Vec<OsString>,
    /// Workflow directory for the coordinator; `None` is the workspace's `sagas/`.
    pub workflows_dir: Option<PathBuf>,
    /// Listen addresses of wallet, order and points; `None` picks free ports. Lets a caller
    /// start something that needs them (a fault proxy) before the participants.
    pub participant_addrs: Option<[SocketAddr; 3]>,
}

/// A coordinator and the three example participants, each a [`ServiceProcess`] on its own
/// port, with clients for their APIs.
#[derive(Debug)]
pub struct Cluster {
    coordinator: ServiceProcess,
    /// Indexed by [`Participant::index`].
    participants: [ServiceProcess; 3],
    client: CoordinatorClient,
    wallet: WalletApi,
    order: OrderApi,
    points: PointsApi,
    logs_printed: bool,
}

impl Cluster {
    /// Starts everything with default options and waits until it is usable.
    pub async fn start() -> anyhow::Result<Cluster> {
        Cluster::start_with(ClusterOptions::default()).await
    }

    /// A test's body: starts a cluster (panicking if it does not come up), runs `scenario` on
    /// it and panics with the error and every process's log tail if the scenario fails.
    pub async fn run_test<T>(scenario: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<T>) -> T {
        let mut cluster = match Cluster::start().await {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e:#}"),
        };
        let result = scenario(&mut cluster).await;
        cluster.expect_ok(result)
    }

    /// Starts everything with `options` and waits until it is usable: every process healthy,
    /// every participant registered.
    pub async fn start_with(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let coordinator_bin = binaries::binary("coordinator")?;
        let participant_bins = [
            binaries::binary("wallet")?,
            binaries::binary("order")?,
            binaries::binary("points")?,
        ];
        let mut addrs = ports::free_addrs(if options.participant_addrs.is_some() {
            1
        } else {
            4
        })?;
        if let Some(given) = options.participant_addrs {
            addrs.extend(given);
        }
        let coordinator_url = format!("http://{}", addrs[0]);

        let workflows = options
            .workflows_dir
            .clone()
            .unwrap_or_else(binaries::workflows_dir);
        let mut coordinator_args: Vec<OsString> = vec!["--workflows".into(), workflows.into()];
        coordinator_args.extend(options.coordinator_args);
        let coordinator = ServiceProcess::spawn(ServiceConfig {
            name: "coordinator".into(),
            binary: coordinator_bin,
            listen: addrs[0],
            health_path: "/readyz".into(),
            extra_args: coordinator_args,
            log_filter: None,
        })?;

        let extra = [options.wallet_args, options.order_args, options.points_args];
        let mut spawned = Vec::with_capacity(3);
        for ((participant, binary), extra) in Participant::ALL
            .into_iter()
            .zip(participant_bins)
            .zip(extra)
        {
            let mut args: Vec<OsString> =
                vec!["--coordinator".into(), coordinator_url.clone().into()];
            args.extend(extra);
            spawned.push(ServiceProcess::spawn(ServiceConfig {
                name: participant.name().into(),
                binary,
                listen: addrs[1 + participant.index()],
                health_path: "/healthz".into(),
                extra_args: args,
                log_filter: None,
            })?);
        }
        let participants: [ServiceProcess; 3] = spawned
            .try_into()
            .expect("exactly three participants were spawned");

        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build an HTTP client")?;
        let mut cluster = Cluster {
            client: CoordinatorClient::with_http(coordinator_url, http),
            wallet: WalletApi::new(participants[0].url()),
            order: OrderApi::new(participants[1].url()),
            points: PointsApi::new(participants[2].url()),
            coordinator,
            participants,
            // Start-up errors carry their own log tails.
            logs_printed: true,
        };
        if let Err(e) = cluster.wait_ready().await {
            return Err(e.context(format!(
                "the cluster did not come up\n{}",
                cluster.log_tails(TAIL_LINES)
            )));
        }
        cluster.logs_printed = false;
        Ok(cluster)
    }

    /// Coordinator `/readyz`, the `place_order` workflow, every participant healthy and
    /// registered.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.coordinator.wait_healthy(START_TIMEOUT).await?;
        let workflow = format!("{}/v1/workflows/place_order", self.coordinator_url());
        self.coordinator
            .wait_for_url(&workflow, START_TIMEOUT)
            .await?;
        for participant in Participant::ALL {
            self.wait_participant_ready(participant).await?;
        }
        Ok(())
    }

    async fn wait_participant_ready(&mut self, participant: Participant) -> anyhow::Result<()> {
        let registration = format!(
            "{}/v1/participants/{}",
            self.coordinator_url(),
            participant.name()
        );
        let process = &mut self.participants[participant.index()];
        process.wait_healthy(START_TIMEOUT).await?;
        process.wait_for_url(&registration, START_TIMEOUT).await
    }

    /// The coordinator's client (10 s request timeout).
    pub fn client(&self) -> &CoordinatorClient {
        &self.client
    }

    /// The coordinator's base URL.
    pub fn coordinator_url(&self) -> String {
        self.coordinator.url()
    }

    /// A participant's base URL (its own port, not a proxy).
    pub fn participant_url(&self, participant: Participant) -> String {
        self.participants[participant.index()].url()
    }

    /// The wallet's base URL.
    pub fn wallet_url(&self) -> String {
        self.participant_url(Participant::Wallet)
    }

    /// The order service's base URL.
    pub fn order_url(&self) -> String {
        self.participant_url(Participant::Order)
    }

    /// The points service's base URL.
    pub fn points_url(&self) -> String {
        self.participant_url(Participant::Points)
    }

    /// A client of the wallet's API.
    pub fn wallet(&self) -> &WalletApi {
        &self.wallet
    }

    /// A client of the order service's API.
    pub fn order(&self) -> &OrderApi {
        &self.order
    }

    /// A client of the points service's API.
    pub fn points(&self) -> &PointsApi {
        &self.points
    }

    /// The coordinator's process, for what the cluster does not wrap.
    pub fn coordinator_process(&mut self) -> &mut ServiceProcess {
        &mut self.coordinator
    }

    /// A participant's process, for what the cluster does not wrap.
    pub fn participant_process(&mut self, participant: Participant) -> &mut ServiceProcess {
        &mut self.participants[participant.index()]
    }

    /// True while the coordinator process runs.
    pub fn coordinator_running(&mut self) -> bool {
        self.coordinator.is_running()
    }

    /// True while the participant's process runs.
    pub fn participant_running(&mut self, participant: Participant) -> bool {
        self.participants[participant.index()].is_running()
    }

    /// SIGKILL the coordinator.
    pub fn kill_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.kill()
    }

    /// Starts the coordinator again on the same port and data directory (killing it first if
    /// it still runs) and waits for `/readyz`.
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinator.restart()?;
        self.coordinator.wait_healthy(START_TIMEOUT).await
    }

    /// SIGKILL one participant.
    pub fn kill_participant(&mut self, participant: Participant) -> anyhow::Result<()> {
        self.participants[participant.index()].kill()
    }

    /// Starts a participant again on the same port and data directory and waits until it is
    /// healthy and registered again.
    pub async fn restart_participant(&mut self, participant: Participant) -> anyhow::Result<()> {
        self.participants[participant.index()].restart()?;
        self.wait_participant_ready(participant).await
    }

    /// Keep every process's data directory and log when the cluster is dropped.
    pub fn keep_dirs(&mut self) {
        self.coordinator.keep_dir();
        for process in &mut self.participants {
            process.keep_dir();
        }
    }

    /// The tail of every process log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = self.coordinator.log_tail(lines);
        for process in &self.participants {
            out.push_str(&process.log_tail(lines));
        }
        out
    }

    /// Lines of any process log that report a Rust panic (`panicked at`), prefixed with the
    /// process name. A panic in a service is a bug even if the books balance.
    pub fn panic_lines(&self) -> Vec<String> {
        std::iter::once(&self.coordinator)
            .chain(&self.participants)
            .flat_map(|process| {
                process
                    .log()
                    .lines()
                    .filter(|line| line.contains("panicked at"))
                    .map(|line| format!("{}: {line}", process.name()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `Err` with every panic line of [`Cluster::panic_lines`], if any.
    pub fn ensure_no_panics(&self) -> anyhow::Result<()> {
        let panics = self.panic_lines();
        anyhow::ensure!(
            panics.is_empty(),
            "a service panicked:\n{}",
            panics.join("\n")
        );
        Ok(())
    }

    /// Panics with `error` and every process's log tail when `result` is an error.
    #[track_caller]
    pub fn expect_ok<T>(&mut self, result: anyhow::Result<T>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => {
                self.logs_printed = true;
                panic!("{e:#}\n\n{}", self.log_tails(TAIL_LINES));
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.logs_printed {
            eprintln!(
                "\n===== process logs of the failed test =====\n{}",
                self.log_tails(TAIL_LINES)
            );
        }
    }
}
