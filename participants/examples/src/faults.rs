//! Fault injection on branch calls, for tests and the chaos harness (`--faults [SPEC]`).
//!
//! Started with `--faults`, a participant serves `GET /_faults` (the active [`FaultPlan`]) and
//! `PUT /_faults` (replaces it at runtime). Without the flag neither route exists (`404`) and
//! nothing is injected. The plan:
//!
//! - `delay_ms`: every branch call waits this long before it is handled;
//! - `error_rate` (0..=1): with this probability, answer `500 injected_fault` without handling
//!   the call;
//! - `hang`: every branch call (not failed by `error_rate`) is held without being handled and
//!   never answered. It ends when the client gives up (hyper notices the closed connection and
//!   drops the call) or when the participant shuts down; then the connection is closed without
//!   a reply;
//! - `drop_reply_rate` (0..=1): with this probability, handle the call completely (the change
//!   and the barrier record are committed and flushed), then close the connection without
//!   writing a single byte of the reply: the caller sees a connection error ("connection closed
//!   before message completed"), not an HTTP status, for work that was done. This is the case
//!   the barrier's stored replies exist for;
//! - `seed` (optional): makes the dice reproducible; a new plan reseeds them.
//!
//! `SPEC`, the initial plan on the command line, is a comma-separated list of `key=value`
//! with the same keys (`latency_ms` is accepted for `delay_ms`, a bare `hang` means
//! `hang=true`); an empty `SPEC` or `none` enables the endpoint with no fault active.
//!
//! Only the branch endpoints are affected; admin, health and `/_faults` routes never fail.
//!
//! How a reply is dropped: with faults enabled the server accepts connections through
//! `FaultListener`, whose streams carry a `ConnectionSwitch` (handed to every request as
//! `ConnectInfo`). Tripping the switch makes every later read and write on that connection
//! fail, so hyper abandons it before the response head is written and the socket is closed.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{IncomingStream, Listener};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use participants::BranchReply;

use crate::extract::JsonBody;

/// The path of the fault-control endpoint.
pub const FAULTS_PATH: &str = "/_faults";

/// What faults to inject; all off by default. Also the JSON body of `PUT /_faults` (every
/// field optional, unknown fields refused) and the answer of `GET /_faults`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawFaultPlan")]
pub struct FaultPlan {
    /// Probability in `[0, 1]` of answering `500` without handling the call.
    pub error_rate: f64,
    /// Milliseconds every branch call waits before it is handled.
    pub delay_ms: u64,
    /// Hold every branch call without handling or answering it.
    pub hang: bool,
    /// Probability in `[0, 1]` of handling the call, then closing the connection unanswered.
    pub drop_reply_rate: f64,
    /// Seed of the dice, for reproducible fault schedules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The unchecked shape of a [`FaultPlan`]; deserialization validates through it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFaultPlan {
    error_rate: f64,
    delay_ms: u64,
    hang: bool,
    drop_reply_rate: f64,
    seed: Option<u64>,
}

impl Default for RawFaultPlan {
    fn default() -> Self {
        let FaultPlan {
            error_rate,
            delay_ms,
            hang,
            drop_reply_rate,
            seed,
        } = FaultPlan::default();
        RawFaultPlan {
            error_rate,
            delay_ms,
            hang,
            drop_reply_rate,
            seed,
        }
    }
}

impl TryFrom<RawFaultPlan> for FaultPlan {
    type Error = String;

    fn try_from(raw: RawFaultPlan) -> Result<Self, Self::Error> {
        let plan = FaultPlan {
            error_rate: raw.error_rate,
            delay_ms: raw.delay_ms,
            hang: raw.hang,
            drop_reply_rate: raw.drop_reply_rate,
            seed: raw.seed,
        };
        plan.validate()?;
        Ok(plan)
    }
}

fn check_rate(name: &str, p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{name}: {p} is not a probability in [0, 1]"))
    }
}

impl FaultPlan {
    /// Whether any fault would be injected.
    pub fn is_active(&self) -> bool {
        self.delay_ms > 0 || self.error_rate > 0.0 || self.hang || self.drop_reply_rate > 0.0
    }

    /// `delay_ms` as a duration.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }

    /// Rates must be probabilities (NaN is not).
    ///
    /// Errors: which rate, and its value.
    pub fn validate(&self) -> Result<(), String> {
        check_rate("error_rate", self.error_rate)?;
        check_rate("drop_reply_rate", self.drop_reply_rate)
    }
}

impl FromStr for FaultPlan {
    type Err = String;

    /// `error_rate=0.1,delay_ms=20,hang=false,drop_reply_rate=0.05,seed=1`; empty or `none`
    /// is the plan without faults.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut plan = FaultPlan::default();
        if spec.trim().eq_ignore_ascii_case("none") {
            return Ok(plan);
        }
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), value.trim()),
                None if item == "hang" => ("hang", "true"),
                None => return Err(format!("{item:?} is not key=value")),
            };
            let rate = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{key}: {value:?} is not a probability in [0, 1]"))
            };
            match key {
                "delay_ms" | "latency_ms" => {
                    plan.delay_ms = value.parse().map_err(|e| format!("{key}: {e}"))?
                }
                "error_rate" => plan.error_rate = rate()?,
                "drop_reply_rate" => plan.drop_reply_rate = rate()?,
                "hang" => plan.hang = value.parse().map_err(|e| format!("{key}: {e}"))?,
                "seed" => plan.seed = Some(value.parse().map_err(|e| format!("seed: {e}"))?),
                _ => {
                    return Err(format!(
                        "unknown fault {key:?} (expected error_rate, delay_ms, hang, \
                         drop_reply_rate or seed)"
                    ));
                }
            }
        }
        plan.validate()?;
        Ok(plan)
    }
}

/// What to do with one branch call, decided when it arrives.
#[derive(Debug, Clone, Copy)]
struct Decision {
    delay: Duration,
    error: bool,
    hang: bool,
    drop_reply: bool,
}

/// The active plan and the dice it rolls with; replaced together.
struct Active {
    plan: FaultPlan,
    rng: StdRng,
}

impl Active {
    fn new(plan: FaultPlan) -> Self {
        let rng = match plan.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        Active { plan, rng }
    }

    fn roll(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.random_bool(probability)
    }

    fn decide(&mut self) -> Decision {
        let plan = self.plan;
        let error = self.roll(plan.error_rate);
        let hang = !error && plan.hang;
        let drop_reply = !error && !hang && self.roll(plan.drop_reply_rate);
        Decision {
            delay: plan.delay(),
            error,
            hang,
            drop_reply,
        }
    }
}

/// The fault layer's state: the active plan, the branch paths it applies to, and the shutdown
/// signal that ends hangs.
#[derive(Clone)]
pub(crate) struct FaultInjector {
    active: Arc<Mutex<Active>>,
    branch_paths: Arc<BTreeSet<String>>,
    stopping: watch::Receiver<bool>,
}

impl FaultInjector {
    pub(crate) fn new(
        plan: FaultPlan,
        branch_paths: BTreeSet<String>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        FaultInjector {
            active: Arc::new(Mutex::new(Active::new(plan))),
            branch_paths: Arc::new(branch_paths),
            stopping,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.active
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn plan(&self) -> FaultPlan {
        self.lock().plan
    }

    pub(crate) fn replace(&self, plan: FaultPlan) {
        *self.lock() = Active::new(plan);
    }

    fn decide(&self) -> Decision {
        self.lock().decide()
    }

    /// Resolves once the participant is shutting down.
    async fn stopped(&self) {
        let mut stopping = self.stopping.clone();
        // `Err`: the participant was dropped, which stops it as well.
        let _ = stopping.wait_for(|stop| *stop).await;
    }

    /// Wraps `routes` in the fault middleware and adds the `/_faults` routes (never faulted).
    pub(crate) fn install(self, routes: Router) -> Router {
        let control = Router::new()
            .route(FAULTS_PATH, get(get_faults).put(put_faults))
            .with_state(self.clone());
        routes
            .layer(axum::middleware::from_fn_with_state(self, inject))
            .merge(control)
    }
}

async fn get_faults(State(faults): State<FaultInjector>) -> axum::Json<FaultPlan> {
    axum::Json(faults.plan())
}

/// Checks a `PUT /_faults` body: a JSON object (not serde's array form of a struct).
fn parse_plan(value: serde_json::Value) -> Result<FaultPlan, BranchReply> {
    if !value.is_object() {
        return Err(BranchReply::error(
            400,
            "bad_request",
            "invalid body: expected a JSON object",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| BranchReply::error(400, "bad_request", format!("invalid body: {e}")))
}

async fn put_faults(
    State(faults): State<FaultInjector>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Response {
    match parse_plan(body) {
        Ok(plan) => {
            tracing::warn!(?plan, "fault plan replaced");
            faults.replace(plan);
            axum::Json(plan).into_response()
        }
        Err(reply) => reply.into_response(),
    }
}

/// A response that is never written: the connection is cut first.
fn unanswered() -> Response {
    BranchReply::error(500, "injected_fault", "this reply should have been dropped").into_response()
}

/// axum middleware: `from_fn_with_state(injector, inject)`.
pub(crate) async fn inject(
    State(faults): State<FaultInjector>,
    req: Request,
    next: Next,
) -> Response {
    if !faults.branch_paths.contains(req.uri().path()) {
        return next.run(req).await;
    }
    let decision = faults.decide();
    let path = req.uri().path().to_string();
    let switch = req
        .extensions()
        .get::<ConnectInfo<ConnectionSwitch>>()
        .map(|info| info.0.clone());
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if decision.error {
        tracing::info!(%path, "fault: error before handling");
        return BranchReply::error(
            500,
            "injected_fault",
            "injected error; the call was not handled",
        )
        .into_response();
    }
    if decision.hang {
        tracing::info!(%path, "fault: hang before handling");
        // hyper drops this future when the client closes the connection; otherwise the call
        // is held until shutdown.
        let abandoned = HangGuard(Some(path));
        faults.stopped().await;
        let path = abandoned.disarm();
        return cut(switch, &path, "hang ended by shutdown");
    }
    let response = next.run(req).await;
    if decision.drop_reply {
        tracing::info!(%path, status = %response.status(), "fault: reply dropped after handling");
        return cut(switch, &path, "reply dropped");
    }
    response
}

/// Logs when a hung call is dropped because its client went away.
struct HangGuard(Option<String>);

impl HangGuard {
    fn disarm(mut self) -> String {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            tracing::info!(%path, "fault: hung call ended, the client went away");
        }
    }
}

/// Closes the connection of a call without answering it.
fn cut(switch: Option<ConnectionSwitch>, path: &str, why: &str) -> Response {
    match switch {
        Some(switch) => switch.cut(),
        // Only when the router is served without `FaultListener` (not by `server::start`).
        None => {
            tracing::error!(%path, "fault: {why}, but the connection cannot be cut; answering 500")
        }
    }
    unanswered()
}

/// Cuts one connection: once tripped, every read and write on it fails, so hyper drops the
/// connection without writing whatever it was about to write.
#[derive(Clone, Default)]
pub(crate) struct ConnectionSwitch(Arc<AtomicBool>);

impl ConnectionSwitch {
    pub(crate) fn cut(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for ConnectionSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnectionSwitch")
            .field(&self.is_cut())
            .finish()
    }
}

/// A TCP listener whose connections can be cut by the request they carry.
pub(crate) struct FaultListener(TcpListener);

impl FaultListener {
    pub(crate) fn new(listener: TcpListener) -> Self {
        FaultListener(listener)
    }
}

impl Listener for FaultListener {
    type Io = CuttableStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        let io = CuttableStream {
            stream,
            switch: ConnectionSwitch::default(),
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Listener::local_addr(&self.0)
    }
}

impl Connected<IncomingStream<'_, FaultListener>> for ConnectionSwitch {
    fn connect_info(stream: IncomingStream<'_, FaultListener>) -> Self {
        stream.io().switch.clone()
    }
}

/// A TCP stream that fails every read and write once its [`ConnectionSwitch`] is cut.
pub(crate) struct CuttableStream {
    stream: TcpStream,
    switch: ConnectionSwitch,
}

impl CuttableStream {
    fn check(&self) -> io::Result<()> {
        if self.switch.is_cut() {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection cut by fault injection",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_nonsense() {
        let plan: FaultPlan = "latency_ms=5, error_rate=0.25,drop_reply_rate=1,hang,seed=7"
            .parse()
            .unwrap();
        assert_eq!(
            plan,
            FaultPlan {
                error_rate: 0.25,
                delay_ms: 5,
                hang: true,
                drop_reply_rate: 1.0,
                seed: Some(7),
            }
        );
        assert!(plan.is_active());
        assert_eq!(
            "delay_ms=3,hang=false"
                .parse::<FaultPlan>()
                .unwrap()
                .delay_ms,
            3
        );
        assert!(!"".parse::<FaultPlan>().unwrap().is_active());
        assert!(!"none".parse::<FaultPlan>().unwrap().is_active());
        assert!("error_rate=1.5".parse::<FaultPlan>().is_err());
        assert!("error_rate=NaN".parse::<FaultPlan>().is_err());
        assert!("error_rate".parse::<FaultPlan>().is_err());
        assert!("hang=maybe".parse::<FaultPlan>().is_err());
        assert!("explode=1".parse::<FaultPlan>().is_err());
        assert!("hang_rate=0.5".parse::<FaultPlan>().is_err());
        assert!("delay_ms=-1".parse::<FaultPlan>().is_err());
    }

    #[test]
    fn json_is_validated_and_defaults_to_no_faults() {
        let plan: FaultPlan = serde_json::from_str(r#"{"error_rate": 0.5, "hang": true}"#).unwrap();
        assert_eq!(
            plan,
            FaultPlan {
                error_rate: 0.5,
                hang: true,
                ..FaultPlan::default()
            }
        );
        assert_eq!(
            serde_json::from_str::<FaultPlan>("{}").unwrap(),
            FaultPlan::default()
        );
        for bad in [
            r#"{"error_rate": 1.01}"#,
            r#"{"drop_reply_rate": -0.1}"#,
            r#"{"delay_ms": -5}"#,
            r#"{"hang": "yes"}"#,
            r#"{"explode": true}"#,
        ] {
            assert!(serde_json::from_str::<FaultPlan>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_value(FaultPlan::default()).unwrap(),
            serde_json::json!({"error_rate": 0.0, "delay_ms": 0, "hang": false, "drop_reply_rate": 0.0})
        );
    }

    #[test]
    fn a_seed_makes_the_dice_reproducible() {
        let plan = FaultPlan {
            error_rate: 0.5,
            seed: Some(42),
            ..FaultPlan::default()
        };
        let roll = |mut active: Active| (0..64).map(|_| active.decide().error).collect::<Vec<_>>();
        assert_eq!(roll(Active::new(plan)), roll(Active::new(plan)));
    }
}
