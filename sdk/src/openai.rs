//! The OpenAI chat completions wire format (`POST /chat/completions`), spoken by OpenAI and by
//! every server that imitates it (xAI, Groq, Mistral, Ollama, vLLM, llama.cpp, ...). An adapter
//! for such a server is its `describe` plus these functions; see `plugins/openai`.

use serde_json::{Map, Value, json};

use crate::provider::{
    self, CompletionRequest, CompletionResponse, ContentPart, ErrorClass, FinishReason, Header,
    HttpRequest, HttpResponse, Message, ProviderContext, ProviderError, ResponseFormat,
    StreamDelta, StreamEvent, StreamOutcome, ToolCall, ToolCallDelta, ToolChoice, Usage,
    body_snippet, header, parse_json_text, str_field,
};

/// Parses a successful chat completions response.
pub fn parse_response(response: &HttpResponse) -> Result<CompletionResponse, ProviderError> {
    let body = response.json()?;
    if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
        return Err(error_from_body(error, Some(response.status), None));
    }
    let choice = body
        .pointer("/choices/0")
        .ok_or_else(|| ProviderError::invalid_response("response has no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| ProviderError::invalid_response("choice has no message"))?;
    let mut finish_reason = finish_reason(choice.get("finish_reason"));
    let mut content = Vec::new();
    if let Some(text) = message.get("content").and_then(Value::as_str) {
        content.push(ContentPart::Text(text.to_string()));
    } else if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        content.push(ContentPart::Text(refusal.to_string()));
        finish_reason = FinishReason::ContentFilter;
    }
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| calls.iter().filter_map(tool_call).collect())
        .unwrap_or_default();
    Ok(CompletionResponse {
        id: str_field(&body, "id"),
        model: str_field(&body, "model"),
        content,
        tool_calls,
        finish_reason,
        usage: body.get("usage").and_then(usage),
    })
}

/// Parses one server-sent event of a streamed chat completion: `[DONE]` ends the stream, an
/// `error` object is a classified error, anything else is one delta.
pub fn parse_stream_event(event: &StreamEvent) -> Result<StreamOutcome, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(StreamOutcome::Done(Vec::new()));
    }
    if data.is_empty() {
        return Ok(StreamOutcome::Deltas(Vec::new()));
    }
    let chunk = event.json()?;
    if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
        return Err(error_from_body(error, None, None));
    }
    let mut delta = StreamDelta {
        text: None,
        tool_calls: Vec::new(),
        finish_reason: None,
        // Groq reports stream usage under `x_groq`.
        usage: chunk
            .get("usage")
            .or_else(|| chunk.pointer("/x_groq/usage"))
            .and_then(usage),
        model: str_field(&chunk, "model"),
        id: str_field(&chunk, "id"),
    };
    if let Some(choice) = chunk.pointer("/choices/0") {
        let d = choice.get("delta").unwrap_or(&Value::Null);
        delta.text = d
            .get("content")
            .and_then(Value::as_str)
            .or_else(|| d.get("refusal").and_then(Value::as_str))
            .map(str::to_string);
        if let Some(calls) = d.get("tool_calls").and_then(Value::as_array) {
            delta.tool_calls = calls.iter().map(tool_call_delta).collect();
        }
        if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
            delta.finish_reason = Some(finish_reason(choice.get("finish_reason")));
        }
    }
    Ok(StreamOutcome::Deltas(vec![delta]))
}

/// Classifies an error response from OpenAI or a server that imitates it.
pub fn classify_error(response: &HttpResponse) -> ProviderError {
    let retry_after = retry_after_ms(&response.headers);
    let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    // OpenAI, xAI and Groq nest an object under `error`; Mistral puts the fields at the top
    // level; some servers send `error` as a string, FastAPI-based ones (vLLM) `detail`.
    let error = match body.get("error") {
        Some(e) if e.is_object() => e.clone(),
        Some(Value::String(message)) => json!({"message": message}),
        _ if body.get("message").is_some() => body.clone(),
        _ => match body.get("detail") {
            Some(Value::String(message)) => json!({"message": message}),
            Some(detail) => json!({"message": detail.to_string()}),
            None => Value::Null,
        },
    };
    if error.is_object() {
        return error_from_body(&error, Some(response.status), retry_after);
    }
    ProviderError {
        class: class_for_status(response.status),
        message: format!(
            "upstream answered {}: {}",
            response.status,
            body_snippet(&response.body, 500)
        ),
        retry_after_ms: retry_after,
        status: Some(response.status),
    }
}

/// Per-provider dialect settings, from the provider's `settings` table:
///
/// - `max_tokens_field`: `max_completion_tokens` (default; OpenAI rejects `max_tokens` for
///   reasoning models) or `max_tokens` (servers that only know the older name).
/// - `stream_usage`: `true` (default) asks for usage on streams with
///   `stream_options.include_usage`; `false` for servers that reject the option.
#[derive(Debug, Clone, Copy)]
pub struct Dialect {
    pub max_tokens_field: &'static str,
    pub stream_usage: bool,
}

impl From<&ProviderContext> for Dialect {
    fn from(ctx: &ProviderContext) -> Self {
        Dialect {
            max_tokens_field: match ctx.setting("max_tokens_field") {
                Some("max_tokens") => "max_tokens",
                _ => "max_completion_tokens",
            },
            stream_usage: ctx.setting("stream_usage") != Some("false"),
        }
    }
}

/// The `POST /chat/completions` request for a unified request.
pub fn build_request(ctx: &ProviderContext, request: &CompletionRequest) -> HttpRequest {
    HttpRequest::post_json(
        "/chat/completions",
        &request_body(request, &Dialect::from(ctx)),
    )
}

/// The chat completions JSON body for a unified request.
pub fn request_body(request: &CompletionRequest, settings: &Dialect) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert(
        "messages".into(),
        Value::Array(request.messages.iter().map(message_json).collect()),
    );
    let s = &request.sampling;
    if let Some(t) = s.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = s.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(max) = s.max_output_tokens {
        body.insert(settings.max_tokens_field.into(), json!(max));
    }
    if !s.stop.is_empty() {
        body.insert("stop".into(), json!(s.stop));
    }
    if let Some(seed) = s.seed {
        body.insert("seed".into(), json!(seed));
    }
    if let Some(p) = s.presence_penalty {
        body.insert("presence_penalty".into(), json!(p));
    }
    if let Some(p) = s.frequency_penalty {
        body.insert("frequency_penalty".into(), json!(p));
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(|t| {
                let mut function = Map::new();
                function.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    function.insert("description".into(), json!(d));
                }
                function.insert("parameters".into(), parse_json_text(&t.parameters_json));
                if t.strict {
                    function.insert("strict".into(), json!(true));
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let value = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
        body.insert("tool_choice".into(), value);
    }
    if let Some(format) = &request.response_format {
        let value = match format {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema(schema) => json!({
                "type": "json_schema",
                "json_schema": {
                    "name": schema.name,
                    "schema": parse_json_text(&schema.schema_json),
                    "strict": schema.strict,
                }
            }),
        };
        body.insert("response_format".into(), value);
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
        if settings.stream_usage {
            // Without this flag OpenAI sends no usage on streams.
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(user) = &request.end_user {
        body.insert("user".into(), json!(user));
    }
    Value::Object(body)
}

/// One message in the chat completions format.
pub fn message_json(message: &Message) -> Value {
    let mut m = Map::new();
    m.insert("role".into(), json!(message.role.as_str()));
    let only_text = message
        .content
        .iter()
        .all(|p| matches!(p, ContentPart::Text(_)));
    let content = if only_text {
        let text: String = message.texts().collect();
        if text.is_empty() && !message.tool_calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        }
    } else {
        Value::Array(
            message
                .content
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => json!({"type": "text", "text": t}),
                    ContentPart::Image(img) => {
                        let mut image_url = Map::new();
                        image_url.insert("url".into(), json!(img.url));
                        if let Some(d) = &img.detail {
                            image_url.insert("detail".into(), json!(d));
                        }
                        json!({"type": "image_url", "image_url": image_url})
                    }
                })
                .collect(),
        )
    };
    m.insert("content".into(), content);
    if let Some(name) = &message.name {
        m.insert("name".into(), json!(name));
    }
    if !message.tool_calls.is_empty() {
        let calls = message
            .tool_calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect();
        m.insert("tool_calls".into(), Value::Array(calls));
    }
    if let Some(id) = &message.tool_call_id {
        m.insert("tool_call_id".into(), json!(id));
    }
    Value::Object(m)
}

/// A `tool_calls` entry of a response message.
pub fn tool_call(value: &Value) -> Option<ToolCall> {
    let function = value.get("function")?;
    Some(ToolCall {
        id: str_field(value, "id").unwrap_or_default(),
        name: str_field(function, "name")?,
        arguments: str_field(function, "arguments").unwrap_or_default(),
    })
}

/// A `tool_calls` entry of a stream chunk's delta.
pub fn tool_call_delta(value: &Value) -> ToolCallDelta {
    let function = value.get("function").unwrap_or(&Value::Null);
    ToolCallDelta {
        index: value
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(0),
        id: str_field(value, "id"),
        name: str_field(function, "name"),
        arguments_fragment: str_field(function, "arguments").unwrap_or_default(),
    }
}

/// A `usage` object (prompt and completion tokens, with their cached and reasoning parts).
pub fn usage(value: &Value) -> Option<Usage> {
    if !value.is_object() {
        return None;
    }
    let n = |pointer: &str| value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        input_tokens: n("/prompt_tokens"),
        cached_input_tokens: n("/prompt_tokens_details/cached_tokens"),
        cache_write_input_tokens: 0,
        output_tokens: n("/completion_tokens"),
        reasoning_output_tokens: n("/completion_tokens_details/reasoning_tokens"),
        estimated: false,
    })
}

/// A choice's `finish_reason`.
pub fn finish_reason(value: Option<&Value>) -> FinishReason {
    match value.and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

/// The class of an error response that says nothing more specific than its status.
pub fn class_for_status(status: u16) -> ErrorClass {
    match status {
        400 | 409 | 413 | 415 | 422 => ErrorClass::BadRequest,
        401 | 403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited,
        503 | 529 => ErrorClass::Overloaded,
        _ => ErrorClass::Server,
    }
}

/// Maps an OpenAI `{"error": {...}}` object to a classified error. The `code` and `type` fields
/// are more specific than the status, so they win where they say something.
pub fn error_from_body(
    error: &Value,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
) -> ProviderError {
    let code = str_field(error, "code").unwrap_or_default();
    let kind = str_field(error, "type").unwrap_or_default();
    let message = str_field(error, "message").unwrap_or_else(|| error.to_string());
    let class = match (code.as_str(), kind.as_str()) {
        ("context_length_exceeded", _) | ("string_above_max_length", _) => {
            ErrorClass::ContextTooLong
        }
        ("content_filter", _) | ("content_policy_violation", _) => ErrorClass::ContentFiltered,
        ("rate_limit_exceeded", _) | (_, "rate_limit_exceeded") => ErrorClass::RateLimited,
        ("insufficient_quota", _) | (_, "insufficient_quota") => ErrorClass::RateLimited,
        ("invalid_api_key", _) | (_, "authentication_error") => ErrorClass::Auth,
        ("model_not_found", _) => ErrorClass::NotFound,
        // OpenAI types both 500s and "engine overloaded" 503s as server_error.
        (_, "server_error") if matches!(status, Some(503 | 529)) => ErrorClass::Overloaded,
        (_, "server_error") => ErrorClass::Server,
        _ => match status.map(class_for_status).unwrap_or(ErrorClass::Server) {
            // Compatible servers (vLLM, Mistral, llama.cpp) say it only in the message.
            ErrorClass::BadRequest if mentions_context_length(&message) => {
                ErrorClass::ContextTooLong
            }
            class => class,
        },
    };
    ProviderError {
        class,
        message,
        retry_after_ms,
        status,
    }
}

fn mentions_context_length(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("context length") || m.contains("context_length") || m.contains("context window")
}

/// `retry-after-ms` (OpenAI), then `retry-after` in seconds. HTTP-date values are ignored.
pub fn retry_after_ms(headers: &[Header]) -> Option<u64> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(ms.max(0.0) as u64);
    }
    provider::retry_after_ms(headers)
}
