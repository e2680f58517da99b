//! The command line: every command, flag and environment variable `sagactl` understands.
//!
//! Usage errors (an unknown flag, a missing argument, a value outside its choices) are clap's,
//! which prints them with the usage and exits with status 2.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sagas::api::{Resolution, SagaState};

use crate::output::Format;

/// The coordinator's default listen address (`coordinator --listen`, API v1).
pub const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:7700";

/// Command-line client of the saga coordinator: list and inspect sagas, draw their timeline,
/// submit sagas, act on them as an operator, and manage participants and workflows.
///
/// Exit status: 0 success, 1 the coordinator answered an error or could not be reached,
/// 2 bad usage (unknown flag, unreadable input file, input that is not JSON).
#[derive(Debug, Parser)]
#[command(name = "sagactl", version, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes; they may come before or after the command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Base URL of the coordinator's API.
    #[arg(
        long,
        global = true,
        env = "SAGACTL_COORDINATOR",
        default_value = DEFAULT_COORDINATOR,
        value_name = "URL"
    )]
    pub coordinator: String,
    /// `table` for people, `json` for scripts (the API's JSON, pretty-printed).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Bearer token sent as `Authorization: Bearer <TOKEN>` with every request.
    #[arg(
        long,
        global = true,
        env = "SAGACTL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List, inspect and operate on sagas.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// Submit a saga: run a workflow with an input.
    Submit(SubmitArgs),
    /// Registered participants with their live circuit, load, error rate and latency.
    #[command(subcommand)]
    Participants(ParticipantsCommand),
    /// Workflow definitions: list, show, apply from files.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
}

/// `sagactl sagas ...`.
#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// List sagas in id (creation) order: one page, or every page with --all.
    List(ListArgs),
    /// Show one saga and its steps.
    Get {
        /// Saga id.
        id: String,
    },
    /// Draw a saga's audit trail as a text timeline.
    Events {
        /// Saga id.
        id: String,
    },
    /// Roll back a saga that has not decided yet.
    Abort {
        /// Saga id.
        id: String,
        /// Who asks and why, recorded in the saga's events.
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Resume a stuck saga with a fresh attempt budget.
    Retry {
        /// Saga id.
        id: String,
        /// Who asks and why, recorded in the saga's events.
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Make a call that waits on its backoff now.
    RetryNow {
        /// Saga id.
        id: String,
        /// Who asks and why, recorded in the saga's events.
        #[command(flatten)]
        note: NoteArgs,
    },
    /// Record that a person settled a stuck or waiting step by hand; the saga goes on from there.
    Resolve(ResolveArgs),
    /// Resume every stuck saga the filters match.
    BulkRetry(BulkRetryArgs),
}

/// `--state`: a saga state by its wire name, the possible values listed in `--help`.
fn state_parser() -> impl TypedValueParser<Value = SagaState> {
    PossibleValuesParser::new(SagaState::ALL.map(SagaState::as_str))
        .map(|name| SagaState::parse(&name).expect("only possible values get here"))
}

/// Filters shared by `sagas list` and `sagas bulk-retry`.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only sagas of this workflow.
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Only sagas carrying this business key (an order number, a payment reference).
    #[arg(long, value_name = "KEY")]
    pub business_key: Option<String>,
    /// Only sagas created at or after this time (RFC 3339, e.g. 2026-11-30T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub created_after: Option<String>,
    /// Only sagas created before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub created_before: Option<String>,
}

/// `sagactl sagas list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sagas in this state.
    #[arg(long, value_name = "STATE", value_parser = state_parser())]
    pub state: Option<SagaState>,
    /// Workflow, business key and time range.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Page size, 1 to 1000 (the coordinator's default is 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Start after this cursor (a previous page's `next_cursor`).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Follow `next_cursor` to the last page and print every saga.
    #[arg(long)]
    pub all: bool,
}

/// Who asks and why: recorded with an operator action in the saga's events.
#[derive(Debug, Clone, Args)]
pub struct NoteArgs {
    /// Why (a ticket, "participant fixed"); at most 1000 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Who asks; with API tokens the coordinator records the token's name instead.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub by: Option<String>,
}

/// How the step was settled by hand (`--as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ResolutionArg {
    /// The undo (cancel/compensate) was done by hand, e.g. a refund issued.
    Compensated,
    /// The confirm was done by hand.
    Confirmed,
    /// The forward phase (try/action) took effect.
    Succeeded,
}

impl From<ResolutionArg> for Resolution {
    fn from(resolution: ResolutionArg) -> Resolution {
        match resolution {
            ResolutionArg::Compensated => Resolution::Compensated,
            ResolutionArg::Confirmed => Resolution::Confirmed,
            ResolutionArg::Succeeded => Resolution::Succeeded,
        }
    }
}

/// `sagactl sagas resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Saga id.
    pub id: String,
    /// Name of the step that was settled by hand.
    pub step: String,
    /// What was done by hand.
    #[arg(long = "as", value_enum, value_name = "HOW")]
    pub resolution: ResolutionArg,
    /// What was done and why (required).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who did it; with API tokens the coordinator records the token's name instead.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub by: Option<String>,
}

/// `sagactl sagas bulk-retry`.
#[derive(Debug, Args)]
pub struct BulkRetryArgs {
    /// Which stuck sagas to resume (all of them without a filter).
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Why (required): recorded in every resumed saga's events.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Who asks; with API tokens the coordinator records the token's name instead.
    #[arg(long, env = "USER", value_name = "NAME")]
    pub by: Option<String>,
}

/// `sagactl submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Name of the workflow to run.
    pub workflow: String,
    /// The input: JSON text, `@FILE` to read it from a file, or `@-` from standard input.
    /// Sent exactly as written (numbers and key order untouched).
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: String,
    /// Business key to find the saga by (default: the workflow's own, read from the input).
    #[arg(long, value_name = "KEY")]
    pub business_key: Option<String>,
    /// Idempotency key: submitting the same key and input again returns the same saga.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Wait up to this many milliseconds for the saga to finish before answering.
    #[arg(long, value_name = "MS")]
    pub wait_ms: Option<u64>,
    /// URL the finished saga is POSTed to.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
}

/// `sagactl participants ...`.
#[derive(Debug, Subcommand)]
pub enum ParticipantsCommand {
    /// Every registered participant.
    List,
    /// One participant: its state, policy and actions.
    Get {
        /// Participant name.
        name: String,
    },
}

/// `sagactl workflows ...`.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// Every workflow at its newest version.
    List,
    /// One workflow at its newest version, with its steps.
    Get {
        /// Workflow name.
        name: String,
    },
    /// Store workflow definitions from YAML or JSON files. With `-o json`: the API's answer
    /// for one file, `{"workflows": [...]}` (as `workflows list`) for several.
    Apply(ApplyArgs),
}

/// `sagactl workflows apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A workflow file (`.yaml`, `.yml` or `.json`), or a directory whose such files are all
    /// applied. Repeatable. Every file is read and parsed before any is applied.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Workflow name, when applying exactly one file (default: the file name without its
    /// extension).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
