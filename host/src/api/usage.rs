//! `GET /v1/usage` (the ledger's report) and `POST /v1/estimate_cost` (what a request would
//! cost on each candidate). The MCP tools `get_usage_metrics` and `estimate_cost` answer the
//! same from the same `Gateway` methods.

use super::ApiError;
use super::auth::Caller;
use crate::ledger::ReportRange;
use crate::pipeline::Gateway;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `1h`, `24h`, `7d` or `30d`; `24h` when absent.
    pub range: Option<String>,
    /// Only this provider's traffic.
    pub provider: Option<String>,
}

pub async fn usage(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<UsageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text(), None))?;
    let range_text = query.range.as_deref().unwrap_or("24h");
    let range = ReportRange::parse(range_text).ok_or_else(|| {
        ApiError::bad_request(
            format!("range '{range_text}' is not one of 1h, 24h, 7d, 30d"),
            Some("range"),
        )
    })?;
    let provider = query.provider.as_deref().filter(|p| !p.is_empty());
    let report = gateway.usage_report(range, provider).await?;
    Ok(Json(report).into_response())
}

/// Takes the `/unified_completion` request format (a prompt or messages, `model` defaulting to
/// `auto`, `max_tokens`, `requirements`, `policy`).
pub async fn estimate_cost(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = super::unified::input_from_body(&gateway, caller, body)?;
    let estimates = gateway.estimate_cost(&input).await?;
    Ok(Json(json!({"object": "list", "data": estimates})).into_response())
}
