//! This instance's place in a cluster of coordinators sharing one store: keeping its lease,
//! claiming the sagas of instances that died, and giving up everything when its own lease ran
//! out (a pause longer than the lease, a database out of reach).
//!
//! While its lease is valid by the local clock, an instance drives its sagas. Every task asks
//! [`Runtime::may_send`] before it sends calls: once the lease may have expired, other
//! instances may be driving the same sagas, so nothing more is sent or written here. The
//! instance then drops every saga from memory, joins again as a new incarnation, and claims
//! orphans like any other instance (its own old sagas among them once its old lease expired
//! in the store). On a single instance (sled) the lease never expires and none of this runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Runtime;
use super::operator::Refusal;
use crate::clock;
use crate::engine::Millis;
use crate::store::Lease;

/// The part of a renewed lease the local clock trusts: clocks of instances and the database
/// may run at slightly different rates, so an instance stops before its lease expires in the
/// store.
pub(super) const TRUSTED_SHARE: f64 = 0.8;

impl Runtime {
    /// Whether this instance may still send calls and write for its sagas: its lease is valid
    /// by the local clock. Noticing that it is not starts giving everything up.
    pub(super) fn may_send(self: &Arc<Self>) -> bool {
        if self.clock.now() < self.lease_valid_until.load(Ordering::Acquire) {
            return true;
        }
        self.lose_incarnation();
        false
    }

    /// The token this incarnation's saga tasks stop on.
    pub(super) fn incarnation(&self) -> CancellationToken {
        self.incarnation
            .lock()
            .expect("incarnation lock poisoned")
            .clone()
    }

    /// Marks the lease valid for `valid_for` from `sent` (when the renewal was sent).
    fn lease_renewed(&self, sent: Millis, valid_for: Option<Duration>) {
        let until = match valid_for {
            Some(d) => clock::later(sent, d.mul_f64(TRUSTED_SHARE)),
            None => Millis::MAX,
        };
        self.lease_valid_until.store(until, Ordering::Release);
    }

    /// Renews this instance's lease three times per lease (the first renewal at once), until
    /// shutdown. A no-op on a single instance.
    ///
    /// Started as soon as the store is joined, before anything else of start-up, so that a slow
    /// start (loading the registry, workflow files) does not cost the instance its first lease.
    pub fn start_lease_keeping(self: &Arc<Self>, lease: Duration) {
        if !self.store.clustered() {
            return;
        }
        let runtime = self.clone();
        self.tasks.spawn(async move {
            let mut renew = tokio::time::interval(lease / 3);
            renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = renew.tick() => runtime.handle_renewal().await,
                    _ = runtime.shutdown.cancelled() => return,
                }
            }
        });
    }

    /// Claims the sagas of instances that are gone, five times per lease, until shutdown. A
    /// task of its own: a large claim (thousands of sagas to read and resume) must not hold
    /// up the renewals of the lease it depends on. A no-op on a single instance, whose
    /// recovery resumes everything.
    pub fn start_claiming(self: &Arc<Self>, lease: Duration) {
        if !self.store.clustered() {
            return;
        }
        let runtime = self.clone();
        self.tasks.spawn(async move {
            let mut claim = tokio::time::interval(lease / 5);
            claim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Recovery makes the first claim.
            claim.tick().await;
            loop {
                tokio::select! {
                    _ = claim.tick() => runtime.handle_claim().await,
                    _ = runtime.shutdown.cancelled() => return,
                }
            }
        });
    }

    async fn handle_renewal(self: &Arc<Self>) {
        let sent = self.clock.now();
        match self.store.renew().await {
            Ok(Lease::Held(valid_for)) => self.lease_renewed(sent, valid_for),
            Ok(Lease::Lost) => {
                tracing::error!(
                    "this coordinator's lease expired; its sagas may be driven elsewhere"
                );
                self.lose_incarnation();
            }
            // Still valid until the local deadline; `may_send` gives up after it.
            Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
        }
        if self.clock.now() >= self.lease_valid_until.load(Ordering::Acquire) {
            self.lose_incarnation();
        }
        if self.rejoining.swap(false, Ordering::AcqRel) {
            self.rejoin().await;
        }
    }

    async fn handle_claim(self: &Arc<Self>) {
        if !self.may_send() || self.rejoining.load(Ordering::Acquire) {
            return;
        }
        match self.claim_orphans().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sagas = n, "took over sagas of a coordinator that is gone"),
            Err(e) => tracing::warn!(error = %e, "claiming orphaned sagas failed; retrying"),
        }
    }

    /// Stops driving every saga at once (tasks stop on the incarnation's token without writing
    /// or sending; parked sagas leave the map) and asks the lease loop to rejoin.
    fn lose_incarnation(&self) {
        let fresh = CancellationToken::new();
        let old = std::mem::replace(
            &mut *self.incarnation.lock().expect("incarnation lock poisoned"),
            fresh,
        );
        if old.is_cancelled() {
            return;
        }
        old.cancel();
        self.lease_valid_until.store(0, Ordering::Release);
        for slot in self.active.take_all() {
            for (_, reply) in slot.stop() {
                let _ = reply.send(Err(Refusal::Moved(slot.state().id.clone())));
            }
        }
        self.rejoining.store(true, Ordering::Release);
    }

    /// Joins the cluster again as a new incarnation, retrying until it can.
    async fn rejoin(self: &Arc<Self>) {
        loop {
            let sent = self.clock.now();
            match self.store.rejoin().await {
                Ok(()) => {
                    self.lease_renewed(sent, Some(self.lease));
                    tracing::info!("rejoined the cluster; claiming orphaned sagas");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "rejoining the cluster failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.lease / 5) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }
}
