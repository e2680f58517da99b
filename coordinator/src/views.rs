//! Engine state as API bodies (also what completion callbacks carry).

use sagas::api::{EventView, SagaView, StepView};

use crate::clock::rfc3339;
use crate::engine::{Decision, Event, Saga};

pub fn saga_view(saga: &Saga) -> SagaView {
    SagaView {
        id: saga.id.clone(),
        workflow: saga.workflow.clone(),
        workflow_version: saga.workflow_version,
        state: saga.lifecycle.api_state(),
        input: saga.input.clone(),
        error: saga.error.clone(),
        created_at: rfc3339(saga.created_at),
        updated_at: rfc3339(saga.updated_at),
        callback_url: saga.callback_url.clone(),
        business_key: saga.business_key.clone(),
        steps: saga
            .plan
            .steps
            .iter()
            .zip(&saga.steps)
            .enumerate()
            .map(|(i, (plan, state))| StepView {
                name: plan.name.clone(),
                participant: plan.participant.clone(),
                kind: plan.kind,
                status: saga.api_step_status(i),
                attempts: state.attempts,
                phase: state.last_phase,
                last_error: state.last_error.clone(),
                undo: saga.api_undo_status(i),
                resolved: state.resolved,
            })
            .collect(),
    }
}

pub fn event_view(saga: &Saga, seq: u64, event: &Event) -> EventView {
    let step_name = |i: usize| saga.plan.steps.get(i).map(|s| s.name.clone());
    let mut view = EventView::new(seq, rfc3339(event.at()), event.name());
    match event {
        Event::CallStarted { call, .. } => {
            view.step = step_name(call.step);
            view.phase = Some(call.phase);
            view.attempt = Some(call.attempt);
        }
        Event::CallEnded {
            call,
            outcome,
            http_status,
            latency_ms,
            error,
            ..
        } => {
            view.step = step_name(call.step);
            view.phase = Some(call.phase);
            view.attempt = Some(call.attempt);
            view.outcome = Some(outcome.as_str().into());
            view.http_status = *http_status;
            view.latency_ms = Some(*latency_ms);
            view.error = error.clone();
        }
        Event::Decided { decision, .. } => match decision {
            Decision::Commit => view.outcome = Some("commit".into()),
            Decision::Abort { reason } => {
                view.outcome = Some("abort".into());
                view.error = Some(reason.clone());
            }
        },
        Event::Stuck { step, reason, .. } => {
            view.step = step_name(*step);
            view.error = Some(reason.clone());
        }
        Event::Finished { .. } => {
            view.outcome = Some(
                if saga.lifecycle.is_terminal() {
                    saga.lifecycle.name()
                } else {
                    "finished"
                }
                .into(),
            );
        }
        Event::CallbackStarted { attempt, .. } => view.attempt = Some(*attempt),
        Event::CallbackEnded {
            attempt,
            delivered,
            http_status,
            error,
            ..
        } => {
            view.attempt = Some(*attempt);
            view.outcome = Some(if *delivered { "delivered" } else { "failed" }.into());
            view.http_status = *http_status;
            view.error = error.clone();
        }
        Event::CallbackAbandoned { reason, .. } => view.error = Some(reason.clone()),
        Event::Operated {
            action, by, reason, ..
        } => {
            view.outcome = Some(action.clone());
            view.by = Some(by.clone());
            view.reason = reason.clone();
        }
        Event::StepResolved {
            step, resolution, ..
        } => {
            view.step = step_name(*step);
            view.resolution = Some(*resolution);
        }
        Event::Created(_)
        | Event::Resumed { .. }
        | Event::RetryRequested { .. }
        | Event::RetryNow { .. } => {}
    }
    view
}
