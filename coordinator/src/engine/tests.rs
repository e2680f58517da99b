//! Transition-by-transition tests of the engine. Randomised runs live in
//! `coordinator/tests/engine_properties.rs`.

use std::sync::Arc;

use sagas::Phase::{Action, Cancel, Compensate, Confirm, Try};
use sagas::{Phase, RetryPolicy, StepKind};

use super::fixtures::ended_ok;
use super::*;
use CallOutcome::{NotSent, Refused, Rejected, Transient};

fn step(name: &str, kind: StepKind, deps: &[usize]) -> PlanStep {
    PlanStep {
        name: name.into(),
        participant: "p".into(),
        action: "a".into(),
        kind,
        deps: deps.to_vec(),
        timeout_ms: None,
        retry: RetryPolicy {
            max_attempts: 2,
            settle_max_attempts: 3,
            ..RetryPolicy::default()
        },
    }
}

/// order (SAGA) -> wallet (TCC) -> points (SAGA), like `place_order`.
fn place_order() -> Saga {
    saga_with(
        vec![
            step("create_order", StepKind::Saga, &[]),
            step("freeze_funds", StepKind::Tcc, &[0]),
            step("award_points", StepKind::Saga, &[1]),
        ],
        None,
    )
}

/// The `Created` event of saga `s1` of workflow `w`, at 1,000.
fn created(plan: Arc<Plan>, callback_url: Option<&str>) -> Created {
    Created {
        id: "s1".into(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({}).into(),
        callback_url: callback_url.map(Into::into),
        idempotency_key: None,
        business_key: None,
        callback_max_attempts: crate::engine::CALLBACK_MAX_ATTEMPTS,
        trace: None,
        plan,
        at: 1_000,
    }
}

fn saga_with(steps: Vec<PlanStep>, timeout_ms: Option<u64>) -> Saga {
    Saga::create(&created(Plan { steps, timeout_ms }.into(), None)).unwrap()
}

fn calls(commands: &[Command]) -> Vec<CallRef> {
    commands
        .iter()
        .filter_map(|c| {
            if let Command::Call(c) = c {
                Some(*c)
            } else {
                None
            }
        })
        .collect()
}

/// The calls `decide` asks for at `now`.
fn next_calls(saga: &Saga, now: Millis) -> Vec<CallRef> {
    calls(&decide(saga, now))
}

fn started(call: CallRef, at: Millis) -> Event {
    Event::CallStarted { call, at }
}

fn decided_commit() -> Event {
    Event::Decided {
        decision: Decision::Commit,
        at: 1,
    }
}

fn start(saga: &mut Saga, call: CallRef) {
    saga.apply(&started(call, 1_000)).unwrap();
}

fn end(saga: &mut Saga, call: CallRef, outcome: CallOutcome) {
    saga.apply(&Event::CallEnded {
        call,
        outcome,
        http_status: None,
        latency_ms: 1,
        error: Some("boom".into()),
        retry_at: 2_000,
        at: 1_000,
    })
    .unwrap();
}

/// Applies `event`, which the saga must refuse and leave the state as it was; gives back the
/// error.
#[track_caller]
fn assert_refused(saga: &mut Saga, event: Event) -> EngineError {
    let before = saga.clone();
    let Err(error) = saga.apply(&event) else {
        panic!("{event:?} was accepted; the saga is now {saga:?}")
    };
    assert_eq!(*saga, before, "refusing {event:?} changed the state");
    error
}

/// Records the single `Record` command `decide` returns and gives back the event.
#[track_caller]
fn record_next(saga: &mut Saga, now: Millis) -> Event {
    let commands = decide(saga, now);
    let [Command::Record(event)] = commands.as_slice() else {
        panic!("expected one record, got {commands:?}");
    };
    saga.apply(event).unwrap();
    event.clone()
}

/// Records the next event, which must be a decision to abort, and gives back its reason.
#[track_caller]
fn record_abort(saga: &mut Saga, now: Millis) -> String {
    match record_next(saga, now) {
        Event::Decided {
            decision: Decision::Abort { reason },
            ..
        } => reason,
        other => panic!("expected an abort, got {other:?}"),
    }
}

/// `decide` at `now` asks for `expect`, which is then started and ends with `outcome`.
#[track_caller]
fn run_call(saga: &mut Saga, now: Millis, expect: CallRef, outcome: CallOutcome) {
    let commands = decide(saga, now);
    assert!(
        calls(&commands).contains(&expect),
        "expected {expect} in {commands:?}"
    );
    start(saga, expect);
    end(saga, expect, outcome);
}

fn call(step: usize, phase: Phase, attempt: u32) -> CallRef {
    CallRef {
        step,
        phase,
        attempt,
    }
}

#[test]
fn happy_path_runs_steps_in_order_then_confirms_then_commits() {
    let mut saga = place_order();
    assert_eq!(next_calls(&saga, 1_000), vec![call(0, Action, 1)]);
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    assert_eq!(next_calls(&saga, 1_000), vec![call(1, Try, 1)]);
    run_call(&mut saga, 1_000, call(1, Try, 1), CallOutcome::Ok);
    run_call(&mut saga, 1_000, call(2, Action, 1), CallOutcome::Ok);
    assert_eq!(
        record_next(&mut saga, 1_000),
        Event::Decided {
            decision: Decision::Commit,
            at: 1_000
        }
    );
    assert_eq!(saga.lifecycle, Lifecycle::Confirming);
    // Only the TCC step has something to do on commit.
    assert_eq!(next_calls(&saga, 1_000), vec![call(1, Confirm, 1)]);
    run_call(&mut saga, 1_000, call(1, Confirm, 1), CallOutcome::Ok);
    assert_eq!(record_next(&mut saga, 1_000), Event::Finished { at: 1_000 });
    assert_eq!(saga.lifecycle, Lifecycle::Committed);
    assert!(decide(&saga, 5_000).is_empty());
}

#[test]
fn rejection_rolls_back_every_step_that_may_have_been_called_in_reverse_order() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    run_call(&mut saga, 1_000, call(1, Try, 1), Rejected);
    let reason = record_abort(&mut saga, 1_000);
    assert!(reason.contains("freeze_funds"), "{reason}");
    assert_eq!(saga.lifecycle, Lifecycle::Compensating);
    assert_eq!(saga.steps[2].status, StepStatus::Skipped);
    // The rejected step is cancelled first (null compensation is harmless); the order waits.
    assert_eq!(next_calls(&saga, 1_000), vec![call(1, Cancel, 1)]);
    run_call(&mut saga, 1_000, call(1, Cancel, 1), CallOutcome::Ok);
    assert_eq!(next_calls(&saga, 1_000), vec![call(0, Compensate, 1)]);
    run_call(&mut saga, 1_000, call(0, Compensate, 1), CallOutcome::Ok);
    assert_eq!(record_next(&mut saga, 1_000), Event::Finished { at: 1_000 });
    assert_eq!(saga.lifecycle, Lifecycle::Aborted);
}

#[test]
fn transient_failures_retry_at_the_recorded_time_then_give_up_and_undo() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), Transient);
    // Not before retry_at (2_000).
    assert_eq!(decide(&saga, 1_500), vec![Command::WakeAt(2_000)]);
    run_call(&mut saga, 2_000, call(0, Action, 2), Transient);
    // max_attempts = 2: give up, and undo since the calls may have applied.
    let reason = record_abort(&mut saga, 2_000);
    assert!(reason.contains("after 2 attempts"), "{reason}");
    assert_eq!(saga.steps[0].status, StepStatus::Failed);
    assert_eq!(next_calls(&saga, 2_000), vec![call(0, Compensate, 1)]);
}

#[test]
fn calls_refused_locally_need_no_compensation() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), NotSent);
    run_call(&mut saga, 2_000, call(0, Action, 2), NotSent);
    record_abort(&mut saga, 2_000);
    assert_eq!(saga.steps[0].status, StepStatus::Skipped);
    assert_eq!(record_next(&mut saga, 2_000), Event::Finished { at: 2_000 });
    assert_eq!(saga.lifecycle, Lifecycle::Aborted);
}

#[test]
fn settle_phases_never_give_up_they_get_stuck_and_resume_on_retry() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    run_call(&mut saga, 1_000, call(1, Try, 1), Rejected);
    record_abort(&mut saga, 1_000);
    run_call(&mut saga, 1_000, call(1, Cancel, 1), CallOutcome::Ok);
    // A 409 on compensate is not a business answer: it is retried.
    run_call(&mut saga, 1_000, call(0, Compensate, 1), Rejected);
    run_call(&mut saga, 2_000, call(0, Compensate, 2), Transient);
    run_call(&mut saga, 2_000, call(0, Compensate, 3), Transient);
    let stuck = record_next(&mut saga, 2_000);
    assert!(matches!(stuck, Event::Stuck { step: 0, .. }), "{stuck:?}");
    assert_eq!(saga.lifecycle, Lifecycle::Stuck { committing: false });
    assert_eq!(saga.api_step_status(0), sagas::api::StepStatus::Stuck);
    assert!(
        decide(&saga, 99_000).is_empty(),
        "a stuck saga waits for an operator"
    );
    saga.apply(&Event::RetryRequested { at: 50_000 }).unwrap();
    assert_eq!(saga.lifecycle, Lifecycle::Compensating);
    run_call(&mut saga, 50_000, call(0, Compensate, 1), CallOutcome::Ok);
    assert_eq!(
        record_next(&mut saga, 50_000),
        Event::Finished { at: 50_000 }
    );
    assert_eq!(saga.lifecycle, Lifecycle::Aborted);
}

#[test]
fn deadline_aborts_a_running_saga_and_waits_for_outstanding_calls() {
    let mut saga = saga_with(
        vec![
            step("a", StepKind::Tcc, &[]),
            step("b", StepKind::Tcc, &[0]),
        ],
        Some(500),
    );
    let a = call(0, Try, 1);
    start(&mut saga, a);
    assert_eq!(decide(&saga, 1_200), vec![Command::WakeAt(1_500)]);
    record_abort(&mut saga, 1_500);
    assert_eq!(saga.lifecycle, Lifecycle::Compensating);
    assert!(
        next_calls(&saga, 1_500).is_empty(),
        "the try is still outstanding"
    );
    end(&mut saga, a, CallOutcome::Ok);
    assert_eq!(next_calls(&saga, 1_600), vec![call(0, Cancel, 1)]);
}

#[test]
fn dag_steps_run_concurrently_and_undo_in_reverse_dependency_order() {
    // a and b are roots, c needs both.
    let mut saga = saga_with(
        vec![
            step("a", StepKind::Saga, &[]),
            step("b", StepKind::Saga, &[]),
            step("c", StepKind::Saga, &[0, 1]),
        ],
        None,
    );
    assert_eq!(
        next_calls(&saga, 1_000),
        vec![call(0, Action, 1), call(1, Action, 1)]
    );
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    assert!(
        next_calls(&saga, 1_000).iter().all(|c| c.step != 2),
        "c waits for b"
    );
    run_call(&mut saga, 1_000, call(1, Action, 1), CallOutcome::Ok);
    run_call(&mut saga, 1_000, call(2, Action, 1), Transient);
    run_call(&mut saga, 2_000, call(2, Action, 2), Transient);
    record_abort(&mut saga, 2_000);
    // c first; a and b only after it.
    assert_eq!(next_calls(&saga, 2_000), vec![call(2, Compensate, 1)]);
    run_call(&mut saga, 2_000, call(2, Compensate, 1), CallOutcome::Ok);
    assert_eq!(
        next_calls(&saga, 2_000),
        vec![call(0, Compensate, 1), call(1, Compensate, 1)]
    );
}

#[test]
fn illegal_transitions_are_rejected_and_leave_the_state_unchanged() {
    let mut saga = place_order();
    // No commit before every forward phase succeeded.
    assert_refused(&mut saga, decided_commit());
    // No confirm while running, no try of a step whose dependency has not succeeded.
    assert_refused(&mut saga, started(call(1, Confirm, 1), 1));
    assert_refused(&mut saga, started(call(1, Try, 1), 1));
    // No result for a call that was never started, no unknown step, no finish while running.
    assert!(matches!(
        assert_refused(&mut saga, ended_ok(call(0, Action, 1), 1)),
        EngineError::UnexpectedResult { .. }
    ));
    assert!(matches!(
        assert_refused(&mut saga, started(call(9, Action, 1), 1)),
        EngineError::UnknownStep { .. }
    ));
    assert_refused(&mut saga, Event::Finished { at: 1 });
    assert_refused(&mut saga, Event::RetryRequested { at: 1 });

    // Once aborted: no commit, no try after its cancel, no second decision.
    run_call(&mut saga, 1_000, call(0, Action, 1), Rejected);
    record_abort(&mut saga, 1_000);
    assert_refused(&mut saga, decided_commit());
    let abort = Event::Decided {
        decision: Decision::Abort { reason: "x".into() },
        at: 1,
    };
    assert_refused(&mut saga, abort);
    run_call(&mut saga, 1_000, call(0, Compensate, 1), CallOutcome::Ok);
    assert_refused(&mut saga, started(call(0, Action, 2), 1));
    record_next(&mut saga, 1_000);
    assert_eq!(saga.lifecycle, Lifecycle::Aborted);
    assert_refused(&mut saga, Event::Resumed { at: 1 });
    assert_refused(&mut saga, decided_commit());
}

#[test]
fn a_second_attempt_must_follow_the_first() {
    let mut saga = place_order();
    assert_refused(&mut saga, started(call(0, Action, 2), 1));
    run_call(&mut saga, 1_000, call(0, Action, 1), Transient);
    assert_refused(&mut saga, started(call(0, Action, 3), 1));
    start(&mut saga, call(0, Action, 2));
    // A stale result of the first attempt does not count.
    assert_refused(&mut saga, ended_ok(call(0, Action, 1), 1));
}

#[test]
fn resume_after_a_crash_resends_outstanding_calls_and_counts_them_as_possibly_applied() {
    let mut saga = place_order();
    start(&mut saga, call(0, Action, 1));
    saga.apply(&Event::Resumed { at: 3_000 }).unwrap();
    assert!(saga.steps[0].sent);
    assert_eq!(next_calls(&saga, 3_000), vec![call(0, Action, 2)]);
}

#[test]
fn replay_rebuilds_the_same_state() {
    let mut saga = place_order();
    let mut log = vec![Event::Created(Box::new(created(saga.plan.clone(), None)))];
    for _ in 0..20 {
        let commands = decide(&saga, 1_000);
        let Some(first) = commands.first() else { break };
        let event = match first {
            Command::Record(e) => e.clone(),
            Command::Call(c) => {
                let started = started(*c, 1_000);
                saga.apply(&started).unwrap();
                log.push(started);
                ended_ok(*c, 1_000)
            }
            Command::WakeAt(_) | Command::Notify { .. } => break,
        };
        saga.apply(&event).unwrap();
        log.push(event);
    }
    assert_eq!(saga.lifecycle, Lifecycle::Committed);
    // One event per stored round, through both on-disk formats (JSON and compact).
    use crate::store::format::{NoPlans, PlanTable, decode_round, encode_round};
    let plans = PlanTable::default();
    for compact in [false, true] {
        let decoded: Vec<Event> = log
            .iter()
            .flat_map(|e| {
                let one = std::slice::from_ref(e);
                if compact {
                    decode_round(&plans.encode(one), &plans).unwrap()
                } else {
                    decode_round(&encode_round(one), &NoPlans).unwrap()
                }
            })
            .collect();
        assert_eq!(Saga::replay(&decoded).unwrap(), saga);
    }
}

#[test]
fn a_crash_may_lose_the_start_of_a_call_so_rollback_after_resume_undoes_pending_steps() {
    // The log shows only the first step done; the second's CallStarted may have been lost.
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    saga.apply(&Event::Resumed { at: 2_000 }).unwrap();
    let abort = Decision::Abort {
        reason: "operator".into(),
    };
    saga.apply(&Event::Decided {
        decision: abort,
        at: 2_000,
    })
    .unwrap();
    assert_eq!(
        saga.steps[1].status,
        StepStatus::Failed,
        "may have been tried: cancel it"
    );
    assert_eq!(saga.steps[2].status, StepStatus::Failed);
    assert_eq!(next_calls(&saga, 2_000), vec![call(2, Compensate, 1)]);
}

#[test]
fn a_restart_while_stuck_rolling_back_still_settles_outstanding_forward_calls() {
    // Found by the property tests: a and b independent; b rejected; a's try outstanding.
    let mut steps = vec![step("a", StepKind::Tcc, &[]), step("b", StepKind::Tcc, &[])];
    for s in &mut steps {
        s.retry.max_attempts = 1;
        s.retry.settle_max_attempts = 1;
    }
    let mut saga = saga_with(steps, None);
    start(&mut saga, call(0, Try, 1));
    run_call(&mut saga, 1_000, call(1, Try, 1), Rejected);
    record_abort(&mut saga, 1_000);
    run_call(&mut saga, 1_000, call(1, Cancel, 1), Transient);
    let stuck = record_next(&mut saga, 1_000);
    assert!(matches!(stuck, Event::Stuck { .. }), "{stuck:?}");
    saga.apply(&Event::Resumed { at: 3_000 }).unwrap();
    saga.apply(&Event::RetryRequested { at: 3_000 }).unwrap();
    let next = next_calls(&saga, 3_000);
    assert!(next.contains(&call(0, Cancel, 1)), "{next:?}");
    assert!(next.contains(&call(1, Cancel, 1)), "{next:?}");
}

#[test]
fn a_forward_call_refused_locally_rolls_back_at_once_with_nothing_to_undo() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    run_call(&mut saga, 1_000, call(1, Try, 1), Refused);
    let reason = record_abort(&mut saga, 1_000);
    assert!(reason.contains("refused"), "{reason}");
    assert_eq!(saga.steps[1].status, StepStatus::Skipped, "never sent");
    assert_eq!(next_calls(&saga, 1_000), vec![call(0, Compensate, 1)]);
}

#[test]
fn a_settle_call_refused_by_an_open_circuit_waits_without_spending_its_budget() {
    let mut saga = place_order();
    run_call(&mut saga, 1_000, call(0, Action, 1), Rejected);
    record_abort(&mut saga, 1_000);
    // settle_max_attempts is 3; ten refusals later the saga is still compensating.
    for _ in 0..10 {
        run_call(&mut saga, 5_000, call(0, Compensate, 1), Refused);
        assert_eq!(saga.lifecycle, Lifecycle::Compensating);
        assert_eq!(
            decide(&saga, 1_500),
            vec![Command::WakeAt(2_000)],
            "waits for retry_at"
        );
    }
    run_call(&mut saga, 5_000, call(0, Compensate, 1), CallOutcome::Ok);
    assert_eq!(record_next(&mut saga, 5_000), Event::Finished { at: 5_000 });
}

/// The first step of `place_order`, with a completion callback.
fn with_callback() -> Saga {
    let mut plan = place_order().plan;
    Arc::make_mut(&mut plan).steps.truncate(1);
    Saga::create(&created(plan, Some("http://127.0.0.1:9/cb"))).unwrap()
}

/// Runs the one step of `with_callback` and commits.
fn commit_with_callback(saga: &mut Saga) {
    run_call(saga, 1_000, call(0, Action, 1), CallOutcome::Ok);
    assert!(matches!(
        record_next(saga, 1_000),
        Event::Decided {
            decision: Decision::Commit,
            ..
        }
    ));
    assert_eq!(record_next(saga, 1_000), Event::Finished { at: 1_000 });
    assert_eq!(saga.lifecycle, Lifecycle::Committed);
}

fn callback_started(saga: &mut Saga, attempt: u32, at: Millis) {
    saga.apply(&Event::CallbackStarted { attempt, at }).unwrap();
}

fn callback_ended(attempt: u32, delivered: bool) -> Event {
    Event::CallbackEnded {
        attempt,
        delivered,
        http_status: Some(if delivered { 200 } else { 500 }),
        error: None,
        retry_at: 2_000,
        at: 1_000,
    }
}

#[test]
fn a_finished_saga_notifies_its_callback_until_delivered() {
    let mut saga = with_callback();
    assert_eq!(saga.callback, CallbackStatus::Pending);
    // Not before it ends.
    assert_refused(&mut saga, Event::CallbackStarted { attempt: 1, at: 1 });
    commit_with_callback(&mut saga);
    assert!(!saga.is_settled(), "the callback is still owed");
    assert_eq!(decide(&saga, 1_000), vec![Command::Notify { attempt: 1 }]);
    callback_started(&mut saga, 1, 1_000);
    assert!(decide(&saga, 1_000).is_empty(), "one delivery at a time");
    saga.apply(&callback_ended(1, false)).unwrap();
    assert_eq!(decide(&saga, 1_500), vec![Command::WakeAt(2_000)]);
    assert_eq!(decide(&saga, 2_000), vec![Command::Notify { attempt: 2 }]);
    callback_started(&mut saga, 2, 2_000);
    // A restart while delivering: deliver again.
    saga.apply(&Event::Resumed { at: 3_000 }).unwrap();
    assert_eq!(decide(&saga, 3_000), vec![Command::Notify { attempt: 3 }]);
    callback_started(&mut saga, 3, 3_000);
    saga.apply(&callback_ended(3, true)).unwrap();
    assert!(saga.is_settled());
    assert!(decide(&saga, 9_000).is_empty());
    assert_refused(&mut saga, Event::Resumed { at: 9_000 });
}

#[test]
fn a_callback_is_abandoned_with_an_event_after_its_budget() {
    let mut saga = with_callback();
    commit_with_callback(&mut saga);
    for attempt in 1..=CALLBACK_MAX_ATTEMPTS {
        assert_eq!(decide(&saga, 2_000), vec![Command::Notify { attempt }]);
        callback_started(&mut saga, attempt, 2_000);
        saga.apply(&callback_ended(attempt, false)).unwrap();
    }
    let abandoned = record_next(&mut saga, 2_000);
    assert!(
        matches!(abandoned, Event::CallbackAbandoned { .. }),
        "{abandoned:?}"
    );
    assert!(saga.is_settled());
}
