//! `/v1/sagas`.

use std::time::Duration;
use time::format_description::well_known::Rfc3339;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use utoipa::IntoParams;

use futures::{StreamExt, TryStreamExt};
use sagas::api::{
    MAX_STATE_IDS, ReportedState, SagaEvents, SagaList, SagaQuery, SagaState, SagaStates,
    SagaStatesQuery, SagaView, SubmitSaga,
};

use super::extract::{ApiJson, ApiQuery};
use super::openapi::{
    BadRequest, Conflict, KeyReused, NotFound, PayloadTooLarge, TooManyRequests, Unavailable,
    UnsupportedMediaType,
};
use super::{ApiError, AppState};
use crate::engine::Millis;
use crate::store::SagaFilter;
use crate::views::{event_view, saga_view};

/// Longest `wait_ms` honoured; a longer wait is cut to this.
const MAX_WAIT_MS: u64 = 60_000;
const MAX_KEY_LEN: usize = 256;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;
/// How many sagas `POST /v1/sagas/states` loads at a time.
const STATE_LOOKUPS_IN_FLIGHT: usize = 16;

/// Query parameters of `POST /v1/sagas`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// Wait up to this many milliseconds for the saga to be decided before answering (at
    /// most 60000; longer waits are cut to it). Absent or 0: answer at once.
    wait_ms: Option<u64>,
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_string()))
}

fn status_for(view: &SagaView) -> StatusCode {
    if view.state.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

/// Starts a saga of a workflow. With `wait_ms`, answers once the saga is decided or the wait
/// is over: `200` when it is terminal, `202` while it runs.
#[utoipa::path(post, path = "/v1/sagas", tag = "sagas",
    params(SubmitParams,
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 256 visible ASCII \
            characters: the same key and body again returns the same saga (across a cluster)"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context of the \
            caller: the saga's trace continues it (span export with --otlp-endpoint)")),
    request_body = SubmitSaga,
    responses(
        (status = 200, description = "The saga, terminal", body = SagaView),
        (status = 202, description = "The saga, still running", body = SagaView),
        BadRequest, NotFound, Conflict, PayloadTooLarge, UnsupportedMediaType, KeyReused,
        TooManyRequests, Unavailable))]
pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<SubmitParams>,
    ApiJson(request): ApiJson<SubmitSaga>,
) -> Result<(StatusCode, Json<SagaView>), ApiError> {
    if let Some(limiter) = &state.submit_limiter
        && let Err(not_until) = limiter.check()
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Err(ApiError::too_many_requests(
            "too many saga submissions; retry later",
            wait.as_secs_f64().ceil() as u64,
        ));
    }
    let key = idempotency_key(&headers)?;
    sagas::limits::check_json_depth("input", request.input.get())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.workflow.trim().is_empty() {
        return Err(ApiError::bad_request("workflow must name a workflow"));
    }
    if let Some(url) = &request.callback_url {
        sagas::limits::check_http_url("callback_url", url, true)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let guard = state.runtime.dispatcher().outbound().guard();
        guard
            .check_url("callback_url", url)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let Some(key) = &request.business_key {
        sagas::limits::check_business_key("business_key", key)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let caller = crate::trace_context::caller(&headers);
    let (saga, _new) = state.runtime.submit(request, key, caller).await?;
    let saga = match params.wait_ms {
        Some(ms) if ms > 0 && !saga.lifecycle.is_terminal() => state
            .runtime
            .wait(&saga.id, Duration::from_millis(ms.min(MAX_WAIT_MS)))
            .await?
            .unwrap_or(saga),
        _ => saga,
    };
    let view = saga_view(&saga);
    Ok((status_for(&view), Json(view)))
}

/// One saga: its state, input and steps.
#[utoipa::path(get, path = "/v1/sagas/{id}", tag = "sagas",
    params(("id" = String, Path, description = "Saga id")),
    responses((status = 200, body = SagaView), NotFound, Unavailable))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SagaView>, ApiError> {
    let saga = state
        .runtime
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown saga {id:?}")))?;
    Ok(Json(saga_view(&saga)))
}

/// A saga's audit trail: every call (phase, attempt, HTTP status, latency, error) and every
/// operator action (who, why).
#[utoipa::path(get, path = "/v1/sagas/{id}/events", tag = "sagas",
    params(("id" = String, Path, description = "Saga id")),
    responses((status = 200, body = SagaEvents), NotFound, Unavailable))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SagaEvents>, ApiError> {
    let saga = state
        .runtime
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown saga {id:?}")))?;
    let events = state
        .runtime
        .events(&id)
        .await?
        .iter()
        .map(|(seq, e)| event_view(&saga, *seq, e))
        .collect();
    Ok(Json(SagaEvents {
        saga_id: id,
        events,
    }))
}

/// The store filter, cursor and page size a [`SagaQuery`] asks for; `400` for a bad one.
pub(crate) fn filter_of(query: SagaQuery) -> Result<(SagaFilter, Option<String>, usize), ApiError> {
    let state = match query.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(SagaState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state: unknown state {s:?}: use running, confirming, committed, compensating, aborted or stuck"
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit: must be 1 to {MAX_PAGE} (got {limit})"
        )));
    }
    let time = |field: &str, value: Option<String>| -> Result<Option<Millis>, ApiError> {
        let Some(text) = value.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let bad = |why: String| {
            ApiError::bad_request(format!(
                "{field}: must be an RFC 3339 time such as 2026-11-30T12:00:00Z or \
                 2026-11-30T13:00:00+01:00 ({why})"
            ))
        };
        let at = time::OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| bad(e.to_string()))?;
        // Times before 1970 select from the beginning.
        let millis = at.unix_timestamp_nanos().max(0) / 1_000_000;
        Ok(Some(u64::try_from(millis).unwrap_or(u64::MAX)))
    };
    let filter = SagaFilter {
        state,
        workflow: query.workflow.filter(|w| !w.is_empty()),
        business_key: query.business_key.filter(|k| !k.is_empty()),
        created_from: time("created_after", query.created_after)?,
        created_until: time("created_before", query.created_before)?,
    };
    Ok((filter, query.cursor.filter(|c| !c.is_empty()), limit))
}

/// Sagas matching the filters, a page at a time in creation order.
#[utoipa::path(get, path = "/v1/sagas", tag = "sagas",
    params(SagaQuery),
    responses((status = 200, body = SagaList), BadRequest, Unavailable))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<SagaQuery>,
) -> Result<Json<SagaList>, ApiError> {
    let (filter, cursor, limit) = filter_of(query)?;
    let page = state
        .runtime
        .list(&filter, cursor.as_deref(), limit)
        .await?;
    Ok(Json(SagaList {
        sagas: page.sagas.iter().map(saga_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// The states of many sagas at once: what a participant's retention sweep asks before it
/// forgets the records of settled sagas (one request per batch instead of one per saga).
/// Every asked id is in the answer, `unknown` when this coordinator (or its cluster) holds no
/// saga with that id. At most 1000 ids; an empty list is answered with no states.
#[utoipa::path(post, path = "/v1/sagas/states", tag = "sagas",
    request_body = SagaStatesQuery,
    responses(
        (status = 200, description = "The state of every asked id", body = SagaStates),
        BadRequest, UnsupportedMediaType, Unavailable))]
pub async fn states(
    State(state): State<AppState>,
    ApiJson(query): ApiJson<SagaStatesQuery>,
) -> Result<Json<SagaStates>, ApiError> {
    if query.ids.len() > MAX_STATE_IDS {
        return Err(ApiError::bad_request(format!(
            "ids: at most {MAX_STATE_IDS} ids per request (got {})",
            query.ids.len()
        )));
    }
    let mut ids = query.ids;
    ids.sort_unstable();
    ids.dedup();
    let runtime = &state.runtime;
    let states = futures::stream::iter(ids)
        .map(|id| async move {
            let reported = match runtime.get(&id).await? {
                Some(saga) => ReportedState::from(saga.lifecycle.api_state()),
                None => ReportedState::Unknown,
            };
            Ok::<_, ApiError>((id, reported))
        })
        .buffer_unordered(STATE_LOOKUPS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(Json(SagaStates { states }))
}
