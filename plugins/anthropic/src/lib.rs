//! Provider adapter for the Anthropic Messages API (`POST /v1/messages`).
//!
//! A pure translator: unified request → Anthropic JSON, Anthropic JSON → unified response. The
//! host sends the request, adds the `x-api-key` header and the `anthropic-version` static header
//! declared in `describe`; this component never sees the key.
//!
//! Where the Messages API differs from the unified (OpenAI-shaped) format:
//!
//! - System messages go to the top-level `system` string (several are joined with a blank line),
//!   because the API has no `system` role.
//! - The API requires user and assistant turns to alternate, so consecutive messages that map to
//!   the same role are merged into one turn. Tool results become `tool_result` blocks of a `user`
//!   turn, placed before any other content of that turn as the API requires.
//! - Assistant tool calls become `tool_use` blocks whose `input` is the parsed arguments object;
//!   arguments that are not a JSON object are a `bad-request` (empty arguments mean `{}`).
//! - `max_tokens` is required: the caller's limit, else the provider context's default.
//! - `temperature` is clamped to the API's 0..1. `top_p` of 1 or more is the default and is
//!   omitted (recent models reject requests that set both `temperature` and `top_p`). Seed and
//!   the presence/frequency penalties have no equivalent and are omitted silently.
//! - JSON output: `json-schema` maps to the API's native structured outputs
//!   (`output_config.format = {"type": "json_schema", "schema": ...}`), which constrains the
//!   text itself, so responses and streams need no special parsing. It is only served by recent
//!   models (Claude Sonnet 4.5, Opus 4.5, Haiku 4.5 and later); older ones answer 400, classified
//!   `bad-request`. The API also requires `additionalProperties: false` on every object of the
//!   schema, so a schema-less `json-object` request cannot be expressed and is refused with a
//!   `bad-request`. (The older "forced tool" trick was rejected: a stateless adapter cannot tell
//!   the synthetic tool's `input_json_delta` events from real tool calls in a stream.)
//! - Streams: a `tool-call-delta.index` is the Anthropic content block index (a text block at
//!   index 0 puts the first tool call at index 1); the host renumbers. `message_start` reports
//!   the input usage (plus Anthropic's initial output count); `message_delta` reports its
//!   cumulative usage, whose input fields are 0 when the event carries only `output_tokens`. The
//!   host keeps the maximum of each field across reports.
//! - Usage: `input-tokens` = `input_tokens` + `cache_read_input_tokens` +
//!   `cache_creation_input_tokens`, since Anthropic's `input_tokens` excludes both cache parts.

use aigw_plugin_sdk::provider::*;
use serde_json::{Map, Value, json};

/// The API version this adapter speaks, sent by the host on every request.
const API_VERSION: &str = "2023-06-01";

struct Anthropic;

aigw_plugin_sdk::export_provider!(Anthropic);

impl Adapter for Anthropic {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            auth: AuthScheme::Header("x-api-key".into()),
            static_headers: vec![Header::new("anthropic-version", API_VERSION)],
            ..AdapterInfo::new(
                "anthropic",
                "Anthropic Messages API",
                "https://api.anthropic.com",
            )
        }
    }

    fn build_request(
        ctx: ProviderContext,
        request: CompletionRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = request_body(&request, ctx.default_max_output_tokens)?;
        Ok(HttpRequest::post_json("/v1/messages", &body))
    }

    fn parse_response(
        _ctx: ProviderContext,
        response: HttpResponse,
    ) -> Result<CompletionResponse, ProviderError> {
        let body = response.json()?;
        if str_field(&body, "type").as_deref() == Some("error") {
            let error = body.get("error").unwrap_or(&Value::Null);
            return Err(error_from_body(error, Some(response.status), None));
        }
        let blocks = body
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| ProviderError::invalid_response("response has no content array"))?;
        let mut content = Vec::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if let Some(text) = block.get("text").and_then(Value::as_str) {
                        content.push(ContentPart::Text(text.to_string()));
                    }
                }
                Some("tool_use") => {
                    if let Some(call) = tool_call(block) {
                        tool_calls.push(call);
                    }
                }
                // Thinking, redacted thinking and server-tool blocks are not part of the
                // unified response.
                _ => {}
            }
        }
        Ok(CompletionResponse {
            id: str_field(&body, "id"),
            model: str_field(&body, "model"),
            content,
            tool_calls,
            finish_reason: finish_reason(body.get("stop_reason")),
            usage: body.get("usage").and_then(usage),
        })
    }

    fn parse_stream_event(
        _ctx: ProviderContext,
        event: StreamEvent,
    ) -> Result<StreamOutcome, ProviderError> {
        let data = event.data.trim();
        let value: Value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(data).map_err(|e| {
                ProviderError::invalid_response(format!("stream event is not JSON: {e}"))
            })?
        };
        // Every data payload names its own type; the SSE event name is the fallback.
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        let delta = match kind {
            "message_start" => {
                let message = value.get("message").unwrap_or(&Value::Null);
                StreamDelta {
                    id: str_field(message, "id"),
                    model: str_field(message, "model"),
                    usage: message.get("usage").and_then(usage),
                    ..StreamDelta::default()
                }
            }
            "content_block_start" => {
                let block = value.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => StreamDelta {
                        tool_calls: vec![ToolCallDelta {
                            index: block_index(&value)?,
                            id: str_field(block, "id"),
                            name: str_field(block, "name"),
                            arguments_fragment: String::new(),
                        }],
                        ..StreamDelta::default()
                    },
                    Some("text") => match block.get("text").and_then(Value::as_str) {
                        Some(text) if !text.is_empty() => StreamDelta {
                            text: Some(text.to_string()),
                            ..StreamDelta::default()
                        },
                        _ => return Ok(StreamOutcome::Deltas(Vec::new())),
                    },
                    _ => return Ok(StreamOutcome::Deltas(Vec::new())),
                }
            }
            "content_block_delta" => {
                let d = value.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => StreamDelta {
                        text: str_field(d, "text"),
                        ..StreamDelta::default()
                    },
                    Some("input_json_delta") => StreamDelta {
                        tool_calls: vec![ToolCallDelta {
                            index: block_index(&value)?,
                            id: None,
                            name: None,
                            arguments_fragment: str_field(d, "partial_json").unwrap_or_default(),
                        }],
                        ..StreamDelta::default()
                    },
                    // Thinking, signature and citation deltas are not forwarded.
                    _ => return Ok(StreamOutcome::Deltas(Vec::new())),
                }
            }
            "message_delta" => {
                let stop = value.pointer("/delta/stop_reason").filter(|s| !s.is_null());
                StreamDelta {
                    finish_reason: stop.map(|s| finish_reason(Some(s))),
                    // Cumulative counts. Older API versions send only `output_tokens` here, so
                    // the input fields come out as 0; the host keeps each field's maximum
                    // across reports, which preserves the input counts from `message_start`.
                    usage: value.get("usage").and_then(usage),
                    ..StreamDelta::default()
                }
            }
            "message_stop" => return Ok(StreamOutcome::Done(Vec::new())),
            "error" => {
                let error = value.get("error").unwrap_or(&Value::Null);
                return Err(error_from_body(error, None, None));
            }
            // `ping`, `content_block_stop`, and event types added to the API later.
            _ => return Ok(StreamOutcome::Deltas(Vec::new())),
        };
        Ok(StreamOutcome::Deltas(vec![delta]))
    }

    fn classify_error(_ctx: ProviderContext, response: HttpResponse) -> ProviderError {
        let retry_after = retry_after_ms(&response.headers);
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        match body.get("error").filter(|e| e.is_object()) {
            Some(error) => error_from_body(error, Some(response.status), retry_after),
            None => ProviderError {
                class: class_for_status(response.status),
                message: format!(
                    "upstream answered {}: {}",
                    response.status,
                    body_snippet(&response.body, 500)
                ),
                retry_after_ms: retry_after,
                status: Some(response.status),
            },
        }
    }
}

fn request_body(
    request: &CompletionRequest,
    default_max_output_tokens: u32,
) -> Result<Value, ProviderError> {
    let (system, messages) = conversation(&request.messages)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    if let Some(system) = system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let s = &request.sampling;
    body.insert(
        "max_tokens".into(),
        json!(s.max_output_tokens.unwrap_or(default_max_output_tokens)),
    );
    if let Some(t) = s.temperature.filter(|t| t.is_finite()) {
        body.insert("temperature".into(), float(t.clamp(0.0, 1.0)));
    }
    // 1.0 (or more) means no nucleus cut-off, the API's default; leaving it out keeps requests
    // that set both valid on models that accept only one of `temperature` and `top_p`.
    if let Some(p) = s.top_p.filter(|p| p.is_finite() && *p < 1.0) {
        body.insert("top_p".into(), float(p.max(0.0)));
    }
    if !s.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(s.stop));
    }
    if !request.tools.is_empty() {
        let tools = request
            .tools
            .iter()
            .map(tool_json)
            .collect::<Result<Vec<_>, _>>()?;
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &request.tool_choice {
        let value = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Function(name) => json!({"type": "tool", "name": name}),
        };
        // Without tools, `auto` and `none` say nothing; anything else is left for the API to
        // reject.
        let meaningless =
            request.tools.is_empty() && matches!(choice, ToolChoice::Auto | ToolChoice::None);
        if !meaningless {
            body.insert("tool_choice".into(), value);
        }
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            return Err(ProviderError::bad_request(
                "Anthropic has no schema-less JSON mode: use response_format \
                 {\"type\": \"json_schema\"} (structured outputs, Claude 4.5 and later models)",
            ));
        }
        Some(ResponseFormat::JsonSchema(format)) => {
            let schema = json_object_text(&format.schema_json).ok_or_else(|| {
                ProviderError::bad_request(format!(
                    "response_format.json_schema '{}': the schema is not a JSON object",
                    format.name
                ))
            })?;
            // Anthropic's JSON outputs are always strict; `name` and `strict` have no field.
            body.insert(
                "output_config".into(),
                json!({"format": {"type": "json_schema", "schema": schema}}),
            );
        }
    }
    if request.stream {
        body.insert("stream".into(), json!(true));
    }
    if let Some(user) = &request.end_user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    Ok(Value::Object(body))
}

/// Splits the conversation into the `system` text and alternating `messages` turns.
fn conversation(messages: &[Message]) -> Result<(Option<String>, Vec<Value>), ProviderError> {
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message.role {
            Role::System => {
                let text = text_only(i, message, "system")?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            Role::User => push_turn(&mut turns, "user", content_blocks(i, message, true)?),
            Role::Assistant => {
                let mut blocks = content_blocks(i, message, false)?;
                for call in &message.tool_calls {
                    blocks.push(tool_use_block(i, call)?);
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => push_turn(&mut turns, "user", vec![tool_result_block(i, message)?]),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, messages))
}

/// Appends blocks to the conversation, merging them into the last turn when it has the same
/// role. Tool results go after the turn's other tool results and before its other content.
fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last_role, existing)) if *last_role == role => {
            for block in blocks {
                if is_tool_result(&block) {
                    let at = existing
                        .iter()
                        .position(|b| !is_tool_result(b))
                        .unwrap_or(existing.len());
                    existing.insert(at, block);
                } else {
                    existing.push(block);
                }
            }
        }
        _ => turns.push((role, blocks)),
    }
}

fn is_tool_result(block: &Value) -> bool {
    block.get("type").and_then(Value::as_str) == Some("tool_result")
}

/// Text and image blocks of a message. Empty text parts are dropped (the API rejects empty
/// text blocks); images are allowed only where the API accepts them.
fn content_blocks(
    index: usize,
    message: &Message,
    images_allowed: bool,
) -> Result<Vec<Value>, ProviderError> {
    let mut blocks = Vec::new();
    for part in &message.content {
        match part {
            ContentPart::Text(text) if text.is_empty() => {}
            ContentPart::Text(text) => blocks.push(json!({"type": "text", "text": text})),
            ContentPart::Image(image) if images_allowed => blocks.push(image_block(index, image)?),
            ContentPart::Image(_) => {
                return Err(ProviderError::bad_request(format!(
                    "messages[{index}]: Anthropic accepts images only in user and tool messages"
                )));
            }
        }
    }
    Ok(blocks)
}

/// The concatenated text of a message whose role takes text only.
fn text_only(index: usize, message: &Message, role: &str) -> Result<String, ProviderError> {
    let mut text = String::new();
    for part in &message.content {
        match part {
            ContentPart::Text(t) => text.push_str(t),
            ContentPart::Image(_) => {
                return Err(ProviderError::bad_request(format!(
                    "messages[{index}]: {role} messages may contain only text on Anthropic"
                )));
            }
        }
    }
    Ok(text)
}

fn image_block(index: usize, image: &Image) -> Result<Value, ProviderError> {
    let url = image.url.trim();
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| {
            ProviderError::bad_request(format!(
                "messages[{index}]: malformed data URL for an image"
            ))
        })?;
        let mut params = meta.split(';');
        let media_type = params
            .next()
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| image.media_type.clone())
            .ok_or_else(|| {
                ProviderError::bad_request(format!(
                    "messages[{index}]: the image data URL has no media type"
                ))
            })?;
        if !params.any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(ProviderError::bad_request(format!(
                "messages[{index}]: Anthropic accepts only base64 image data URLs"
            )));
        }
        return Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }));
    }
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") | Some("http") => Ok(json!({
            "type": "image",
            "source": {"type": "url", "url": url},
        })),
        _ => Err(ProviderError::bad_request(format!(
            "messages[{index}]: an image URL must be https: or a base64 data: URL"
        ))),
    }
}

fn tool_use_block(index: usize, call: &ToolCall) -> Result<Value, ProviderError> {
    let input = if call.arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str::<Value>(&call.arguments).map_err(|e| {
            ProviderError::bad_request(format!(
                "messages[{index}]: the arguments of tool call '{}' are not valid JSON: {e}",
                call.id
            ))
        })?
    };
    if !input.is_object() {
        return Err(ProviderError::bad_request(format!(
            "messages[{index}]: the arguments of tool call '{}' must be a JSON object",
            call.id
        )));
    }
    Ok(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}))
}

fn tool_result_block(index: usize, message: &Message) -> Result<Value, ProviderError> {
    let id = message
        .tool_call_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            ProviderError::bad_request(format!(
                "messages[{index}]: a tool message needs the tool_call_id it answers"
            ))
        })?;
    let mut block = Map::new();
    block.insert("type".into(), json!("tool_result"));
    block.insert("tool_use_id".into(), json!(id));
    let has_image = message
        .content
        .iter()
        .any(|p| matches!(p, ContentPart::Image(_)));
    if has_image {
        block.insert(
            "content".into(),
            Value::Array(content_blocks(index, message, true)?),
        );
    } else {
        let text = text_only(index, message, "tool")?;
        if !text.is_empty() {
            block.insert("content".into(), json!(text));
        }
    }
    Ok(Value::Object(block))
}

fn tool_json(tool: &ToolDefinition) -> Result<Value, ProviderError> {
    let schema = if tool.parameters_json.trim().is_empty() {
        json!({"type": "object", "properties": {}})
    } else {
        json_object_text(&tool.parameters_json).ok_or_else(|| {
            ProviderError::bad_request(format!(
                "tools: the parameters of '{}' are not a JSON object",
                tool.name
            ))
        })?
    };
    let mut t = Map::new();
    t.insert("name".into(), json!(tool.name));
    if let Some(d) = &tool.description {
        t.insert("description".into(), json!(d));
    }
    t.insert("input_schema".into(), schema);
    if tool.strict {
        t.insert("strict".into(), json!(true));
    }
    Ok(Value::Object(t))
}

/// Parses text that must hold a JSON object.
fn json_object_text(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// An `f32` as the JSON number it reads as (0.7, not 0.699999988079071).
fn float(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn tool_call(block: &Value) -> Option<ToolCall> {
    Some(ToolCall {
        id: str_field(block, "id").unwrap_or_default(),
        name: str_field(block, "name")?,
        arguments: block
            .get("input")
            .filter(|i| !i.is_null())
            .map_or_else(|| "{}".to_string(), Value::to_string),
    })
}

fn block_index(event: &Value) -> Result<u32, ProviderError> {
    event
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| ProviderError::invalid_response("content block event has no valid index"))
}

/// Anthropic's `input_tokens` excludes cache reads and writes; the unified count includes them.
fn usage(value: &Value) -> Option<Usage> {
    if !value.is_object() {
        return None;
    }
    let n = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    let written = n("cache_creation_input_tokens");
    Some(Usage {
        input_tokens: n("input_tokens")
            .saturating_add(cached)
            .saturating_add(written),
        cached_input_tokens: cached,
        cache_write_input_tokens: written,
        // Includes thinking tokens, which Anthropic does not count separately.
        output_tokens: n("output_tokens"),
        reasoning_output_tokens: 0,
        estimated: false,
    })
}

fn finish_reason(value: Option<&Value>) -> FinishReason {
    match value.and_then(Value::as_str) {
        Some("end_turn") | Some("stop_sequence") => FinishReason::Stop,
        // The context window, not `max_tokens`, cut the output: still a length stop.
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

fn class_for_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Auth,
        // Billing: the account cannot pay; another provider may serve the request.
        402 => ErrorClass::RateLimited,
        404 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        413 => ErrorClass::ContextTooLong,
        429 => ErrorClass::RateLimited,
        503 | 529 => ErrorClass::Overloaded,
        400..=499 => ErrorClass::BadRequest,
        _ => ErrorClass::Server,
    }
}

/// Whether an `invalid_request_error` message says the prompt does not fit the context window
/// ("prompt is too long: 215332 tokens > 200000 maximum", "input length and `max_tokens`
/// exceed context limit: ...").
fn says_context_too_long(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// Maps an Anthropic error object (`{"type": ..., "message": ...}`) to a classified error. The
/// type is more specific than the status, so it wins where it says something.
fn error_from_body(
    error: &Value,
    status: Option<u16>,
    retry_after_ms: Option<u64>,
) -> ProviderError {
    let kind = str_field(error, "type").unwrap_or_default();
    let message = str_field(error, "message").unwrap_or_else(|| error.to_string());
    let class = match kind.as_str() {
        "rate_limit_error" => ErrorClass::RateLimited,
        "overloaded_error" => ErrorClass::Overloaded,
        "authentication_error" | "permission_error" => ErrorClass::Auth,
        "billing_error" => ErrorClass::RateLimited,
        "invalid_request_error" if says_context_too_long(&message) || status == Some(413) => {
            ErrorClass::ContextTooLong
        }
        "invalid_request_error" => ErrorClass::BadRequest,
        "request_too_large" => ErrorClass::ContextTooLong,
        "not_found_error" => ErrorClass::NotFound,
        "api_error" => ErrorClass::Server,
        "timeout_error" => ErrorClass::Timeout,
        _ => status.map(class_for_status).unwrap_or(ErrorClass::Server),
    };
    ProviderError {
        class,
        message,
        retry_after_ms,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::sse_events;

    fn ctx() -> ProviderContext {
        ProviderContext {
            provider_id: "anthropic".into(),
            settings: Vec::new(),
            default_max_output_tokens: 4096,
        }
    }

    fn msg(role: Role, text: &str) -> Message {
        if text.is_empty() {
            Message::new(role, Vec::new())
        } else {
            Message::text(role, text)
        }
    }

    fn tool_msg(id: &str, text: &str) -> Message {
        Message {
            tool_call_id: Some(id.into()),
            ..msg(Role::Tool, text)
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall::new(id, name, arguments)
    }

    fn request(messages: Vec<Message>) -> CompletionRequest {
        CompletionRequest::new("claude-sonnet-4-5", messages)
    }

    fn body_of(request: CompletionRequest) -> Value {
        let http = Anthropic::build_request(ctx(), request).expect("request builds");
        assert_eq!(http.method, "POST");
        assert_eq!(http.path, "/v1/messages");
        serde_json::from_slice(&http.body).expect("body is JSON")
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../../tests/fixtures/anthropic/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn http(status: u16, headers: Vec<Header>, body: Vec<u8>) -> HttpResponse {
        HttpResponse::new(status, headers, body)
    }

    #[derive(Default)]
    struct Assembled {
        text: String,
        calls: std::collections::BTreeMap<u32, (String, String, String)>,
        finish: Option<FinishReason>,
        usage: Option<Usage>,
        id: Option<String>,
        model: Option<String>,
        done: bool,
    }

    /// Feeds a whole SSE body through the adapter, merging usage by field-wise maximum.
    fn assemble(body: &[u8]) -> Assembled {
        let mut out = Assembled::default();
        for event in sse_events(std::str::from_utf8(body).unwrap()) {
            assert!(!out.done, "events after message_stop");
            let (deltas, done) = match Anthropic::parse_stream_event(ctx(), event).unwrap() {
                StreamOutcome::Deltas(d) => (d, false),
                StreamOutcome::Done(d) => (d, true),
            };
            out.done = done;
            for d in deltas {
                if let Some(t) = d.text {
                    out.text.push_str(&t);
                }
                for c in d.tool_calls {
                    let entry = out.calls.entry(c.index).or_default();
                    if let Some(id) = c.id {
                        entry.0 = id;
                    }
                    if let Some(name) = c.name {
                        entry.1 = name;
                    }
                    entry.2.push_str(&c.arguments_fragment);
                }
                if d.finish_reason.is_some() {
                    out.finish = d.finish_reason;
                }
                if let Some(u) = d.usage {
                    out.usage = Some(match out.usage.take() {
                        None => u,
                        Some(p) => Usage {
                            input_tokens: p.input_tokens.max(u.input_tokens),
                            cached_input_tokens: p.cached_input_tokens.max(u.cached_input_tokens),
                            cache_write_input_tokens: p
                                .cache_write_input_tokens
                                .max(u.cache_write_input_tokens),
                            output_tokens: p.output_tokens.max(u.output_tokens),
                            reasoning_output_tokens: p
                                .reasoning_output_tokens
                                .max(u.reasoning_output_tokens),
                            estimated: false,
                        },
                    });
                }
                out.id = d.id.or(out.id);
                out.model = d.model.or(out.model);
            }
        }
        out
    }

    #[test]
    fn describe_declares_header_auth_and_version() {
        let info = Anthropic::describe();
        assert_eq!(info.name, "anthropic");
        assert!(matches!(info.auth, AuthScheme::Header(ref h) if h == "x-api-key"));
        assert_eq!(info.default_base_url, "https://api.anthropic.com");
        assert!(matches!(info.stream_framing, StreamFraming::Sse));
        assert_eq!(info.static_headers.len(), 1);
        assert_eq!(info.static_headers[0].name, "anthropic-version");
        assert_eq!(info.static_headers[0].value, "2023-06-01");
    }

    #[test]
    fn conversation_is_hoisted_merged_and_alternating() {
        let mut assistant = msg(Role::Assistant, "Checking both.");
        assistant.tool_calls = vec![
            call("toolu_1", "get_weather", r#"{"city": "Paris"}"#),
            call("toolu_2", "get_time", ""),
        ];
        let body = body_of(request(vec![
            msg(Role::System, "You are terse."),
            msg(Role::User, "Hi."),
            msg(Role::User, "Weather and time in Paris?"),
            msg(Role::System, "Use metric units."),
            assistant,
            tool_msg("toolu_1", "18C, sunny"),
            tool_msg("toolu_2", "14:05"),
            msg(Role::User, "Thanks!"),
            msg(Role::Assistant, ""),
        ]));
        assert_eq!(body["system"], "You are terse.\n\nUse metric units.");
        assert_eq!(body["max_tokens"], 4096);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "Hi."},
                    {"type": "text", "text": "Weather and time in Paris?"},
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking both."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                     "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C, sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:05"},
                    {"type": "text", "text": "Thanks!"},
                ]},
            ])
        );
        for absent in [
            "stream",
            "temperature",
            "top_p",
            "tools",
            "tool_choice",
            "metadata",
        ] {
            assert!(body.get(absent).is_none(), "{absent} should be absent");
        }
    }

    #[test]
    fn tool_results_go_before_text_in_a_merged_user_turn() {
        let mut assistant = msg(Role::Assistant, "");
        assistant.tool_calls = vec![call("toolu_1", "f", "{}")];
        let body = body_of(request(vec![
            msg(Role::User, "Go."),
            assistant,
            msg(Role::User, "Also, hurry."),
            tool_msg("toolu_1", "done"),
        ]));
        assert_eq!(
            body["messages"][2]["content"],
            json!([
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "done"},
                {"type": "text", "text": "Also, hurry."},
            ])
        );
    }

    #[test]
    fn invalid_tool_arguments_are_a_bad_request() {
        for arguments in [r#"{"city": "Par"#, "[1, 2]"] {
            let mut assistant = msg(Role::Assistant, "");
            assistant.tool_calls = vec![call("toolu_1", "get_weather", arguments)];
            let err =
                Anthropic::build_request(ctx(), request(vec![msg(Role::User, "Hi"), assistant]))
                    .unwrap_err();
            assert!(matches!(err.class, ErrorClass::BadRequest), "{arguments}");
        }
        let mut orphan = msg(Role::Tool, "result");
        orphan.tool_call_id = None;
        let err = Anthropic::build_request(ctx(), request(vec![orphan])).unwrap_err();
        assert!(matches!(err.class, ErrorClass::BadRequest));
    }

    #[test]
    fn images_sampling_tools_and_options_map() {
        let mut user = msg(Role::User, "What is this?");
        user.content.push(ContentPart::Image(Image {
            url: "data:image/png;base64,iVBORw0KGgo=".into(),
            media_type: None,
            detail: Some("high".into()),
        }));
        user.content.push(ContentPart::Image(Image {
            url: "https://example.com/cat.jpg".into(),
            media_type: None,
            detail: None,
        }));
        let mut req = request(vec![user]);
        req.sampling.temperature = Some(1.7);
        req.sampling.top_p = Some(0.9);
        req.sampling.max_output_tokens = Some(300);
        req.sampling.stop = vec!["END".into()];
        req.sampling.seed = Some(7);
        req.sampling.presence_penalty = Some(0.5);
        req.sampling.frequency_penalty = Some(0.5);
        req.tools = vec![ToolDefinition {
            name: "get_weather".into(),
            description: Some("Current weather".into()),
            parameters_json: r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.into(),
            strict: false,
        }];
        req.tool_choice = Some(ToolChoice::Function("get_weather".into()));
        req.stream = true;
        req.end_user = Some("user-42".into());
        let body = body_of(req);
        assert_eq!(
            body["messages"][0]["content"],
            json!([
                {"type": "text", "text": "What is this?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ])
        );
        assert_eq!(body["temperature"], json!(1.0));
        assert_eq!(body["top_p"], json!(0.9));
        assert_eq!(body["max_tokens"], 300);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(
            body["tools"],
            json!([{"name": "get_weather", "description": "Current weather",
                    "input_schema": {"type": "object",
                                     "properties": {"city": {"type": "string"}}}}])
        );
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": "get_weather"})
        );
        assert_eq!(body["stream"], true);
        assert_eq!(body["metadata"], json!({"user_id": "user-42"}));
        for absent in [
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "output_config",
        ] {
            assert!(body.get(absent).is_none(), "{absent} should be absent");
        }
    }

    #[test]
    fn tool_choices_map() {
        let cases = [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::Required, json!({"type": "any"})),
            (ToolChoice::None, json!({"type": "none"})),
        ];
        for (choice, expected) in cases {
            let mut req = request(vec![msg(Role::User, "Hi")]);
            req.tools = vec![ToolDefinition {
                name: "f".into(),
                description: None,
                parameters_json: String::new(),
                strict: true,
            }];
            req.tool_choice = Some(choice);
            let body = body_of(req);
            assert_eq!(body["tool_choice"], expected);
            assert_eq!(
                body["tools"][0],
                json!({"name": "f", "input_schema": {"type": "object", "properties": {}},
                       "strict": true})
            );
        }
    }

    #[test]
    fn json_schema_uses_structured_outputs_and_json_object_is_refused() {
        let schema = r#"{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}"#;
        let mut req = request(vec![msg(Role::User, "Give me a.")]);
        req.response_format = Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "answer".into(),
            schema_json: schema.into(),
            strict: true,
        }));
        let body = body_of(req);
        assert_eq!(
            body["output_config"],
            json!({"format": {"type": "json_schema",
                              "schema": serde_json::from_str::<Value>(schema).unwrap()}})
        );

        let mut req = request(vec![msg(Role::User, "JSON please.")]);
        req.response_format = Some(ResponseFormat::JsonObject);
        let err = Anthropic::build_request(ctx(), req).unwrap_err();
        assert!(matches!(err.class, ErrorClass::BadRequest));
        assert!(err.message.contains("json_schema"));
    }

    #[test]
    fn text_response_counts_cache_reads_and_writes_as_input() {
        let response =
            Anthropic::parse_response(ctx(), http(200, Vec::new(), fixture("response-text.json")))
                .unwrap();
        assert_eq!(response.id.as_deref(), Some("msg_01XFDUDYJgAACzvnptvVoYEL"));
        assert_eq!(
            response.model.as_deref(),
            Some("claude-sonnet-4-5-20250929")
        );
        assert!(matches!(
            response.content.as_slice(),
            [ContentPart::Text(t)] if t == "The capital of France is Paris."
        ));
        assert!(response.tool_calls.is_empty());
        assert!(matches!(response.finish_reason, FinishReason::Stop));
        let usage = response.usage.unwrap();
        assert_eq!(usage.input_tokens, 21 + 3000 + 1500);
        assert_eq!(usage.cached_input_tokens, 3000);
        assert_eq!(usage.cache_write_input_tokens, 1500);
        assert_eq!(usage.output_tokens, 9);
        assert_eq!(usage.reasoning_output_tokens, 0);
        assert!(!usage.estimated);
    }

    #[test]
    fn tool_use_response_yields_text_and_calls() {
        let response = Anthropic::parse_response(
            ctx(),
            http(200, Vec::new(), fixture("response-tool-use.json")),
        )
        .unwrap();
        assert!(matches!(
            response.content.as_slice(),
            [ContentPart::Text(t)] if t == "I'll check the current weather in Paris for you."
        ));
        assert_eq!(response.tool_calls.len(), 1);
        let call = &response.tool_calls[0];
        assert_eq!(call.id, "toolu_01A09q90qw90lq917835lq9");
        assert_eq!(call.name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&call.arguments).unwrap(),
            json!({"city": "Paris", "unit": "celsius"})
        );
        assert!(matches!(response.finish_reason, FinishReason::ToolCalls));
        assert_eq!(response.usage.unwrap().input_tokens, 412);
    }

    #[test]
    fn malformed_and_error_bodies_are_errors() {
        let err = Anthropic::parse_response(ctx(), http(200, Vec::new(), b"{not json".to_vec()))
            .unwrap_err();
        assert!(matches!(err.class, ErrorClass::InvalidResponse));
        let err =
            Anthropic::parse_response(ctx(), http(200, Vec::new(), b"{}".to_vec())).unwrap_err();
        assert!(matches!(err.class, ErrorClass::InvalidResponse));
        let err =
            Anthropic::parse_response(ctx(), http(200, Vec::new(), fixture("error-529.json")))
                .unwrap_err();
        assert!(matches!(err.class, ErrorClass::Overloaded));
        let err = Anthropic::parse_stream_event(
            ctx(),
            StreamEvent {
                event: Some("content_block_delta".into()),
                data: "{\"type\":\"content_block_delta\"".into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err.class, ErrorClass::InvalidResponse));
    }

    #[test]
    fn text_stream_reassembles() {
        let out = assemble(&fixture("stream-text.sse"));
        assert!(out.done);
        assert_eq!(out.text, "Hello! How can I help you today?");
        assert!(out.calls.is_empty());
        assert!(matches!(out.finish, Some(FinishReason::Stop)));
        assert_eq!(out.id.as_deref(), Some("msg_01UodR8c3ezAK8rAfi8HAs8g"));
        assert_eq!(out.model.as_deref(), Some("claude-haiku-4-5-20251001"));
        let usage = out.usage.unwrap();
        assert_eq!(usage.input_tokens, 1225);
        assert_eq!(usage.cached_input_tokens, 1200);
        assert_eq!(usage.output_tokens, 12);
    }

    #[test]
    fn tool_use_stream_reassembles_exact_arguments() {
        let out = assemble(&fixture("stream-tool-use.sse"));
        assert!(out.done);
        assert_eq!(out.text, "Let me check the weather in Paris.");
        assert_eq!(out.calls.len(), 1);
        // The index is the content block's: the text block is 0, the tool call 1.
        let (id, name, arguments) = &out.calls[&1];
        assert_eq!(id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
        assert_eq!(name, "get_weather");
        assert_eq!(arguments, r#"{"city": "Paris", "unit": "celsius"}"#);
        assert!(matches!(out.finish, Some(FinishReason::ToolCalls)));
        let usage = out.usage.unwrap();
        assert_eq!(usage.input_tokens, 472);
        assert_eq!(usage.output_tokens, 89);
    }

    #[test]
    fn stream_usage_per_event() {
        let start = Anthropic::parse_stream_event(
            ctx(),
            StreamEvent {
                event: Some("message_start".into()),
                data: r#"{"type":"message_start","message":{"id":"msg_1","model":"claude-x","usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":3,"output_tokens":1}}}"#.into(),
            },
        )
        .unwrap();
        let StreamOutcome::Deltas(d) = start else {
            panic!("message_start is not the end")
        };
        let u = d[0].usage.as_ref().unwrap();
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.cache_write_input_tokens
            ),
            (18, 5, 3)
        );
        // The original message_delta shape: only output_tokens.
        let delta = Anthropic::parse_stream_event(
            ctx(),
            StreamEvent {
                event: Some("message_delta".into()),
                data: r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":15}}"#.into(),
            },
        )
        .unwrap();
        let StreamOutcome::Deltas(d) = delta else {
            panic!("message_delta is not the end")
        };
        assert!(matches!(d[0].finish_reason, Some(FinishReason::Length)));
        let u = d[0].usage.as_ref().unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (0, 15));
    }

    #[test]
    fn stream_error_event_is_classified() {
        let err = Anthropic::parse_stream_event(
            ctx(),
            StreamEvent {
                event: Some("error".into()),
                data: r#"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}"#.into(),
            },
        )
        .unwrap_err();
        assert!(matches!(err.class, ErrorClass::Overloaded));
        assert_eq!(err.message, "Overloaded");
        assert_eq!(err.status, None);
        let ping = Anthropic::parse_stream_event(
            ctx(),
            StreamEvent {
                event: Some("ping".into()),
                data: r#"{"type": "ping"}"#.into(),
            },
        )
        .unwrap();
        assert!(matches!(ping, StreamOutcome::Deltas(d) if d.is_empty()));
    }

    #[test]
    fn errors_are_classified() {
        let retry = vec![Header {
            name: "retry-after".into(),
            value: "17".into(),
        }];
        let e = Anthropic::classify_error(ctx(), http(429, retry, fixture("error-429.json")));
        assert!(matches!(e.class, ErrorClass::RateLimited));
        assert_eq!(e.retry_after_ms, Some(17_000));
        assert_eq!(e.status, Some(429));
        assert!(
            e.message
                .starts_with("This request would exceed the rate limit")
        );

        let e = Anthropic::classify_error(ctx(), http(529, Vec::new(), fixture("error-529.json")));
        assert!(matches!(e.class, ErrorClass::Overloaded));
        assert_eq!(e.message, "Overloaded");

        let e = Anthropic::classify_error(ctx(), http(401, Vec::new(), fixture("error-401.json")));
        assert!(matches!(e.class, ErrorClass::Auth));
        assert_eq!(e.message, "invalid x-api-key");

        let e = Anthropic::classify_error(
            ctx(),
            http(400, Vec::new(), fixture("error-400-prompt-too-long.json")),
        );
        assert!(matches!(e.class, ErrorClass::ContextTooLong));
        assert_eq!(e.status, Some(400));

        let bad = br#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: must be greater than or equal to 1"}}"#;
        let e = Anthropic::classify_error(ctx(), http(400, Vec::new(), bad.to_vec()));
        assert!(matches!(e.class, ErrorClass::BadRequest));

        let cases = [
            (403, "permission_error", ErrorClass::Auth),
            (404, "not_found_error", ErrorClass::NotFound),
            (413, "request_too_large", ErrorClass::ContextTooLong),
            (500, "api_error", ErrorClass::Server),
            (504, "timeout_error", ErrorClass::Timeout),
            (418, "something_new", ErrorClass::BadRequest),
        ];
        for (status, kind, expected) in cases {
            let body = json!({"type": "error", "error": {"type": kind, "message": "m"}});
            let e = Anthropic::classify_error(
                ctx(),
                http(status, Vec::new(), body.to_string().into_bytes()),
            );
            assert_eq!(e.class, expected, "{status} {kind}");
        }

        let e = Anthropic::classify_error(ctx(), http(502, Vec::new(), b"<html>".to_vec()));
        assert!(matches!(e.class, ErrorClass::Server));
        assert_eq!(e.status, Some(502));
    }
}
