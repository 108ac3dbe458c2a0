//! Provider adapter for the OpenAI chat completions API (`POST /chat/completions`), and for
//! every server that speaks it: xAI, Groq, Mistral, Ollama, vLLM, llama.cpp. One adapter,
//! configured per provider through `settings` in providers.toml:
//!
//! - `max_tokens_field`: `max_completion_tokens` (default; OpenAI rejects `max_tokens` for
//!   reasoning models) or `max_tokens` (servers that only know the older name).
//! - `stream_usage`: `true` (default) asks for usage on streams with
//!   `stream_options.include_usage`; `false` for servers that reject the option.
//!
//! A pure translator: unified request → OpenAI JSON, OpenAI JSON → unified response. The host
//! sends the request and adds the bearer key; this component never sees it.

wit_bindgen::generate!({
    world: "provider",
    path: "../../wit",
});

use aigw::plugin::types::{
    CompletionRequest, CompletionResponse, ContentPart, ErrorClass, FinishReason, Header,
    HttpRequest, HttpResponse, Message, ProviderError, ResponseFormat, Role, StreamDelta, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};
use exports::aigw::plugin::adapter::{
    AdapterInfo, AuthScheme, Guest, ProviderContext, StreamEvent, StreamFraming, StreamOutcome,
};
use serde_json::{Map, Value, json};

struct OpenAi;

export!(OpenAi);

impl Guest for OpenAi {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "openai".into(),
            description: "OpenAI chat completions API".into(),
            auth: AuthScheme::Bearer,
            default_base_url: "https://api.openai.com/v1".into(),
            stream_framing: StreamFraming::Sse,
            static_headers: Vec::new(),
        }
    }

    fn build_request(
        ctx: ProviderContext,
        request: CompletionRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = request_body(&request, &Settings::from(&ctx));
        Ok(HttpRequest {
            method: "POST".into(),
            path: "/chat/completions".into(),
            headers: vec![Header {
                name: "content-type".into(),
                value: "application/json".into(),
            }],
            body: body.to_string().into_bytes(),
        })
    }

    fn parse_response(
        _ctx: ProviderContext,
        response: HttpResponse,
    ) -> Result<CompletionResponse, ProviderError> {
        let body: Value = serde_json::from_slice(&response.body)
            .map_err(|e| invalid(format!("response is not JSON: {e}")))?;
        if let Some(error) = body.get("error").filter(|e| !e.is_null()) {
            return Err(error_from_body(error, Some(response.status), None));
        }
        let choice = body
            .pointer("/choices/0")
            .ok_or_else(|| invalid("response has no choices".into()))?;
        let message = choice
            .get("message")
            .ok_or_else(|| invalid("choice has no message".into()))?;
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

    fn parse_stream_event(
        _ctx: ProviderContext,
        event: StreamEvent,
    ) -> Result<StreamOutcome, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Ok(StreamOutcome::Done(Vec::new()));
        }
        if data.is_empty() {
            return Ok(StreamOutcome::Deltas(Vec::new()));
        }
        let chunk: Value = serde_json::from_str(data)
            .map_err(|e| invalid(format!("stream event is not JSON: {e}")))?;
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

    fn classify_error(_ctx: ProviderContext, response: HttpResponse) -> ProviderError {
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
                String::from_utf8_lossy(&response.body)
                    .chars()
                    .take(500)
                    .collect::<String>()
            ),
            retry_after_ms: retry_after,
            status: Some(response.status),
        }
    }
}

/// Per-provider dialect settings.
struct Settings {
    max_tokens_field: &'static str,
    stream_usage: bool,
}

impl From<&ProviderContext> for Settings {
    fn from(ctx: &ProviderContext) -> Self {
        let get = |key: &str| {
            ctx.settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        Settings {
            max_tokens_field: match get("max_tokens_field") {
                Some("max_tokens") => "max_tokens",
                _ => "max_completion_tokens",
            },
            stream_usage: get("stream_usage") != Some("false"),
        }
    }
}

fn request_body(request: &CompletionRequest, settings: &Settings) -> Value {
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

fn message_json(message: &Message) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let mut m = Map::new();
    m.insert("role".into(), json!(role));
    let only_text = message
        .content
        .iter()
        .all(|p| matches!(p, ContentPart::Text(_)));
    let content = if only_text {
        let text: String = message
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text(t) => Some(t.as_str()),
                ContentPart::Image(_) => None,
            })
            .collect();
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

/// Schemas arrive as text; an unparsable one is passed as a string so the provider reports it.
fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn tool_call(value: &Value) -> Option<ToolCall> {
    let function = value.get("function")?;
    Some(ToolCall {
        id: str_field(value, "id").unwrap_or_default(),
        name: str_field(function, "name")?,
        arguments: str_field(function, "arguments").unwrap_or_default(),
    })
}

fn tool_call_delta(value: &Value) -> ToolCallDelta {
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

fn usage(value: &Value) -> Option<Usage> {
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

fn finish_reason(value: Option<&Value>) -> FinishReason {
    match value.and_then(Value::as_str) {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls") | Some("function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

fn invalid(message: String) -> ProviderError {
    ProviderError {
        class: ErrorClass::InvalidResponse,
        message,
        retry_after_ms: None,
        status: None,
    }
}

fn class_for_status(status: u16) -> ErrorClass {
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
fn error_from_body(
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
fn retry_after_ms(headers: &[Header]) -> Option<u64> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim())
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Some(ms.max(0.0) as u64);
    }
    header("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| (s.max(0.0) * 1000.0) as u64)
}
