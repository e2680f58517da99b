//! A background poller of the wallet that catches invariants broken while sagas run: a
//! negative balance or frozen amount, or more frozen than the balance holds. Such states may be
//! repaired before quiescence, so the final [`crate::books`] check alone would miss them.
//!
//! Polling errors (the wallet being restarted, say) are counted, not fatal.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::books::Violation;
use crate::participant_api::WalletApi;

/// What a watch saw.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    /// The first violation seen per account and kind.
    pub violations: Vec<Violation>,
    /// Successful polls.
    pub polls: u64,
    /// Polls that got no usable answer.
    pub failed_polls: u64,
}

impl WatchReport {
    /// `Err` listing what the watch saw go wrong mid-flight, if anything.
    pub fn ensure_clean(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.violations.is_empty(),
            "the wallet went wrong mid-flight ({} polls): {:?}",
            self.polls,
            self.violations
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        Ok(())
    }
}

/// Polls `GET /accounts` every `interval` until stopped.
#[derive(Debug)]
pub struct BalanceWatch {
    stop: Arc<AtomicBool>,
    task: JoinHandle<WatchReport>,
}

impl BalanceWatch {
    /// Polls every account of `wallet` every `interval` until [`BalanceWatch::stop`].
    pub fn start(wallet: WalletApi, interval: Duration) -> BalanceWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut report = WatchReport::default();
            let mut seen: BTreeSet<(String, &'static str)> = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                match wallet.accounts().await {
                    Ok(accounts) => {
                        report.polls += 1;
                        for (account, view) in accounts {
                            if (view.balance < 0 || view.frozen < 0)
                                && seen.insert((account.clone(), "negative"))
                            {
                                report.violations.push(Violation::Negative {
                                    account: account.clone(),
                                    balance: view.balance,
                                    frozen: view.frozen,
                                    when: "mid-flight",
                                });
                            }
                            if view.frozen > view.balance
                                && seen.insert((account.clone(), "frozen"))
                            {
                                report.violations.push(Violation::FrozenExceedsBalance {
                                    account,
                                    balance: view.balance,
                                    frozen: view.frozen,
                                });
                            }
                        }
                    }
                    Err(_) => report.failed_polls += 1,
                }
                tokio::time::sleep(interval).await;
            }
            report
        });
        BalanceWatch { stop, task }
    }

    /// Stops polling and returns what was seen. An error when the watch task died or never
    /// read the balances once: then it proved nothing.
    pub async fn stop(self) -> anyhow::Result<WatchReport> {
        self.stop.store(true, Ordering::Relaxed);
        let report = self
            .task
            .await
            .map_err(|e| anyhow::anyhow!("the balance watch died: {e}"))?;
        anyhow::ensure!(
            report.polls > 0,
            "the balance watch never read the balances ({} failed polls)",
            report.failed_polls
        );
        Ok(report)
    }
}
