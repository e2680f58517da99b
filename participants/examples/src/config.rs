//! Command-line and environment configuration shared by the three participant binaries.
//!
//! The flags are the same for every participant; the defaults (port, data directory) and the
//! environment prefix (`WALLET_`, `ORDER_`, `POINTS_`) depend on which one runs, so the clap
//! command is adjusted per [`ParticipantKind`] before parsing.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use participants::Retention;
use participants::policy::{self, PolicyFileError};
use sagas::ParticipantPolicy;
use thiserror::Error;

use crate::barrier_mode::BarrierMode;
use crate::faults::FaultPlan;
use crate::logging::LogFormat;

/// The coordinator a participant registers with unless told otherwise.
pub const DEFAULT_COORDINATOR_URL: &str = "http://127.0.0.1:7700";

/// Which example participant a binary or a config is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantKind {
    /// `wallet`: TCC action `freeze`.
    Wallet,
    /// `order`: SAGA action `create`.
    Order,
    /// `points`: SAGA action `award`.
    Points,
}

/// Environment variable names of one participant kind.
struct EnvNames {
    listen: &'static str,
    data_dir: &'static str,
    coordinator: &'static str,
    advertise_url: &'static str,
    faults: &'static str,
    no_work: &'static str,
    policy: &'static str,
    log_format: &'static str,
    coordinator_token: &'static str,
    signing_key: &'static str,
    retention: &'static str,
    retention_sweep: &'static str,
}

macro_rules! env_names {
    ($prefix:literal) => {
        EnvNames {
            listen: concat!($prefix, "_LISTEN"),
            data_dir: concat!($prefix, "_DATA_DIR"),
            coordinator: concat!($prefix, "_COORDINATOR"),
            advertise_url: concat!($prefix, "_ADVERTISE_URL"),
            faults: concat!($prefix, "_FAULTS"),
            no_work: concat!($prefix, "_NO_WORK"),
            policy: concat!($prefix, "_POLICY"),
            log_format: concat!($prefix, "_LOG_FORMAT"),
            coordinator_token: concat!($prefix, "_COORDINATOR_TOKEN"),
            signing_key: concat!($prefix, "_SIGNING_KEYS"),
            retention: concat!($prefix, "_RETENTION_SECS"),
            retention_sweep: concat!($prefix, "_RETENTION_SWEEP_SECS"),
        }
    };
}

impl ParticipantKind {
    /// The name it registers under with the coordinator.
    pub fn name(self) -> &'static str {
        match self {
            ParticipantKind::Wallet => "wallet",
            ParticipantKind::Order => "order",
            ParticipantKind::Points => "points",
        }
    }

    /// Its default port: wallet 7701, order 7702, points 7703.
    pub fn default_port(self) -> u16 {
        match self {
            ParticipantKind::Wallet => 7701,
            ParticipantKind::Order => 7702,
            ParticipantKind::Points => 7703,
        }
    }

    /// `127.0.0.1:{default_port}`.
    pub fn default_listen(self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.default_port()))
    }

    /// `data/{name}`, relative to the working directory.
    pub fn default_data_dir(self) -> PathBuf {
        PathBuf::from("data").join(self.name())
    }

    fn env(self) -> EnvNames {
        match self {
            ParticipantKind::Wallet => env_names!("WALLET"),
            ParticipantKind::Order => env_names!("ORDER"),
            ParticipantKind::Points => env_names!("POINTS"),
        }
    }

    fn about(self) -> &'static str {
        match self {
            ParticipantKind::Wallet => {
                "Example wallet participant: TCC action `freeze` (try freezes, confirm deducts, cancel releases)"
            }
            ParticipantKind::Order => {
                "Example order participant: SAGA action `create` (create, compensate cancels)"
            }
            ParticipantKind::Points => {
                "Example points participant: SAGA action `award` (award adds, compensate revokes)"
            }
        }
    }
}

/// Flags of a participant binary. Parse with [`ParticipantArgs::parse_for`], which fills in
/// the per-participant defaults and environment variables.
#[derive(Debug, Clone, Parser)]
pub struct ParticipantArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the participant's sled database.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Coordinator to register with; several (comma-separated or repeated) for a cluster:
    /// registration goes to whichever answers.
    #[arg(long, value_name = "URL", value_delimiter = ',', num_args = 1..,
        default_value = DEFAULT_COORDINATOR_URL)]
    pub coordinator: Vec<String>,
    /// URL the coordinator should call back; defaults to http://{listen address}.
    #[arg(long, value_name = "URL")]
    pub advertise_url: Option<String>,
    /// Enables fault injection on branch calls and `GET/PUT /_faults` to change it at runtime
    /// (without this flag the endpoint does not exist); SPEC is the initial plan.
    ///
    /// SPEC: comma-separated `key=value`, e.g.
    /// `error_rate=0.1,delay_ms=20,hang=false,drop_reply_rate=0.05,seed=1`. `--faults` alone,
    /// an empty SPEC or `none` starts with no fault active. `error_rate`: answer 500 without
    /// handling; `delay_ms`: wait before handling; `hang`: never answer (until the client
    /// gives up or shutdown); `drop_reply_rate`: handle and commit, then close the connection
    /// without any reply; `seed`: reproducible dice. `PUT /_faults` takes the same keys as a
    /// JSON object and replaces the whole plan (missing keys are off).
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "none")]
    pub faults: Option<String>,
    /// FOR CHAOS-HARNESS SANITY CHECKS ONLY: disables the branch barrier, so duplicate, early
    /// (null compensation) and late (hanging) branch calls corrupt the data.
    #[arg(long)]
    pub unsafe_no_barrier: bool,
    /// FOR BENCHMARKS ONLY: every branch call is answered `200` at once without doing
    /// anything (no barrier, no database), so a load run measures the coordinator's own cost.
    /// Breaks every guarantee: nothing is reserved, deducted, created or undone.
    #[arg(long)]
    pub no_work: bool,
    /// Resilience policy to register with the coordinator: a JSON (`*.json`) or YAML file
    /// holding a participant policy (`timeout_ms`, `max_concurrency`, `queue_capacity`,
    /// `rate_limit_per_sec`, `circuit_breaker`, `retry`; every field optional). Checked at
    /// start-up. Without it the registration carries no policy and the coordinator keeps the
    /// one it has (an operator's, or the defaults).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Log lines (on stderr) as plain text, coloured only on a terminal, or as one JSON
    /// object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// API token to register with (a coordinator started with --auth-file; the token needs the
    /// `admin` scope), sent as `Authorization: Bearer TOKEN`. Prefer the environment variable:
    /// a flag shows in the process list.
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    pub coordinator_token: Option<String>,
    /// Accept only branch calls signed with this key (the coordinator's --signing-key,
    /// ID:SECRET); repeat or comma-separate for rotation. Unsigned, wrongly signed or stale
    /// (> 5 min) calls get 401.
    #[arg(
        long = "signing-key",
        value_name = "ID:SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub signing_keys: Vec<sagas::SigningKey>,
    /// Retention: the barrier records of a saga the coordinator has settled (committed,
    /// aborted, or no longer known to it), and the participant's own records of that saga (the
    /// order a saga created), are deleted once last written at least SECS seconds ago. Stuck
    /// and running sagas keep theirs. 0 keeps everything forever. Account balances are never
    /// deleted. The coordinator token (if any) needs the `read` scope for the sweep. Keep it
    /// longer than a chaos or `loadgen --verify` run: their books check reads the orders.
    #[arg(long, value_name = "SECS", default_value_t = Retention::DEFAULT_MIN_AGE.as_secs())]
    pub retention_secs: u64,
    /// Seconds between two retention sweeps.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub retention_sweep_secs: u64,
}

impl ParticipantArgs {
    /// The clap command for `kind`: its name, about text, defaults and environment variables.
    pub fn command_for(kind: ParticipantKind) -> clap::Command {
        let env = kind.env();
        <Self as CommandFactory>::command()
            .name(kind.name())
            .about(kind.about())
            .mut_arg("listen", |a| {
                a.env(env.listen).help(format!(
                    "Address to listen on (port 0 picks a free one) [default: {}]",
                    kind.default_listen()
                ))
            })
            .mut_arg("data_dir", |a| {
                a.env(env.data_dir).help(format!(
                    "Directory of the participant's sled database [default: {}]",
                    kind.default_data_dir().display()
                ))
            })
            .mut_arg("coordinator", |a| a.env(env.coordinator))
            .mut_arg("advertise_url", |a| a.env(env.advertise_url))
            .mut_arg("faults", |a| a.env(env.faults))
            .mut_arg("no_work", |a| a.env(env.no_work))
            .mut_arg("policy", |a| a.env(env.policy))
            .mut_arg("log_format", |a| a.env(env.log_format))
            .mut_arg("coordinator_token", |a| a.env(env.coordinator_token))
            .mut_arg("signing_keys", |a| a.env(env.signing_key))
            .mut_arg("retention_secs", |a| a.env(env.retention))
            .mut_arg("retention_sweep_secs", |a| a.env(env.retention_sweep))
    }

    /// Parses the process arguments for `kind`; prints help or errors and exits like clap does.
    pub fn parse_for(kind: ParticipantKind) -> Self {
        Self::try_parse_from_for(kind, std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name) for `kind`.
    ///
    /// Errors: clap's, for unknown flags or values that do not parse.
    pub fn try_parse_from_for<I, T>(kind: ParticipantKind, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command_for(kind).try_get_matches_from(args)?;
        <Self as FromArgMatches>::from_arg_matches(&matches)
    }

    /// The typed, validated configuration; reads and checks the `--policy` file.
    ///
    /// Errors: [`ConfigError`], naming the flag (and the policy field) at fault.
    pub fn into_config(self, kind: ParticipantKind) -> Result<ParticipantConfig, ConfigError> {
        let defaults = ParticipantConfig::new(kind);
        let config = ParticipantConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            data_dir: self.data_dir.unwrap_or(defaults.data_dir),
            coordinator_urls: self.coordinator,
            advertise_url: self.advertise_url,
            faults: match self.faults {
                Some(spec) => Some(spec.parse().map_err(ConfigError::Faults)?),
                None => None,
            },
            barrier: if self.unsafe_no_barrier {
                BarrierMode::UnsafeDisabled
            } else {
                BarrierMode::Enforced
            },
            no_work: self.no_work,
            policy: match &self.policy {
                Some(path) => Some(policy::load(path)?),
                None => None,
            },
            coordinator_token: self.coordinator_token.filter(|t| !t.trim().is_empty()),
            signing_keys: self.signing_keys,
            retention: (self.retention_secs > 0).then(|| Retention {
                min_age: Duration::from_secs(self.retention_secs),
                sweep_every: Duration::from_secs(self.retention_sweep_secs),
                ..Retention::default()
            }),
        };
        config.validate()?;
        Ok(config)
    }
}

/// Everything a participant needs to start.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantConfig {
    /// Address to listen on; port 0 picks a free one ([`crate::RunningParticipant::local_addr`]
    /// tells which).
    pub listen: SocketAddr,
    /// The sled database lives directly in this directory (created if missing).
    pub data_dir: PathBuf,
    /// The coordinators to register with (any one of a cluster), `http://` or `https://`.
    pub coordinator_urls: Vec<String>,
    /// Base URL registered with the coordinator; `None` means `http://{bound address}`, with
    /// an unspecified IP (0.0.0.0, ::) replaced by loopback.
    pub advertise_url: Option<String>,
    /// Fault injection (chaos testing): `Some` serves `GET/PUT /_faults` and starts with this
    /// plan (which may inject nothing yet); `None` injects nothing and has no such endpoint.
    pub faults: Option<FaultPlan>,
    /// Whether branch calls go through the barrier ([`BarrierMode::UnsafeDisabled`] only for
    /// the chaos harness's sanity check).
    pub barrier: BarrierMode,
    /// Benchmarks only: answer every branch call `200` without doing anything (see
    /// [`crate::no_work`]).
    pub no_work: bool,
    /// The policy sent on registration; `None` sends none, so the coordinator keeps the one it
    /// has.
    pub policy: Option<ParticipantPolicy>,
    /// The API token registration sends (`Authorization: Bearer`); `None` sends none.
    pub coordinator_token: Option<String>,
    /// The keys a branch call must be signed with (any one); empty: calls are not checked.
    pub signing_keys: Vec<sagas::SigningKey>,
    /// Retention of the barrier records and business records of settled sagas (see
    /// `participants::retention`); `None` keeps everything.
    pub retention: Option<Retention>,
}

impl ParticipantConfig {
    /// The defaults of `kind`: its port on 127.0.0.1, `data/{name}`, the local coordinator.
    pub fn new(kind: ParticipantKind) -> Self {
        ParticipantConfig {
            listen: kind.default_listen(),
            data_dir: kind.default_data_dir(),
            coordinator_urls: vec![DEFAULT_COORDINATOR_URL.into()],
            advertise_url: None,
            faults: None,
            barrier: BarrierMode::Enforced,
            no_work: false,
            policy: None,
            coordinator_token: None,
            signing_keys: Vec::new(),
            retention: Some(Retention::default()),
        }
    }

    /// Sets the listen address (e.g. `127.0.0.1:0` in tests).
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the data directory.
    pub fn with_data_dir(mut self, data_dir: impl Into<PathBuf>) -> Self {
        self.data_dir = data_dir.into();
        self
    }

    /// Sets the coordinator's URL.
    pub fn with_coordinator(mut self, url: impl Into<String>) -> Self {
        self.coordinator_urls = vec![url.into()];
        self
    }

    /// Checks what the types cannot: URLs, the fault plan, the policy.
    ///
    /// Errors: the first [`ConfigError`] found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::EmptyDataDir);
        }
        if self.coordinator_urls.is_empty() {
            return Err(ConfigError::CoordinatorUrl(String::new()));
        }
        if let Some(bad) = self.coordinator_urls.iter().find(|url| !is_http_url(url)) {
            return Err(ConfigError::CoordinatorUrl(bad.clone()));
        }
        if let Some(url) = &self.advertise_url
            && !is_http_url(url)
        {
            return Err(ConfigError::AdvertiseUrl(url.clone()));
        }
        if let Some(plan) = &self.faults {
            plan.validate().map_err(ConfigError::Faults)?;
        }
        if let Some(policy) = &self.policy {
            policy.validate().map_err(ConfigError::InvalidPolicy)?;
        }
        if let Some(retention) = &self.retention {
            retention.validate().map_err(ConfigError::Retention)?;
        }
        if let Some(token) = &self.coordinator_token
            && axum::http::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return Err(ConfigError::CoordinatorToken);
        }
        Ok(())
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|host| !host.is_empty() && !host.starts_with('/'))
}

/// A configuration a participant cannot start with; the binaries exit with status 2.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--data-dir` is empty.
    #[error("--data-dir must not be empty")]
    EmptyDataDir,
    /// `--coordinator` is not an HTTP(S) URL.
    #[error("--coordinator {0:?} must be an http:// or https:// URL")]
    CoordinatorUrl(String),
    /// `--advertise-url` is not an HTTP(S) URL.
    #[error("--advertise-url {0:?} must be an http:// or https:// URL")]
    AdvertiseUrl(String),
    /// The `--faults` plan does not parse or breaks a rule.
    #[error("--faults: {0}")]
    Faults(String),
    /// The `--policy` file cannot be read, does not parse, or a field breaks its rule.
    #[error("--policy: {0}")]
    Policy(#[from] PolicyFileError),
    /// `--coordinator-token` has characters an HTTP header cannot carry.
    #[error("--coordinator-token has characters an HTTP header cannot carry")]
    CoordinatorToken,
    /// The retention settings break a rule (`--retention-sweep-secs 0`).
    #[error("--retention-sweep-secs: {0}")]
    Retention(participants::retention::RetentionError),
    /// A policy set in code breaks a rule.
    #[error("policy: field {}: {}", .0.field, .0.rule)]
    InvalidPolicy(sagas::FieldError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_depend_on_the_participant() {
        let args = ParticipantArgs::try_parse_from_for(ParticipantKind::Order, ["order"]).unwrap();
        let config = args.into_config(ParticipantKind::Order).unwrap();
        assert_eq!(config.listen, "127.0.0.1:7702".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from("data/order"));
        assert_eq!(
            config.coordinator_urls,
            vec![DEFAULT_COORDINATOR_URL.to_string()]
        );
        assert_eq!(config.barrier, BarrierMode::Enforced);
        assert_eq!(
            ParticipantConfig::new(ParticipantKind::Wallet)
                .listen
                .port(),
            7701
        );
        assert_eq!(
            ParticipantConfig::new(ParticipantKind::Points)
                .listen
                .port(),
            7703
        );
    }

    #[test]
    fn flags_override_and_are_validated() {
        let args = ParticipantArgs::try_parse_from_for(
            ParticipantKind::Wallet,
            [
                "wallet",
                "--listen",
                "0.0.0.0:0",
                "--data-dir",
                "/tmp/w",
                "--unsafe-no-barrier",
            ],
        )
        .unwrap();
        let config = args.into_config(ParticipantKind::Wallet).unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.barrier, BarrierMode::UnsafeDisabled);
        assert!(!config.no_work);
        let no_work =
            ParticipantArgs::try_parse_from_for(ParticipantKind::Points, ["points", "--no-work"])
                .unwrap();
        assert!(
            no_work
                .into_config(ParticipantKind::Points)
                .unwrap()
                .no_work
        );

        let bad = ParticipantArgs::try_parse_from_for(
            ParticipantKind::Wallet,
            ["wallet", "--coordinator", "127.0.0.1:7700"],
        )
        .unwrap();
        assert!(matches!(
            bad.into_config(ParticipantKind::Wallet),
            Err(ConfigError::CoordinatorUrl(url)) if url == "127.0.0.1:7700"
        ));
        assert!(
            ParticipantArgs::try_parse_from_for(
                ParticipantKind::Wallet,
                ["wallet", "--listen", "nope"]
            )
            .is_err()
        );
    }

    #[test]
    fn faults_is_a_flag_with_an_optional_initial_plan() {
        let parse = |args: &[&str]| {
            ParticipantArgs::try_parse_from_for(ParticipantKind::Wallet, args)
                .unwrap()
                .into_config(ParticipantKind::Wallet)
        };
        assert_eq!(parse(&["wallet"]).unwrap().faults, None);
        assert_eq!(
            parse(&["wallet", "--faults"]).unwrap().faults,
            Some(FaultPlan::default())
        );
        // A following flag is not taken for the SPEC.
        let config = parse(&["wallet", "--faults", "--listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(config.faults, Some(FaultPlan::default()));
        assert_eq!(config.listen.port(), 0);
        assert_eq!(
            parse(&["wallet", "--faults", "error_rate=0.1,delay_ms=20"])
                .unwrap()
                .faults,
            Some(FaultPlan {
                error_rate: 0.1,
                delay_ms: 20,
                ..FaultPlan::default()
            })
        );
        assert_eq!(
            parse(&["wallet", "--faults=hang"]).unwrap().faults,
            Some(FaultPlan {
                hang: true,
                ..FaultPlan::default()
            })
        );
        assert!(matches!(
            parse(&["wallet", "--faults", "error_rate=2"]),
            Err(ConfigError::Faults(_))
        ));
        let mut invalid = ParticipantConfig::new(ParticipantKind::Wallet);
        invalid.faults = Some(FaultPlan {
            drop_reply_rate: 7.0,
            ..FaultPlan::default()
        });
        assert!(matches!(invalid.validate(), Err(ConfigError::Faults(_))));
    }

    #[test]
    fn help_names_the_per_participant_environment() {
        let help = ParticipantArgs::command_for(ParticipantKind::Points)
            .render_long_help()
            .to_string();
        assert!(help.contains("POINTS_LISTEN"), "{help}");
        assert!(help.contains("7703"), "{help}");
        assert!(help.contains("unsafe-no-barrier"), "{help}");
        assert!(help.contains("--faults [<SPEC>]"), "{help}");
        assert!(help.contains("POINTS_FAULTS"), "{help}");
        assert!(help.contains("/_faults"), "{help}");
        assert!(help.contains("--no-work"), "{help}");
        assert!(help.contains("POINTS_NO_WORK"), "{help}");
        assert!(help.contains("--policy <FILE>"), "{help}");
        assert!(help.contains("POINTS_POLICY"), "{help}");
        assert!(help.contains("--log-format <FORMAT>"), "{help}");
        assert!(help.contains("POINTS_LOG_FORMAT"), "{help}");
    }

    #[test]
    fn a_policy_is_read_only_when_given_and_checked_at_start() {
        let parse = |args: &[&str]| {
            ParticipantArgs::try_parse_from_for(ParticipantKind::Order, args)
                .unwrap()
                .into_config(ParticipantKind::Order)
        };
        assert_eq!(parse(&["order"]).unwrap().policy, None);

        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("policy.yaml");
        std::fs::write(
            &good,
            "timeout_ms: 1500\ncircuit_breaker:\n  open_ms: 200\n",
        )
        .unwrap();
        let policy = parse(&["order", "--policy", good.to_str().unwrap()])
            .unwrap()
            .policy
            .expect("a policy from the file");
        assert_eq!(
            (policy.timeout_ms, policy.circuit_breaker.open_ms),
            (1500, 200)
        );

        let bad = dir.path().join("policy.json");
        std::fs::write(&bad, r#"{"retry": {"initial_ms": 500, "max_ms": 100}}"#).unwrap();
        let err = parse(&["order", "--policy", bad.to_str().unwrap()]).unwrap_err();
        assert!(
            err.to_string().contains("field retry.max_ms"),
            "the message names the field: {err}"
        );
    }

    #[test]
    fn retention_defaults_to_an_hour_and_zero_turns_it_off() {
        let parse = |args: &[&str]| {
            ParticipantArgs::try_parse_from_for(ParticipantKind::Order, args)
                .unwrap()
                .into_config(ParticipantKind::Order)
        };
        assert_eq!(
            parse(&["order"]).unwrap().retention,
            Some(Retention::default())
        );
        let set = parse(&[
            "order",
            "--retention-secs",
            "90",
            "--retention-sweep-secs",
            "5",
        ])
        .unwrap()
        .retention
        .unwrap();
        assert_eq!(
            (set.min_age, set.sweep_every),
            (Duration::from_secs(90), Duration::from_secs(5))
        );
        assert_eq!(
            parse(&["order", "--retention-secs", "0"])
                .unwrap()
                .retention,
            None
        );
        assert!(matches!(
            parse(&["order", "--retention-sweep-secs", "0"]),
            Err(ConfigError::Retention(_))
        ));
        let help = ParticipantArgs::command_for(ParticipantKind::Order)
            .render_long_help()
            .to_string();
        assert!(help.contains("ORDER_RETENTION_SECS"), "{help}");
        assert!(help.contains("ORDER_RETENTION_SWEEP_SECS"), "{help}");
    }

    #[test]
    fn log_format_is_text_or_json() {
        let parse =
            |args: &[&str]| ParticipantArgs::try_parse_from_for(ParticipantKind::Wallet, args);
        assert_eq!(parse(&["wallet"]).unwrap().log_format, LogFormat::Text);
        assert_eq!(
            parse(&["wallet", "--log-format", "json"])
                .unwrap()
                .log_format,
            LogFormat::Json
        );
        assert!(parse(&["wallet", "--log-format", "xml"]).is_err());
    }
}
