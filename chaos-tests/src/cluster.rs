//! A cluster of services: one coordinator (or several on one PostgreSQL database) and the
//! three example participants, each a child process on a free loopback port with a fresh data
//! directory.
//!
//! [`Cluster::start`] returns once every coordinator's `/readyz` answers and shows the
//! `place_order` workflow, and every participant is registered (`GET /v1/participants/{name}`
//! is 200). If the thread is panicking when the cluster is dropped (a failed assertion), the
//! tail of every process log is printed, so the failure shows what the services saw.
//!
//! With [`CoordinatorStore::Postgres`], [`ClusterOptions::coordinators`] instances share one
//! fresh database ([`crate::database`]). Instance `i` sends its branch calls from
//! `127.0.0.{2+i}` (`--outbound-address`; all of `127.0.0.0/8` is loopback on Linux), so a
//! proxy in front of the participants tells the instances apart; the participants register
//! with all of them (`--coordinator URL,URL,...`). [`CoordinatorInstance`] kills (SIGKILL),
//! pauses (SIGSTOP), resumes (SIGCONT) and restarts one instance; its
//! [`CoordinatorInstance::instance_id`] is the id it holds leases under, read from its log.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sagas::CoordinatorClient;

use crate::binaries;
use crate::database::{Database, DatabaseChoice};
use crate::failover::FailoverClient;
use crate::participant_api::{OrderApi, PointsApi, WalletApi};
use crate::ports;
use crate::process::{self, ServiceConfig, ServiceProcess};

/// How long start-up and restarts may take (CI runners are small and busy compiling).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many log lines [`Cluster::log_tails`] prints per process by default.
pub const TAIL_LINES: usize = 40;

/// What a coordinator logs once it joined a cluster, with `instance=ID`.
/// The tests of one test binary start their clusters one at a time ([`Cluster::run_test_with`],
/// [`crate::chaos::run`]): two clusters of real processes, each with leases and timeouts of
/// a second or less, starve each other's timers on a 2-core machine (a 300 ms lease expired
/// while another test claimed 2,000 sagas beside it).
pub(crate) static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const JOINED_LINE: &str = "joined the cluster on PostgreSQL";
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

/// Where the coordinators keep their saga log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CoordinatorStore {
    /// sled, in the coordinator's own data directory: one coordinator.
    #[default]
    Sled,
    /// One fresh PostgreSQL database shared by every coordinator of the cluster.
    Postgres(PostgresOptions),
}

/// How the coordinators run on PostgreSQL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostgresOptions {
    /// `--lease-ms`; `None` leaves the coordinator's default (5 s).
    pub lease: Option<Duration>,
    /// Where the database is: by default a fresh one on the test process's shared throwaway
    /// server.
    pub database: DatabaseChoice,
}

impl PostgresOptions {
    /// A database on the shared throwaway server, instances holding leases of `lease`.
    pub fn with_lease(lease: Duration) -> PostgresOptions {
        PostgresOptions {
            lease: Some(lease),
            ..PostgresOptions::default()
        }
    }
}

/// How to start a cluster: how many coordinators on which store, and extra command-line
/// arguments per service (fault-injection flags, say).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Coordinator processes; more than one needs [`CoordinatorStore::Postgres`]. Default 1.
    pub coordinators: usize,
    /// Where they keep their log. Default sled.
    pub store: CoordinatorStore,
    /// Extra flags of every coordinator.
    pub coordinator_args: Vec<OsString>,
    /// Extra flags of the wallet.
    pub wallet_args: Vec<OsString>,
    /// Extra flags of the order service.
    pub order_args: Vec<OsString>,
    /// Extra flags of the points service.
    pub points_args: Vec<OsString>,
    /// Workflow directory for the coordinators; `None` is the workspace's `sagas/`.
    pub workflows_dir: Option<PathBuf>,
    /// Listen addresses of wallet, order and points; `None` picks free ports. Lets a caller
    /// start something that needs them (a fault proxy) before the participants.
    pub participant_addrs: Option<[SocketAddr; 3]>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            coordinators: 1,
            store: CoordinatorStore::Sled,
            coordinator_args: Vec::new(),
            wallet_args: Vec::new(),
            order_args: Vec::new(),
            points_args: Vec::new(),
            workflows_dir: None,
            participant_addrs: None,
        }
    }
}

impl ClusterOptions {
    /// `coordinators` instances on a fresh database of the shared throwaway server, holding
    /// leases of `lease`.
    pub fn postgres(coordinators: usize, lease: Duration) -> ClusterOptions {
        ClusterOptions {
            coordinators,
            store: CoordinatorStore::Postgres(PostgresOptions::with_lease(lease)),
            ..ClusterOptions::default()
        }
    }
}

/// The address instance `index` of a cluster sends its calls from: `127.0.0.{2+index}`.
pub fn outbound_address(index: usize) -> IpAddr {
    let last = u8::try_from(2 + index).expect("fewer than 254 instances");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// One coordinator process of a cluster, with a client for its API.
#[derive(Debug)]
pub struct CoordinatorInstance {
    index: usize,
    process: ServiceProcess,
    client: CoordinatorClient,
    outbound_address: Option<IpAddr>,
}

impl CoordinatorInstance {
    /// Its place in the cluster, from 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        self.process.url()
    }

    /// A client of its API (10 s request timeout).
    pub fn client(&self) -> &CoordinatorClient {
        &self.client
    }

    /// The address its branch calls come from (on PostgreSQL; `None` lets the system choose).
    pub fn outbound_address(&self) -> Option<IpAddr> {
        self.outbound_address
    }

    /// Its process, for what the instance does not wrap.
    pub fn process(&self) -> &ServiceProcess {
        &self.process
    }

    /// Its process, for what the instance does not wrap.
    pub fn process_mut(&mut self) -> &mut ServiceProcess {
        &mut self.process
    }

    /// True while the process runs (paused or not).
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.process.kill()
    }

    /// SIGSTOP: it stops at once, holding its leases until they expire.
    pub fn pause(&mut self) -> anyhow::Result<()> {
        self.process.pause()
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> anyhow::Result<()> {
        self.process.resume()
    }

    /// Starts it again on the same port (killing it first if it still runs) and waits for
    /// `/readyz`. On PostgreSQL it joins as a new instance.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        self.process.wait_healthy(START_TIMEOUT).await
    }

    /// The id this process (its latest start) holds leases under in the database's
    /// `instances` and `sagas.owner`, from the line it logs when it joins the cluster. `None`
    /// on sled, before it joined, or when its log filter hides `coordinator::server` info
    /// lines (the cluster lets them through). A process that lost its lease and rejoined
    /// holds a newer id that it does not log.
    pub fn instance_id(&self) -> Option<String> {
        let log = self.process.log();
        let latest = log
            .rfind(process::START_MARKER)
            .map_or(log.as_str(), |at| &log[at..]);
        latest
            .lines()
            .filter(|line| line.contains(JOINED_LINE))
            .find_map(|line| {
                let (_, rest) = line.split_once("instance=")?;
                let id = rest.split_whitespace().next()?.trim_matches('"');
                (!id.is_empty()).then(|| id.to_string())
            })
    }
}

/// Coordinators and the three example participants, each a [`ServiceProcess`] on its own
/// port, with clients for their APIs.
#[derive(Debug)]
pub struct Cluster {
    coordinators: Vec<CoordinatorInstance>,
    /// Indexed by [`Participant::index`].
    participants: [ServiceProcess; 3],
    wallet: WalletApi,
    order: OrderApi,
    points: PointsApi,
    logs_printed: bool,
    /// Last: the processes above die before a server of the cluster's own stops.
    database: Option<Database>,
}

impl Cluster {
    /// Starts everything with default options and waits until it is usable.
    pub async fn start() -> anyhow::Result<Cluster> {
        Cluster::start_with(ClusterOptions::default()).await
    }

    /// A test's body: starts a cluster (panicking if it does not come up), runs `scenario` on
    /// it and panics with the error and every process's log tail if the scenario fails.
    pub async fn run_test<T>(scenario: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<T>) -> T {
        Cluster::run_test_with(ClusterOptions::default(), scenario).await
    }

    /// [`Cluster::run_test`] on a cluster started with `options`.
    pub async fn run_test_with<T>(
        options: ClusterOptions,
        scenario: impl AsyncFnOnce(&mut Cluster) -> anyhow::Result<T>,
    ) -> T {
        let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
        let mut cluster = match Cluster::start_with(options).await {
            Ok(cluster) => cluster,
            Err(e) => panic!("{e:#}"),
        };
        let result = scenario(&mut cluster).await;
        cluster.expect_ok(result)
    }

    /// Starts everything with `options` and waits until it is usable: every process healthy,
    /// every participant registered.
    pub async fn start_with(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let instances = options.coordinators.max(1);
        let postgres = match &options.store {
            CoordinatorStore::Sled => {
                anyhow::ensure!(
                    instances == 1,
                    "{instances} coordinators cannot share a sled log: use PostgreSQL"
                );
                None
            }
            CoordinatorStore::Postgres(postgres) => Some(postgres.clone()),
        };
        let coordinator_bin = binaries::binary("coordinator")?;
        let participant_bins = [
            binaries::binary("wallet")?,
            binaries::binary("order")?,
            binaries::binary("points")?,
        ];
        let database = match &postgres {
            Some(postgres) => Some(Database::open(&postgres.database).await?),
            None => None,
        };
        let coordinator_addrs = ports::free_addrs(instances)?;
        let participant_addrs = match options.participant_addrs {
            Some(given) => given.to_vec(),
            None => ports::free_addrs(3)?,
        };
        let coordinator_urls: Vec<String> = coordinator_addrs
            .iter()
            .map(|addr| format!("http://{addr}"))
            .collect();

        let workflows = options
            .workflows_dir
            .clone()
            .unwrap_or_else(binaries::workflows_dir);
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build an HTTP client")?;
        let mut coordinators = Vec::with_capacity(instances);
        for (index, addr) in coordinator_addrs.iter().enumerate() {
            let mut args: Vec<OsString> = vec!["--workflows".into(), workflows.clone().into()];
            let mut outbound = None;
            let mut log_filter = None;
            if let (Some(postgres), Some(database)) = (&postgres, &database) {
                args.extend(["--database-url".into(), database.url().into()]);
                if let Some(lease) = postgres.lease {
                    args.extend(["--lease-ms".into(), lease.as_millis().to_string().into()]);
                }
                let address = outbound_address(index);
                args.extend(["--outbound-address".into(), address.to_string().into()]);
                outbound = Some(address);
                // The line that names the instance id, whatever the filter.
                log_filter = Some(format!(
                    "{},coordinator::server=info",
                    process::log_filter()
                ));
            }
            args.extend(options.coordinator_args.iter().cloned());
            let name = if instances == 1 {
                "coordinator".to_string()
            } else {
                format!("coordinator-{index}")
            };
            let process = ServiceProcess::spawn(ServiceConfig {
                name,
                binary: coordinator_bin.clone(),
                listen: *addr,
                health_path: "/readyz".into(),
                extra_args: args,
                log_filter,
            })?;
            coordinators.push(CoordinatorInstance {
                index,
                process,
                client: CoordinatorClient::with_http(coordinator_urls[index].clone(), http.clone()),
                outbound_address: outbound,
            });
        }

        let extra = [options.wallet_args, options.order_args, options.points_args];
        let mut spawned = Vec::with_capacity(3);
        for ((participant, binary), extra) in Participant::ALL
            .into_iter()
            .zip(participant_bins)
            .zip(extra)
        {
            let mut args: Vec<OsString> =
                vec!["--coordinator".into(), coordinator_urls.join(",").into()];
            args.extend(extra);
            spawned.push(ServiceProcess::spawn(ServiceConfig {
                name: participant.name().into(),
                binary,
                listen: participant_addrs[participant.index()],
                health_path: "/healthz".into(),
                extra_args: args,
                log_filter: None,
            })?);
        }
        let participants: [ServiceProcess; 3] = spawned
            .try_into()
            .expect("exactly three participants were spawned");

        let mut cluster = Cluster {
            wallet: WalletApi::new(participants[0].url()),
            order: OrderApi::new(participants[1].url()),
            points: PointsApi::new(participants[2].url()),
            coordinators,
            participants,
            // Start-up errors carry their own log tails.
            logs_printed: true,
            database,
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

    /// Every coordinator's `/readyz` and its `place_order` workflow, every participant healthy
    /// and registered.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        for coordinator in &mut self.coordinators {
            coordinator.process.wait_healthy(START_TIMEOUT).await?;
            let workflow = format!("{}/v1/workflows/place_order", coordinator.url());
            coordinator
                .process
                .wait_for_url(&workflow, START_TIMEOUT)
                .await?;
        }
        for participant in Participant::ALL {
            self.wait_participant_ready(participant).await?;
        }
        Ok(())
    }

    /// The participant healthy and its registration visible on some running instance. The
    /// instances share one registry, but each reads it again only before a submission, so an
    /// instance other than the one the participant registered with may not show it yet.
    async fn wait_participant_ready(&mut self, participant: Participant) -> anyhow::Result<()> {
        let registrations: Vec<String> = self
            .coordinators
            .iter_mut()
            .filter_map(|c| c.process.is_running().then(|| c.url()))
            .map(|url| format!("{url}/v1/participants/{}", participant.name()))
            .collect();
        anyhow::ensure!(!registrations.is_empty(), "no coordinator runs");
        let process = &mut self.participants[participant.index()];
        process.wait_healthy(START_TIMEOUT).await?;
        process
            .wait_for_any_url(&registrations, START_TIMEOUT)
            .await
    }

    /// The first coordinator's client (10 s request timeout).
    pub fn client(&self) -> &CoordinatorClient {
        &self.coordinators[0].client
    }

    /// A client of every instance that asks `first` first and the next ones on retries.
    pub fn failover_client(&self, first: usize) -> FailoverClient {
        FailoverClient::new(
            self.coordinators.iter().map(|c| c.client.clone()).collect(),
            first,
        )
    }

    /// A client of every instance, through `http` (its own timeouts), that asks `first` first.
    pub fn failover_client_with(&self, http: &reqwest::Client, first: usize) -> FailoverClient {
        FailoverClient::new(
            self.coordinators
                .iter()
                .map(|c| CoordinatorClient::with_http(c.url(), http.clone()))
                .collect(),
            first,
        )
    }

    /// How many coordinator instances the cluster has.
    pub fn coordinator_count(&self) -> usize {
        self.coordinators.len()
    }

    /// Every coordinator instance.
    pub fn coordinators(&self) -> &[CoordinatorInstance] {
        &self.coordinators
    }

    /// Coordinator instance `index`.
    pub fn coordinator(&self, index: usize) -> &CoordinatorInstance {
        &self.coordinators[index]
    }

    /// Coordinator instance `index`, to kill, pause, resume or restart it.
    pub fn coordinator_mut(&mut self, index: usize) -> &mut CoordinatorInstance {
        &mut self.coordinators[index]
    }

    /// The database the coordinators share, on PostgreSQL.
    pub fn database(&self) -> Option<&Database> {
        self.database.as_ref()
    }

    /// The first coordinator's base URL.
    pub fn coordinator_url(&self) -> String {
        self.coordinators[0].url()
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

    /// The first coordinator's process, for what the cluster does not wrap.
    pub fn coordinator_process(&mut self) -> &mut ServiceProcess {
        &mut self.coordinators[0].process
    }

    /// A participant's process, for what the cluster does not wrap.
    pub fn participant_process(&mut self, participant: Participant) -> &mut ServiceProcess {
        &mut self.participants[participant.index()]
    }

    /// True while the first coordinator process runs.
    pub fn coordinator_running(&mut self) -> bool {
        self.coordinators[0].is_running()
    }

    /// True while the participant's process runs.
    pub fn participant_running(&mut self, participant: Participant) -> bool {
        self.participants[participant.index()].is_running()
    }

    /// SIGKILL the first coordinator.
    pub fn kill_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinators[0].kill()
    }

    /// Starts the first coordinator again on the same port and data directory (killing it
    /// first if it still runs) and waits for `/readyz`.
    pub async fn restart_coordinator(&mut self) -> anyhow::Result<()> {
        self.coordinators[0].restart().await
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

    /// Every process: the coordinators, then the participants.
    fn processes(&self) -> impl Iterator<Item = &ServiceProcess> {
        self.coordinators
            .iter()
            .map(|c| &c.process)
            .chain(&self.participants)
    }

    /// Keep every process's data directory and log when the cluster is dropped.
    pub fn keep_dirs(&mut self) {
        for coordinator in &mut self.coordinators {
            coordinator.process.keep_dir();
        }
        for process in &mut self.participants {
            process.keep_dir();
        }
    }

    /// The tail of every process log.
    pub fn log_tails(&self, lines: usize) -> String {
        self.processes().map(|p| p.log_tail(lines)).collect()
    }

    /// Lines of any process log that report a Rust panic (`panicked at`), prefixed with the
    /// process name. A panic in a service is a bug even if the books balance.
    pub fn panic_lines(&self) -> Vec<String> {
        self.processes()
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
