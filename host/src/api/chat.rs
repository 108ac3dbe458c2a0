//! `POST /v1/chat/completions`: the OpenAI wire format in and out.
//!
//! Requests are parsed strictly where a mistake would change the answer (roles, content parts,
//! parameter ranges) and leniently elsewhere: OpenAI fields the gateway does not act on are
//! accepted and ignored, so unmodified SDKs work. Two extension fields steer routing:
//! `policy` (a policy component name) and `requirements` (see `routing::Requirements`); a third,
//! `cache`, steers the response cache (see `cache::CacheControls`).

use super::error::ApiError;
use crate::cache::CacheControls;
use crate::pipeline::{Completion, CompletionInput, StreamChunk};
use crate::plugins::bindings::types::{
    CompletionRequest, ContentPart, FinishReason, Image, JsonSchemaFormat, Message, ResponseFormat,
    Role, Sampling, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use crate::routing::Requirements;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// `null` is accepted for every optional field, as the OpenAI spec allows.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tools: Vec<ChatTool>,
    pub tool_choice: Option<Value>,
    pub response_format: Option<Value>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    pub n: Option<u32>,
    /// Gateway extension: the policy component to rank with.
    pub policy: Option<String>,
    /// Gateway extension: routing requirements.
    pub requirements: Option<Requirements>,
    /// Gateway extension: response cache controls.
    pub cache: Option<CacheControls>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage of the whole response.
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ChatToolCall>,
    pub tool_call_id: Option<String>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Debug, Deserialize)]
pub struct ChatToolCall {
    pub id: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub function: ChatFunctionCall,
}

#[derive(Debug, Deserialize)]
pub struct ChatFunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: ChatFunction,
}

#[derive(Debug, Deserialize)]
pub struct ChatFunction {
    pub name: String,
    pub description: Option<String>,
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl ChatCompletionRequest {
    /// Validates the request and converts it to the unified form.
    pub fn into_input(self, api_key_id: Option<String>) -> Result<CompletionInput, ApiError> {
        if self.model.trim().is_empty() {
            return Err(ApiError::bad_request(
                "model must name a model from GET /v1/models, or be \"auto\"",
                Some("model"),
            ));
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request(
                "messages must contain at least one message",
                Some("messages"),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request(
                "only n = 1 is supported; send separate requests for more choices",
                Some("n"),
            ));
        }
        check_range(self.temperature, 0.0, 2.0, "temperature")?;
        check_range(self.top_p, 0.0, 1.0, "top_p")?;
        check_range(self.presence_penalty, -2.0, 2.0, "presence_penalty")?;
        check_range(self.frequency_penalty, -2.0, 2.0, "frequency_penalty")?;
        let max_output_tokens = self.max_completion_tokens.or(self.max_tokens);
        if max_output_tokens == Some(0) {
            return Err(ApiError::bad_request(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ));
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        if stop.len() > 4 {
            return Err(ApiError::bad_request(
                "stop takes at most 4 sequences",
                Some("stop"),
            ));
        }

        let messages = self
            .messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?;
        let tools = self
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        let tool_choice = self.tool_choice.map(tool_choice).transpose()?;
        let response_format = self.response_format.map(response_format).transpose()?;
        let requirements = self.requirements.unwrap_or_default();
        if let Some(max) = requirements.max_cost_usd
            && !(max.is_finite() && max >= 0.0)
        {
            return Err(ApiError::bad_request(
                "requirements.max_cost_usd must be a non-negative number",
                Some("requirements.max_cost_usd"),
            ));
        }

        let cache = self.cache.unwrap_or_default();
        if let Some((param, message)) = cache.problem() {
            return Err(ApiError::bad_request(message, Some(param)));
        }

        Ok(CompletionInput {
            model: self.model,
            request: CompletionRequest {
                model: String::new(),
                messages,
                tools,
                tool_choice,
                response_format,
                sampling: Sampling {
                    temperature: self.temperature,
                    top_p: self.top_p,
                    max_output_tokens,
                    stop,
                    seed: self.seed,
                    presence_penalty: self.presence_penalty,
                    frequency_penalty: self.frequency_penalty,
                },
                stream: self.stream,
                end_user: self.user,
            },
            policy: self.policy,
            requirements,
            api_key_id,
            cache,
        })
    }
}

fn check_range(value: Option<f32>, min: f32, max: f32, name: &str) -> Result<(), ApiError> {
    match value {
        Some(v) if !(v.is_finite() && (min..=max).contains(&v)) => Err(ApiError::bad_request(
            format!("{name} must be between {min} and {max}; got {v}"),
            Some(name),
        )),
        _ => Ok(()),
    }
}

fn message(index: usize, m: ChatMessage) -> Result<Message, ApiError> {
    let param = |field: &str| format!("messages[{index}].{field}");
    let role = match m.role.as_str() {
        // `developer` is OpenAI's newer name for system instructions.
        "system" | "developer" => Role::System,
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "tool" => Role::Tool,
        other => {
            return Err(ApiError::bad_request(
                format!(
                    "messages[{index}].role '{other}' is not one of system, developer, user, \
                     assistant, tool"
                ),
                Some(&param("role")),
            ));
        }
    };
    let content = match m.content {
        None => Vec::new(),
        Some(Content::Text(text)) => vec![ContentPart::Text(text)],
        Some(Content::Parts(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(j, part)| content_part(&format!("messages[{index}].content[{j}]"), part))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if content.is_empty() && m.tool_calls.is_empty() {
        return Err(ApiError::bad_request(
            format!("messages[{index}] has no content"),
            Some(&param("content")),
        ));
    }
    if role == Role::Tool && m.tool_call_id.is_none() {
        return Err(ApiError::bad_request(
            format!("messages[{index}] has role 'tool' but no tool_call_id"),
            Some(&param("tool_call_id")),
        ));
    }
    let tool_calls = m
        .tool_calls
        .into_iter()
        .map(|c| {
            if c.kind.as_deref().is_some_and(|k| k != "function") {
                return Err(ApiError::bad_request(
                    format!("messages[{index}].tool_calls: only type 'function' is supported"),
                    Some(&param("tool_calls")),
                ));
            }
            Ok(ToolCall {
                id: c.id,
                name: c.function.name,
                arguments: c.function.arguments,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Message {
        role,
        content,
        name: m.name,
        tool_calls,
        tool_call_id: m.tool_call_id,
    })
}

fn content_part(param: &str, part: Value) -> Result<ContentPart, ApiError> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "text" => part
            .get("text")
            .and_then(Value::as_str)
            .map(|t| ContentPart::Text(t.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{param}.text must be a string"), Some(param))
            }),
        // An assistant's earlier refusal, sent back as history, is text to the model.
        "refusal" => part
            .get("refusal")
            .and_then(Value::as_str)
            .map(|t| ContentPart::Text(t.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{param}.refusal must be a string"), Some(param))
            }),
        "image_url" => {
            let image = part.get("image_url");
            let url = image
                .and_then(|i| i.get("url").or(Some(i)))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        format!("{param}.image_url.url must be a string"),
                        Some(param),
                    )
                })?;
            let media_type = url
                .strip_prefix("data:")
                .and_then(|rest| rest.split(';').next())
                .map(str::to_string);
            Ok(ContentPart::Image(Image {
                url: url.to_string(),
                media_type,
                detail: image
                    .and_then(|i| i.get("detail"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }))
        }
        other => Err(ApiError::bad_request(
            format!("{param}.type '{other}' is not supported; use 'text' or 'image_url'"),
            Some(param),
        )),
    }
}

fn tool(index: usize, t: ChatTool) -> Result<ToolDefinition, ApiError> {
    if t.kind != "function" {
        return Err(ApiError::bad_request(
            format!("tools[{index}].type must be 'function'"),
            Some(&format!("tools[{index}].type")),
        ));
    }
    let parameters = t
        .function
        .parameters
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    Ok(ToolDefinition {
        name: t.function.name,
        description: t.function.description,
        parameters_json: parameters.to_string(),
        strict: t.function.strict.unwrap_or(false),
    })
}

fn tool_choice(value: Value) -> Result<ToolChoice, ApiError> {
    match &value {
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto),
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "required" => Ok(ToolChoice::Required),
        _ => value
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Function(name.to_string()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "tool_choice must be \"auto\", \"none\", \"required\" or \
                     {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    Some("tool_choice"),
                )
            }),
    }
}

fn response_format(value: Value) -> Result<ResponseFormat, ApiError> {
    match value.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let spec = value.get("json_schema").ok_or_else(|| {
                ApiError::bad_request(
                    "response_format.json_schema is required for type json_schema",
                    Some("response_format.json_schema"),
                )
            })?;
            Ok(ResponseFormat::JsonSchema(JsonSchemaFormat {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .to_string(),
                schema_json: spec.get("schema").cloned().unwrap_or(json!({})).to_string(),
                strict: spec.get("strict").and_then(Value::as_bool).unwrap_or(false),
            }))
        }
        _ => Err(ApiError::bad_request(
            "response_format.type must be text, json_object or json_schema",
            Some("response_format"),
        )),
    }
}

/// The OpenAI `chat.completion` object for a completion.
pub fn response_json(completion: &Completion, id: &str, created: u64) -> Value {
    let response = &completion.response;
    let text: String = response
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image(_) => None,
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !response.tool_calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
        "annotations": [],
    });
    if !response.tool_calls.is_empty() {
        message["tool_calls"] = response
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
    }
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": completion.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(response.finish_reason),
        }],
    });
    if let Some(usage) = &response.usage {
        body["usage"] = usage_json(usage);
    }
    body
}

/// Serialises stream chunks as OpenAI `chat.completion.chunk` server-sent events.
pub struct ChunkWriter {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    role_sent: bool,
}

impl ChunkWriter {
    pub fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        ChunkWriter {
            id,
            created,
            model,
            include_usage,
            role_sent: false,
        }
    }

    /// The SSE bytes for one chunk; `None` when the chunk is not sent (usage not asked for).
    pub fn event(&mut self, chunk: StreamChunk) -> Option<String> {
        let mut delta = json!({});
        let mut finish = Value::Null;
        match chunk {
            StreamChunk::Text(text) => delta["content"] = json!(text),
            StreamChunk::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let mut call = json!({"index": index, "function": {"arguments": arguments}});
                if let Some(id) = id {
                    call["id"] = json!(id);
                    call["type"] = json!("function");
                }
                if let Some(name) = name {
                    call["function"]["name"] = json!(name);
                }
                delta["tool_calls"] = json!([call]);
            }
            StreamChunk::Finish(reason) => finish = json!(finish_reason(reason)),
            StreamChunk::Usage(usage) => {
                if !self.include_usage {
                    return None;
                }
                let body = json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_json(&usage),
                });
                return Some(format!("data: {body}\n\n"));
            }
            StreamChunk::End => return None,
            StreamChunk::Error(error) => {
                let api = ApiError::from(error);
                let body = json!({"error": {
                    "message": api.message,
                    "type": api.kind,
                    "param": api.param,
                    "code": api.code,
                }});
                return Some(format!("data: {body}\n\n"));
            }
        }
        if !self.role_sent {
            delta["role"] = json!("assistant");
            self.role_sent = true;
        }
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Some(format!("data: {body}\n\n"))
    }
}

fn usage_json(usage: &Usage) -> Value {
    let mut json = json!({
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens.saturating_add(usage.output_tokens),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
    });
    if usage.estimated {
        // The provider reported no usage; the gateway counted with a tokenizer.
        json["estimated"] = json!(true);
    }
    json
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::Other => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}
