//! The `simulated` provider: a deterministic, in-process stand-in for an OpenAI-compatible
//! server, so that a first run without any provider key shows a full round trip through routing,
//! the policy component and the OpenAI adapter component.
//!
//! It is selected by a base URL with the `simulated://` scheme. Every reply says it is simulated,
//! in its text, its model name and its `system_fingerprint`; it never pretends to be a model.
//! Token counts are computed from the text (about four bytes per token), as a real server would
//! report them, so cost and usage accounting can be demonstrated too.

use crate::plugins::bindings::types::HttpRequest;
use serde_json::{Value, json};

pub const SCHEME: &str = "simulated://";

/// Answers a request the way an OpenAI-compatible server would.
pub fn respond(request: &HttpRequest) -> reqwest::Response {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if !request.path.ends_with("/chat/completions") || !body.is_object() {
        return reply(
            404,
            "application/json",
            json!({"error": {"message": format!("the simulated provider only serves POST /chat/completions, not {}", request.path), "type": "invalid_request_error", "param": null, "code": "not_found"}}).to_string(),
        );
    }
    let model = body["model"].as_str().unwrap_or("simulated").to_string();
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(message_text)
        .unwrap_or_default();
    let excerpt: String = last_user.chars().take(120).collect();
    let text = format!(
        "[simulated] This reply comes from the gateway's simulated provider: no model was called. \
         Set a provider key (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, ...) for real \
         answers. You asked: \"{excerpt}\""
    );
    let prompt_bytes: usize = messages.iter().map(|m| message_text(m).len() + 4).sum();
    let usage = json!({
        "prompt_tokens": prompt_bytes.div_ceil(4),
        "completion_tokens": text.len().div_ceil(4),
        "total_tokens": prompt_bytes.div_ceil(4) + text.len().div_ceil(4),
    });
    let id = format!("chatcmpl-simulated-{:016x}", fnv1a(last_user.as_bytes()));

    if body["stream"] == true {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
                   "system_fingerprint": "simulated",
                   "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        events.extend(
            text.split_inclusive(' ')
                .map(|word| chunk(json!({"content": word}), Value::Null)),
        );
        events.push(chunk(json!({}), json!("stop")));
        if body["stream_options"]["include_usage"] == true {
            events.push(
                json!({"id": id, "object": "chat.completion.chunk", "created": 0,
                               "model": model, "choices": [], "usage": usage}),
            );
        }
        let mut sse: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        sse.push_str("data: [DONE]\n\n");
        return reply(200, "text/event-stream", sse);
    }
    reply(
        200,
        "application/json",
        json!({
            "id": id,
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "system_fingerprint": "simulated",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text, "refusal": null}}],
            "usage": usage,
        })
        .to_string(),
    )
}

fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn reply(status: u16, content_type: &'static str, body: String) -> reqwest::Response {
    let mut response = axum::http::Response::new(reqwest::Body::from(body));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(content_type),
    );
    reqwest::Response::from(response)
}

/// A stable hash for ids, so the same prompt gives the same reply id.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
