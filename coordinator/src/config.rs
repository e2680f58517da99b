//! What a coordinator runs with: [`CoordinatorOptions`], one typed struct with one `Default`
//! (what the binary runs with when no flag is given), every tunable of the coordinator in one
//! documented place, checked by [`CoordinatorOptions::validate`]. The command line and the
//! environment are an overlay on it ([`CoordinatorArgs`]): a flag or variable that is given
//! replaces the default, one that is not leaves it.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use sagas::RetryPolicy;

use crate::alerts::AlertOptions;
use crate::engine::EngineOptions;
use crate::otlp::OtlpOptions;
use crate::outbound::AllowedTarget;
use crate::runtime::RuntimeOptions;
use crate::store::StoreOptions;

/// Group-commit linger on PostgreSQL when `--log-flush-linger-us` is not given.
const PG_FLUSH_LINGER: Duration = Duration::from_millis(3);

/// Everything a coordinator runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorOptions {
    /// Address the HTTP API listens on; port 0 picks a free port. Default `127.0.0.1:7700`.
    pub listen: SocketAddr,
    /// Directory of the saga log, created if missing, when the coordinator runs alone on its
    /// embedded store (no `database_url`). Default `data/coordinator`.
    pub data_dir: PathBuf,
    /// A PostgreSQL database shared by a cluster of coordinators,
    /// `postgres://user:password@host:port/database`; no data directory then. Default: none
    /// (the embedded store in `data_dir`).
    pub database_url: Option<String>,
    /// In a cluster, how long an instance drives its sagas without renewing its lease: after
    /// it dies, the others take its sagas over once this has passed. Default 5 s; 100 ms to
    /// 10 minutes.
    pub lease: Duration,
    /// Directory of workflow files (`*.json`, `*.yaml`, `*.yml`) loaded at start-up. Default:
    /// `sagas/` in the working directory when it exists, else none.
    pub workflows: Option<PathBuf>,
    /// Saga submissions accepted per second; more get `429` with `Retry-After`. Default:
    /// unlimited.
    pub submit_rate_limit: Option<NonZeroU32>,
    /// How long finished sagas (events, state, idempotency key) are kept before removal.
    /// Default 7 days; 1 second to 100 years.
    pub retention: Duration,
    /// How long shutdown waits for in-flight calls before it stops anyway. Default 10 s; at
    /// most an hour.
    pub shutdown_grace: Duration,
    /// The saga log: group commit and page cache.
    pub store: StoreOptions,
    /// How sagas are run: when an idle saga parks.
    pub runtime: RuntimeOptions,
    /// The engine's budgets: callback attempts, snapshot interval.
    pub engine: EngineOptions,
    /// Completion callbacks: how long one attempt may take and how attempts are spaced.
    pub callbacks: CallbackOptions,
    /// The local address branch calls and callbacks are sent from (a multi-homed host, or
    /// telling the instances of a cluster apart at the participants). Default: the system's
    /// choice.
    pub outbound_address: Option<std::net::IpAddr>,
    /// How log lines are written. Default [`LogFormat::Text`].
    pub log_format: LogFormat,
    /// Span export over OTLP/HTTP: where to (`otlp.endpoint`, default none: no spans) and how
    /// often.
    pub otlp: OtlpOptions,
    /// The alert webhook (`alerts.webhook`, default none: alerts are only logged) and how
    /// alerts are delivered to it.
    pub alerts: AlertOptions,
    /// API tokens and their scopes (TOML, see `auth`); every route but the health probes and
    /// the API's documents then needs a token. Default: none, the API is open (the
    /// coordinator warns at start-up).
    pub auth_file: Option<PathBuf>,
    /// Keys that sign branch calls, completion callbacks and alert webhooks (`Saga-Signature`,
    /// see `sagas::signing`): the first signs. Default: none, calls are not signed.
    pub signing_keys: Vec<sagas::SigningKey>,
    /// Where branch calls, callbacks and alerts may go besides the always-refused link-local,
    /// unspecified and metadata targets: networks and host names. Default: empty, anywhere
    /// else.
    pub allow_outbound: Vec<AllowedTarget>,
    /// Serve the API over HTTPS with this PEM certificate chain (with `tls_key`). Default:
    /// none, plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A PEM bundle of certificate authorities that `https://` participants, callbacks and the
    /// alert webhook may be signed by, besides the system's roots. Default: none.
    pub ca_cert: Option<PathBuf>,
}

/// How completion callbacks are sent. How many attempts before one is abandoned is the
/// engine's ([`EngineOptions::callback_max_attempts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackOptions {
    /// Longest wait for the receiver's answer to one attempt. Default 10 s.
    pub timeout: Duration,
    /// Backoff between attempts. Default 200 ms doubling up to 10 s, with jitter.
    pub retry: RetryPolicy,
}

impl Default for CallbackOptions {
    fn default() -> Self {
        CallbackOptions {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                initial_ms: 200,
                max_ms: 10_000,
                ..RetryPolicy::default()
            },
        }
    }
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable; ANSI colours only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// An option outside its documented range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option}: {rule}")]
pub struct ConfigError {
    /// The option, as its flag: `--retention-secs`.
    pub option: &'static str,
    /// What it must be.
    pub rule: String,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        CoordinatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("data/coordinator"),
            database_url: None,
            lease: Duration::from_secs(5),
            workflows: None,
            submit_rate_limit: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            shutdown_grace: Duration::from_secs(10),
            store: StoreOptions::default(),
            runtime: RuntimeOptions::default(),
            engine: EngineOptions::default(),
            callbacks: CallbackOptions::default(),
            outbound_address: None,
            log_format: LogFormat::Text,
            otlp: OtlpOptions::default(),
            alerts: AlertOptions::default(),
            auth_file: None,
            signing_keys: Vec::new(),
            allow_outbound: Vec::new(),
            tls_cert: None,
            tls_key: None,
            ca_cert: None,
        }
    }
}

impl CoordinatorOptions {
    /// Options for tests and embedding: port 0, the given data directory, no workflow files,
    /// a 5 s shutdown grace.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> CoordinatorOptions {
        CoordinatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            shutdown_grace: Duration::from_secs(5),
            ..CoordinatorOptions::default()
        }
    }

    /// Checks every option against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let within = |option: &'static str, value: Duration, min: Duration, max: Duration| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError {
                    option,
                    rule: format!("must be between {min:?} and {max:?} (got {value:?})"),
                })
            }
        };
        within(
            "--retention-secs",
            self.retention,
            Duration::from_secs(1),
            Duration::from_secs(100 * 365 * 86_400),
        )?;
        within(
            "--shutdown-grace-ms",
            self.shutdown_grace,
            Duration::ZERO,
            Duration::from_secs(3_600),
        )?;
        within(
            "--log-flush-linger-us",
            self.store.flush.linger,
            Duration::ZERO,
            Duration::from_secs(1),
        )?;
        if !(1..=100_000).contains(&self.store.flush.max_batch) {
            return Err(ConfigError {
                option: "--log-flush-max-batch",
                rule: format!(
                    "must be between 1 and 100000 (got {})",
                    self.store.flush.max_batch
                ),
            });
        }
        within(
            "--lease-ms",
            self.lease,
            Duration::from_millis(100),
            Duration::from_secs(600),
        )?;
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                option: "--database-url",
                rule: "must be a postgres:// or postgresql:// URL".into(),
            });
        }
        within(
            "park_after",
            self.runtime.park_after,
            Duration::from_millis(1),
            Duration::from_secs(3_600),
        )?;
        within(
            "callbacks.timeout",
            self.callbacks.timeout,
            Duration::from_millis(1),
            Duration::from_secs(3_600),
        )?;
        self.callbacks.retry.validate().map_err(|e| ConfigError {
            option: "callbacks.retry",
            rule: e.to_string(),
        })?;
        if let Some(url) = &self.otlp.endpoint {
            // A base URL: `/v1/traces` is appended.
            sagas::limits::check_http_url("--otlp-endpoint", url, false).map_err(|e| {
                ConfigError {
                    option: "--otlp-endpoint",
                    rule: e.rule,
                }
            })?;
        }
        within(
            "otlp.export_interval",
            self.otlp.export_interval,
            Duration::from_millis(1),
            Duration::from_secs(60),
        )?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError {
                option: "--tls-cert",
                rule: "--tls-cert and --tls-key go together".into(),
            });
        }
        self.alerts.validate()?;
        self.engine.validate().map_err(|rule| ConfigError {
            option: "engine",
            rule,
        })
    }

    /// The workflow directory to load, if any: explicit, else `sagas/` when present.
    pub fn workflow_dir(&self) -> Option<PathBuf> {
        match &self.workflows {
            Some(dir) => Some(dir.clone()),
            None => Some(PathBuf::from("sagas")).filter(|d| d.is_dir()),
        }
    }
}

/// The `coordinator` binary's flags, each also settable from the environment. Every one is
/// optional: what is given overlays [`CoordinatorOptions::default`].
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "coordinator",
    version,
    about = "Saga-orchestrated distributed transaction coordinator"
)]
pub struct CoordinatorArgs {
    /// Address the HTTP API listens on (port 0 picks a free port) [default: 127.0.0.1:7700].
    #[arg(long, env = "COORDINATOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the saga log, created if missing, when no --database-url is given
    /// [default: data/coordinator].
    #[arg(long, env = "COORDINATOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL database shared by a cluster of coordinators (postgres://...); no data
    /// directory then [default: the embedded store in --data-dir].
    #[arg(long, env = "COORDINATOR_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// In a cluster, how long an instance drives its sagas without renewing its lease, in
    /// milliseconds (100 to 600000); others take a dead instance's sagas over after it
    /// [default: 5000].
    #[arg(long, env = "COORDINATOR_LEASE_MS", value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// Directory of workflow files (*.json, *.yaml) loaded at start-up [default: sagas/ when
    /// it exists].
    #[arg(long, env = "COORDINATOR_WORKFLOWS", value_name = "DIR")]
    pub workflows: Option<PathBuf>,
    /// Saga submissions accepted per second; more get 429 with Retry-After [default:
    /// unlimited].
    #[arg(long, env = "COORDINATOR_SUBMIT_RATE_LIMIT", value_name = "N")]
    pub submit_rate_limit: Option<NonZeroU32>,
    /// How long finished sagas (events, state, idempotency key) are kept, in seconds (1 to
    /// 100 years) [default: 604800, 7 days].
    #[arg(long, env = "COORDINATOR_RETENTION_SECS", value_name = "SECS")]
    pub retention_secs: Option<u64>,
    /// How long shutdown waits for in-flight calls before it stops anyway, in milliseconds
    /// (at most an hour) [default: 10000].
    #[arg(long, env = "COORDINATOR_SHUTDOWN_GRACE_MS", value_name = "MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// Group commit: while the log is busy, how long a flush waits for more writers to join
    /// it, in microseconds (0 to 1000000; tokio's timer rounds up to 1 ms; a quiet log never
    /// waits) [default: 1000; 3000 with --database-url].
    #[arg(long, env = "COORDINATOR_LOG_FLUSH_LINGER_US", value_name = "US")]
    pub log_flush_linger_us: Option<u64>,
    /// Group commit: a batch of this many writers is flushed without waiting further (1 to
    /// 100000) [default: 64].
    #[arg(long, env = "COORDINATOR_LOG_FLUSH_MAX_BATCH", value_name = "N")]
    pub log_flush_max_batch: Option<usize>,
    /// Page cache of the saga log, in MiB (1 to 1048576) [default: 16].
    #[arg(long, env = "COORDINATOR_LOG_CACHE_MB", value_name = "MB",
        value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub log_cache_mb: Option<u64>,
    /// Page cache of the settled archive (finished sagas of the embedded store), in MiB (1 to
    /// 1048576) [default: 8]. All the memory retained history costs.
    #[arg(long, env = "COORDINATOR_ARCHIVE_CACHE_MB", value_name = "MB",
        value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub archive_cache_mb: Option<u64>,
    /// Local address to send branch calls and callbacks from [default: the system's choice].
    #[arg(long, env = "COORDINATOR_OUTBOUND_ADDRESS", value_name = "IP")]
    pub outbound_address: Option<std::net::IpAddr>,
    /// Log lines as plain text (coloured only on a terminal) or as JSON lines [default: text].
    #[arg(long, env = "COORDINATOR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Export spans over OTLP/HTTP (protobuf) to URL/v1/traces: one trace per saga, a span per
    /// branch call [default: no spans].
    #[arg(long, env = "COORDINATOR_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// POST a JSON alert to URL when a saga turns stuck, a participant's circuit opens or a
    /// completion callback is abandoned; retried with backoff [default: alerts are only logged].
    #[arg(long, env = "COORDINATOR_ALERT_WEBHOOK", value_name = "URL")]
    pub alert_webhook: Option<String>,
    /// API tokens with their scopes (TOML: `[[tokens]]` with name, sha256, scopes); every
    /// route but /healthz, /readyz and the API's documents then needs `Authorization: Bearer
    /// TOKEN` [default: none, the API is open].
    #[arg(long, env = "COORDINATOR_AUTH_FILE", value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Signs every branch call, completion callback and alert webhook with this key
    /// (Saga-Signature: HMAC-SHA256); repeat for rotation: the first signs, participants may
    /// hold any. ID is 1 to 64 of [A-Za-z0-9_.-], SECRET any text without a comma; prefer the
    /// environment variable (comma-separated) to keep the secret out of the process list
    /// [default: calls unsigned].
    #[arg(
        long = "signing-key",
        env = "COORDINATOR_SIGNING_KEYS",
        value_name = "ID:SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub signing_keys: Vec<sagas::SigningKey>,
    /// Branch calls, callbacks and alerts may only go to these networks (CIDR or address) and
    /// host names; repeatable or comma-separated. Link-local (169.254.0.0/16, fe80::/10),
    /// unspecified (0.0.0.0, ::) and cloud metadata targets are refused either way [default:
    /// anywhere else].
    #[arg(
        long,
        env = "COORDINATOR_ALLOW_OUTBOUND",
        value_name = "CIDR|HOST",
        value_delimiter = ','
    )]
    pub allow_outbound: Vec<AllowedTarget>,
    /// Serve the API over HTTPS: PEM certificate chain (needs --tls-key) [default: plain HTTP].
    #[arg(
        long,
        env = "COORDINATOR_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "COORDINATOR_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of certificate authorities trusted for https:// participants, callbacks and
    /// the alert webhook, besides the system's roots [default: the system's roots only].
    #[arg(long, env = "COORDINATOR_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl CoordinatorArgs {
    /// `options` with every given flag applied.
    pub fn overlay(self, mut options: CoordinatorOptions) -> CoordinatorOptions {
        let o = &mut options;
        if let Some(v) = self.listen {
            o.listen = v;
        }
        if let Some(v) = self.data_dir {
            o.data_dir = v;
        }
        if let Some(v) = self.database_url {
            o.database_url = Some(v);
        }
        if let Some(v) = self.lease_ms {
            o.lease = Duration::from_millis(v);
        }
        if let Some(v) = self.workflows {
            o.workflows = Some(v);
        }
        if let Some(v) = self.submit_rate_limit {
            o.submit_rate_limit = Some(v);
        }
        if let Some(v) = self.retention_secs {
            o.retention = Duration::from_secs(v);
        }
        if let Some(v) = self.shutdown_grace_ms {
            o.shutdown_grace = Duration::from_millis(v);
        }
        match self.log_flush_linger_us {
            Some(v) => o.store.flush.linger = Duration::from_micros(v),
            // A PostgreSQL commit costs the database more per transaction than a sled fsync:
            // larger batches serve more sagas per second at a lower latency (measured with
            // saga-bench, 64 clients: 3 ms against 1 ms, about 1.3x the sagas per second).
            None if o.database_url.is_some() => o.store.flush.linger = PG_FLUSH_LINGER,
            None => {}
        }
        if let Some(v) = self.log_flush_max_batch {
            o.store.flush.max_batch = v;
        }
        if let Some(v) = self.log_cache_mb {
            o.store.cache_bytes = v.saturating_mul(1 << 20);
        }
        if let Some(v) = self.archive_cache_mb {
            o.store.archive_cache_bytes = v.saturating_mul(1 << 20);
        }
        if let Some(v) = self.outbound_address {
            o.outbound_address = Some(v);
        }
        if let Some(v) = self.log_format {
            o.log_format = v;
        }
        if let Some(v) = self.otlp_endpoint {
            o.otlp.endpoint = Some(v);
        }
        if let Some(v) = self.alert_webhook {
            o.alerts.webhook = Some(v);
        }
        if let Some(v) = self.auth_file {
            o.auth_file = Some(v);
        }
        if !self.signing_keys.is_empty() {
            o.signing_keys = self.signing_keys;
        }
        if !self.allow_outbound.is_empty() {
            o.allow_outbound = self.allow_outbound;
        }
        if let Some(v) = self.tls_cert {
            o.tls_cert = Some(v);
        }
        if let Some(v) = self.tls_key {
            o.tls_key = Some(v);
        }
        if let Some(v) = self.ca_cert {
            o.ca_cert = Some(v);
        }
        options
    }

    /// The defaults with these flags applied, validated.
    pub fn into_options(self) -> Result<CoordinatorOptions, ConfigError> {
        let options = self.overlay(CoordinatorOptions::default());
        options.validate()?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_overlay_the_defaults_and_out_of_range_values_are_refused() {
        let none = CoordinatorArgs::try_parse_from(["coordinator"]).unwrap();
        assert_eq!(none.into_options().unwrap(), CoordinatorOptions::default());
        let args = CoordinatorArgs::try_parse_from([
            "coordinator",
            "--retention-secs",
            "60",
            "--log-flush-linger-us",
            "0",
        ])
        .unwrap();
        let options = args.into_options().unwrap();
        assert_eq!(options.retention, Duration::from_secs(60));
        assert_eq!(options.store.flush.linger, Duration::ZERO);
        assert_eq!(options.listen, CoordinatorOptions::default().listen);
        for (flag, value) in [
            ("--retention-secs", "18446744073709551615"),
            ("--retention-secs", "0"),
            ("--shutdown-grace-ms", "18446744073709551615"),
            ("--log-flush-linger-us", "5000000"),
            ("--log-flush-max-batch", "0"),
        ] {
            let args = CoordinatorArgs::try_parse_from(["coordinator", flag, value]).unwrap();
            let err = args.into_options().unwrap_err();
            assert_eq!(err.option, flag, "{err}");
        }
        assert!(
            CoordinatorArgs::try_parse_from(["coordinator", "--submit-rate-limit", "0"]).is_err()
        );
    }

    #[test]
    fn a_cluster_store_lingers_longer_unless_told_otherwise() {
        let url = "postgres://localhost/sagas";
        let pg = CoordinatorArgs::try_parse_from(["coordinator", "--database-url", url]).unwrap();
        assert_eq!(
            pg.into_options().unwrap().store.flush.linger,
            PG_FLUSH_LINGER
        );
        let told = CoordinatorArgs::try_parse_from([
            "coordinator",
            "--database-url",
            url,
            "--log-flush-linger-us",
            "500",
        ])
        .unwrap();
        let linger = told.into_options().unwrap().store.flush.linger;
        assert_eq!(linger, Duration::from_micros(500));
    }

    #[test]
    fn the_security_flags_overlay_the_defaults() {
        let args = CoordinatorArgs::try_parse_from([
            "coordinator",
            "--auth-file",
            "auth.toml",
            "--signing-key",
            "new:s3cret",
            "--signing-key",
            "old:before",
            "--allow-outbound",
            "10.0.0.0/8,wallet.internal",
            "--tls-cert",
            "cert.pem",
            "--tls-key",
            "key.pem",
            "--ca-cert",
            "ca.pem",
        ])
        .unwrap();
        let options = args.into_options().unwrap();
        assert_eq!(options.auth_file, Some(PathBuf::from("auth.toml")));
        let ids: Vec<&str> = options.signing_keys.iter().map(|k| k.id()).collect();
        assert_eq!(ids, ["new", "old"], "the first given signs");
        assert_eq!(
            options.allow_outbound,
            vec![
                AllowedTarget::Net("10.0.0.0/8".parse().unwrap()),
                AllowedTarget::Host("wallet.internal".into())
            ]
        );
        assert_eq!(options.tls_cert, Some(PathBuf::from("cert.pem")));
        assert_eq!(options.ca_cert, Some(PathBuf::from("ca.pem")));
        for bad in [
            &["coordinator", "--tls-cert", "cert.pem"][..],
            &["coordinator", "--signing-key", "no-secret"][..],
            &["coordinator", "--allow-outbound", "not a host"][..],
        ] {
            assert!(CoordinatorArgs::try_parse_from(bad).is_err(), "{bad:?}");
        }
        let half = CoordinatorOptions {
            tls_key: Some("key.pem".into()),
            ..CoordinatorOptions::default()
        };
        assert_eq!(half.validate().unwrap_err().option, "--tls-cert");
    }

    #[test]
    fn the_span_and_alert_urls_are_checked() {
        let args = CoordinatorArgs::try_parse_from([
            "coordinator",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
            "--alert-webhook",
            "https://alerts.example/hook?team=payments",
        ])
        .unwrap();
        let options = args.into_options().unwrap();
        assert_eq!(
            options.otlp.endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(
            options.alerts.webhook.as_deref(),
            Some("https://alerts.example/hook?team=payments")
        );
        for (flag, value) in [
            ("--otlp-endpoint", "localhost:4318"),
            ("--otlp-endpoint", "http://collector:4318/?x=1"),
            ("--alert-webhook", "not a url"),
            ("--alert-webhook", "ftp://alerts.example/"),
        ] {
            let args = CoordinatorArgs::try_parse_from(["coordinator", flag, value]).unwrap();
            let err = args.into_options().unwrap_err();
            assert_eq!(err.option, flag, "{err}");
            assert!(err.to_string().contains(value), "{err}");
        }
    }
}
