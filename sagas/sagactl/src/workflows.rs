//! `sagactl workflows list|get|apply`: workflow definitions and their versions.

use std::path::{Path, PathBuf};

use sagas::WorkflowSpec;
use sagas::api::{WorkflowList, WorkflowView};

use crate::cli::{ApplyArgs, WorkflowsCommand};
use crate::error::CliError;
use crate::output::{self, Format};
use crate::session::Session;

/// File extensions `apply` takes from a directory.
const WORKFLOW_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Runs one `workflows` command; returns what to print.
pub async fn run(session: &Session, command: WorkflowsCommand) -> Result<String, CliError> {
    match command {
        WorkflowsCommand::List => {
            let list = session
                .client()
                .list_workflows()
                .await
                .map_err(|e| session.fail(e))?;
            match session.format() {
                Format::Json => output::json(&list),
                Format::Table => Ok(list_table(&list.workflows)),
            }
        }
        WorkflowsCommand::Get { name } => {
            let workflow = session
                .client()
                .get_workflow(&name)
                .await
                .map_err(|e| session.fail(e))?;
            match session.format() {
                Format::Json => output::json(&workflow),
                Format::Table => Ok(detail(&workflow)),
            }
        }
        WorkflowsCommand::Apply(args) => apply(session, args).await,
    }
}

/// Workflows, one row each: name, version, steps in order.
fn list_table(workflows: &[WorkflowView]) -> String {
    if workflows.is_empty() {
        return "no workflows\n".to_string();
    }
    let mut table = output::table(&["name", "version", "steps"]);
    for w in workflows {
        table.add_row(vec![
            w.name.clone(),
            w.version.to_string(),
            step_names(&w.spec),
        ]);
    }
    output::align_right(&mut table, &[1]);
    output::render(&mut table)
}

/// `create_order, freeze_funds, award_points`.
fn step_names(spec: &WorkflowSpec) -> String {
    spec.steps
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One workflow: its head, then a table of its steps with what each runs after.
fn detail(w: &WorkflowView) -> String {
    let mut text = output::fields(&[
        ("name", Some(w.name.clone())),
        ("version", Some(w.version.to_string())),
        ("business key from", w.spec.business_key.clone()),
        (
            "timeout",
            w.spec.timeout_ms.map(|ms| output::millis(ms as f64)),
        ),
    ]);
    text.push('\n');
    let mut table = output::table(&["step", "participant", "action", "after", "timeout", "retry"]);
    let dependencies = w.spec.dependencies();
    for (step, after) in w.spec.steps.iter().zip(dependencies) {
        let after: Vec<&str> = after
            .iter()
            .filter_map(|&i| w.spec.steps.get(i).map(|s| s.name.as_str()))
            .collect();
        table.add_row(vec![
            step.name.clone(),
            step.participant.clone(),
            step.action.clone(),
            if after.is_empty() {
                "-".to_string()
            } else {
                after.join(", ")
            },
            output::or_dash(step.timeout_ms.map(|ms| output::millis(ms as f64))),
            output::or_dash(step.retry.as_ref().map(|r| {
                format!(
                    "{}..{} x{}, {} tries, {} to settle",
                    output::millis(r.initial_ms as f64),
                    output::millis(r.max_ms as f64),
                    r.multiplier,
                    r.max_attempts,
                    r.settle_max_attempts
                )
            })),
        ]);
    }
    text.push_str(&output::render(&mut table));
    text
}

/// A workflow file read and parsed, ready to apply.
struct WorkflowFile {
    /// Where it came from.
    path: PathBuf,
    /// The name it is stored under.
    name: String,
    /// The definition.
    spec: WorkflowSpec,
}

/// `workflows apply -f FILE...`: reads and checks every file first (a usage error stops
/// before anything is applied), then stores them in order.
async fn apply(session: &Session, args: ApplyArgs) -> Result<String, CliError> {
    let files = workflow_files(&args)?;
    let mut applied: Vec<(PathBuf, WorkflowView)> = Vec::new();
    for file in files {
        match session.client().put_workflow(&file.name, &file.spec).await {
            Ok(view) => applied.push((file.path, view)),
            Err(e) => {
                let before = if applied.is_empty() {
                    String::new()
                } else {
                    let names: Vec<&str> = applied.iter().map(|(_, v)| v.name.as_str()).collect();
                    format!(" (applied before it: {})", names.join(", "))
                };
                return Err(match session.fail(e) {
                    CliError::Api {
                        status,
                        code,
                        message,
                    } => CliError::Api {
                        status,
                        code,
                        message: format!("{}: {message}{before}", file.path.display()),
                    },
                    other => other,
                });
            }
        }
    }
    match session.format() {
        Format::Json => match <[_; 1]>::try_from(applied) {
            Ok([(_, view)]) => output::json(&view),
            Err(applied) => output::json(&WorkflowList {
                workflows: applied.into_iter().map(|(_, view)| view).collect(),
            }),
        },
        Format::Table => {
            let mut table = output::table(&["name", "version", "steps", "file"]);
            for (path, view) in &applied {
                table.add_row(vec![
                    view.name.clone(),
                    view.version.to_string(),
                    step_names(&view.spec),
                    path.display().to_string(),
                ]);
            }
            output::align_right(&mut table, &[1]);
            Ok(output::render(&mut table))
        }
    }
}

/// Every file the `-f` arguments name (a directory's workflow files in name order), read,
/// parsed and checked; each problem is a usage error that names the file.
fn workflow_files(args: &ApplyArgs) -> Result<Vec<WorkflowFile>, CliError> {
    let mut paths = Vec::new();
    for path in &args.files {
        if path.is_dir() {
            let found = directory_files(path)?;
            if found.is_empty() {
                return Err(CliError::Usage(format!(
                    "-f {}: the directory has no workflow files (.yaml, .yml, .json)",
                    path.display()
                )));
            }
            paths.extend(found);
        } else {
            paths.push(path.clone());
        }
    }
    if args.name.is_some() && paths.len() != 1 {
        return Err(CliError::Usage(format!(
            "--name names one workflow, but {} files were given",
            paths.len()
        )));
    }
    let mut files: Vec<WorkflowFile> = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::Usage(format!("-f {shown}: cannot read it: {e}")))?;
        let spec = WorkflowSpec::from_yaml_or_json(&text, &shown)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        spec.validate()
            .map_err(|e| CliError::Usage(format!("{shown}: {e}")))?;
        let name = match &args.name {
            Some(name) => name.clone(),
            None => name_of(&path)?,
        };
        if let Some(other) = files.iter().find(|f| f.name == name) {
            return Err(CliError::Usage(format!(
                "{shown} and {} both define workflow {name:?}",
                other.path.display()
            )));
        }
        files.push(WorkflowFile { path, name, spec });
    }
    Ok(files)
}

/// The workflow files directly in `dir`, sorted by name.
fn directory_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        CliError::Usage(format!(
            "-f {}: cannot read the directory: {e}",
            dir.display()
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| CliError::Usage(format!("-f {}: {e}", dir.display())))?
            .path();
        let is_workflow = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WORKFLOW_EXTENSIONS.contains(&e));
        if is_workflow && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The workflow name a file gives: its name without the extension.
fn name_of(path: &Path) -> Result<String, CliError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "-f {}: cannot take a workflow name from the file name; give --name",
                path.display()
            ))
        })
}
