//! Provider adapters: the contract's types, builders for them, and the helpers every adapter
//! needs (JSON fields, error construction, `retry-after`, provider settings).

use serde_json::Value;

pub use crate::bindings::provider::aigw::plugin::types::{
    CompletionRequest, CompletionResponse, ContentPart, ErrorClass, FinishReason, Header,
    HttpRequest, HttpResponse, Image, JsonSchemaFormat, Message, ProviderError, ResponseFormat,
    Role, Sampling, StreamDelta, ToolCall, ToolCallDelta, ToolChoice, ToolDefinition, Usage,
};
pub use crate::bindings::provider::exports::aigw::plugin::adapter::{
    AdapterInfo, AuthScheme, Guest as Adapter, ProviderContext, StreamEvent, StreamFraming,
    StreamOutcome,
};

impl AdapterInfo {
    /// An adapter for a bearer-key API that streams server-sent events, with no static headers:
    /// the common case. Adjust the fields for the others.
    pub fn new(name: &str, description: &str, default_base_url: &str) -> Self {
        AdapterInfo {
            name: name.into(),
            description: description.into(),
            auth: AuthScheme::Bearer,
            default_base_url: default_base_url.into(),
            stream_framing: StreamFraming::Sse,
            static_headers: Vec::new(),
        }
    }
}

impl Header {
    pub fn new(name: &str, value: &str) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl HttpRequest {
    /// A `POST` of a JSON body to `path` (appended to the provider's base URL).
    pub fn post_json(path: impl Into<String>, body: &Value) -> Self {
        HttpRequest {
            method: "POST".into(),
            path: path.into(),
            headers: vec![Header::new("content-type", "application/json")],
            body: body.to_string().into_bytes(),
        }
    }
}

impl ProviderContext {
    /// A value from the provider's `settings` table in the gateway config.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl ProviderError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        ProviderError {
            class,
            message: message.into(),
            retry_after_ms: None,
            status: None,
        }
    }

    /// The upstream answered something this adapter cannot understand.
    pub fn invalid_response(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::InvalidResponse, message)
    }

    /// The request cannot be expressed in this provider's API.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::BadRequest, message)
    }

    pub fn with_status(self, status: u16) -> Self {
        ProviderError {
            status: Some(status),
            ..self
        }
    }

    pub fn with_retry_after_ms(self, retry_after_ms: Option<u64>) -> Self {
        ProviderError {
            retry_after_ms,
            ..self
        }
    }
}

// The type is generated, so a derive cannot be added to it.
#[allow(clippy::derivable_impls)]
impl Default for StreamDelta {
    fn default() -> Self {
        StreamDelta {
            text: None,
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: None,
            model: None,
            id: None,
        }
    }
}

impl StreamDelta {
    /// A delta that adds only text.
    pub fn text(text: impl Into<String>) -> Self {
        StreamDelta {
            text: Some(text.into()),
            ..StreamDelta::default()
        }
    }
}

impl StreamEvent {
    /// The event's data as JSON; an `invalid-response` error when it is not.
    pub fn json(&self) -> Result<Value, ProviderError> {
        serde_json::from_str(self.data.trim())
            .map_err(|e| ProviderError::invalid_response(format!("stream event is not JSON: {e}")))
    }
}

impl HttpResponse {
    pub fn new(status: u16, headers: Vec<Header>, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            headers,
            body: body.into(),
        }
    }

    /// The body as JSON; an `invalid-response` error when it is not.
    pub fn json(&self) -> Result<Value, ProviderError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProviderError::invalid_response(format!("response is not JSON: {e}")))
    }

    /// The value of a header (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

impl Message {
    pub fn new(role: Role, content: Vec<ContentPart>) -> Self {
        Message {
            role,
            content,
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A message of one text part.
    pub fn text(role: Role, text: &str) -> Self {
        Message::new(role, vec![ContentPart::Text(text.into())])
    }

    /// The message's text parts, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.content.iter().filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image(_) => None,
        })
    }
}

impl ToolCall {
    pub fn new(id: &str, name: &str, arguments: &str) -> Self {
        ToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

impl Default for Sampling {
    /// Every parameter left to the provider's default.
    fn default() -> Self {
        Sampling {
            temperature: None,
            top_p: None,
            max_output_tokens: None,
            stop: Vec::new(),
            seed: None,
            presence_penalty: None,
            frequency_penalty: None,
        }
    }
}

impl CompletionRequest {
    /// A non-streamed request with no tools, format or sampling parameters.
    pub fn new(model: &str, messages: Vec<Message>) -> Self {
        CompletionRequest {
            model: model.into(),
            messages,
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            sampling: Sampling::default(),
            stream: false,
            end_user: None,
        }
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A string field of a JSON object.
pub fn str_field(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The value of a header (names compare case-insensitively), trimmed.
pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.trim())
}

/// `retry-after` in seconds, as milliseconds. HTTP-date values are ignored.
pub fn retry_after_ms(headers: &[Header]) -> Option<u64> {
    header(headers, "retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite())
        .map(|s| (s.max(0.0) * 1000.0) as u64)
}

/// Text that should hold JSON (tool schemas, arguments) as a JSON value; text that does not
/// parse is passed on as a string, so that the provider reports it.
pub fn parse_json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The first `limit` characters of an upstream body, for error messages.
pub fn body_snippet(body: &[u8], limit: usize) -> String {
    String::from_utf8_lossy(body).chars().take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_and_ignores_dates() {
        let headers = |v: &str| vec![Header::new("Retry-After", v)];
        assert_eq!(retry_after_ms(&headers("2")), Some(2000));
        assert_eq!(retry_after_ms(&headers(" 0.5 ")), Some(500));
        assert_eq!(retry_after_ms(&headers("-3")), Some(0));
        assert_eq!(retry_after_ms(&headers("inf")), None);
        assert_eq!(
            retry_after_ms(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(retry_after_ms(&[]), None);
    }

    #[test]
    fn settings_are_looked_up_by_key() {
        let ctx = ProviderContext {
            provider_id: "groq".into(),
            settings: vec![("stream_usage".into(), "false".into())],
            default_max_output_tokens: 1024,
        };
        assert_eq!(ctx.setting("stream_usage"), Some("false"));
        assert_eq!(ctx.setting("max_tokens_field"), None);
    }

    #[test]
    fn json_text_that_does_not_parse_stays_a_string() {
        assert_eq!(parse_json_text(r#"{"a":1}"#)["a"], 1);
        assert_eq!(parse_json_text("{oops"), Value::String("{oops".into()));
    }

    #[test]
    fn errors_carry_class_status_and_retry() {
        let e = ProviderError::bad_request("no")
            .with_status(400)
            .with_retry_after_ms(Some(5));
        assert_eq!(e.class, ErrorClass::BadRequest);
        assert_eq!((e.status, e.retry_after_ms), (Some(400), Some(5)));
    }
}
