//! What every command works with: a client of the coordinator (with the bearer token, if any)
//! and the output format.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use sagas::{ClientError, CoordinatorClient};

use crate::cli::GlobalArgs;
use crate::error::CliError;
use crate::output::Format;

/// How long one request may take; `submit --wait-ms` waits at most 60 s on the coordinator.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one coordinator, and how to print what it answers.
pub struct Session {
    client: CoordinatorClient,
    format: Format,
}

impl Session {
    /// A session for the global options: checks the URL and the token, and sends the token
    /// as `Authorization: Bearer <token>` with every request.
    pub fn new(global: &GlobalArgs) -> Result<Session, CliError> {
        let url = reqwest::Url::parse(&global.coordinator).map_err(|e| {
            CliError::Usage(format!(
                "--coordinator {:?} is not a URL ({e}); expected e.g. http://127.0.0.1:7700",
                global.coordinator
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(CliError::Usage(format!(
                "--coordinator {:?} must be an http:// or https:// URL",
                global.coordinator
            )));
        }
        let mut headers = HeaderMap::new();
        if let Some(token) = global
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                CliError::Usage(
                    "the token (--token or SAGACTL_TOKEN) has characters a header cannot carry"
                        .into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(REQUEST_TIMEOUT)
            .default_headers(headers)
            .build()
            .map_err(|e| CliError::Unreachable {
                url: global.coordinator.clone(),
                detail: format!("cannot set up an HTTP client: {e}"),
            })?;
        Ok(Session {
            client: CoordinatorClient::with_http(global.coordinator.as_str(), http),
            format: global.output,
        })
    }

    /// The coordinator client.
    pub fn client(&self) -> &CoordinatorClient {
        &self.client
    }

    /// How to print answers.
    pub fn format(&self) -> Format {
        self.format
    }

    /// `error` of a request to this session's coordinator, as a [`CliError`].
    pub fn fail(&self, error: ClientError) -> CliError {
        CliError::from_client(error, self.client.base_url())
    }
}
