//! Fault injection on branch calls, for the chaos harness (`--faults SPEC`).
//!
//! `SPEC` is a comma-separated list of `key=value`:
//! - `latency_ms=N`: every branch call waits N ms before it is handled;
//! - `error_rate=P`: with probability P, answer `503` without handling the call;
//! - `hang_rate=P`: with probability P, hold the call for `hang_ms` without handling it,
//!   then answer `503` (the coordinator has timed out by then);
//! - `drop_reply_rate=P`: with probability P, handle (and commit) the call, then hold the
//!   reply for `hang_ms` and answer `503` instead: the coordinator sees a timeout for work that
//!   was done, the case the barrier's stored replies exist for;
//! - `hang_ms=N`: how long hangs and dropped replies last (default 30000); a shutdown ends
//!   them early;
//! - `seed=N`: makes the fault schedule reproducible.
//!
//! Only the branch endpoints are affected; admin and health routes never fail.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::barrier::BranchReply;

/// What faults to inject; all off by default.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub latency: Duration,
    pub error_rate: f64,
    pub hang_rate: f64,
    pub drop_reply_rate: f64,
    pub hang: Duration,
    pub seed: Option<u64>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            latency: Duration::ZERO,
            error_rate: 0.0,
            hang_rate: 0.0,
            drop_reply_rate: 0.0,
            hang: Duration::from_secs(30),
            seed: None,
        }
    }
}

impl FaultPlan {
    pub fn is_active(&self) -> bool {
        !self.latency.is_zero()
            || self.error_rate > 0.0
            || self.hang_rate > 0.0
            || self.drop_reply_rate > 0.0
    }
}

impl FromStr for FaultPlan {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut plan = FaultPlan::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            let millis = || {
                value
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| format!("{key}: {e}"))
            };
            let rate = || match value.parse::<f64>() {
                Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
                _ => Err(format!("{key}: {value:?} is not a probability in [0, 1]")),
            };
            match key {
                "latency_ms" => plan.latency = millis()?,
                "hang_ms" => plan.hang = millis()?,
                "error_rate" => plan.error_rate = rate()?,
                "hang_rate" => plan.hang_rate = rate()?,
                "drop_reply_rate" => plan.drop_reply_rate = rate()?,
                "seed" => plan.seed = Some(value.parse().map_err(|e| format!("seed: {e}"))?),
                _ => return Err(format!("unknown fault {key:?}")),
            }
        }
        Ok(plan)
    }
}

/// The fault layer's state: the plan, the branch paths it applies to, its dice, and the
/// shutdown signal that cuts hangs short.
#[derive(Clone)]
pub(crate) struct FaultInjector {
    plan: Arc<FaultPlan>,
    branch_paths: Arc<BTreeSet<String>>,
    rng: Arc<Mutex<StdRng>>,
    stopping: watch::Receiver<bool>,
}

impl FaultInjector {
    pub(crate) fn new(
        plan: FaultPlan,
        branch_paths: BTreeSet<String>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let rng = match plan.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        FaultInjector {
            plan: Arc::new(plan),
            branch_paths: Arc::new(branch_paths),
            rng: Arc::new(Mutex::new(rng)),
            stopping,
        }
    }

    fn roll(&self, probability: f64) -> bool {
        probability > 0.0
            && self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .random_bool(probability)
    }

    /// Waits `plan.hang`, or less if the participant is shutting down.
    async fn hang(&self) {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(self.plan.hang) => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
}

fn injected(message: &str) -> Response {
    BranchReply::error(503, "injected_fault", message).into_response()
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
    if !faults.plan.latency.is_zero() {
        tokio::time::sleep(faults.plan.latency).await;
    }
    if faults.roll(faults.plan.error_rate) {
        tracing::info!(path = req.uri().path(), "fault: error before handling");
        return injected("injected error; the call was not handled");
    }
    if faults.roll(faults.plan.hang_rate) {
        tracing::info!(path = req.uri().path(), "fault: hang before handling");
        faults.hang().await;
        return injected("injected hang; the call was not handled");
    }
    let drop_reply = faults.roll(faults.plan.drop_reply_rate);
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    if drop_reply {
        tracing::info!(%path, status = %response.status(), "fault: reply dropped after handling");
        faults.hang().await;
        return injected("injected dropped reply; the call WAS handled");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_refuses_nonsense() {
        let plan: FaultPlan = "latency_ms=5, error_rate=0.25,drop_reply_rate=1,hang_ms=10,seed=7"
            .parse()
            .unwrap();
        assert_eq!(plan.latency, Duration::from_millis(5));
        assert_eq!(plan.error_rate, 0.25);
        assert_eq!(plan.drop_reply_rate, 1.0);
        assert_eq!(plan.hang, Duration::from_millis(10));
        assert_eq!(plan.seed, Some(7));
        assert!(plan.is_active());
        assert!(!"".parse::<FaultPlan>().unwrap().is_active());
        assert!("error_rate=1.5".parse::<FaultPlan>().is_err());
        assert!("error_rate".parse::<FaultPlan>().is_err());
        assert!("explode=1".parse::<FaultPlan>().is_err());
        assert!("latency_ms=-1".parse::<FaultPlan>().is_err());
    }
}
