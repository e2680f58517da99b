//! `sagactl submit WORKFLOW --input JSON|@FILE`: runs a workflow.

use std::io::Read;

use sagas::RawJson;
use sagas::api::SubmitSaga;

use crate::cli::SubmitArgs;
use crate::error::CliError;
use crate::sagas::saga_output;
use crate::session::Session;

/// Submits the saga and prints it as the coordinator answered (running, or finished when
/// `--wait-ms` was long enough).
pub async fn run(session: &Session, args: SubmitArgs) -> Result<String, CliError> {
    let input = read_input(&args.input)?;
    let body = SubmitSaga {
        workflow: args.workflow,
        input,
        callback_url: args.callback_url,
        business_key: args.business_key,
    };
    let submitted = session
        .client()
        .submit_body(&body, args.idempotency_key.as_deref(), args.wait_ms)
        .await
        .map_err(|e| session.fail(e))?;
    saga_output(session.format(), &submitted.saga)
}

/// The `--input` value: JSON text, `@FILE` or `@-` (standard input), checked to be one JSON
/// value and kept as written. Unreadable or not JSON: a usage error.
fn read_input(arg: &str) -> Result<RawJson, CliError> {
    let (text, source) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("--input @-: cannot read stdin: {e}")))?;
            (text, "standard input".to_string())
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CliError::Usage(format!("--input @{path}: cannot read {path}: {e}"))
            })?;
            (text, path.to_string())
        }
        None => (arg.to_string(), "--input".to_string()),
    };
    RawJson::from_text(text.trim())
        .map_err(|e| CliError::Usage(format!("{source} is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_kept_as_written() {
        let input = read_input(r#" {"b": 1, "a": 123456789012345678901234567890} "#).unwrap();
        assert_eq!(
            input.get(),
            r#"{"b": 1, "a": 123456789012345678901234567890}"#
        );
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        let err = read_input("{oops").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().starts_with("--input is not JSON"), "{err}");
        let err = read_input("@/nonexistent/input.json").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("cannot read /nonexistent/input.json"),
            "{err}"
        );
    }
}
