//! Small typed clients for the example participants' own HTTP APIs (not the branch protocol):
//! funding and reading wallet accounts, reading orders and points.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::json;

/// `GET /accounts/{id}` of the wallet. Signed so that a negative value is seen, not a decode
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct AccountView {
    /// Money in the account, frozen or not.
    pub balance: i64,
    /// The part of the balance frozen by sagas that have not settled.
    pub frozen: i64,
}

/// `GET /orders/{id}` of the order service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderView {
    /// `created` or `cancelled`.
    pub status: String,
    /// The account it was placed on.
    pub account: String,
    /// Its amount.
    pub amount: i64,
}

#[derive(Debug, Deserialize)]
struct PointsView {
    points: i64,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client with static settings always builds")
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> anyhow::Result<Option<T>> {
    let resp = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let body = resp.text().await.with_context(|| format!("GET {url}"))?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {body}");
    }
    serde_json::from_str(&body)
        .map(Some)
        .with_context(|| format!("GET {url}: cannot decode {body:?}"))
}

/// The wallet's API.
#[derive(Debug, Clone)]
pub struct WalletApi {
    base_url: String,
    http: reqwest::Client,
}

impl WalletApi {
    /// A client of the service at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: impl Into<String>) -> Self {
        WalletApi {
            base_url: base_url.into(),
            http: http_client(),
        }
    }

    /// `POST /accounts/{id}/deposit {"amount"}`: creates or funds the account.
    pub async fn deposit(&self, account: &str, amount: u64) -> anyhow::Result<()> {
        let url = format!("{}/accounts/{account}/deposit", self.base_url);
        let resp = self
            .http
            .post(&url)
            .json(&json!({ "amount": amount }))
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("POST {url} answered {status}: {body}");
        }
        Ok(())
    }

    /// `GET /accounts/{id}`; `None` if the wallet does not know the account.
    pub async fn account(&self, account: &str) -> anyhow::Result<Option<AccountView>> {
        get_json(&self.http, &format!("{}/accounts/{account}", self.base_url)).await
    }

    /// `GET /accounts`: every account.
    pub async fn accounts(&self) -> anyhow::Result<BTreeMap<String, AccountView>> {
        let url = format!("{}/accounts", self.base_url);
        get_json(&self.http, &url)
            .await?
            .with_context(|| format!("GET {url} answered 404"))
    }
}

/// The order service's API.
#[derive(Debug, Clone)]
pub struct OrderApi {
    base_url: String,
    http: reqwest::Client,
}

impl OrderApi {
    /// A client of the service at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: impl Into<String>) -> Self {
        OrderApi {
            base_url: base_url.into(),
            http: http_client(),
        }
    }

    /// `GET /orders/{id}`; `None` (404) if the order was never created.
    pub async fn order(&self, order_id: &str) -> anyhow::Result<Option<OrderView>> {
        get_json(&self.http, &format!("{}/orders/{order_id}", self.base_url)).await
    }
}

/// The points service's API.
#[derive(Debug, Clone)]
pub struct PointsApi {
    base_url: String,
    http: reqwest::Client,
}

impl PointsApi {
    /// A client of the service at `base_url` (`http://127.0.0.1:PORT`).
    pub fn new(base_url: impl Into<String>) -> Self {
        PointsApi {
            base_url: base_url.into(),
            http: http_client(),
        }
    }

    /// `GET /points/{account}`: the account's points, 0 if it has none.
    pub async fn points(&self, account: &str) -> anyhow::Result<i64> {
        let view: Option<PointsView> =
            get_json(&self.http, &format!("{}/points/{account}", self.base_url)).await?;
        Ok(view.map_or(0, |v| v.points))
    }
}
