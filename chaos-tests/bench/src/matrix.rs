//! What the benchmark runs: rows (one load shape each) grouped in suites, and the standard
//! matrix of issue 5.
//!
//! A [`Row`] is a closed-loop load: `clients` concurrent clients, a share of sagas that must
//! abort, against participants that do their work or answer at once (`--no-work`), on
//! coordinators that keep their log in sled (one) or PostgreSQL (one or several sharing a
//! database). Its name says all four (`64c`, `64c-abort10`, `64c-no-work`, `64c-no-work-pg`,
//! `64c-pg3`), and a row with aborts is compared with its [`Row::baseline`], the row of the
//! same concurrency and store where every saga commits.
//!
//! A [`Suite`] is a list of rows that answer one question; a suite with a chart series is
//! drawn as one line against concurrency. To add a suite, add it to [`standard`]; `--only`
//! then selects it by its name or its rows by theirs. The recovery suite
//! ([`crate::recovery`]) is no load and has no rows; [`select`] picks it by its name.

use std::collections::BTreeSet;

use anyhow::bail;
use serde::Serialize;

use crate::recovery::SUITE as RECOVERY_SUITE;
use crate::soak::SUITE as SOAK_SUITE;

/// What the participants do with a branch call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Participants {
    /// The real wallet, order and points: barrier, business change, durable reply.
    Working,
    /// Started with `--no-work`: every branch call answered `200` at once, so only the
    /// coordinator's own cost is left.
    NoWork,
}

/// Where the coordinators of a row keep their saga log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Store {
    /// One coordinator on its embedded sled log.
    Sled,
    /// `instances` coordinators on one PostgreSQL database (a server of the run's own); the
    /// clients spread over them.
    Postgres {
        /// Coordinator processes.
        instances: usize,
    },
}

impl Store {
    /// Coordinator processes.
    pub fn instances(self) -> usize {
        match self {
            Store::Sled => 1,
            Store::Postgres { instances } => instances,
        }
    }
}

/// One load shape: closed loop, `clients` clients, `abort_ratio` of sagas that must abort.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `64c`, `64c-abort10`, `64c-no-work`, ...
    pub name: String,
    /// Concurrent closed-loop clients.
    pub clients: usize,
    /// Share of sagas asking for more than their account holds, so they must abort.
    pub abort_ratio: f64,
    /// What the participants do with a call.
    pub participants: Participants,
    /// Where the coordinators keep their log, and how many run.
    pub store: Store,
}

impl Row {
    /// A row on sled named after what it runs (`64c`, `64c-abort10`, `64c-no-work`).
    pub fn new(clients: usize, abort_ratio: f64, participants: Participants) -> Row {
        Row {
            name: row_name(clients, abort_ratio, participants, Store::Sled),
            clients,
            abort_ratio,
            participants,
            store: Store::Sled,
        }
    }

    /// The same load on `instances` coordinators sharing a PostgreSQL database, named with
    /// `-pg` (one instance) or `-pgN`.
    pub fn on_postgres(self, instances: usize) -> Row {
        let store = Store::Postgres { instances };
        Row {
            name: row_name(self.clients, self.abort_ratio, self.participants, store),
            store,
            ..self
        }
    }

    /// Whether the books can be checked after a run: not when the participants do nothing.
    pub fn verifies(&self) -> bool {
        self.participants == Participants::Working
    }

    /// The row this one's cost is compared with: same clients, participants and store, no
    /// aborts.
    pub fn baseline(&self) -> Option<String> {
        (self.abort_ratio > 0.0).then(|| row_name(self.clients, 0.0, self.participants, self.store))
    }

    /// The same load on sled, when this row runs on PostgreSQL: what it is compared with.
    pub fn on_sled(&self) -> Option<String> {
        matches!(self.store, Store::Postgres { .. }).then(|| {
            row_name(
                self.clients,
                self.abort_ratio,
                self.participants,
                Store::Sled,
            )
        })
    }
}

/// `64c`, `64c-abort10`, `64c-no-work`, `64c-no-work-pg`, `64c-pg3`.
fn row_name(clients: usize, abort_ratio: f64, participants: Participants, store: Store) -> String {
    let mut name = format!("{clients}c");
    if abort_ratio > 0.0 {
        name.push_str(&format!("-abort{}", (abort_ratio * 100.0).round()));
    }
    if participants == Participants::NoWork {
        name.push_str("-no-work");
    }
    match store {
        Store::Sled => {}
        Store::Postgres { instances: 1 } => name.push_str("-pg"),
        Store::Postgres { instances } => name.push_str(&format!("-pg{instances}")),
    }
    name
}

/// Rows that answer one question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suite {
    /// Selected by `--only`.
    pub name: String,
    /// The question it answers.
    pub about: String,
    /// Legend of this suite's line in the chart; `None`: not charted.
    pub series: Option<String>,
    /// Its rows, in order.
    pub rows: Vec<Row>,
}

/// The standard matrix: concurrency, cost of aborts, coordinator overhead, PostgreSQL.
pub fn standard() -> Vec<Suite> {
    use Participants::{NoWork, Working};
    vec![
        Suite {
            name: "concurrency".into(),
            about: "closed loop, every saga commits, real participants".into(),
            series: Some("all commit".into()),
            rows: [1, 16, 64, 256]
                .into_iter()
                .map(|clients| Row::new(clients, 0.0, Working))
                .collect(),
        },
        Suite {
            name: "aborts".into(),
            about: "10 % of sagas must abort (compensation and cancel on the hot path), \
                    compared with the all-commit row of the same concurrency"
                .into(),
            series: Some("10 % abort".into()),
            rows: vec![Row::new(64, 0.1, Working), Row::new(256, 0.1, Working)],
        },
        Suite {
            name: "overhead".into(),
            about: "participants answer without doing any work (`--no-work`): the \
                    coordinator's own cost per saga"
                .into(),
            series: Some("no-work participants".into()),
            rows: vec![Row::new(64, 0.0, NoWork)],
        },
        Suite {
            name: "postgres".into(),
            about: "the coordinators on PostgreSQL (a server of each run's own, durable: fsync \
                    and synchronous commit on): one instance against sled, and three sharing \
                    the database with the clients spread over them; with real and with no-work \
                    participants"
                .into(),
            series: None,
            rows: vec![
                Row::new(64, 0.0, Working).on_postgres(1),
                Row::new(64, 0.0, NoWork).on_postgres(1),
                Row::new(64, 0.0, Working).on_postgres(3),
                Row::new(64, 0.0, NoWork).on_postgres(3),
            ],
        },
    ]
}

/// What one invocation runs: load suites (with the selected rows) and the recovery suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The load suites, with only the selected rows.
    pub suites: Vec<Suite>,
    /// Whether the recovery suite runs.
    pub recovery: bool,
    /// Whether the soak suite runs: only when named (it takes minutes).
    pub soak: bool,
}

/// Keeps the suites and rows named in `only` (a suite's name selects all its rows, `recovery`
/// the recovery suite); empty `only` keeps everything. An unknown name is an error that lists
/// the known ones.
pub fn select(suites: Vec<Suite>, only: &[String]) -> anyhow::Result<Selection> {
    if only.is_empty() {
        return Ok(Selection {
            suites,
            recovery: true,
            soak: false,
        });
    }
    let known: BTreeSet<&str> = suites
        .iter()
        .flat_map(|s| {
            std::iter::once(s.name.as_str()).chain(s.rows.iter().map(|r| r.name.as_str()))
        })
        .chain([RECOVERY_SUITE, SOAK_SUITE])
        .collect();
    let unknown: Vec<&str> = only
        .iter()
        .map(String::as_str)
        .filter(|name| !known.contains(name))
        .collect();
    if !unknown.is_empty() {
        bail!(
            "unknown row or suite {unknown:?}; known: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let wanted = |name: &str| only.iter().any(|o| o == name);
    Ok(Selection {
        suites: suites
            .into_iter()
            .filter_map(|mut suite| {
                if !wanted(&suite.name) {
                    suite.rows.retain(|row| wanted(&row.name));
                }
                (!suite.rows.is_empty()).then_some(suite)
            })
            .collect(),
        recovery: wanted(RECOVERY_SUITE),
        soak: wanted(SOAK_SUITE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_the_shape_and_aborts_have_a_baseline() {
        let names: Vec<String> = standard()
            .iter()
            .flat_map(|s| s.rows.iter().map(|r| r.name.clone()))
            .collect();
        assert_eq!(
            names,
            [
                "1c",
                "16c",
                "64c",
                "256c",
                "64c-abort10",
                "256c-abort10",
                "64c-no-work",
                "64c-pg",
                "64c-no-work-pg",
                "64c-pg3",
                "64c-no-work-pg3"
            ]
        );
        let pg = Row::new(64, 0.1, Participants::NoWork).on_postgres(3);
        assert_eq!(pg.name, "64c-abort10-no-work-pg3");
        assert_eq!(pg.baseline().as_deref(), Some("64c-no-work-pg3"));
        assert_eq!(pg.on_sled().as_deref(), Some("64c-abort10-no-work"));
        assert_eq!(pg.store.instances(), 3);
        assert_eq!(Row::new(64, 0.0, Participants::NoWork).on_sled(), None);
        let abort = Row::new(64, 0.1, Participants::Working);
        assert_eq!(abort.baseline().as_deref(), Some("64c"));
        assert_eq!(Row::new(64, 0.0, Participants::Working).baseline(), None);
        assert!(!Row::new(64, 0.0, Participants::NoWork).verifies());
    }

    #[test]
    fn only_selects_suites_and_rows_and_refuses_unknown_names() {
        let only = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            select(standard(), &names).map(|selection| {
                selection
                    .suites
                    .iter()
                    .flat_map(|s| s.rows.iter().map(|r| r.name.clone()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(only(&[]).unwrap().len(), 11);
        assert_eq!(
            only(&["64c-no-work", "64c-no-work-pg"]).unwrap(),
            ["64c-no-work", "64c-no-work-pg"]
        );
        assert_eq!(
            only(&["aborts", "1c"]).unwrap(),
            ["1c", "64c-abort10", "256c-abort10"]
        );
        let err = only(&["65c"]).unwrap_err().to_string();
        assert!(err.contains("65c") && err.contains("64c-no-work"), "{err}");
        assert!(err.contains("recovery"), "{err}");
    }

    #[test]
    fn recovery_runs_by_default_or_when_named() {
        let select = |names: &[&str]| {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            select(standard(), &names).unwrap()
        };
        assert!(select(&[]).recovery);
        let alone = select(&["recovery"]);
        assert!(alone.recovery && alone.suites.is_empty());
        let both = select(&["recovery", "64c"]);
        assert!(both.recovery && both.suites.len() == 1);
        assert!(!select(&["overhead"]).recovery);
    }
}
