//! The round driver: how one saga's events, decisions and calls are sequenced, in one place
//! that the runtime and the deterministic simulation both run.
//!
//! Like raft-rs's `RawNode`/`Ready`, the driver does no I/O and reads no clock: the caller
//! feeds it what happened (a call's answer, an operator's event, the time) and asks for a
//! [`Ready`]: what to append to the log, whether that must be durable before anything else
//! happens, which calls and callback to send, and when to wake up. The caller must handle a
//! `Ready` in this order:
//!
//! 1. append [`Ready::append`] (if any) as one record numbered from [`Ready::first_seq`], and
//!    write a snapshot as of [`Ready::snapshot`] if asked;
//! 2. if [`Ready::must_flush`], make everything appended durable (durability rules 1-3 of
//!    `docs/ARCHITECTURE.md`: a decision before the calls it leads to, a terminal state before
//!    anyone hears of it);
//! 3. only then send [`Ready::calls`] and [`Ready::notify`], publish the state, answer
//!    operators.
//!
//! Between durable points, events stay in the driver (rule 4: lazy writes): they are handed out
//! with the next durable round, or when the saga goes idle (a retry backoff, stuck) so that a
//! waiting saga's log is complete, or when it settles. After a crash that is the same as an
//! unflushed tail.

use std::sync::Arc;

use super::decide::{Command, decide};
use super::event::{CallRef, Event};
use super::state::{CallbackStatus, Lifecycle, Saga};
use super::{EngineError, Millis};

/// Events a saga may log after its last snapshot before the driver asks for a new one.
pub const SNAPSHOT_EVERY: u64 = 64;

/// Decide rounds in one step before the driver assumes `decide` loops.
const MAX_DECISIONS_PER_STEP: usize = 1_000;

/// One saga's driver. Owns the saga's state between rounds.
#[derive(Debug, Clone)]
pub struct Driver {
    /// Shared with the published view until the next change (copy on write), so a waiting
    /// saga is held once.
    saga: Arc<Saga>,
    /// The last event handed out for the log (appended, not necessarily durable).
    seq: u64,
    /// The last event a snapshot includes (or where the log was when the driver started).
    snapshot_seq: u64,
    /// Events applied but not yet handed out; they go to the log as one record.
    unlogged: Vec<Event>,
    /// An unlogged event must be durable before anything else happens.
    must_flush: bool,
    /// Events after the last snapshot that make the driver ask for a new one.
    snapshot_every: u64,
}

/// What the caller must do after a [`Driver::step`], in the order of the module's docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// Events to append as one record (possibly empty: nothing to write this round).
    pub append: Vec<Event>,
    /// The sequence number of `append[0]`.
    pub first_seq: u64,
    /// Write a snapshot of [`Driver::saga`] as of this sequence number, after appending.
    pub snapshot: Option<u64>,
    /// Make everything appended durable before sending or telling anyone.
    pub must_flush: bool,
    /// Branch calls to send (their `CallStarted` is already recorded).
    pub calls: Vec<CallRef>,
    /// A completion-callback attempt to send (its `CallbackStarted` is already recorded).
    pub notify: Option<u32>,
    /// Ask again at this time if nothing happens before (a retry falls due, the deadline).
    pub wake: Option<Millis>,
    /// Nothing is in flight and nothing was sent: the saga waits for `wake` or an operator.
    pub idle: bool,
    /// What changed this round, for alerts and metrics.
    pub changes: Changes,
}

/// Transitions of one round that the runtime reports (alerts, metrics, logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changes {
    /// The saga turned stuck.
    pub stuck: bool,
    /// The saga reached its terminal state.
    pub terminal: bool,
    /// The completion callback was given up.
    pub callback_abandoned: bool,
}

impl Driver {
    /// A driver for a saga whose log ends at `seq`, with its last snapshot at `snapshot_seq`
    /// (`seq` itself for a saga that just started or was just loaded).
    pub fn new(saga: Arc<Saga>, seq: u64, snapshot_seq: u64) -> Driver {
        Driver {
            saga,
            seq,
            snapshot_seq,
            unlogged: Vec::new(),
            must_flush: false,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }

    /// The same driver asking for a snapshot every `snapshot_every` events (at least 1).
    pub fn with_snapshot_every(mut self, snapshot_every: u64) -> Driver {
        self.snapshot_every = snapshot_every.max(1);
        self
    }

    /// A driver for a saga found in the log after a restart: calls that were outstanding may
    /// or may not have arrived, which `Resumed` records.
    pub fn resumed(saga: Arc<Saga>, seq: u64, now: Millis) -> Result<Driver, EngineError> {
        let mut driver = Driver::new(saga, seq, seq);
        driver.record(Event::Resumed { at: now })?;
        Ok(driver)
    }

    /// The saga's current state, including events not yet handed out.
    pub fn saga(&self) -> &Arc<Saga> {
        &self.saga
    }

    /// Where the log stands: the last event handed out and the last snapshot's.
    pub fn position(&self) -> (u64, u64) {
        (self.seq, self.snapshot_seq)
    }

    /// Events applied but not yet handed out (for checks; the log does not have them).
    pub fn unlogged(&self) -> &[Event] {
        &self.unlogged
    }

    /// Records the answer to a call or callback this driver handed out (`CallEnded`,
    /// `CallbackEnded`).
    pub fn record_result(&mut self, event: Event) -> Result<(), EngineError> {
        self.record(event)
    }

    /// Records an operator's event (an abort's decision, a retry); on error the state is
    /// unchanged. It is handed out, and flushed if it must be durable, by the next step.
    pub fn record_operator(&mut self, event: Event) -> Result<(), EngineError> {
        self.record(event)
    }

    /// Applies an event and keeps it for the next record.
    fn record(&mut self, event: Event) -> Result<(), EngineError> {
        Arc::make_mut(&mut self.saga).apply(&event)?;
        self.must_flush |= event.must_be_durable();
        self.unlogged.push(event);
        Ok(())
    }

    /// One round at `now`, with `outstanding` calls and callbacks sent earlier whose answers
    /// have not been recorded yet: decides until nothing changes, records what it starts, and
    /// says what to persist, flush and send.
    pub fn step(&mut self, now: Millis, outstanding: usize) -> Result<Ready, EngineError> {
        let before = (self.saga.lifecycle, self.saga.callback);
        let mut calls = Vec::new();
        let mut notify = None;
        let mut wake = None;
        for decision in 0.. {
            if decision == MAX_DECISIONS_PER_STEP {
                return Err(self.contract("decide keeps recording events"));
            }
            let commands = decide(&self.saga, now);
            if matches!(commands.first(), Some(Command::Record(_))) && commands.len() != 1 {
                return Err(self.contract("decide returned a record with other commands"));
            }
            let mut progressed = false;
            wake = None;
            for command in commands {
                match command {
                    Command::Record(event) => self.record(event)?,
                    Command::Call(call) => {
                        self.record(Event::CallStarted { call, at: now })?;
                        calls.push(call);
                    }
                    Command::Notify { attempt } => {
                        self.record(Event::CallbackStarted { attempt, at: now })?;
                        notify = Some(attempt);
                    }
                    Command::WakeAt(at) if at <= now => {
                        return Err(self.contract("decide asked to wake at a time already past"));
                    }
                    Command::WakeAt(at) => {
                        wake = Some(wake.map_or(at, |w: Millis| w.min(at)));
                        continue;
                    }
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        let idle = outstanding == 0 && calls.is_empty() && notify.is_none();
        // A saga that settles is flushed too: its last events (a callback's delivery) are
        // what every instance and every reader should see from then on.
        let settled = self.saga.is_settled() && !self.unlogged.is_empty();
        let must_flush = std::mem::take(&mut self.must_flush) || settled;
        let (first_seq, append, snapshot) = if must_flush || idle || self.saga.is_settled() {
            self.hand_out()
        } else {
            (self.seq + 1, Vec::new(), None)
        };
        let stuck = |l: Lifecycle| matches!(l, Lifecycle::Stuck { .. });
        Ok(Ready {
            append,
            first_seq,
            snapshot,
            must_flush,
            calls,
            notify,
            wake,
            idle,
            changes: Changes {
                stuck: stuck(self.saga.lifecycle) && !stuck(before.0),
                terminal: self.saga.lifecycle.is_terminal() && !before.0.is_terminal(),
                callback_abandoned: self.saga.callback == CallbackStatus::Abandoned
                    && before.1 != CallbackStatus::Abandoned,
            },
        })
    }

    /// The unlogged events as one record, for a caller that stops the saga's task (a
    /// graceful stop keeps what the last rounds recorded): `(first_seq, events, snapshot)`.
    pub fn take_unlogged(&mut self) -> (u64, Vec<Event>, Option<u64>) {
        self.must_flush = false;
        self.hand_out()
    }

    /// Hands out the unlogged events and, when the saga settled or its log grew long since
    /// the last snapshot, asks for a snapshot.
    fn hand_out(&mut self) -> (u64, Vec<Event>, Option<u64>) {
        let first_seq = self.seq + 1;
        if self.unlogged.is_empty() {
            return (first_seq, Vec::new(), None);
        }
        // Not `clear`: a waiting saga should not keep the capacity of its busiest round.
        let events = std::mem::take(&mut self.unlogged);
        self.seq += events.len() as u64;
        let snapshot = (self.saga.is_settled()
            || self.seq - self.snapshot_seq >= self.snapshot_every)
            .then_some(self.seq);
        if let Some(seq) = snapshot {
            self.snapshot_seq = seq;
        }
        (first_seq, events, snapshot)
    }

    fn contract(&self, what: &str) -> EngineError {
        EngineError::Contract {
            saga: self.saga.id.clone(),
            what: what.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::{ended_ok, one_step};
    use sagas::Phase;

    fn driver() -> Driver {
        let saga = Saga::create(&one_step("s1", None)).unwrap();
        Driver::new(Arc::new(saga), 0, 0)
    }

    #[test]
    fn a_round_hands_out_nothing_until_a_durable_point_and_then_everything_in_order() {
        let mut d = driver();
        let ready = d.step(1_000, 0).unwrap();
        let call = CallRef {
            step: 0,
            phase: Phase::Action,
            attempt: 1,
        };
        assert_eq!(ready.calls, vec![call]);
        assert!(!ready.must_flush && !ready.idle);
        assert!(
            ready.append.is_empty(),
            "a call start alone is written lazily"
        );
        d.record_result(ended_ok(call, 1_001)).unwrap();
        let ready = d.step(1_001, 0).unwrap();
        // Commit, then finished: both durable points in one round.
        assert!(ready.must_flush);
        assert_eq!(ready.first_seq, 1);
        let names: Vec<&str> = ready.append.iter().map(Event::name).collect();
        assert_eq!(
            names,
            vec!["call_started", "call_ended", "decided", "finished"]
        );
        assert_eq!(ready.snapshot, Some(4), "settled: snapshot");
        assert!(ready.changes.terminal);
        assert_eq!(d.position(), (4, 4));
    }

    #[test]
    fn an_operator_event_is_flushed_by_the_next_round() {
        let mut d = driver();
        let ready = d.step(1_000, 0).unwrap();
        assert_eq!(ready.calls.len(), 1);
        d.record_operator(Event::Decided {
            decision: crate::engine::Decision::Abort {
                reason: "operator".into(),
            },
            at: 1_000,
        })
        .unwrap();
        let ready = d.step(1_000, 1).unwrap();
        assert!(ready.must_flush);
        assert!(
            ready.calls.is_empty(),
            "the forward call is still outstanding"
        );
        assert!(!ready.append.is_empty());
    }
}
