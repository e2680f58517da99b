//! What can go wrong, and the exit status each case ends with.

use std::error::Error as _;

use sagas::ClientError;
use thiserror::Error;

/// Why a command failed. [`CliError::exit_code`] maps it to the documented exit status.
#[derive(Debug, Error)]
pub enum CliError {
    /// Bad usage clap cannot see: an input file that cannot be read, input that is not JSON,
    /// a workflow file that does not parse, `--name` with several files. Exit status 2.
    #[error("{0}")]
    Usage(String),
    /// The coordinator answered with an error body. Exit status 1.
    #[error("{code}: {message}")]
    Api {
        /// HTTP status of the answer.
        status: u16,
        /// The error body's machine-readable `code` (`not_found`, `conflict`, ...).
        code: String,
        /// The error body's message for people.
        message: String,
    },
    /// No HTTP answer from the coordinator (nothing listens, connection reset, timeout).
    /// Exit status 1.
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Unreachable {
        /// The coordinator URL that was tried.
        url: String,
        /// What the connection attempt ran into.
        detail: String,
    },
    /// Writing to standard output failed. Exit status 1 (a closed pipe is not an error).
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// A [`ClientError`] from a request to the coordinator at `url`.
    pub fn from_client(error: ClientError, url: &str) -> CliError {
        match error {
            ClientError::Api {
                status,
                code,
                message,
            } => CliError::Api {
                status,
                code,
                // The coordinator checks API tokens: say where sagactl takes one.
                message: if status == 401 {
                    format!("{message} (give sagactl a token with --token or SAGACTL_TOKEN)")
                } else {
                    message
                },
            },
            ClientError::Transport(error) => {
                // reqwest's own message repeats the request URL; its innermost cause says
                // what happened (connection refused, no such host, a TLS failure).
                let mut cause = error.source();
                while let Some(inner) = cause.and_then(|c| c.source()) {
                    cause = Some(inner);
                }
                let what = cause.map_or_else(|| error.to_string(), |c| c.to_string());
                let detail = if error.is_timeout() {
                    "the request timed out".to_string()
                } else if error.is_connect() {
                    format!("{what} (is it running? set --coordinator or SAGACTL_COORDINATOR)")
                } else {
                    what
                };
                CliError::Unreachable {
                    url: url.to_string(),
                    detail,
                }
            }
        }
    }

    /// The process exit status: 2 for bad usage, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Api { .. } | CliError::Unreachable { .. } | CliError::Output(_) => 1,
        }
    }
}
