//! What identifies a request to the cache.
//!
//! - The *scope*: everything but the last user turn (caller's key, requested model, routing
//!   constraints, system prompt and earlier turns, tools, response format, sampling). A hit can
//!   only come from an entry with the same scope.
//! - The *query*: the last user turn's text, the only part that is embedded (embedding a whole
//!   conversation would cost tens of milliseconds per request).
//! - The *exact key*: a hash of both, over a normalised form (surrounding and repeated
//!   whitespace does not change it), checked before anything is embedded.

use crate::pipeline::CompletionInput;
use crate::plugins::bindings::types::{
    ContentPart, Message, ResponseFormat, Role, Sampling, ToolChoice,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    /// Hex SHA-256 of scope and query.
    pub exact: String,
    /// The first 8 bytes of the scope's SHA-256: what semantic candidates are filtered by.
    pub scope: u64,
    /// The last user turn's normalised text; `None` when the request does not end with a
    /// text-only user turn, which keeps it out of the semantic tier.
    pub query: Option<String>,
}

impl RequestKey {
    pub fn of(input: &CompletionInput) -> Self {
        let request = &input.request;
        let (earlier, last) = match request.messages.split_last() {
            Some((last, earlier)) => (earlier, Some(last)),
            None => (&request.messages[..], None),
        };
        let query = last.filter(|m| m.role == Role::User).and_then(text_only);
        let scope = json!({
            "key": input.api_key_id,
            "model": input.model,
            "policy": input.policy,
            "requirements": serde_json::to_value(&input.requirements).unwrap_or(Value::Null),
            "messages": earlier.iter().map(message_json).collect::<Vec<_>>(),
            "tools": request.tools.iter().map(|t| json!([t.name, t.description, t.parameters_json, t.strict])).collect::<Vec<_>>(),
            "tool_choice": request.tool_choice.as_ref().map(tool_choice_json),
            "response_format": request.response_format.as_ref().map(response_format_json),
            "sampling": sampling_json(&request.sampling),
        });
        let scope_hash = Sha256::digest(scope.to_string().as_bytes());
        let mut exact = Sha256::new();
        exact.update(scope_hash);
        exact.update(last.map(message_json).unwrap_or(Value::Null).to_string());
        let mut first = [0u8; 8];
        first.copy_from_slice(&scope_hash[..8]);
        RequestKey {
            exact: hex::encode(exact.finalize()),
            scope: u64::from_le_bytes(first),
            query,
        }
    }
}

/// Trimmed, with every run of whitespace made one space.
pub fn normalise_text(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn text_only(message: &Message) -> Option<String> {
    let mut parts = Vec::new();
    for part in &message.content {
        match part {
            ContentPart::Text(text) => parts.push(normalise_text(text)),
            ContentPart::Image(_) => return None,
        }
    }
    let text = parts.join("\n");
    (!text.is_empty()).then_some(text)
}

fn message_json(message: &Message) -> Value {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let content: Vec<Value> = message
        .content
        .iter()
        .map(|part| match part {
            ContentPart::Text(text) => json!({"text": normalise_text(text)}),
            ContentPart::Image(image) => json!({"image": image.url, "detail": image.detail}),
        })
        .collect();
    json!({
        "role": role,
        "content": content,
        "name": message.name,
        "tool_calls": message.tool_calls.iter().map(|c| json!([c.id, c.name, c.arguments])).collect::<Vec<_>>(),
        "tool_call_id": message.tool_call_id,
    })
}

fn tool_choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"function": name}),
    }
}

fn response_format_json(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!("text"),
        ResponseFormat::JsonObject => json!("json_object"),
        ResponseFormat::JsonSchema(schema) => {
            json!({"json_schema": [schema.name, schema.schema_json, schema.strict]})
        }
    }
}

fn sampling_json(sampling: &Sampling) -> Value {
    json!({
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_output_tokens": sampling.max_output_tokens,
        "stop": sampling.stop,
        "seed": sampling.seed,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::types::CompletionRequest;

    fn input(messages: &[(Role, &str)]) -> CompletionInput {
        CompletionInput {
            model: "auto".into(),
            request: CompletionRequest {
                model: String::new(),
                messages: messages
                    .iter()
                    .map(|(role, text)| Message {
                        role: *role,
                        content: vec![ContentPart::Text((*text).into())],
                        name: None,
                        tool_calls: Vec::new(),
                        tool_call_id: None,
                    })
                    .collect(),
                tools: Vec::new(),
                tool_choice: None,
                response_format: None,
                sampling: Sampling {
                    temperature: None,
                    top_p: None,
                    max_output_tokens: None,
                    stop: Vec::new(),
                    seed: None,
                    presence_penalty: None,
                    frequency_penalty: None,
                },
                stream: false,
                end_user: None,
            },
            policy: None,
            requirements: Default::default(),
            api_key_id: None,
            cache: Default::default(),
        }
    }

    #[test]
    fn whitespace_does_not_change_the_key_but_words_and_scope_do() {
        let a = RequestKey::of(&input(&[(Role::User, "What is  Rust?")]));
        let b = RequestKey::of(&input(&[(Role::User, " What is Rust? ")]));
        assert_eq!(a, b);
        assert_eq!(a.query.as_deref(), Some("What is Rust?"));
        let c = RequestKey::of(&input(&[(Role::User, "What is Go?")]));
        assert_ne!(a.exact, c.exact);
        assert_eq!(a.scope, c.scope);
        let d = RequestKey::of(&input(&[
            (Role::System, "Be terse."),
            (Role::User, "What is Rust?"),
        ]));
        assert_ne!(a.scope, d.scope);
        let mut e = input(&[(Role::User, "What is Rust?")]);
        e.api_key_id = Some("team-b".into());
        assert_ne!(RequestKey::of(&e).scope, a.scope);
    }

    #[test]
    fn a_conversation_ending_with_the_assistant_has_no_query() {
        let key = RequestKey::of(&input(&[(Role::User, "hi"), (Role::Assistant, "hello")]));
        assert_eq!(key.query, None);
    }
}
