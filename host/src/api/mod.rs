//! The HTTP front door. Handlers translate wire formats and call the `Gateway`; no routing or
//! provider logic lives here.

pub mod auth;
mod chat;
mod error;
pub(crate) mod unified;
mod usage;

pub use auth::ApiKeys;
pub use error::ApiError;

use crate::pipeline::{Gateway, StreamChunk};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::error::TryRecvError;

pub fn router(gateway: Arc<Gateway>, keys: ApiKeys) -> Router {
    let max_body = gateway.config().config.gateway.server.max_body_bytes;
    let mcp = crate::mcp::http::service(gateway.clone());
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/unified_completion", post(unified::unified_completion))
        .route("/v1/models", get(models))
        .route("/v1/providers", get(providers))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/estimate_cost", post(usage::estimate_cost))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/plugins", get(admin_plugins))
        .nest_service("/mcp", mcp)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            Arc::new(keys),
            auth::require_key,
        ))
        .layer(middleware::from_fn(request_id))
        .with_state(gateway)
}

/// Gives every response an `x-request-id` (the caller's, if it sent a sane one) and logs it.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    // Cloud Run's load balancer names the request's trace; JSON logs link to it.
    if let Some(trace) = request
        .headers()
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::logging::trace_id_from_header)
    {
        span.record(crate::logging::TRACE_FIELD, trace);
    }
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let served = crate::request_scope::with_request_id(id.clone(), next.run(request));
    let mut response = tracing::Instrument::instrument(served, span.clone()).await;
    // One access-log line per request, inside its span (request id, path, trace).
    span.in_scope(|| {
        tracing::info!(
            method = %method,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_millis() as u64,
            "request answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[derive(Clone)]
struct RequestId(String);

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    axum::Extension(caller): axum::Extension<auth::Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(&gateway, body)?;
    let request: chat::ChatCompletionRequest = parse_json(&body)?;
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let stream = request.stream;
    let input = request.into_input(caller.key_id)?;

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let id = format!("chatcmpl-{request_id}");
    if stream {
        let stream = gateway.complete_stream(input).await?;
        return Ok(stream_response(stream, id, created, include_usage));
    }
    let completion = gateway.complete(input).await?;
    let body = chat::response_json(&completion, &id, created);
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    route_headers(
        headers,
        &completion.model,
        &completion.provider,
        &completion.route,
    );
    cache_headers(headers, completion.cache);
    set_header(
        headers,
        "x-gateway-attempts",
        &completion.attempts.to_string(),
    );
    set_header(
        headers,
        "x-gateway-cost-usd",
        &format!("{:.8}", completion.cost_usd),
    );
    set_header(
        headers,
        "x-gateway-latency-ms",
        &completion.latency.as_millis().to_string(),
    );
    Ok(response)
}

/// An OpenAI-style event stream: content chunks, then `data: [DONE]` on success; an error chunk
/// and no `[DONE]` on failure, so no client mistakes a cut stream for a complete one.
fn stream_response(
    stream: crate::pipeline::CompletionStream,
    id: String,
    created: u64,
    include_usage: bool,
) -> Response {
    let writer = chat::ChunkWriter::new(id, created, stream.model.clone(), include_usage);
    let events = futures::stream::unfold(
        (stream.chunks, writer, false),
        |(mut chunks, mut writer, finished)| async move {
            if finished {
                return None;
            }
            // Wait for the next chunk, then take those already queued behind it: a burst goes
            // out in one write, and the first chunk is never held back waiting for more.
            let mut events = String::new();
            let mut next = chunks.recv().await;
            loop {
                let chunk = match next {
                    Some(StreamChunk::End) => {
                        events.push_str("data: [DONE]\n\n");
                        return Some((Ok(Bytes::from(events)), (chunks, writer, true)));
                    }
                    Some(chunk) => chunk,
                    // The producer is gone without signalling the end: say so, never finish.
                    None => StreamChunk::Error(crate::pipeline::GatewayError::Internal(
                        "the stream ended unexpectedly inside the gateway".into(),
                    )),
                };
                let failed = matches!(chunk, StreamChunk::Error(_));
                if let Some(text) = writer.event(chunk) {
                    events.push_str(&text);
                }
                if failed {
                    return (!events.is_empty())
                        .then(|| (Ok(Bytes::from(events)), (chunks, writer, true)));
                }
                next = match chunks.try_recv() {
                    Ok(chunk) => Some(chunk),
                    Err(TryRecvError::Empty) if events.is_empty() => chunks.recv().await,
                    Err(TryRecvError::Empty) => {
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(events)),
                            (chunks, writer, false),
                        ));
                    }
                    Err(TryRecvError::Disconnected) => None,
                };
            }
        },
    );
    let mut response = Response::new(axum::body::Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    route_headers(headers, &stream.model, &stream.provider, &stream.route);
    cache_headers(headers, stream.cache);
    set_header(headers, "x-gateway-attempts", &stream.attempts.to_string());
    response
}

/// `x-gateway-cache` (hit-exact, hit-semantic, miss or bypass) and, on a hit, the prompt's
/// similarity to the cached one.
fn cache_headers(headers: &mut HeaderMap, status: crate::pipeline::CacheStatus) {
    set_header(headers, "x-gateway-cache", status.label());
    if let Some(similarity) = status.similarity() {
        set_header(
            headers,
            "x-gateway-cache-similarity",
            &format!("{similarity:.4}"),
        );
    }
}

fn route_headers(
    headers: &mut HeaderMap,
    model: &str,
    provider: &str,
    route: &crate::pipeline::RouteSummary,
) {
    set_header(headers, "x-gateway-model", model);
    set_header(headers, "x-gateway-provider", provider);
    set_header(headers, "x-gateway-policy", &route.policy);
    set_header(headers, "x-gateway-route-reason", &route.reason);
    set_header(headers, "x-gateway-task", route.task.as_str());
    set_header(
        headers,
        "x-gateway-task-confidence",
        &format!("{:.2}", route.task_confidence),
    );
    set_header(headers, "x-gateway-task-source", route.task_source.as_str());
    set_header(
        headers,
        "x-gateway-candidates",
        &route
            .scores
            .iter()
            .take(5)
            .map(|(id, score)| format!("{id}={score:.4}"))
            .collect::<Vec<_>>()
            .join(","),
    );
}

/// The request body, or an OpenAI-shaped error saying why it could not be read.
fn read_body(gateway: &Gateway, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let too_large = status == StatusCode::PAYLOAD_TOO_LARGE;
        ApiError {
            status,
            kind: "invalid_request_error",
            code: too_large.then(|| "request_too_large".into()),
            param: None,
            message: if too_large {
                format!(
                    "the request body is larger than this gateway accepts ({} bytes); \
                     send a shorter prompt",
                    gateway.config().config.gateway.server.max_body_bytes
                )
            } else {
                format!("cannot read the request body: {rejection}")
            },
            retry_after_secs: None,
        }
    })
}

/// Parses JSON and names the field that is wrong, e.g. `messages[0].role: invalid type`.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; send a JSON object",
            None,
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the request body is not valid JSON: {inner}"), None)
        } else if path == "." {
            ApiError::bad_request(format!("invalid request: {inner}"), None)
        } else {
            ApiError::bad_request(format!("{path}: {inner}"), Some(&path))
        }
    })
}

/// Header values must be visible ASCII; anything else is replaced rather than dropped.
fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    let clean: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(512)
        .collect();
    if let Ok(value) = HeaderValue::from_str(&clean) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

async fn models(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let state = gateway.config();
    let data: Vec<_> = state
        .config
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn providers(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    let providers: Vec<serde_json::Value> = gateway
        .provider_status()
        .into_iter()
        .map(|p| {
            let mut value = serde_json::to_value(&p).unwrap_or_default();
            value["configured"] = json!(p.unavailable.is_none());
            value
        })
        .collect();
    Json(json!({"object": "list", "data": providers}))
}

/// Every loaded component (world, contract version, hash, load time, calls, faults) and every
/// failed load: what `ai-gateway plugins list` shows.
async fn admin_plugins(State(gateway): State<Arc<Gateway>>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": gateway.registry().inventory()}))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(gateway): State<Arc<Gateway>>) -> Response {
    let readiness = gateway.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics_text(),
    )
        .into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}; see GET /v1/models, POST /v1/chat/completions",
        request.method(),
        request.uri().path()
    ))
}
