//! A steady `place_order` load for process tests: clients that each run sagas one after
//! another (submit, then poll until settled) until told to stop, recording every saga for the
//! books.
//!
//! Each client sends to its own [`FailoverClient`] (an instance of a cluster first, the next
//! ones when it does not answer), so a load started on one instance goes on through its
//! death. A client resubmits with the same idempotency key on transport errors, `429` and
//! `5xx` until the deadline; past it the client fails and so does [`SteadyLoad::finish`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::books::SagaRecord;
use crate::failover::FailoverClient;
use crate::workload::{SagaPlan, await_settled, submit_until_accepted};

/// What the sagas look like.
#[derive(Debug, Clone)]
pub struct LoadShape {
    /// Prefix of keys and order ids: unique per load.
    pub tag: String,
    /// Accounts the sagas use, in turn.
    pub accounts: Vec<String>,
    /// Every `must_abort_every`-th saga asks for more than any account holds and must abort;
    /// 0 for none.
    pub must_abort_every: usize,
    /// Amount of the first saga of a client; the next ones grow by one, wrapping at 100.
    pub base_amount: u64,
    /// Clients give up on a saga (and the load fails) past this.
    pub deadline: Instant,
}

/// What more than any account holds.
const TOO_MUCH: u64 = 1_000_000_000;

/// Counters shared with the clients.
#[derive(Debug, Default)]
struct Progress {
    /// Sagas a client began to submit.
    started: AtomicU64,
    /// Sagas acknowledged (they have an id).
    accepted: AtomicU64,
    /// Sagas seen committed or aborted.
    settled: AtomicU64,
    /// Clients stop starting sagas once set.
    stopping: AtomicBool,
}

/// Clients running sagas until stopped. Dropping it aborts them.
#[derive(Debug)]
pub struct SteadyLoad {
    progress: Arc<Progress>,
    records: Arc<Mutex<Vec<SagaRecord>>>,
    clients: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl SteadyLoad {
    /// One client per element of `clients`, running sagas shaped by `shape`.
    pub fn start(clients: Vec<FailoverClient>, shape: &LoadShape) -> SteadyLoad {
        let progress = Arc::new(Progress::default());
        let records = Arc::new(Mutex::new(Vec::new()));
        let clients = clients
            .into_iter()
            .enumerate()
            .map(|(index, client)| {
                tokio::spawn(client_loop(
                    index,
                    client,
                    shape.clone(),
                    progress.clone(),
                    records.clone(),
                ))
            })
            .collect();
        SteadyLoad {
            progress,
            records,
            clients,
        }
    }

    /// Sagas clients began to submit so far.
    pub fn started(&self) -> u64 {
        self.progress.started.load(Ordering::Relaxed)
    }

    /// Sagas acknowledged so far.
    pub fn accepted(&self) -> u64 {
        self.progress.accepted.load(Ordering::Relaxed)
    }

    /// Sagas seen settled so far.
    pub fn settled(&self) -> u64 {
        self.progress.settled.load(Ordering::Relaxed)
    }

    /// No client starts another saga; those under way go on (see [`SteadyLoad::finish`]).
    pub fn stop_starting(&self) {
        self.progress.stopping.store(true, Ordering::Relaxed);
    }

    /// Stops starting sagas, waits until every client saw its last one settle, and returns
    /// every saga started, in no particular order. Fails with the first client's error.
    pub async fn finish(mut self) -> anyhow::Result<Vec<SagaRecord>> {
        self.stop_starting();
        for client in std::mem::take(&mut self.clients) {
            client.await.context("a load client panicked")??;
        }
        Ok(std::mem::take(
            &mut *self.records.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Drop for SteadyLoad {
    fn drop(&mut self) {
        for client in &self.clients {
            client.abort();
        }
    }
}

async fn client_loop(
    index: usize,
    client: FailoverClient,
    shape: LoadShape,
    progress: Arc<Progress>,
    records: Arc<Mutex<Vec<SagaRecord>>>,
) -> anyhow::Result<()> {
    let tag = format!("{}-c{index}", shape.tag);
    let mut n = 0;
    while !progress.stopping.load(Ordering::Relaxed) {
        let account = &shape.accounts[(index + n) % shape.accounts.len()];
        let must_abort = shape.must_abort_every > 0 && n % shape.must_abort_every == 0;
        let amount = if must_abort {
            TOO_MUCH
        } else {
            1 + (shape.base_amount + n as u64) % 100
        };
        let plan = SagaPlan::new(&tag, n, account, amount, amount % 17 + 1);
        n += 1;
        progress.started.fetch_add(1, Ordering::Relaxed);
        let submitted = submit_until_accepted(&client, &plan, None, shape.deadline).await;
        let saga_id = submitted.as_ref().ok().map(|s| s.saga.id.clone());
        records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SagaRecord {
                plan: plan.clone(),
                saga_id: saga_id.clone(),
            });
        let id = submitted?.saga.id;
        progress.accepted.fetch_add(1, Ordering::Relaxed);
        await_settled(&client, &id, shape.deadline).await?;
        progress.settled.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
