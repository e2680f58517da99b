//! A saga's state and how each event changes it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use sagas::Phase;
use sagas::api::{Resolution, SagaState, StepStatus as ApiStepStatus};
use sagas::wire::TraceParent;

use super::event::{CallOutcome, CallRef, Created, Decision, Event};
use super::{EngineError, Input, Millis, Plan};

/// Where the saga as a whole stands. `Stuck` remembers which way it was settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Forward phases run; no decision yet.
    Running,
    /// Decided to commit; `confirm` runs for TCC steps.
    Confirming,
    /// Decided to roll back; `cancel`/`compensate` run in reverse dependency order.
    Compensating,
    /// A settle phase exhausted its attempts; `committing` tells which way it was going.
    Stuck {
        /// It was confirming (else compensating).
        committing: bool,
    },
    /// Every TCC step confirmed (SAGA steps need nothing on commit).
    Committed,
    /// Every step that may have been applied is undone.
    Aborted,
}

impl Lifecycle {
    /// The state's name in the API (`running`, ..., `stuck`).
    pub fn name(self) -> &'static str {
        self.api_state().as_str()
    }

    /// The state as the API shows it.
    pub fn api_state(self) -> SagaState {
        match self {
            Lifecycle::Running => SagaState::Running,
            Lifecycle::Confirming => SagaState::Confirming,
            Lifecycle::Compensating => SagaState::Compensating,
            Lifecycle::Stuck { .. } => SagaState::Stuck,
            Lifecycle::Committed => SagaState::Committed,
            Lifecycle::Aborted => SagaState::Aborted,
        }
    }

    /// Committed or aborted: nothing will change the outcome any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Lifecycle::Committed | Lifecycle::Aborted)
    }
}

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepStatus {
    /// Its forward phase was never called.
    Pending,
    /// A call is outstanding.
    Calling {
        /// Its phase.
        phase: Phase,
        /// Its attempt.
        attempt: u32,
    },
    /// The last call of `phase` failed; the next may start at `until`.
    Waiting {
        /// The phase that failed.
        phase: Phase,
        /// Attempts of that phase so far (the budget counts these).
        attempt: u32,
        /// When the next attempt is due.
        until: Millis,
    },
    /// The forward phase succeeded.
    Done,
    /// The forward phase was rejected by the participant.
    Rejected,
    /// The forward call was refused locally (open circuit, full bulkhead); never sent.
    Refused,
    /// The forward phase stopped after the saga decided to roll back; it may have applied.
    Failed,
    /// `confirm` succeeded.
    Confirmed,
    /// `cancel`/`compensate` succeeded.
    Compensated,
    /// Never sent, so there is nothing to undo.
    Skipped,
}

/// One step's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepState {
    /// Where it stands.
    pub status: StepStatus,
    /// Calls made, all phases together (for operators; budgets use the per-phase attempt).
    pub attempts: u32,
    /// Some forward call may have reached the participant (so rollback must undo it).
    pub sent: bool,
    /// The phase of the current or last call.
    pub last_phase: Option<Phase>,
    /// What went wrong with the last call, if it failed.
    pub last_error: Option<String>,
    /// The participant rejected the forward phase: the step caused the rollback, whatever
    /// its undo does afterwards.
    pub rejected: bool,
    /// A person settled the step's last phase by hand, and how.
    pub resolved: Option<Resolution>,
}

impl StepState {
    fn new() -> Self {
        StepState {
            status: StepStatus::Pending,
            attempts: 0,
            sent: false,
            last_phase: None,
            last_error: None,
            rejected: false,
            resolved: None,
        }
    }

    /// Nothing more will happen to this step during a rollback.
    pub fn is_undone(&self) -> bool {
        matches!(self.status, StepStatus::Compensated | StepStatus::Skipped)
    }

    /// The forward phase ended in a way that needs an undo call on rollback.
    pub fn needs_undo(&self) -> bool {
        matches!(
            self.status,
            StepStatus::Done | StepStatus::Rejected | StepStatus::Failed
        )
    }
}

/// Delivery of the completion callback, for sagas submitted with a `callback_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CallbackStatus {
    /// No callback URL.
    #[default]
    None,
    /// Waits for the saga to finish.
    Pending,
    /// An attempt is outstanding.
    Calling {
        /// Which, from 1.
        attempt: u32,
    },
    /// The last attempt failed; the next may start at `until`.
    Waiting {
        /// Attempts so far.
        attempt: u32,
        /// When the next is due.
        until: Millis,
    },
    /// The receiver answered `2xx`.
    Delivered,
    /// The budget is spent (an alert was logged).
    Abandoned,
}

impl CallbackStatus {
    /// Nothing more will happen.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            CallbackStatus::None | CallbackStatus::Delivered | CallbackStatus::Abandoned
        )
    }
}

/// A saga's state: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Saga {
    /// See [`Created::id`].
    pub id: String,
    /// The workflow it runs.
    pub workflow: String,
    /// The workflow version of its plan.
    pub workflow_version: u32,
    /// The submitted input, exactly as submitted.
    pub input: Input,
    /// Where the final state is POSTed once terminal, if anywhere.
    pub callback_url: Option<String>,
    /// The submitter's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// What support staff search the saga by, if anything.
    pub business_key: Option<String>,
    /// Attempts to deliver the completion callback before it is abandoned.
    pub callback_max_attempts: u32,
    /// Shared by every saga of one workflow version. Snapshots leave it out: the saga's first
    /// event holds it.
    #[serde(skip)]
    pub plan: Arc<Plan>,
    /// See [`Created::trace`].
    #[serde(skip)]
    pub trace: Option<TraceParent>,
    /// When it was submitted.
    pub created_at: Millis,
    /// When its last event happened.
    pub updated_at: Millis,
    /// Where the saga as a whole stands.
    pub lifecycle: Lifecycle,
    /// Each step's state, in the plan's order.
    pub steps: Vec<StepState>,
    /// Why the saga rolled back or got stuck.
    pub error: Option<String>,
    /// Delivery of the completion callback.
    pub callback: CallbackStatus,
}

impl Saga {
    /// The state after the saga's first event.
    pub fn create(created: &Created) -> Result<Saga, EngineError> {
        created.plan.validate()?;
        Ok(Saga {
            id: created.id.clone(),
            workflow: created.workflow.clone(),
            workflow_version: created.workflow_version,
            input: created.input.clone(),
            callback_url: created.callback_url.clone(),
            idempotency_key: created.idempotency_key.clone(),
            business_key: created.business_key.clone(),
            callback_max_attempts: created.callback_max_attempts,
            plan: created.plan.clone(),
            trace: created.trace,
            created_at: created.at,
            updated_at: created.at,
            lifecycle: Lifecycle::Running,
            steps: created
                .plan
                .steps
                .iter()
                .map(|_| StepState::new())
                .collect(),
            error: None,
            callback: if created.callback_url.is_some() {
                CallbackStatus::Pending
            } else {
                CallbackStatus::None
            },
        })
    }

    /// Rebuilds a saga from its log.
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a Event>) -> Result<Saga, EngineError> {
        let mut events = events.into_iter();
        let Some(Event::Created(created)) = events.next() else {
            return Err(EngineError::InvalidPlan(
                "log does not start with a created event".into(),
            ));
        };
        let mut saga = Saga::create(created)?;
        for event in events {
            saga.apply(event)?;
        }
        Ok(saga)
    }

    /// Terminal and nobody left to tell: the saga's task can stop.
    pub fn is_settled(&self) -> bool {
        self.lifecycle.is_terminal() && self.callback.is_settled()
    }

    /// When the global deadline passes, if the workflow has one.
    pub fn deadline(&self) -> Option<Millis> {
        self.plan
            .timeout_ms
            .map(|t| self.created_at.saturating_add(t))
    }

    fn illegal(&self, event: &Event) -> EngineError {
        EngineError::IllegalTransition {
            saga: self.id.clone(),
            event: event.name(),
            state: self.lifecycle.name(),
        }
    }

    fn step_error(&self, step: usize, action: String, why: &str) -> EngineError {
        EngineError::IllegalStep {
            saga: self.id.clone(),
            step: self.plan.steps[step].name.clone(),
            action,
            why: why.into(),
        }
    }

    /// Applies one event. On error the state is unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), EngineError> {
        match event {
            Event::Created(_) => return Err(self.illegal(event)),
            Event::CallStarted { call, .. } => self.apply_call_started(event, *call)?,
            Event::CallEnded {
                call,
                outcome,
                error,
                retry_at,
                ..
            } => self.apply_call_ended(*call, *outcome, error.clone(), *retry_at)?,
            Event::Decided { decision, .. } => self.apply_decided(event, decision)?,
            Event::Stuck { step, reason, .. } => {
                let committing = match self.lifecycle {
                    Lifecycle::Confirming => true,
                    Lifecycle::Compensating => false,
                    _ => return Err(self.illegal(event)),
                };
                if *step >= self.steps.len() {
                    return Err(EngineError::UnknownStep {
                        saga: self.id.clone(),
                        step: *step,
                    });
                }
                self.lifecycle = Lifecycle::Stuck { committing };
                self.error = Some(reason.clone());
            }
            Event::Resumed { at } => {
                if self.is_settled() {
                    return Err(self.illegal(event));
                }
                if let CallbackStatus::Calling { attempt } = self.callback {
                    self.callback = CallbackStatus::Waiting {
                        attempt,
                        until: *at,
                    };
                }
                for step in &mut self.steps {
                    match step.status {
                        // An outstanding call may or may not have arrived: retry it now.
                        StepStatus::Calling { phase, attempt } => {
                            if phase.is_forward() {
                                step.sent = true;
                            }
                            step.status = StepStatus::Waiting {
                                phase,
                                attempt,
                                until: *at,
                            };
                        }
                        // `CallStarted` is written lazily, so the crash may have lost the
                        // start of a (next) forward call that did go out: a rollback must
                        // undo this step too (at worst a null compensation).
                        StepStatus::Pending => step.sent = true,
                        StepStatus::Waiting { phase, .. } if phase.is_forward() => step.sent = true,
                        _ => {}
                    }
                }
                // Rolling back (or stuck rolling back): forward phases stop here.
                if self.lifecycle != Lifecycle::Running {
                    self.settle_forward_steps();
                }
            }
            Event::RetryRequested { at } => {
                let Lifecycle::Stuck { committing } = self.lifecycle else {
                    return Err(self.illegal(event));
                };
                self.lifecycle = if committing {
                    Lifecycle::Confirming
                } else {
                    Lifecycle::Compensating
                };
                for step in &mut self.steps {
                    if let StepStatus::Waiting { phase, .. } = step.status
                        && phase.must_settle()
                    {
                        step.status = StepStatus::Waiting {
                            phase,
                            attempt: 0,
                            until: *at,
                        };
                    }
                }
                if !committing {
                    self.settle_forward_steps();
                }
            }
            Event::Operated { .. } => {
                if self.is_settled() {
                    return Err(self.illegal(event));
                }
            }
            Event::RetryNow { at } => self.apply_retry_now(event, *at)?,
            Event::StepResolved {
                step, resolution, ..
            } => self.apply_step_resolved(*step, *resolution)?,
            Event::Finished { .. } => {
                self.lifecycle = match self.lifecycle {
                    Lifecycle::Confirming if self.all_confirmed() => Lifecycle::Committed,
                    Lifecycle::Compensating if self.steps.iter().all(StepState::is_undone) => {
                        Lifecycle::Aborted
                    }
                    _ => return Err(self.illegal(event)),
                };
            }
            Event::CallbackStarted { attempt, .. } => {
                let next = match self.callback {
                    CallbackStatus::Pending => 1,
                    CallbackStatus::Waiting { attempt, .. } => attempt + 1,
                    _ => 0,
                };
                if !self.lifecycle.is_terminal() || next == 0 || *attempt != next {
                    return Err(self.illegal(event));
                }
                self.callback = CallbackStatus::Calling { attempt: *attempt };
            }
            Event::CallbackEnded {
                attempt,
                delivered,
                retry_at,
                ..
            } => {
                if self.callback != (CallbackStatus::Calling { attempt: *attempt }) {
                    return Err(self.illegal(event));
                }
                self.callback = if *delivered {
                    CallbackStatus::Delivered
                } else {
                    CallbackStatus::Waiting {
                        attempt: *attempt,
                        until: *retry_at,
                    }
                };
            }
            Event::CallbackAbandoned { .. } => {
                if !matches!(self.callback, CallbackStatus::Waiting { .. }) {
                    return Err(self.illegal(event));
                }
                self.callback = CallbackStatus::Abandoned;
            }
        }
        self.updated_at = self.updated_at.max(event.at());
        Ok(())
    }

    /// Every call waiting on its backoff, and a waiting callback, is due at `at`.
    fn apply_retry_now(&mut self, event: &Event, at: Millis) -> Result<(), EngineError> {
        if matches!(self.lifecycle, Lifecycle::Stuck { .. }) || self.is_settled() {
            return Err(self.illegal(event));
        }
        let mut waiting = false;
        for step in &mut self.steps {
            if let StepStatus::Waiting { until, .. } = &mut step.status {
                *until = (*until).min(at);
                waiting = true;
            }
        }
        if let CallbackStatus::Waiting { until, .. } = &mut self.callback {
            *until = (*until).min(at);
            waiting = true;
        }
        if !waiting {
            return Err(self.illegal(event));
        }
        Ok(())
    }

    /// A person settled a waiting (or stuck) step by hand: its phase counts as done.
    fn apply_step_resolved(
        &mut self,
        step: usize,
        resolution: Resolution,
    ) -> Result<(), EngineError> {
        let Some(state) = self.steps.get(step) else {
            return Err(EngineError::UnknownStep {
                saga: self.id.clone(),
                step,
            });
        };
        let StepStatus::Waiting { phase, .. } = state.status else {
            return Err(self.step_error(
                step,
                format!("be resolved as {}", resolution.as_str()),
                "it is neither stuck nor waiting for a retry",
            ));
        };
        let (status, lifecycle) = match (resolution, phase, self.lifecycle) {
            (Resolution::Succeeded, p, Lifecycle::Running) if p.is_forward() => {
                (StepStatus::Done, Lifecycle::Running)
            }
            (
                Resolution::Confirmed,
                Phase::Confirm,
                Lifecycle::Confirming | Lifecycle::Stuck { committing: true },
            ) => (StepStatus::Confirmed, Lifecycle::Confirming),
            (
                Resolution::Compensated,
                p,
                Lifecycle::Compensating | Lifecycle::Stuck { committing: false },
            ) if p.is_undo() => (StepStatus::Compensated, Lifecycle::Compensating),
            _ => {
                return Err(self.step_error(
                    step,
                    format!("be resolved as {}", resolution.as_str()),
                    &format!(
                        "its {phase} is waiting while the saga is {}",
                        self.lifecycle.name()
                    ),
                ));
            }
        };
        let rolling_back = lifecycle == Lifecycle::Compensating;
        let state = &mut self.steps[step];
        state.status = status;
        state.resolved = Some(resolution);
        if status == StepStatus::Done {
            // The person made the forward effect happen: a rollback must undo it.
            state.sent = true;
        }
        self.lifecycle = lifecycle;
        if rolling_back {
            self.settle_forward_steps();
        }
        Ok(())
    }

    /// Every TCC step confirmed (SAGA steps need nothing on commit).
    pub fn all_confirmed(&self) -> bool {
        self.plan
            .steps
            .iter()
            .zip(&self.steps)
            .all(|(plan, state)| match plan.kind.commit() {
                None => state.status == StepStatus::Done,
                Some(_) => state.status == StepStatus::Confirmed,
            })
    }

    fn apply_call_started(&mut self, event: &Event, call: CallRef) -> Result<(), EngineError> {
        let Some(plan) = self.plan.steps.get(call.step) else {
            return Err(EngineError::UnknownStep {
                saga: self.id.clone(),
                step: call.step,
            });
        };
        let kind = plan.kind;
        let allowed = match self.lifecycle {
            Lifecycle::Running => call.phase == kind.forward(),
            Lifecycle::Confirming => Some(call.phase) == kind.commit(),
            Lifecycle::Compensating => call.phase == kind.undo(),
            _ => false,
        };
        if !allowed {
            return Err(self.illegal(event));
        }
        let state = &self.steps[call.step];
        let next_attempt = match state.status {
            StepStatus::Pending if call.phase.is_forward() => 1,
            StepStatus::Done if call.phase == sagas::Phase::Confirm => 1,
            StepStatus::Done | StepStatus::Rejected | StepStatus::Failed
                if call.phase.is_undo() =>
            {
                1
            }
            StepStatus::Waiting { phase, attempt, .. } if phase == call.phase => attempt + 1,
            _ => {
                return Err(self.step_error(
                    call.step,
                    format!("start {}", call.phase),
                    &format!("step is {:?}", state.status),
                ));
            }
        };
        if call.attempt != next_attempt {
            return Err(self.step_error(
                call.step,
                format!("start {} attempt {}", call.phase, call.attempt),
                &format!("the next attempt is {next_attempt}"),
            ));
        }
        if call.phase.is_forward() && self.lifecycle == Lifecycle::Running {
            // Only meaningful for forward phases: dependencies must have succeeded.
            let ready = self.plan.steps[call.step]
                .deps
                .iter()
                .all(|&d| self.steps[d].status == StepStatus::Done);
            if !ready {
                return Err(self.step_error(
                    call.step,
                    format!("start {}", call.phase),
                    "dependencies not done",
                ));
            }
        }
        let state = &mut self.steps[call.step];
        state.status = StepStatus::Calling {
            phase: call.phase,
            attempt: call.attempt,
        };
        state.attempts += 1;
        state.last_phase = Some(call.phase);
        Ok(())
    }

    fn apply_call_ended(
        &mut self,
        call: CallRef,
        outcome: CallOutcome,
        error: Option<String>,
        retry_at: Millis,
    ) -> Result<(), EngineError> {
        let Some(state) = self.steps.get_mut(call.step) else {
            return Err(EngineError::UnknownStep {
                saga: self.id.clone(),
                step: call.step,
            });
        };
        if state.status
            != (StepStatus::Calling {
                phase: call.phase,
                attempt: call.attempt,
            })
        {
            return Err(EngineError::UnexpectedResult {
                saga: self.id.clone(),
                call: call.to_string(),
            });
        }
        let never_sent = matches!(outcome, CallOutcome::NotSent | CallOutcome::Refused);
        if !never_sent && call.phase.is_forward() {
            state.sent = true;
        }
        state.last_error = match outcome {
            CallOutcome::Ok => None,
            _ => error.or_else(|| Some(format!("{outcome:?}"))),
        };
        let retry = StepStatus::Waiting {
            phase: call.phase,
            attempt: call.attempt,
            until: retry_at,
        };
        state.status = match (call.phase.is_forward(), outcome) {
            (true, CallOutcome::Ok) => StepStatus::Done,
            (true, CallOutcome::Rejected) => {
                state.rejected = true;
                StepStatus::Rejected
            }
            (true, CallOutcome::Refused) => StepStatus::Refused,
            (true, _) => retry,
            (false, CallOutcome::Ok) if call.phase == Phase::Confirm => StepStatus::Confirmed,
            (false, CallOutcome::Ok) => StepStatus::Compensated,
            // Waiting for the circuit to half-open spends no attempt.
            (false, CallOutcome::Refused) => StepStatus::Waiting {
                phase: call.phase,
                attempt: call.attempt - 1,
                until: retry_at,
            },
            // Settle phases never take no for an answer: a rejection is retried too.
            (false, _) => retry,
        };
        if self.lifecycle != Lifecycle::Running && call.phase.is_forward() {
            // A late forward result after the decision to roll back.
            self.settle_forward_steps();
        }
        Ok(())
    }

    fn apply_decided(&mut self, event: &Event, decision: &Decision) -> Result<(), EngineError> {
        if self.lifecycle != Lifecycle::Running {
            return Err(self.illegal(event));
        }
        match decision {
            Decision::Commit => {
                if let Some(i) = self.steps.iter().position(|s| s.status != StepStatus::Done) {
                    return Err(self.step_error(
                        i,
                        "commit".into(),
                        "its forward phase has not succeeded",
                    ));
                }
                self.lifecycle = Lifecycle::Confirming;
            }
            Decision::Abort { reason } => {
                self.lifecycle = Lifecycle::Compensating;
                self.error = Some(reason.clone());
                self.settle_forward_steps();
            }
        }
        Ok(())
    }

    /// During a rollback, forward phases stop: never-called steps are skipped, and one
    /// waiting for a retry is undone if any attempt may have reached the participant.
    fn settle_forward_steps(&mut self) {
        for step in &mut self.steps {
            step.status = match step.status {
                StepStatus::Pending | StepStatus::Refused if step.sent => StepStatus::Failed,
                StepStatus::Refused => StepStatus::Skipped,
                StepStatus::Pending => StepStatus::Skipped,
                StepStatus::Waiting { phase, .. } if phase.is_forward() => {
                    if step.sent {
                        StepStatus::Failed
                    } else {
                        StepStatus::Skipped
                    }
                }
                other => other,
            };
        }
    }

    /// The step's status as the API shows it. A step whose forward phase was rejected stays
    /// `rejected`: it is the step that caused the rollback ([`Saga::api_undo_status`] tells
    /// where its undo stands).
    pub fn api_step_status(&self, step: usize) -> ApiStepStatus {
        let state = &self.steps[step];
        if state.rejected {
            return ApiStepStatus::Rejected;
        }
        self.api_status_of(state.status)
    }

    /// Where the undo of a step whose forward phase was rejected stands; `None` for other
    /// steps (their status says it).
    pub fn api_undo_status(&self, step: usize) -> Option<ApiStepStatus> {
        let state = &self.steps[step];
        if !state.rejected {
            return None;
        }
        Some(match state.status {
            StepStatus::Rejected => ApiStepStatus::Pending,
            other => self.api_status_of(other),
        })
    }

    fn api_status_of(&self, status: StepStatus) -> ApiStepStatus {
        match status {
            StepStatus::Pending => ApiStepStatus::Pending,
            StepStatus::Calling { .. } => ApiStepStatus::Calling,
            StepStatus::Waiting { .. } if matches!(self.lifecycle, Lifecycle::Stuck { .. }) => {
                ApiStepStatus::Stuck
            }
            StepStatus::Waiting { .. } => ApiStepStatus::Retrying,
            StepStatus::Done => ApiStepStatus::Succeeded,
            StepStatus::Rejected => ApiStepStatus::Rejected,
            StepStatus::Refused => ApiStepStatus::Refused,
            StepStatus::Failed => ApiStepStatus::Failed,
            StepStatus::Confirmed => ApiStepStatus::Confirmed,
            StepStatus::Compensated => ApiStepStatus::Compensated,
            StepStatus::Skipped => ApiStepStatus::Skipped,
        }
    }
}
