//! `sagactl`: the saga coordinator's command-line client.
//!
//! Commands: `sagas list|get|events|abort|retry|retry-now|resolve|bulk-retry`, `submit`,
//! `participants list|get`, `workflows list|get|apply -f FILE`. Global options:
//! `--coordinator URL` (env `SAGACTL_COORDINATOR`, default `http://127.0.0.1:7700`),
//! `--output table|json`, `--token TOKEN` (env `SAGACTL_TOKEN`).
//!
//! Exit status: 0 success; 1 the coordinator answered an error (`error: <code>: <message>` on
//! standard error) or could not be reached; 2 bad usage.
//!
//! Modules: [`cli`] (the command line), [`session`] (the client and output format),
//! [`output`] (JSON and tables), [`timeline`] (events as a text timeline), [`error`] (what
//! fails and its exit status), and one module per command group: [`sagas`], [`submit`],
//! [`participants`], [`workflows`].

mod cli;
mod error;
mod output;
mod participants;
mod sagas;
mod session;
mod submit;
mod timeline;
mod workflows;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::session::Session;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // Bad flags: clap prints the usage and exits with status 2.
    let cli = Cli::parse();
    match run(cli).await.and_then(|text| output::print(&text)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the command; returns what to print on standard output.
async fn run(cli: Cli) -> Result<String, CliError> {
    let session = Session::new(&cli.global)?;
    match cli.command {
        Command::Sagas(command) => sagas::run(&session, command).await,
        Command::Submit(args) => submit::run(&session, args).await,
        Command::Participants(command) => participants::run(&session, command).await,
        Command::Workflows(command) => workflows::run(&session, command).await,
    }
}
