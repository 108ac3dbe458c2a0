//! `POST /unified_completion`: the gateway's own, simpler request format (a prompt or messages,
//! `model` defaulting to `auto`), answered with the text plus cost, tokens, latency and the
//! routing decision. The same summary is what the MCP `unified_completion` tool returns.

use super::auth::Caller;
use super::chat::{ChatCompletionRequest, ChatMessage, Content};
use super::{ApiError, parse_json, read_body};
use crate::cache::CacheControls;
use crate::pipeline::Gateway;
use crate::routing::Requirements;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedRequest {
    /// A single user message; use `messages` for a conversation.
    pub prompt: Option<String>,
    /// OpenAI-style messages.
    pub messages: Option<Vec<ChatMessage>>,
    /// Instructions prepended as a system message.
    pub system: Option<String>,
    /// A catalog model id, or `auto` (the default) to let the routing policy choose.
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub requirements: Option<Requirements>,
    /// A policy component to rank with instead of the default.
    pub policy: Option<String>,
    /// Response cache controls.
    pub cache: Option<CacheControls>,
}

impl UnifiedRequest {
    pub fn into_chat(self) -> Result<ChatCompletionRequest, ApiError> {
        let mut messages = Vec::new();
        if let Some(system) = self.system {
            messages.push(text_message("system", system));
        }
        match (self.prompt, self.messages) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "send either prompt or messages, not both",
                    Some("prompt"),
                ));
            }
            (Some(prompt), None) if !prompt.trim().is_empty() => {
                messages.push(text_message("user", prompt));
            }
            (None, Some(list)) if !list.is_empty() => messages.extend(list),
            _ => {
                return Err(ApiError::bad_request(
                    "send a non-empty prompt (text) or messages (a non-empty list)",
                    Some("prompt"),
                ));
            }
        }
        Ok(ChatCompletionRequest {
            model: self.model.unwrap_or_else(|| "auto".into()),
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            requirements: self.requirements,
            policy: self.policy,
            cache: self.cache,
            ..ChatCompletionRequest::default()
        })
    }
}

pub(crate) fn text_message(role: &str, text: String) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: Some(Content::Text(text)),
        name: None,
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// A `/unified_completion`-format body (also what `POST /v1/estimate_cost` takes) as a
/// pipeline input, or the error that says what to fix.
pub(super) fn input_from_body(
    gateway: &Gateway,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<crate::pipeline::CompletionInput, ApiError> {
    let body = read_body(gateway, body)?;
    let request: UnifiedRequest = parse_json(&body)?;
    request.into_chat()?.into_input(caller.key_id)
}

pub async fn unified_completion(
    State(gateway): State<Arc<Gateway>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let input = input_from_body(&gateway, caller, body)?;
    let completion = gateway.complete(input).await?;
    let mut response = Json(completion.summary()).into_response();
    super::cache_headers(response.headers_mut(), completion.cache);
    Ok(response)
}
