//! The invariant checker.
//!
//! A test records what it deposited and which sagas it submitted ([`Books`]); once faults stop
//! and every saga has settled, [`Books::observe`] reads the coordinator's saga states and the
//! participants' state ([`Observed`]) and [`Books::check`] compares the two:
//!
//! - every submitted saga was accepted and is `committed` or `aborted`;
//! - committed: the order exists, is `created` and carries the saga's account and amount;
//! - aborted: the order is absent or `cancelled`;
//! - points, per account: the account's points equal the sum of the points of its committed
//!   sagas (awarded exactly once for each committed saga, never for an aborted one);
//! - money, per account: initial deposits == balance + the amounts of its committed sagas,
//!   nothing frozen at quiescence, no negative balance or frozen amount, and no account the
//!   test never funded holds money.
//!
//! Points are checked per account, so a test that wants to pin a double award on one saga gives
//! each saga its own account, or distinct point values.
//!
//! The check reads every saga's order after the run, so it needs the participants' retention
//! (`--retention-secs`, default 1 hour) to be longer than the run and its check: the order
//! participant deletes a settled saga's order once its records are that old, and a committed
//! saga whose order was swept reads as [`Violation::OrderMissing`]. Barrier records are not
//! read, and balances are never swept.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::Context;
use futures::StreamExt;
use sagas::CoordinatorClient;
use sagas::api::SagaState;
use sagas::client::ClientError;

use crate::cluster::Cluster;
use crate::participant_api::{AccountView, OrderApi, OrderView, PointsApi, WalletApi};
use crate::workload::SagaPlan;

/// How many requests [`Books::observe_services`] (and `saga-bench`'s loadgen, setting up and
/// settling) has in flight at a time.
pub const READ_CONCURRENCY: usize = 64;

/// Where the books are read: the coordinator and the three participants.
#[derive(Debug, Clone, Copy)]
pub struct Services<'a> {
    /// The coordinator (any instance of a cluster).
    pub coordinator: &'a CoordinatorClient,
    /// The wallet's own API.
    pub wallet: &'a WalletApi,
    /// The order service's own API.
    pub order: &'a OrderApi,
    /// The points service's own API.
    pub points: &'a PointsApi,
}

impl<'a> Services<'a> {
    /// The services of a running cluster.
    pub fn of(cluster: &'a Cluster) -> Services<'a> {
        Services {
            coordinator: cluster.client(),
            wallet: cluster.wallet(),
            order: cluster.order(),
            points: cluster.points(),
        }
    }
}

/// `read` on every item, [`READ_CONCURRENCY`] at a time; the results in item order, or the
/// first error in item order.
async fn read_all<I: IntoIterator, T>(
    items: I,
    read: impl AsyncFn(I::Item) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let read = &read;
    futures::stream::iter(items)
        .map(|item| read(item))
        .buffered(READ_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// A submitted saga and the id the coordinator gave it (`None` if it was never accepted).
#[derive(Debug, Clone)]
pub struct SagaRecord {
    /// What was submitted.
    pub plan: SagaPlan,
    /// The id the coordinator acknowledged it with.
    pub saga_id: Option<String>,
}

/// What the test did: deposits and submitted sagas.
#[derive(Debug, Clone, Default)]
pub struct Books {
    deposits: BTreeMap<String, u64>,
    sagas: Vec<SagaRecord>,
}

/// What the services say after the run.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Saga id -> state; a saga the coordinator does not know is absent.
    pub sagas: BTreeMap<String, SagaState>,
    /// Every wallet account.
    pub accounts: BTreeMap<String, AccountView>,
    /// Order id -> order; `None` when the order service answers 404.
    pub orders: BTreeMap<String, Option<OrderView>>,
    /// Account -> points.
    pub points: BTreeMap<String, i64>,
}

/// One broken invariant, with what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// The test never got the saga accepted, so nothing can be said about it.
    NeverAccepted {
        /// Its idempotency key.
        key: String,
        /// The order it would have created.
        order_id: String,
    },
    /// The coordinator does not know a saga it acknowledged.
    SagaLost {
        /// Its idempotency key.
        key: String,
        /// The id the coordinator acknowledged it with.
        saga_id: String,
    },
    /// Not `committed` or `aborted` after the run.
    NotSettled {
        /// Its idempotency key.
        key: String,
        /// The saga.
        saga_id: String,
        /// The state it was found in.
        state: SagaState,
    },
    /// A committed saga whose order does not exist.
    OrderMissing {
        /// The saga.
        saga_id: String,
        /// The order it created.
        order_id: String,
    },
    /// The order's status is not what the saga's outcome requires.
    OrderStatus {
        /// The saga.
        saga_id: String,
        /// Its order.
        order_id: String,
        /// The saga's outcome.
        saga_state: SagaState,
        /// What the order's status should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// The order carries another account or amount than the saga's input.
    OrderContents {
        /// The saga.
        saga_id: String,
        /// Its order.
        order_id: String,
        /// The saga's account and amount.
        expected: (String, u64),
        /// The order's account and amount.
        found: (String, i64),
    },
    /// Points of an account differ from the sum over its committed sagas.
    Points {
        /// The account.
        account: String,
        /// The sum of the points of its committed sagas.
        expected: u64,
        /// What the points service holds.
        found: i64,
    },
    /// Deposits != balance + committed amounts.
    MoneyNotConserved {
        /// The account.
        account: String,
        /// What the test deposited.
        deposited: u64,
        /// The amounts of its committed sagas.
        committed: u64,
        /// `deposited - committed`.
        expected_balance: i64,
        /// What the wallet holds.
        found_balance: i64,
    },
    /// Money still frozen once every saga settled.
    FrozenAtRest {
        /// The account.
        account: String,
        /// What is frozen.
        frozen: i64,
    },
    /// A negative balance or frozen amount (seen at rest or, from a watch, mid-flight).
    Negative {
        /// The account.
        account: String,
        /// Its balance.
        balance: i64,
        /// Its frozen amount.
        frozen: i64,
        /// `at rest` or `mid-flight`.
        when: &'static str,
    },
    /// More frozen than the balance holds (seen mid-flight by a watch).
    FrozenExceedsBalance {
        /// The account.
        account: String,
        /// Its balance.
        balance: i64,
        /// Its frozen amount.
        frozen: i64,
    },
    /// A funded account the wallet does not know.
    AccountMissing {
        /// The account.
        account: String,
        /// What the test deposited.
        deposited: u64,
    },
    /// An account the test never funded holds money.
    UnexpectedAccount {
        /// The account.
        account: String,
        /// What the wallet says about it.
        view: AccountView,
    },
    /// A saga that asked for more than its account ever held committed.
    MustAbortCommitted {
        /// The saga.
        saga_id: String,
        /// Its account.
        account: String,
        /// What it asked for.
        amount: u64,
        /// Everything the account was ever funded with.
        funded: u64,
    },
    /// A service logged a Rust panic.
    ServicePanic {
        /// The service's name.
        service: String,
        /// The log line.
        line: String,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NeverAccepted { key, order_id } => write!(
                f,
                "saga with key {key} (order {order_id}) was never accepted by the coordinator"
            ),
            Violation::SagaLost { key, saga_id } => write!(
                f,
                "saga {saga_id} (key {key}) was acknowledged but the coordinator no longer knows it"
            ),
            Violation::NotSettled {
                key,
                saga_id,
                state,
            } => write!(
                f,
                "saga {saga_id} (key {key}) is {state}, expected committed or aborted"
            ),
            Violation::OrderMissing { saga_id, order_id } => write!(
                f,
                "saga {saga_id} is committed but order {order_id} does not exist"
            ),
            Violation::OrderStatus {
                saga_id,
                order_id,
                saga_state,
                expected,
                found,
            } => write!(
                f,
                "saga {saga_id} is {saga_state}: order {order_id} should be {expected}, found {found}"
            ),
            Violation::OrderContents {
                saga_id,
                order_id,
                expected,
                found,
            } => write!(
                f,
                "saga {saga_id}: order {order_id} should be (account {}, amount {}), \
                 found (account {}, amount {})",
                expected.0, expected.1, found.0, found.1
            ),
            Violation::Points {
                account,
                expected,
                found,
            } => write!(
                f,
                "account {account}: points should be {expected} (sum over its committed sagas), \
                 found {found}"
            ),
            Violation::MoneyNotConserved {
                account,
                deposited,
                committed,
                expected_balance,
                found_balance,
            } => write!(
                f,
                "account {account}: deposited {deposited}, committed sagas took {committed}, so \
                 balance should be {expected_balance}, found {found_balance} (difference {})",
                found_balance - expected_balance
            ),
            Violation::FrozenAtRest { account, frozen } => write!(
                f,
                "account {account}: {frozen} still frozen after every saga settled"
            ),
            Violation::Negative {
                account,
                balance,
                frozen,
                when,
            } => write!(
                f,
                "account {account}: negative amount {when} (balance {balance}, frozen {frozen})"
            ),
            Violation::FrozenExceedsBalance {
                account,
                balance,
                frozen,
            } => write!(
                f,
                "account {account}: frozen {frozen} exceeds balance {balance}"
            ),
            Violation::AccountMissing { account, deposited } => write!(
                f,
                "account {account} was funded with {deposited} but the wallet does not know it"
            ),
            Violation::UnexpectedAccount { account, view } => write!(
                f,
                "account {account} was never funded by the test but holds balance {} frozen {}",
                view.balance, view.frozen
            ),
            Violation::MustAbortCommitted {
                saga_id,
                account,
                amount,
                funded,
            } => write!(
                f,
                "saga {saga_id} committed {amount} on account {account}, which was only ever \
                 funded with {funded}: it must have aborted"
            ),
            Violation::ServicePanic { service, line } => {
                write!(f, "{service} panicked: {line}")
            }
        }
    }
}

/// The result of a check: violations plus counts, printable as a report.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// Every broken invariant.
    pub violations: Vec<Violation>,
    /// Sagas found committed.
    pub committed: usize,
    /// Sagas found aborted.
    pub aborted: usize,
    /// Aborted sagas that asked for more than their account was ever funded with.
    pub must_abort: usize,
    /// Sagas neither committed nor aborted (never accepted, lost, or in another state).
    pub other: usize,
}

impl Audit {
    /// No violation found.
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Err` unless some sagas committed and others aborted: a fault run that did not exercise
    /// both outcomes proves little.
    pub fn ensure_commits_and_aborts(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.committed > 0 && self.aborted > 0,
            "a crash run must commit some sagas and abort others: {self}"
        );
        Ok(())
    }

    /// `Err` with the report when anything is violated.
    pub fn into_result(self) -> anyhow::Result<Audit> {
        if self.is_clean() {
            Ok(self)
        } else {
            Err(anyhow::anyhow!("{self}"))
        }
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "books: {} committed, {} aborted, {} other; {} violation(s)",
            self.committed,
            self.aborted,
            self.other,
            self.violations.len()
        )?;
        const SHOWN: usize = 50;
        for violation in self.violations.iter().take(SHOWN) {
            write!(f, "\n  - {violation}")?;
        }
        if self.violations.len() > SHOWN {
            write!(f, "\n  ... and {} more", self.violations.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl Books {
    /// Empty books: nothing funded, no saga recorded.
    pub fn new() -> Books {
        Books::default()
    }

    /// Books of `accounts` accounts `{prefix}-0`, `{prefix}-1`, ..., each funded with `amount`
    /// through `wallet`.
    pub async fn funded(
        wallet: &WalletApi,
        prefix: &str,
        accounts: usize,
        amount: u64,
    ) -> anyhow::Result<Books> {
        let mut books = Books::new();
        for i in 0..accounts {
            books.fund(wallet, &format!("{prefix}-{i}"), amount).await?;
        }
        Ok(books)
    }

    /// Deposits `amount` into `account` through `wallet` and records it.
    pub async fn fund(
        &mut self,
        wallet: &WalletApi,
        account: &str,
        amount: u64,
    ) -> anyhow::Result<()> {
        wallet
            .deposit(account, amount)
            .await
            .with_context(|| format!("funding {account}"))?;
        self.deposit(account, amount);
        Ok(())
    }

    /// Records a deposit the test made.
    pub fn deposit(&mut self, account: &str, amount: u64) {
        *self.deposits.entry(account.into()).or_default() += amount;
    }

    /// Records a submitted saga and the id the coordinator gave it, if any.
    pub fn record(&mut self, plan: SagaPlan, saga_id: Option<String>) {
        self.sagas.push(SagaRecord { plan, saga_id });
    }

    /// The sagas recorded so far, in the order they were recorded.
    pub fn sagas(&self) -> &[SagaRecord] {
        &self.sagas
    }

    /// What the test deposited per account.
    pub fn deposits(&self) -> &BTreeMap<String, u64> {
        &self.deposits
    }

    /// Every account the test funded or used in a saga.
    fn accounts(&self) -> BTreeSet<String> {
        self.deposits
            .keys()
            .cloned()
            .chain(self.sagas.iter().map(|s| s.plan.account.clone()))
            .collect()
    }

    /// Reads saga states from the coordinator and the participants' state.
    pub async fn observe(&self, cluster: &Cluster) -> anyhow::Result<Observed> {
        self.observe_services(Services::of(cluster)).await
    }

    /// [`Books::observe`] against any coordinator and participants (up to
    /// [`READ_CONCURRENCY`] requests at a time).
    pub async fn observe_services(&self, services: Services<'_>) -> anyhow::Result<Observed> {
        let ids = self.sagas.iter().filter_map(|r| r.saga_id.as_ref());
        let sagas = read_all(ids, async |id| {
            match services.coordinator.get_saga(id).await {
                Ok(view) => Ok(Some((id.clone(), view.state))),
                Err(ClientError::Api { status: 404, .. }) => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading saga {id}")),
            }
        })
        .await?;
        let accounts = services
            .wallet
            .accounts()
            .await
            .context("reading wallet accounts")?;
        let order_ids = self.sagas.iter().map(|r| &r.plan.order_id);
        let orders = read_all(order_ids, async |order_id| {
            let order = services
                .order
                .order(order_id)
                .await
                .with_context(|| format!("reading order {order_id}"))?;
            Ok((order_id.clone(), order))
        })
        .await?;
        let points = read_all(self.accounts(), async |account| {
            let points = services
                .points
                .points(&account)
                .await
                .with_context(|| format!("reading points of {account}"))?;
            Ok((account, points))
        })
        .await?;
        Ok(Observed {
            sagas: sagas.into_iter().flatten().collect(),
            accounts,
            orders: orders.into_iter().collect(),
            points: points.into_iter().collect(),
        })
    }

    /// Observes and checks in one go.
    pub async fn audit(&self, cluster: &Cluster) -> anyhow::Result<Audit> {
        Ok(self.check(&self.observe(cluster).await?))
    }

    /// Compares what the test did with what the services say. Pure.
    pub fn check(&self, observed: &Observed) -> Audit {
        let mut audit = Audit::default();
        let mut committed_amount: BTreeMap<&str, u64> = BTreeMap::new();
        let mut committed_points: BTreeMap<&str, u64> = BTreeMap::new();

        for record in &self.sagas {
            let plan = &record.plan;
            let Some(id) = &record.saga_id else {
                audit.other += 1;
                audit.violations.push(Violation::NeverAccepted {
                    key: plan.key.clone(),
                    order_id: plan.order_id.clone(),
                });
                continue;
            };
            let Some(&state) = observed.sagas.get(id) else {
                audit.other += 1;
                audit.violations.push(Violation::SagaLost {
                    key: plan.key.clone(),
                    saga_id: id.clone(),
                });
                continue;
            };
            let order = observed.orders.get(&plan.order_id).cloned().flatten();
            let funded = self.deposits.get(&plan.account).copied().unwrap_or(0);
            match state {
                SagaState::Committed => {
                    audit.committed += 1;
                    if plan.amount > funded {
                        audit.violations.push(Violation::MustAbortCommitted {
                            saga_id: id.clone(),
                            account: plan.account.clone(),
                            amount: plan.amount,
                            funded,
                        });
                    }
                    *committed_amount.entry(&plan.account).or_default() += plan.amount;
                    *committed_points.entry(&plan.account).or_default() += plan.points;
                    match order {
                        None => audit.violations.push(Violation::OrderMissing {
                            saga_id: id.clone(),
                            order_id: plan.order_id.clone(),
                        }),
                        Some(order) => {
                            if order.status != "created" {
                                audit.violations.push(Violation::OrderStatus {
                                    saga_id: id.clone(),
                                    order_id: plan.order_id.clone(),
                                    saga_state: state,
                                    expected: "created",
                                    found: order.status.clone(),
                                });
                            }
                            check_order_contents(&mut audit, id, plan, &order);
                        }
                    }
                }
                SagaState::Aborted => {
                    audit.aborted += 1;
                    if plan.amount > funded {
                        audit.must_abort += 1;
                    }
                    if let Some(order) = order {
                        if order.status != "cancelled" {
                            audit.violations.push(Violation::OrderStatus {
                                saga_id: id.clone(),
                                order_id: plan.order_id.clone(),
                                saga_state: state,
                                expected: "absent or cancelled",
                                found: order.status.clone(),
                            });
                        }
                        check_order_contents(&mut audit, id, plan, &order);
                    }
                }
                other => {
                    audit.other += 1;
                    audit.violations.push(Violation::NotSettled {
                        key: plan.key.clone(),
                        saga_id: id.clone(),
                        state: other,
                    });
                }
            }
        }

        for account in self.accounts() {
            let expected = committed_points.get(account.as_str()).copied().unwrap_or(0);
            let found = observed.points.get(&account).copied().unwrap_or(0);
            if i128::from(found) != i128::from(expected) {
                audit.violations.push(Violation::Points {
                    account: account.clone(),
                    expected,
                    found,
                });
            }
        }

        for (account, view) in &observed.accounts {
            if view.balance < 0 || view.frozen < 0 {
                audit.violations.push(Violation::Negative {
                    account: account.clone(),
                    balance: view.balance,
                    frozen: view.frozen,
                    when: "at rest",
                });
            }
            if view.frozen != 0 {
                audit.violations.push(Violation::FrozenAtRest {
                    account: account.clone(),
                    frozen: view.frozen,
                });
            }
            if !self.deposits.contains_key(account) && (view.balance != 0 || view.frozen != 0) {
                audit.violations.push(Violation::UnexpectedAccount {
                    account: account.clone(),
                    view: *view,
                });
            }
        }
        for (account, &deposited) in &self.deposits {
            let committed = committed_amount.get(account.as_str()).copied().unwrap_or(0);
            let Some(view) = observed.accounts.get(account) else {
                audit.violations.push(Violation::AccountMissing {
                    account: account.clone(),
                    deposited,
                });
                continue;
            };
            let expected_balance = i128::from(deposited) - i128::from(committed);
            if i128::from(view.balance) != expected_balance {
                audit.violations.push(Violation::MoneyNotConserved {
                    account: account.clone(),
                    deposited,
                    committed,
                    expected_balance: i64::try_from(expected_balance).unwrap_or(i64::MIN),
                    found_balance: view.balance,
                });
            }
        }
        // Sagas on accounts the test never funded must all have aborted; money taken from
        // such an account shows up above as an unexpected or negative account.
        audit
    }
}

fn check_order_contents(audit: &mut Audit, saga_id: &str, plan: &SagaPlan, order: &OrderView) {
    if order.account != plan.account || i128::from(order.amount) != i128::from(plan.amount) {
        audit.violations.push(Violation::OrderContents {
            saga_id: saga_id.into(),
            order_id: plan.order_id.clone(),
            expected: (plan.account.clone(), plan.amount),
            found: (order.account.clone(), order.amount),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(i: usize, account: &str, amount: u64, points: u64) -> SagaPlan {
        SagaPlan::new("t", i, account, amount, points)
    }

    fn order(status: &str, account: &str, amount: i64) -> Option<OrderView> {
        Some(OrderView {
            status: status.into(),
            account: account.into(),
            amount,
        })
    }

    /// Two sagas on one account: one committed, one aborted, books balanced.
    fn balanced() -> (Books, Observed) {
        let mut books = Books::new();
        books.deposit("alice", 100);
        books.record(plan(0, "alice", 60, 5), Some("s0".into()));
        books.record(plan(1, "alice", 60, 7), Some("s1".into()));
        let mut observed = Observed::default();
        observed.sagas.insert("s0".into(), SagaState::Committed);
        observed.sagas.insert("s1".into(), SagaState::Aborted);
        observed.accounts.insert(
            "alice".into(),
            AccountView {
                balance: 40,
                frozen: 0,
            },
        );
        observed
            .orders
            .insert("t-order-0".into(), order("created", "alice", 60));
        observed
            .orders
            .insert("t-order-1".into(), order("cancelled", "alice", 60));
        observed.points.insert("alice".into(), 5);
        (books, observed)
    }

    #[test]
    fn balanced_books_pass() {
        let (books, observed) = balanced();
        let audit = books.check(&observed);
        assert!(audit.is_clean(), "{audit}");
        assert_eq!((audit.committed, audit.aborted), (1, 1));
    }

    #[test]
    fn a_saga_asking_for_more_than_was_ever_funded_must_abort() {
        let mut books = Books::new();
        books.deposit("bob", 100);
        books.record(plan(0, "bob", 500, 1), Some("big-aborted".into()));
        books.record(plan(1, "bob", 500, 1), Some("big-committed".into()));
        let mut observed = Observed::default();
        observed
            .sagas
            .insert("big-aborted".into(), SagaState::Aborted);
        observed
            .sagas
            .insert("big-committed".into(), SagaState::Committed);
        let audit = books.check(&observed);
        assert_eq!(audit.must_abort, 1);
        assert!(audit.violations.contains(&Violation::MustAbortCommitted {
            saga_id: "big-committed".into(),
            account: "bob".into(),
            amount: 500,
            funded: 100,
        }));
    }

    #[test]
    fn aborted_saga_may_leave_no_order() {
        let (books, mut observed) = balanced();
        observed.orders.insert("t-order-1".into(), None);
        assert!(books.check(&observed).is_clean());
    }

    #[test]
    fn double_deduction_is_caught() {
        let (books, mut observed) = balanced();
        observed.accounts.get_mut("alice").unwrap().balance = -20;
        let audit = books.check(&observed);
        assert!(audit.violations.contains(&Violation::MoneyNotConserved {
            account: "alice".into(),
            deposited: 100,
            committed: 60,
            expected_balance: 40,
            found_balance: -20,
        }));
        assert!(
            audit
                .violations
                .iter()
                .any(|v| matches!(v, Violation::Negative { .. }))
        );
    }

    #[test]
    fn leftovers_of_an_aborted_saga_are_caught() {
        let (books, mut observed) = balanced();
        observed
            .orders
            .insert("t-order-1".into(), order("created", "alice", 60));
        observed.points.insert("alice".into(), 12);
        observed.accounts.get_mut("alice").unwrap().frozen = 60;
        let audit = books.check(&observed);
        let text = audit.to_string();
        assert_eq!(audit.violations.len(), 3, "{text}");
        assert!(text.contains("order t-order-1 should be absent or cancelled, found created"));
        assert!(text.contains("points should be 5"));
        assert!(text.contains("60 still frozen"));
    }

    #[test]
    fn unsettled_and_lost_sagas_are_caught() {
        let (mut books, mut observed) = balanced();
        observed.sagas.insert("s1".into(), SagaState::Stuck);
        books.record(plan(2, "alice", 1, 1), Some("gone".into()));
        books.record(plan(3, "alice", 1, 1), None);
        let audit = books.check(&observed);
        assert_eq!(audit.violations.len(), 3, "{audit}");
        assert!(audit.violations.contains(&Violation::NotSettled {
            key: "t-key-1".into(),
            saga_id: "s1".into(),
            state: SagaState::Stuck,
        }));
        assert!(audit.violations.contains(&Violation::SagaLost {
            key: "t-key-2".into(),
            saga_id: "gone".into(),
        }));
    }

    #[test]
    fn committed_saga_without_order_is_caught() {
        let (books, mut observed) = balanced();
        observed.orders.insert("t-order-0".into(), None);
        let audit = books.check(&observed);
        assert_eq!(
            audit.violations,
            vec![Violation::OrderMissing {
                saga_id: "s0".into(),
                order_id: "t-order-0".into()
            }]
        );
    }
}
