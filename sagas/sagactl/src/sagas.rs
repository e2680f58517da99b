//! `sagactl sagas ...`: list, get, events, and the operator actions (abort, retry, retry-now,
//! resolve, bulk-retry).

use sagas::api::{BulkRetry, OperatorNote, ResolveStep, SagaList, SagaQuery, SagaView, StepView};

use sagas::StepKind;

use crate::cli::{BulkRetryArgs, FilterArgs, ListArgs, NoteArgs, ResolveArgs, SagasCommand};
use crate::error::CliError;
use crate::output::{self, Format};
use crate::session::Session;
use crate::timeline;

/// Runs one `sagas` command; returns what to print.
pub async fn run(session: &Session, command: SagasCommand) -> Result<String, CliError> {
    let client = session.client();
    match command {
        SagasCommand::List(args) => list(session, args).await,
        SagasCommand::Get { id } => {
            let saga = client.get_saga(&id).await.map_err(|e| session.fail(e))?;
            saga_output(session.format(), &saga)
        }
        SagasCommand::Events { id } => {
            let events = client.saga_events(&id).await.map_err(|e| session.fail(e))?;
            match session.format() {
                Format::Json => output::json(&events),
                Format::Table => Ok(timeline::render(&events, timeline::colour_wanted())),
            }
        }
        SagasCommand::Abort { id, note } => {
            let saga = client.abort_with(&id, &operator_note(note)).await;
            saga_output(session.format(), &saga.map_err(|e| session.fail(e))?)
        }
        SagasCommand::Retry { id, note } => {
            let saga = client.retry_with(&id, &operator_note(note)).await;
            saga_output(session.format(), &saga.map_err(|e| session.fail(e))?)
        }
        SagasCommand::RetryNow { id, note } => {
            let saga = client.retry_now(&id, &operator_note(note)).await;
            saga_output(session.format(), &saga.map_err(|e| session.fail(e))?)
        }
        SagasCommand::Resolve(args) => resolve(session, args).await,
        SagasCommand::BulkRetry(args) => bulk_retry(session, args).await,
    }
}

/// `--reason` and `--by` as the API's note; blank values are left out.
fn operator_note(note: NoteArgs) -> OperatorNote {
    OperatorNote {
        reason: note.reason.filter(|r| !r.trim().is_empty()),
        by: note.by.filter(|b| !b.trim().is_empty()),
    }
}

/// The list filters as the API's query (no state, limit or cursor).
fn query(filter: FilterArgs) -> SagaQuery {
    SagaQuery {
        workflow: filter.workflow,
        business_key: filter.business_key,
        created_after: filter.created_after,
        created_before: filter.created_before,
        ..SagaQuery::default()
    }
}

/// `sagas list`: one page, or with `--all` every page from `--cursor` on, as one list.
async fn list(session: &Session, args: ListArgs) -> Result<String, CliError> {
    let mut query = query(args.filter);
    query.state = args.state.map(|s| s.as_str().to_string());
    query.limit = args.limit;
    query.cursor = args.cursor;
    let mut page = session
        .client()
        .query_sagas(&query)
        .await
        .map_err(|e| session.fail(e))?;
    if args.all {
        while let Some(cursor) = page.next_cursor.take() {
            query.cursor = Some(cursor);
            let next = session
                .client()
                .query_sagas(&query)
                .await
                .map_err(|e| session.fail(e))?;
            page.sagas.extend(next.sagas);
            page.next_cursor = next.next_cursor;
        }
    }
    match session.format() {
        Format::Json => output::json(&page),
        Format::Table => Ok(list_table(&page)),
    }
}

/// A page of sagas as a table, with the next page's flag under it.
fn list_table(page: &SagaList) -> String {
    if page.sagas.is_empty() {
        return "no sagas match\n".to_string();
    }
    let mut table = output::table(&[
        "id",
        "workflow",
        "state",
        "business key",
        "created",
        "updated",
    ]);
    for saga in &page.sagas {
        table.add_row(vec![
            saga.id.clone(),
            format!("{} v{}", saga.workflow, saga.workflow_version),
            saga.state.as_str().to_string(),
            output::or_dash(saga.business_key.as_deref()),
            saga.created_at.clone(),
            saga.updated_at.clone(),
        ]);
    }
    let mut text = output::render(&mut table);
    if let Some(cursor) = &page.next_cursor {
        text.push_str(&format!("more: --cursor {cursor} (or --all)\n"));
    }
    text
}

/// A saga as JSON, or as a head of fields and a table of its steps.
pub fn saga_output(format: Format, saga: &SagaView) -> Result<String, CliError> {
    if format == Format::Json {
        return output::json(saga);
    }
    let mut text = output::fields(&[
        ("id", Some(saga.id.clone())),
        (
            "workflow",
            Some(format!("{} v{}", saga.workflow, saga.workflow_version)),
        ),
        ("state", Some(saga.state.as_str().to_string())),
        ("business key", saga.business_key.clone()),
        ("error", saga.error.clone()),
        ("created", Some(saga.created_at.clone())),
        ("updated", Some(saga.updated_at.clone())),
        ("callback", saga.callback_url.clone()),
        ("input", Some(saga.input.get().to_string())),
    ]);
    text.push('\n');
    let mut table = output::table(&[
        "step",
        "participant",
        "kind",
        "status",
        "attempts",
        "phase",
        "resolved",
        "last error",
    ]);
    for step in &saga.steps {
        table.add_row(vec![
            step.name.clone(),
            step.participant.clone(),
            step_kind(step.kind).to_string(),
            step_status(step),
            step.attempts.to_string(),
            output::or_dash(step.phase.map(|p| p.as_str())),
            output::or_dash(step.resolved.map(|r| r.as_str())),
            output::or_dash(step.last_error.as_deref()),
        ]);
    }
    output::align_right(&mut table, &[4]);
    text.push_str(&output::render(&mut table));
    Ok(text)
}

/// `saga` or `tcc`, as on the wire.
fn step_kind(kind: StepKind) -> &'static str {
    match kind {
        StepKind::Saga => "saga",
        StepKind::Tcc => "tcc",
    }
}

/// A step's status, with where its undo stands for a rejected one (`rejected, undo compensated`).
fn step_status(step: &StepView) -> String {
    match step.undo {
        Some(undo) => format!("{}, undo {}", step.status.as_str(), undo.as_str()),
        None => step.status.as_str().to_string(),
    }
}

/// `sagas resolve`: a step settled by hand.
async fn resolve(session: &Session, args: ResolveArgs) -> Result<String, CliError> {
    if args.reason.trim().is_empty() {
        return Err(CliError::Usage(
            "--reason: say what was done by hand (it is recorded in the saga's events)".into(),
        ));
    }
    let body = ResolveStep {
        resolution: args.resolution.into(),
        reason: args.reason,
        by: args.by.filter(|b| !b.trim().is_empty()),
    };
    let saga = session
        .client()
        .resolve_step(&args.id, &args.step, &body)
        .await
        .map_err(|e| session.fail(e))?;
    saga_output(session.format(), &saga)
}

/// `sagas bulk-retry`: every stuck saga the filters match is resumed.
async fn bulk_retry(session: &Session, args: BulkRetryArgs) -> Result<String, CliError> {
    if args.reason.trim().is_empty() {
        return Err(CliError::Usage(
            "--reason: say why the sagas are retried (it is recorded in each saga's events)".into(),
        ));
    }
    let note = operator_note(NoteArgs {
        reason: Some(args.reason),
        by: args.by,
    });
    let answer = session
        .client()
        .bulk_retry(&query(args.filter), &note)
        .await
        .map_err(|e| session.fail(e))?;
    match session.format() {
        Format::Json => output::json(&answer),
        Format::Table => Ok(bulk_table(&answer)),
    }
}

/// How many were resumed, and a table of those skipped.
fn bulk_table(answer: &BulkRetry) -> String {
    let mut text = format!(
        "resumed {} stuck saga{}\n",
        answer.resumed,
        if answer.resumed == 1 { "" } else { "s" }
    );
    if !answer.skipped.is_empty() {
        let mut table = output::table(&["skipped", "why"]);
        for skip in &answer.skipped {
            table.add_row(vec![skip.id.as_str(), skip.reason.as_str()]);
        }
        text.push('\n');
        text.push_str(&output::render(&mut table));
    }
    text
}
