//! `sagactl participants list|get`: where participants live and how calls to them go now.

use sagas::ActionEndpoints;
use sagas::api::{ParticipantView, RecentCalls};

use crate::cli::ParticipantsCommand;
use crate::error::CliError;
use crate::output::{self, Format};
use crate::session::Session;

/// Runs one `participants` command; returns what to print.
pub async fn run(session: &Session, command: ParticipantsCommand) -> Result<String, CliError> {
    match command {
        ParticipantsCommand::List => {
            let list = session
                .client()
                .list_participants()
                .await
                .map_err(|e| session.fail(e))?;
            match session.format() {
                Format::Json => output::json(&list),
                Format::Table => Ok(list_table(&list.participants)),
            }
        }
        ParticipantsCommand::Get { name } => {
            let participant = session
                .client()
                .get_participant(&name)
                .await
                .map_err(|e| session.fail(e))?;
            match session.format() {
                Format::Json => output::json(&participant),
                Format::Table => Ok(detail(&participant)),
            }
        }
    }
}

/// Every participant, one row each.
fn list_table(participants: &[ParticipantView]) -> String {
    if participants.is_empty() {
        return "no participants registered\n".to_string();
    }
    let mut table = output::table(&[
        "name",
        "base url",
        "circuit",
        "in flight",
        "queued",
        "error rate",
        "p50",
        "p99",
    ]);
    for p in participants {
        table.add_row(vec![
            p.name.clone(),
            p.spec.base_url.clone(),
            p.circuit.clone(),
            p.in_flight.to_string(),
            p.queued.to_string(),
            error_rate(&p.recent),
            output::or_dash(p.recent.latency_p50_ms.map(output::millis)),
            output::or_dash(p.recent.latency_p99_ms.map(output::millis)),
        ]);
    }
    output::align_right(&mut table, &[3, 4, 5, 6, 7]);
    output::render(&mut table)
}

/// `1.6% of 256` (failed share of the recent calls), `-` with none.
fn error_rate(recent: &RecentCalls) -> String {
    if recent.calls == 0 {
        "-".to_string()
    } else {
        format!("{:.1}% of {}", recent.error_rate * 100.0, recent.calls)
    }
}

/// One participant: its live state and policy, then its actions.
fn detail(p: &ParticipantView) -> String {
    let policy = p.spec.policy.as_ref();
    let mut text = output::fields(&[
        ("name", Some(p.name.clone())),
        ("base url", Some(p.spec.base_url.clone())),
        ("circuit", Some(p.circuit.clone())),
        ("in flight", Some(p.in_flight.to_string())),
        ("queued", Some(p.queued.to_string())),
        (
            "recent calls",
            Some(format!("{} ({} failed)", p.recent.calls, p.recent.failed)),
        ),
        ("error rate", Some(error_rate(&p.recent))),
        (
            "latency p50",
            Some(output::or_dash(p.recent.latency_p50_ms.map(output::millis))),
        ),
        (
            "latency p99",
            Some(output::or_dash(p.recent.latency_p99_ms.map(output::millis))),
        ),
        (
            "policy",
            policy
                .is_none()
                .then(|| "the coordinator's defaults".to_string()),
        ),
        (
            "timeout",
            policy.map(|policy| output::millis(policy.timeout_ms as f64)),
        ),
        (
            "concurrency",
            policy.map(|policy| {
                format!(
                    "{} at once, {} queued at most",
                    policy.max_concurrency, policy.queue_capacity
                )
            }),
        ),
        (
            "rate limit",
            policy.map(|policy| {
                policy
                    .rate_limit_per_sec
                    .map_or_else(|| "none".to_string(), |r| format!("{r}/s"))
            }),
        ),
    ]);
    text.push('\n');
    let mut table = output::table(&["action", "kind", "paths"]);
    for (name, endpoints) in &p.spec.actions {
        let (kind, paths) = match endpoints {
            ActionEndpoints::Tcc {
                try_path,
                confirm,
                cancel,
            } => (
                "tcc",
                format!("try {try_path}  confirm {confirm}  cancel {cancel}"),
            ),
            ActionEndpoints::Saga { action, compensate } => {
                ("saga", format!("action {action}  compensate {compensate}"))
            }
        };
        table.add_row(vec![name.clone(), kind.to_string(), paths]);
    }
    text.push_str(&output::render(&mut table));
    text
}
