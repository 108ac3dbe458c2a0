//! Provider adapter for the Google Gemini API (Generative Language API v1beta):
//! `POST /models/{model}:generateContent` and `:streamGenerateContent?alt=sse`.
//!
//! A pure translator: unified request → Gemini JSON, Gemini JSON → unified response. The host
//! sends the request and appends `?key=...`; this component never sees the key.
//!
//! Gemini differs from OpenAI in ways that shape this file:
//! - system messages go to a separate `systemInstruction`; roles are only `user` and `model`, and
//!   turns of one role are merged because Gemini expects them to alternate.
//! - a function result names the *function*, not the call, so the name is looked up from the
//!   assistant message that made the call. The request-side `id` fields of `functionCall` and
//!   `functionResponse` are left out: the Generative Language API rejects them
//!   ("Unknown name \"id\"").
//! - Gemini 3 models reject a history whose function calls lack a `thoughtSignature`. The unified
//!   format cannot carry the real signature back, so the first call of each assistant message gets
//!   the documented placeholder that skips the check.
//! - streamed function calls arrive whole, one part each, and often without an id. Adapters are
//!   stateless per event, so ids and indexes are derived from a hash of the call and its chunk
//!   (see [`stream_tool_call`]).

use aigw_plugin_sdk::provider::*;
use serde_json::{Map, Value, json};

/// Placeholder `thoughtSignature` that the Gemini API documents for function calls it did not
/// produce itself (history from another model, or from a client that dropped the signature).
const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

struct Gemini;

aigw_plugin_sdk::export_provider!(Gemini);

impl Adapter for Gemini {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            auth: AuthScheme::Query("key".into()),
            ..AdapterInfo::new(
                "gemini",
                "Google Gemini API (generateContent, v1beta)",
                "https://generativelanguage.googleapis.com/v1beta",
            )
        }
    }

    fn build_request(
        _ctx: ProviderContext,
        request: CompletionRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let model = model_path(&request.model)?;
        let path = if request.stream {
            // Without `alt=sse` the stream is one JSON array, not server-sent events.
            format!("{model}:streamGenerateContent?alt=sse")
        } else {
            format!("{model}:generateContent")
        };
        let body = request_body(&request)?;
        Ok(HttpRequest::post_json(path, &body))
    }

    fn parse_response(
        _ctx: ProviderContext,
        response: HttpResponse,
    ) -> Result<CompletionResponse, ProviderError> {
        let body = response.json()?;
        completion_from_body(&body, response.status)
    }

    fn parse_stream_event(
        _ctx: ProviderContext,
        event: StreamEvent,
    ) -> Result<StreamOutcome, ProviderError> {
        parse_chunk(&event.data)
    }

    fn classify_error(_ctx: ProviderContext, response: HttpResponse) -> ProviderError {
        classify(response.status, &response.headers, &response.body)
    }
}

// ---------------------------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------------------------

/// `/models/{id}` (or `/tunedModels/{id}`) for a model id, refusing characters that would change
/// the path or query.
fn model_path(model: &str) -> Result<String, ProviderError> {
    let model = model.trim();
    let (collection, id) = if let Some(id) = model.strip_prefix("models/") {
        ("models", id)
    } else if let Some(id) = model.strip_prefix("tunedModels/") {
        ("tunedModels", id)
    } else {
        ("models", model)
    };
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !valid {
        return Err(ProviderError::bad_request(format!(
            "invalid Gemini model id '{model}'"
        )));
    }
    Ok(format!("/{collection}/{id}"))
}

fn request_body(request: &CompletionRequest) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    let (system, contents) = contents(&request.messages)?;
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    if !request.tools.is_empty() {
        let declarations = request
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                if !t.parameters_json.trim().is_empty() {
                    // `parametersJsonSchema` takes full JSON Schema; `parameters` only takes
                    // Gemini's OpenAPI subset and rejects `const`, type lists, `$ref`, ...
                    let schema = parse_schema(&t.parameters_json, &format!("tool '{}'", t.name))?;
                    f.insert("parametersJsonSchema".into(), schema);
                }
                Ok(Value::Object(f))
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations}]),
        );
        if let Some(choice) = &request.tool_choice {
            let config = match choice {
                ToolChoice::Auto => json!({"mode": "AUTO"}),
                ToolChoice::None => json!({"mode": "NONE"}),
                ToolChoice::Required => json!({"mode": "ANY"}),
                ToolChoice::Function(name) => {
                    json!({"mode": "ANY", "allowedFunctionNames": [name]})
                }
            };
            body.insert(
                "toolConfig".into(),
                json!({"functionCallingConfig": config}),
            );
        }
    }
    let config = generation_config(request)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

fn generation_config(request: &CompletionRequest) -> Result<Map<String, Value>, ProviderError> {
    let s = &request.sampling;
    let mut config = Map::new();
    if let Some(t) = s.temperature {
        config.insert("temperature".into(), json!(t.clamp(0.0, 2.0)));
    }
    if let Some(p) = s.top_p {
        config.insert("topP".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(max) = s.max_output_tokens {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if !s.stop.is_empty() {
        config.insert("stopSequences".into(), json!(s.stop));
    }
    if let Some(seed) = s.seed {
        // Gemini's seed is an int32: keep the low 32 bits so distinct small seeds stay distinct.
        config.insert("seed".into(), json!(seed as i32));
    }
    if let Some(p) = s.presence_penalty {
        config.insert("presencePenalty".into(), json!(p));
    }
    if let Some(p) = s.frequency_penalty {
        config.insert("frequencyPenalty".into(), json!(p));
    }
    match &request.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema(format)) => {
            config.insert("responseMimeType".into(), json!("application/json"));
            // `responseJsonSchema` accepts JSON Schema; `responseSchema` is the OpenAPI subset.
            let schema = parse_schema(
                &format.schema_json,
                &format!("response schema '{}'", format.name),
            )?;
            config.insert("responseJsonSchema".into(), schema);
        }
    }
    Ok(config)
}

/// Parses a JSON Schema given as text, dropping the root `$schema` keyword Gemini does not list.
fn parse_schema(text: &str, what: &str) -> Result<Value, ProviderError> {
    let mut schema: Value = serde_json::from_str(text).map_err(|e| {
        ProviderError::bad_request(format!("{what}: the JSON Schema is not valid JSON: {e}"))
    })?;
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    Ok(schema)
}

/// Splits the conversation into `systemInstruction` parts and `contents`, merging consecutive
/// turns of the same Gemini role.
fn contents(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::System => {
                // Gemini's system instruction is text only.
                system.extend(
                    texts(&message.content)
                        .filter(|t| !t.is_empty())
                        .map(|t| json!({"text": t})),
                );
                continue;
            }
            Role::User => ("user", user_parts(&message.content)?),
            Role::Assistant => ("model", assistant_parts(message)?),
            Role::Tool => ("user", tool_result_parts(message, &messages[..i])?),
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    Ok((system, contents))
}

fn texts(content: &[ContentPart]) -> impl Iterator<Item = &str> {
    content.iter().filter_map(|p| match p {
        ContentPart::Text(t) => Some(t.as_str()),
        ContentPart::Image(_) => None,
    })
}

fn user_parts(content: &[ContentPart]) -> Result<Vec<Value>, ProviderError> {
    let mut parts = Vec::new();
    for part in content {
        match part {
            ContentPart::Text(t) if t.is_empty() => {}
            ContentPart::Text(t) => parts.push(json!({"text": t})),
            ContentPart::Image(image) => parts.push(image_part(image)?),
        }
    }
    Ok(parts)
}

/// `data:` URLs become `inlineData`; other URLs become `fileData` references.
fn image_part(image: &Image) -> Result<Value, ProviderError> {
    if let Some(rest) = image.url.strip_prefix("data:") {
        let (header, data) = rest
            .split_once(',')
            .ok_or_else(|| ProviderError::bad_request("image data URL has no ',' separator"))?;
        let mut params = header.split(';');
        let mime = params.next().unwrap_or_default().trim();
        if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
            return Err(ProviderError::bad_request(
                "image data URLs must be base64-encoded (data:<type>;base64,...)",
            ));
        }
        let mime = if mime.is_empty() {
            image.media_type.as_deref().unwrap_or("image/jpeg")
        } else {
            mime
        };
        Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
    } else {
        let mime = image.media_type.as_deref().unwrap_or("image/jpeg");
        Ok(json!({"fileData": {"mimeType": mime, "fileUri": image.url}}))
    }
}

fn assistant_parts(message: &Message) -> Result<Vec<Value>, ProviderError> {
    let mut parts: Vec<Value> = texts(&message.content)
        .filter(|t| !t.is_empty())
        .map(|t| json!({"text": t}))
        .collect();
    for (i, call) in message.tool_calls.iter().enumerate() {
        let args = call_arguments(call)?;
        let mut part = Map::new();
        part.insert(
            "functionCall".into(),
            json!({"name": call.name, "args": args}),
        );
        if i == 0 {
            // Gemini 3 validates the first function call of each step; see the module docs.
            part.insert("thoughtSignature".into(), json!(SKIP_THOUGHT_SIGNATURE));
        }
        parts.push(Value::Object(part));
    }
    Ok(parts)
}

/// A tool call's arguments as the JSON object `functionCall.args` requires. Empty text means no
/// arguments.
fn call_arguments(call: &ToolCall) -> Result<Value, ProviderError> {
    if call.arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(&call.arguments) {
        Ok(args @ Value::Object(_)) => Ok(args),
        Ok(_) => Err(ProviderError::bad_request(format!(
            "arguments of tool call '{}' ({}) are not a JSON object",
            call.id, call.name
        ))),
        Err(e) => Err(ProviderError::bad_request(format!(
            "arguments of tool call '{}' ({}) are not valid JSON: {e}",
            call.id, call.name
        ))),
    }
}

/// A tool message becomes a `functionResponse` part in a user turn. Gemini identifies the call
/// by function name, found on the most recent earlier assistant call with this id.
fn tool_result_parts(message: &Message, earlier: &[Message]) -> Result<Vec<Value>, ProviderError> {
    let call_id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| ProviderError::bad_request("a tool message has no tool-call-id"))?;
    let name = earlier
        .iter()
        .rev()
        .filter(|m| matches!(m.role, Role::Assistant))
        .find_map(|m| m.tool_calls.iter().find(|c| c.id == call_id))
        .map(|c| c.name.clone())
        .ok_or_else(|| {
            ProviderError::bad_request(format!(
                "tool result '{call_id}' answers no earlier assistant tool call"
            ))
        })?;
    let text: String = texts(&message.content).collect();
    let response = match serde_json::from_str::<Value>(text.trim()) {
        Ok(object @ Value::Object(_)) => object,
        _ => json!({"content": text}),
    };
    let mut parts = vec![json!({"functionResponse": {"name": name, "response": response}})];
    for part in &message.content {
        if let ContentPart::Image(image) = part {
            parts.push(image_part(image)?);
        }
    }
    Ok(parts)
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

fn completion_from_body(body: &Value, status: u16) -> Result<CompletionResponse, ProviderError> {
    if let Some(error) = body.get("error").filter(|e| e.is_object()) {
        return Err(error_from_body(error, Some(status), None));
    }
    let Some(candidate) = body.pointer("/candidates/0") else {
        return Err(blocked(body, Some(status))
            .unwrap_or_else(|| ProviderError::invalid_response("response has no candidates")));
    };
    let parts = candidate_parts(candidate);
    let text = parts_text(parts);
    let response_id = str_field(body, "responseId");
    let tool_calls: Vec<ToolCall> = parts
        .iter()
        .filter_map(|p| p.get("functionCall"))
        .enumerate()
        .map(|(i, call)| {
            let name = str_field(call, "name").unwrap_or_default();
            let arguments = args_text(call);
            let id = api_call_id(call).unwrap_or_else(|| {
                let key = fnv1a(&[
                    response_id.as_deref().unwrap_or_default().as_bytes(),
                    i.to_string().as_bytes(),
                    name.as_bytes(),
                    arguments.as_bytes(),
                ]);
                synthetic_id(key)
            });
            ToolCall {
                id,
                name,
                arguments,
            }
        })
        .collect();
    let finish_reason = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(|r| finish_reason(r, !tool_calls.is_empty()))
        .unwrap_or(if tool_calls.is_empty() {
            FinishReason::Other
        } else {
            FinishReason::ToolCalls
        });
    Ok(CompletionResponse {
        id: response_id,
        model: model_version(body),
        content: text.map(ContentPart::Text).into_iter().collect(),
        tool_calls,
        finish_reason,
        usage: body.get("usageMetadata").and_then(usage),
    })
}

/// `Err(content-filtered)` for a prompt Gemini refused (`promptFeedback.blockReason`).
fn blocked(body: &Value, status: Option<u16>) -> Option<ProviderError> {
    let reason = body
        .pointer("/promptFeedback/blockReason")
        .and_then(Value::as_str)?;
    let message = match body
        .pointer("/promptFeedback/blockReasonMessage")
        .and_then(Value::as_str)
    {
        Some(m) => format!("prompt blocked by Gemini ({reason}): {m}"),
        None => format!("prompt blocked by Gemini ({reason})"),
    };
    Some(ProviderError {
        class: ErrorClass::ContentFiltered,
        message,
        retry_after_ms: None,
        status,
    })
}

fn candidate_parts(candidate: &Value) -> &[Value] {
    candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The visible text of some parts: thought summaries (`thought: true`) are skipped.
fn parts_text(parts: &[Value]) -> Option<String> {
    let text: String = parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    (!text.is_empty()).then_some(text)
}

/// A function call's `args` as JSON text (`{}` when absent). serde_json sorts object keys, so
/// the text is the same object but not necessarily the model's key order.
fn args_text(call: &Value) -> String {
    match call.get("args") {
        Some(args) if !args.is_null() => args.to_string(),
        _ => "{}".into(),
    }
}

fn api_call_id(call: &Value) -> Option<String> {
    str_field(call, "id").filter(|id| !id.is_empty())
}

/// `modelVersion` without the `models/` prefix some responses carry.
fn model_version(body: &Value) -> Option<String> {
    str_field(body, "modelVersion").map(|m| m.strip_prefix("models/").unwrap_or(&m).to_string())
}

/// Parses one `data:` payload of an `alt=sse` stream: a whole `GenerateContentResponse`.
fn parse_chunk(data: &str) -> Result<StreamOutcome, ProviderError> {
    let data = data.trim();
    if data.is_empty() {
        return Ok(StreamOutcome::Deltas(Vec::new()));
    }
    if data == "[DONE]" {
        // Gemini sends no sentinel; tolerate proxies that add OpenAI's.
        return Ok(StreamOutcome::Done(Vec::new()));
    }
    let chunk: Value = serde_json::from_str(data)
        .map_err(|e| ProviderError::invalid_response(format!("stream event is not JSON: {e}")))?;
    // An error can arrive as the object itself or wrapped in a one-element array.
    let chunk = match chunk {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
        return Err(error_from_body(error, None, None));
    }
    let candidate = chunk.pointer("/candidates/0");
    if candidate.is_none()
        && let Some(error) = blocked(&chunk, None)
    {
        return Err(error);
    }
    let usage = chunk.get("usageMetadata").and_then(usage);
    let mut delta = StreamDelta {
        text: None,
        tool_calls: Vec::new(),
        finish_reason: None,
        usage,
        model: model_version(&chunk),
        id: str_field(&chunk, "responseId"),
    };
    let mut finished = false;
    if let Some(candidate) = candidate {
        let parts = candidate_parts(candidate);
        delta.text = parts_text(parts);
        // Cumulative generated tokens so far: differs between chunks that carry new content,
        // which keeps synthesised ids of identical calls in different chunks apart.
        let generated = delta
            .usage
            .as_ref()
            .map(|u| u.output_tokens)
            .unwrap_or_default();
        delta.tool_calls = parts
            .iter()
            .filter_map(|p| p.get("functionCall"))
            .enumerate()
            .map(|(position, call)| {
                stream_tool_call(call, delta.id.as_deref(), generated, position)
            })
            .collect();
        if let Some(reason) = candidate
            .get("finishReason")
            .and_then(Value::as_str)
            .filter(|r| *r != "FINISH_REASON_UNSPECIFIED")
        {
            delta.finish_reason = Some(finish_reason(reason, !delta.tool_calls.is_empty()));
            finished = true;
        }
    }
    Ok(if finished {
        StreamOutcome::Done(vec![delta])
    } else {
        StreamOutcome::Deltas(vec![delta])
    })
}

/// One streamed function call as a single, complete tool-call delta.
///
/// The adapter sees one chunk at a time, so the id and index must be unique across the stream
/// without counting calls. Both come from one 64-bit FNV-1a hash:
/// - of the API's `functionCall.id` when it sends one (the id is then used as is);
/// - otherwise of `responseId`, the chunk's cumulative generated-token count, the call's position
///   among the chunk's function calls, the name and the arguments; the id is `call_` and 12 hex
///   digits of the hash.
///
/// The index is the hash's low 31 bits (non-negative in any signed 32-bit consumer). Two calls
/// get the same index only on a hash collision, and even then their ids differ, which makes the
/// host start a new call. Indexes are therefore sparse, not 0, 1, 2: a host forwarding them to
/// OpenAI-style clients should renumber calls in order of first appearance.
fn stream_tool_call(
    call: &Value,
    response_id: Option<&str>,
    generated: u64,
    position: usize,
) -> ToolCallDelta {
    let name = str_field(call, "name").unwrap_or_default();
    let arguments = args_text(call);
    let (id, key) = match api_call_id(call) {
        Some(id) => {
            let key = fnv1a(&[b"id", id.as_bytes()]);
            (id, key)
        }
        None => {
            let key = fnv1a(&[
                response_id.unwrap_or_default().as_bytes(),
                generated.to_string().as_bytes(),
                position.to_string().as_bytes(),
                name.as_bytes(),
                arguments.as_bytes(),
            ]);
            (synthetic_id(key), key)
        }
    };
    ToolCallDelta {
        index: (key & 0x7fff_ffff) as u32,
        id: Some(id),
        name: Some(name),
        arguments_fragment: arguments,
    }
}

fn synthetic_id(key: u64) -> String {
    format!("call_{:012x}", key >> 16)
}

/// 64-bit FNV-1a over the fields, each followed by a 0xff byte (which UTF-8 never contains) so
/// that field boundaries cannot shift.
fn fnv1a(fields: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for field in fields {
        for &byte in field.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// Token counts from `usageMetadata`. `promptTokenCount` already includes
/// `cachedContentTokenCount`; `candidatesTokenCount` excludes `thoughtsTokenCount`;
/// `toolUsePromptTokenCount` (built-in tools, which this adapter never enables) is prompt input
/// counted outside `promptTokenCount`.
fn usage(value: &Value) -> Option<Usage> {
    if !value.is_object() {
        return None;
    }
    let n = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let input = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
    let thoughts = n("thoughtsTokenCount");
    Some(Usage {
        input_tokens: input,
        cached_input_tokens: n("cachedContentTokenCount").min(input),
        cache_write_input_tokens: 0,
        output_tokens: n("candidatesTokenCount").saturating_add(thoughts),
        reasoning_output_tokens: thoughts,
        estimated: false,
    })
}

fn finish_reason(reason: &str, has_tool_calls: bool) -> FinishReason {
    match reason {
        "STOP" if has_tool_calls => FinishReason::ToolCalls,
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn classify(status: u16, headers: &[Header], body: &[u8]) -> ProviderError {
    let retry_after = retry_after_ms(headers);
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    // `streamGenerateContent` without `alt=sse` wraps errors in an array.
    let body = match &body {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    };
    match body.get("error").filter(|e| e.is_object()) {
        Some(error) => error_from_body(error, Some(status), retry_after),
        None => ProviderError {
            class: class_for_status(status),
            message: format!(
                "upstream answered {status}: {}",
                body_snippet(body).unwrap_or_default()
            ),
            retry_after_ms: retry_after,
            status: Some(status),
        },
    }
}

fn body_snippet(body: &Value) -> Option<String> {
    if body.is_null() {
        return None;
    }
    Some(body.to_string().chars().take(500).collect())
}

fn class_for_status(status: u16) -> ErrorClass {
    match status {
        400 | 409 | 411 | 413 | 415 | 422 => ErrorClass::BadRequest,
        401 | 403 => ErrorClass::Auth,
        404 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        429 => ErrorClass::RateLimited,
        503 => ErrorClass::Overloaded,
        _ => ErrorClass::Server,
    }
}

/// Maps a Google API error (`{"code", "message", "status", "details"}`) to a classified error.
/// The canonical `status` string is more specific than the HTTP code, so it wins.
fn error_from_body(
    error: &Value,
    status: Option<u16>,
    header_retry_ms: Option<u64>,
) -> ProviderError {
    let http = status.or_else(|| {
        error
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
    });
    let grpc = str_field(error, "status").unwrap_or_default();
    let message = str_field(error, "message").unwrap_or_else(|| error.to_string());
    let lower = message.to_lowercase();
    let details = error
        .get("details")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let detail_of = |suffix: &str| {
        details.iter().find(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with(suffix))
        })
    };
    let reason = detail_of("google.rpc.ErrorInfo")
        .and_then(|d| str_field(d, "reason"))
        .unwrap_or_default();
    let retry_ms = detail_of("google.rpc.RetryInfo")
        .and_then(|d| d.get("retryDelay"))
        .and_then(Value::as_str)
        .and_then(duration_ms)
        .or(header_retry_ms);

    let class = if reason == "API_KEY_INVALID" || lower.contains("api key not valid") {
        ErrorClass::Auth
    } else {
        match grpc.as_str() {
            "RESOURCE_EXHAUSTED" => ErrorClass::RateLimited,
            "UNAUTHENTICATED" | "PERMISSION_DENIED" => ErrorClass::Auth,
            "NOT_FOUND" => ErrorClass::NotFound,
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" if too_long(&lower) => {
                ErrorClass::ContextTooLong
            }
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorClass::BadRequest,
            "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => ErrorClass::Server,
            "UNAVAILABLE" => ErrorClass::Overloaded,
            "DEADLINE_EXCEEDED" => ErrorClass::Timeout,
            _ => match http {
                Some(400) if too_long(&lower) => ErrorClass::ContextTooLong,
                Some(code) => class_for_status(code),
                None => ErrorClass::Server,
            },
        }
    };
    ProviderError {
        class,
        message,
        retry_after_ms: retry_ms,
        status: http,
    }
}

/// Whether an invalid-argument message says the prompt exceeds the model's input limit, e.g.
/// "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
fn too_long(lower: &str) -> bool {
    if lower.contains("context length") || lower.contains("context window") {
        return true;
    }
    let about_output_limit = lower.contains("maxoutputtokens") || lower.contains("max_output");
    lower.contains("token")
        && !about_output_limit
        && (lower.contains("input") || lower.contains("prompt") || lower.contains("request"))
        && (lower.contains("exceed") || lower.contains("too long") || lower.contains("limit"))
}

/// A protobuf JSON duration (`"30s"`, `"1.5s"`) in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| (seconds * 1000.0).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::sse_events;

    fn message(role: Role, text: &str) -> Message {
        Message::text(role, text)
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall::new(id, name, arguments)
    }

    fn request(messages: Vec<Message>) -> CompletionRequest {
        CompletionRequest::new("gemini-2.5-flash", messages)
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../../tests/fixtures/gemini/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The `data:` payloads of an SSE body, as the host's SSE reader hands them over.
    fn sse_data(body: &str) -> Vec<String> {
        sse_events(body).into_iter().map(|e| e.data).collect()
    }

    fn deltas(outcome: StreamOutcome) -> (bool, Vec<StreamDelta>) {
        match outcome {
            StreamOutcome::Deltas(d) => (false, d),
            StreamOutcome::Done(d) => (true, d),
        }
    }

    #[test]
    fn maps_system_roles_merging_and_function_response_name() {
        let mut assistant = message(Role::Assistant, "Checking.");
        assistant.tool_calls = vec![
            call("call_a", "get_weather", r#"{"city":"Paris"}"#),
            call("call_b", "get_time", ""),
        ];
        let mut weather = message(Role::Tool, r#"{"temp_c": 21}"#);
        weather.tool_call_id = Some("call_a".into());
        let mut time = message(Role::Tool, "12:00");
        time.tool_call_id = Some("call_b".into());
        let req = request(vec![
            message(Role::System, "Be brief."),
            message(Role::User, "Hi"),
            message(Role::User, "Weather and time in Paris?"),
            assistant,
            weather,
            time,
            message(Role::System, "Use Celsius."),
        ]);
        let body = request_body(&req).expect("request builds");
        assert_eq!(
            body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "Use Celsius."}]})
        );
        let contents = body["contents"].as_array().expect("contents");
        assert_eq!(contents.len(), 3, "{body}");
        assert_eq!(
            contents[0],
            json!({"role": "user", "parts": [{"text": "Hi"}, {"text": "Weather and time in Paris?"}]})
        );
        assert_eq!(contents[1]["role"], "model");
        assert_eq!(
            contents[1]["parts"],
            json!([
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                 "thoughtSignature": SKIP_THOUGHT_SIGNATURE},
                {"functionCall": {"name": "get_time", "args": {}}},
            ])
        );
        assert_eq!(
            contents[2],
            json!({"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
            ]})
        );
    }

    #[test]
    fn function_response_name_comes_from_the_latest_call_with_that_id() {
        let mut first = message(Role::Assistant, "");
        first.tool_calls = vec![call("call_0", "old_fn", "{}")];
        let mut first_result = message(Role::Tool, "x");
        first_result.tool_call_id = Some("call_0".into());
        let mut second = message(Role::Assistant, "");
        second.tool_calls = vec![call("call_0", "new_fn", "{}")];
        let mut second_result = message(Role::Tool, "y");
        second_result.tool_call_id = Some("call_0".into());
        let req = request(vec![
            message(Role::User, "go"),
            first,
            first_result,
            second,
            second_result,
        ]);
        let body = request_body(&req).expect("request builds");
        assert_eq!(
            body.pointer("/contents/2/parts/0/functionResponse/name"),
            Some(&json!("old_fn"))
        );
        assert_eq!(
            body.pointer("/contents/4/parts/0/functionResponse/name"),
            Some(&json!("new_fn"))
        );
    }

    #[test]
    fn rejects_unknown_tool_call_ids_and_bad_arguments() {
        let mut orphan = message(Role::Tool, "x");
        orphan.tool_call_id = Some("nope".into());
        let err = request_body(&request(vec![message(Role::User, "a"), orphan]))
            .expect_err("orphan tool result");
        assert_eq!(err.class, ErrorClass::BadRequest);

        let mut assistant = message(Role::Assistant, "");
        assistant.tool_calls = vec![call("c", "f", "{not json")];
        let err = request_body(&request(vec![message(Role::User, "a"), assistant]))
            .expect_err("invalid arguments");
        assert_eq!(err.class, ErrorClass::BadRequest);
    }

    #[test]
    fn maps_images_tools_and_generation_config() {
        let mut user = message(Role::User, "What is this?");
        user.content.push(ContentPart::Image(Image {
            url: "data:image/png;base64,iVBORw0KGgo=".into(),
            media_type: None,
            detail: None,
        }));
        user.content.push(ContentPart::Image(Image {
            url: "https://example.com/cat.webp".into(),
            media_type: Some("image/webp".into()),
            detail: Some("high".into()),
        }));
        let mut req = request(vec![user]);
        req.stream = true;
        req.tools = vec![ToolDefinition {
            name: "lookup".into(),
            description: Some("Looks things up".into()),
            parameters_json:
                r#"{"$schema":"x","type":"object","properties":{"q":{"type":["string","null"]}}}"#
                    .into(),
            strict: true,
        }];
        req.tool_choice = Some(ToolChoice::Function("lookup".into()));
        req.response_format = Some(ResponseFormat::JsonSchema(JsonSchemaFormat {
            name: "answer".into(),
            schema_json: r#"{"type":"object"}"#.into(),
            strict: true,
        }));
        req.sampling.temperature = Some(3.0);
        req.sampling.max_output_tokens = Some(256);
        req.sampling.stop = vec!["END".into()];
        req.sampling.seed = Some(42);
        let body = request_body(&req).expect("request builds");
        assert_eq!(
            body.pointer("/contents/0/parts/1"),
            Some(&json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}))
        );
        assert_eq!(
            body.pointer("/contents/0/parts/2"),
            Some(
                &json!({"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp"}})
            )
        );
        assert_eq!(
            body["tools"],
            json!([{"functionDeclarations": [{
                "name": "lookup",
                "description": "Looks things up",
                "parametersJsonSchema": {"type": "object", "properties": {"q": {"type": ["string", "null"]}}},
            }]}])
        );
        assert_eq!(
            body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}})
        );
        assert_eq!(
            body["generationConfig"],
            json!({
                "temperature": 2.0,
                "maxOutputTokens": 256,
                "stopSequences": ["END"],
                "seed": 42,
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": "object"},
            })
        );
    }

    #[test]
    fn builds_paths() {
        assert_eq!(
            model_path("gemini-2.5-pro").ok(),
            Some("/models/gemini-2.5-pro".into())
        );
        assert_eq!(
            model_path("models/gemini-2.5-pro").ok(),
            Some("/models/gemini-2.5-pro".into())
        );
        assert!(model_path("gemini?x=1").is_err());
        assert!(model_path("../v1/files").is_err());
    }

    #[test]
    fn usage_counts_cached_and_thinking_tokens() {
        let u = usage(&json!({
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 600,
            "candidatesTokenCount": 50,
            "thoughtsTokenCount": 200,
            "totalTokenCount": 1250,
        }))
        .expect("usage");
        assert_eq!(u.input_tokens, 1000);
        assert_eq!(u.cached_input_tokens, 600);
        assert_eq!(u.cache_write_input_tokens, 0);
        assert_eq!(u.output_tokens, 250);
        assert_eq!(u.reasoning_output_tokens, 200);
        assert!(!u.estimated);
    }

    #[test]
    fn parses_text_response_fixture() {
        let body: Value = serde_json::from_str(&fixture("response-text.json")).expect("json");
        let r = completion_from_body(&body, 200).expect("parses");
        assert!(
            matches!(&r.content[..], [ContentPart::Text(t)] if t == "The capital of France is Paris.")
        );
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.model.as_deref(), Some("gemini-2.5-flash"));
        assert!(r.id.is_some());
        let u = r.usage.expect("usage");
        assert_eq!(
            (
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.reasoning_output_tokens
            ),
            (2068, 2048, 95, 88)
        );
    }

    #[test]
    fn parses_function_call_response_fixture() {
        let body: Value =
            serde_json::from_str(&fixture("response-function-call.json")).expect("json");
        let r = completion_from_body(&body, 200).expect("parses");
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        assert_eq!(r.tool_calls.len(), 2);
        assert_eq!(r.tool_calls[0].name, "get_weather");
        assert_eq!(
            r.tool_calls[0].arguments,
            r#"{"city":"Paris","unit":"celsius"}"#
        );
        assert!(r.tool_calls[0].id.starts_with("call_"));
        assert_ne!(r.tool_calls[0].id, r.tool_calls[1].id);
        // Deterministic.
        let again = completion_from_body(&body, 200).expect("parses");
        assert_eq!(again.tool_calls[0].id, r.tool_calls[0].id);
    }

    #[test]
    fn blocked_prompt_is_content_filtered() {
        let body = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}});
        let err = completion_from_body(&body, 200).expect_err("blocked");
        assert_eq!(err.class, ErrorClass::ContentFiltered);
        let err = parse_chunk(&body.to_string()).expect_err("blocked chunk");
        assert_eq!(err.class, ErrorClass::ContentFiltered);
        let err = completion_from_body(&json!({"candidates": "x"}), 200).expect_err("garbage");
        assert_eq!(err.class, ErrorClass::InvalidResponse);
        assert_eq!(
            parse_chunk("{not json").err().map(|e| e.class),
            Some(ErrorClass::InvalidResponse)
        );
    }

    #[test]
    fn streams_text_fixture() {
        let events = sse_data(&fixture("stream-text.sse"));
        assert_eq!(events.len(), 3);
        let mut text = String::new();
        for (i, event) in events.iter().enumerate() {
            let (done, d) = deltas(parse_chunk(event).expect("chunk"));
            assert_eq!(done, i == events.len() - 1);
            assert_eq!(d.len(), 1);
            text.push_str(d[0].text.as_deref().unwrap_or_default());
            assert!(d[0].usage.is_some(), "every chunk reports usage");
            assert_eq!(d[0].model.as_deref(), Some("gemini-2.5-flash"));
            if done {
                assert_eq!(d[0].finish_reason, Some(FinishReason::Stop));
                let u = d[0].usage.as_ref().expect("usage");
                assert_eq!(
                    (u.input_tokens, u.output_tokens, u.reasoning_output_tokens),
                    (8, 327, 312)
                );
            }
        }
        assert_eq!(text, "Hello! How can I help you today?");
    }

    #[test]
    fn streams_function_call_fixture() {
        let events = sse_data(&fixture("stream-function-call.sse"));
        let mut calls = Vec::new();
        let mut last = None;
        for event in &events {
            let (done, d) = deltas(parse_chunk(event).expect("chunk"));
            calls.extend(d[0].tool_calls.clone());
            last = Some((done, d[0].finish_reason));
        }
        assert_eq!(last, Some((true, Some(FinishReason::ToolCalls))));
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
        assert_eq!(calls[0].arguments_fragment, r#"{"city":"Paris"}"#);
        assert!(
            calls[0]
                .id
                .as_deref()
                .is_some_and(|id| id.starts_with("call_"))
        );
        assert_ne!(calls[0].id, calls[1].id);
        assert_ne!(calls[0].index, calls[1].index);
        // Stateless but deterministic: re-parsing gives the same id and index.
        let (_, again) = deltas(parse_chunk(&events[events.len() - 1]).expect("chunk"));
        assert_eq!(again[0].tool_calls[0].id, calls[0].id);
        assert_eq!(again[0].tool_calls[0].index, calls[0].index);
    }

    #[test]
    fn identical_calls_in_different_chunks_get_different_ids() {
        let chunk = |tokens: u64| {
            json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"functionCall": {"name": "ping", "args": {}}}
                ]}}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": tokens},
                "responseId": "r1",
            })
            .to_string()
        };
        let (_, a) = deltas(parse_chunk(&chunk(10)).expect("chunk"));
        let (_, b) = deltas(parse_chunk(&chunk(20)).expect("chunk"));
        assert_ne!(a[0].tool_calls[0].id, b[0].tool_calls[0].id);
        assert_ne!(a[0].tool_calls[0].index, b[0].tool_calls[0].index);
        // An id from the API is kept as is.
        let with_id = json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"id": "fc-1", "name": "ping", "args": {}}}
        ]}}]});
        let (_, c) = deltas(parse_chunk(&with_id.to_string()).expect("chunk"));
        assert_eq!(c[0].tool_calls[0].id.as_deref(), Some("fc-1"));
    }

    #[test]
    fn stream_error_chunk_is_classified() {
        let err = parse_chunk(
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        )
        .expect_err("error");
        assert_eq!(err.class, ErrorClass::Overloaded);
        assert_eq!(err.status, Some(503));
    }

    #[test]
    fn classifies_error_fixtures() {
        let classify_fixture =
            |status: u16, name: &str| classify(status, &[], fixture(name).as_bytes());
        let e = classify_fixture(429, "error-429-rate-limit.json");
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(e.retry_after_ms, Some(31_500));
        assert_eq!(e.status, Some(429));
        let e = classify_fixture(400, "error-400-token-limit.json");
        assert_eq!(e.class, ErrorClass::ContextTooLong);
        let e = classify_fixture(400, "error-400-api-key-invalid.json");
        assert_eq!(e.class, ErrorClass::Auth);
        let e = classify_fixture(503, "error-503-unavailable.json");
        assert_eq!(e.class, ErrorClass::Overloaded);
    }

    #[test]
    fn classifies_statuses_and_headers() {
        let body = |code: u16, status: &str, message: &str| {
            json!({"error": {"code": code, "message": message, "status": status}}).to_string()
        };
        let cases = [
            (
                400,
                "INVALID_ARGUMENT",
                "Invalid value at 'contents[0]'",
                ErrorClass::BadRequest,
            ),
            (401, "UNAUTHENTICATED", "no", ErrorClass::Auth),
            (403, "PERMISSION_DENIED", "no", ErrorClass::Auth),
            (
                404,
                "NOT_FOUND",
                "models/x is not found",
                ErrorClass::NotFound,
            ),
            (500, "INTERNAL", "oops", ErrorClass::Server),
            (504, "DEADLINE_EXCEEDED", "slow", ErrorClass::Timeout),
        ];
        for (code, status, message, class) in cases {
            assert_eq!(
                classify(code, &[], body(code, status, message).as_bytes()).class,
                class,
                "{status}"
            );
        }
        let headers = [Header {
            name: "retry-after".into(),
            value: "7".into(),
        }];
        let e = classify(429, &headers, b"<html>quota</html>");
        assert_eq!(e.class, ErrorClass::RateLimited);
        assert_eq!(e.retry_after_ms, Some(7000));
        assert_eq!(duration_ms("1.5s"), Some(1500));
        assert_eq!(duration_ms("30s"), Some(30_000));
        assert_eq!(duration_ms("bogus"), None);
    }
}
