//! What a saga should do next. Pure: the same state and time always give the same commands.

use super::Millis;
use super::event::{CallRef, Decision, Event};
use super::state::{CallbackStatus, Lifecycle, Saga, StepStatus};

/// What the runtime must do for a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Record this event (apply it, append it to the log), then ask again. When `decide`
    /// returns a `Record`, it is the only command.
    Record(Event),
    /// Record `CallStarted` for this call, then send it.
    Call(CallRef),
    /// Record `CallbackStarted` for this attempt, then POST the final state to the callback URL.
    Notify {
        /// The attempt, from 1.
        attempt: u32,
    },
    /// Ask again at this time (a retry falls due, the deadline passes).
    WakeAt(Millis),
}

/// The next commands for `saga` at `now`. Empty when the saga waits for call results, an
/// operator, or is finished.
pub fn decide(saga: &Saga, now: Millis) -> Vec<Command> {
    match saga.lifecycle {
        Lifecycle::Committed | Lifecycle::Aborted => decide_callback(saga, now),
        Lifecycle::Stuck { .. } => Vec::new(),
        Lifecycle::Running => decide_running(saga, now),
        Lifecycle::Confirming | Lifecycle::Compensating => decide_settling(saga, now),
    }
}

fn record(event: Event) -> Vec<Command> {
    vec![Command::Record(event)]
}

fn abort(reason: String, now: Millis) -> Vec<Command> {
    record(Event::Decided {
        decision: Decision::Abort { reason },
        at: now,
    })
}

fn decide_running(saga: &Saga, now: Millis) -> Vec<Command> {
    for (plan, state) in saga.plan.steps.iter().zip(&saga.steps) {
        let why = state.last_error.as_deref().unwrap_or("no detail");
        match state.status {
            StepStatus::Rejected => {
                return abort(format!("step {} was rejected: {why}", plan.name), now);
            }
            StepStatus::Refused => {
                return abort(format!("step {} was refused: {why}", plan.name), now);
            }
            StepStatus::Waiting { attempt, .. } if attempt >= plan.retry.max_attempts => {
                return abort(
                    format!("step {} failed after {attempt} attempts: {why}", plan.name),
                    now,
                );
            }
            _ => {}
        }
    }
    let deadline = saga.deadline();
    if let Some(deadline) = deadline
        && now >= deadline
    {
        let ms = saga.plan.timeout_ms.unwrap_or_default();
        return abort(format!("saga deadline of {ms} ms exceeded"), now);
    }
    if saga.steps.iter().all(|s| s.status == StepStatus::Done) {
        return record(Event::Decided {
            decision: Decision::Commit,
            at: now,
        });
    }

    let mut commands = Vec::new();
    let mut wake = deadline;
    for (i, (plan, state)) in saga.plan.steps.iter().zip(&saga.steps).enumerate() {
        match state.status {
            StepStatus::Pending
                if plan
                    .deps
                    .iter()
                    .all(|&d| saga.steps[d].status == StepStatus::Done) =>
            {
                commands.push(Command::Call(CallRef {
                    step: i,
                    phase: plan.kind.forward(),
                    attempt: 1,
                }));
            }
            StepStatus::Waiting {
                phase,
                attempt,
                until,
            } => retry_when_due(
                CallRef {
                    step: i,
                    phase,
                    attempt: attempt + 1,
                },
                until,
                now,
                &mut commands,
                &mut wake,
            ),
            _ => {}
        }
    }
    commands.extend(wake.map(Command::WakeAt));
    commands
}

fn decide_settling(saga: &Saga, now: Millis) -> Vec<Command> {
    let committing = saga.lifecycle == Lifecycle::Confirming;
    let finished = if committing {
        saga.all_confirmed()
    } else {
        saga.steps.iter().all(|s| s.is_undone())
    };
    if finished {
        return record(Event::Finished { at: now });
    }
    for (i, (plan, state)) in saga.plan.steps.iter().zip(&saga.steps).enumerate() {
        if let StepStatus::Waiting { phase, attempt, .. } = state.status
            && phase.must_settle()
            && attempt >= plan.retry.settle_max_attempts
        {
            let why = state.last_error.as_deref().unwrap_or("no detail");
            let reason = format!("step {} {phase} failed {attempt} times: {why}", plan.name);
            return record(Event::Stuck {
                step: i,
                reason,
                at: now,
            });
        }
    }

    let mut commands = Vec::new();
    let mut wake: Option<Millis> = None;
    for (i, (plan, state)) in saga.plan.steps.iter().zip(&saga.steps).enumerate() {
        match state.status {
            StepStatus::Waiting {
                phase,
                attempt,
                until,
            } if phase.must_settle() => retry_when_due(
                CallRef {
                    step: i,
                    phase,
                    attempt: attempt + 1,
                },
                until,
                now,
                &mut commands,
                &mut wake,
            ),
            StepStatus::Done if committing => {
                if let Some(phase) = plan.kind.commit() {
                    commands.push(Command::Call(CallRef {
                        step: i,
                        phase,
                        attempt: 1,
                    }));
                }
            }
            _ if !committing && state.needs_undo()
                // Reverse dependency order: undo a step only once everything that ran after
                // it has been undone (or never ran).
                && saga.plan.dependents(i).all(|j| saga.steps[j].is_undone()) =>
            {
                commands.push(Command::Call(CallRef {
                    step: i,
                    phase: plan.kind.undo(),
                    attempt: 1,
                }));
            }
            _ => {}
        }
    }
    commands.extend(wake.map(Command::WakeAt));
    commands
}

fn decide_callback(saga: &Saga, now: Millis) -> Vec<Command> {
    match saga.callback {
        CallbackStatus::Pending => vec![Command::Notify { attempt: 1 }],
        CallbackStatus::Waiting { attempt, .. } if attempt >= saga.callback_max_attempts => {
            let reason = format!("callback not delivered after {attempt} attempts");
            record(Event::CallbackAbandoned { reason, at: now })
        }
        CallbackStatus::Waiting { attempt, until } if until <= now => {
            vec![Command::Notify {
                attempt: attempt + 1,
            }]
        }
        CallbackStatus::Waiting { until, .. } => vec![Command::WakeAt(until)],
        _ => Vec::new(),
    }
}

/// The next attempt now if its time has come, else a wake-up for then.
fn retry_when_due(
    next: CallRef,
    until: Millis,
    now: Millis,
    commands: &mut Vec<Command>,
    wake: &mut Option<Millis>,
) {
    if until <= now {
        commands.push(Command::Call(next));
    } else {
        *wake = Some(wake.map_or(until, |w| w.min(until)));
    }
}
