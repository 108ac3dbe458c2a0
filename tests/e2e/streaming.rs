//! Streaming through the gateway: text, tool-call arguments reassembled exactly, usage, and a
//! stream cut mid-way surfacing as an error, never as a clean finish.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const KEY: &str = "sk-test-stream-0123456789abcdef";

async fn start(mock: &MockOpenAi) -> (TestConfig, GatewayProcess) {
    let config = TestConfig::new(
        "",
        OPENAI_PROVIDER,
        &model_entry("gpt-5-mini", "openai", 2.0, 0.85),
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;
    (config, gateway)
}

fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap_or_else(|_| panic!("not JSON: {e}")))
        .collect()
}

fn tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}])
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_text_arrives_in_order_with_usage_and_done() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;
    let (status, headers, events) = gateway
        .chat_stream(json!({
            "model": "gpt-5-mini",
            "messages": user_message("stream me please"),
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/event-stream");
    assert_eq!(header(&headers, "x-gateway-model"), "gpt-5-mini");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks = chunks(&events);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "echo: stream me please");
    let finishes: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, vec![&json!("stop")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], MOCK_PROMPT_TOKENS);
    assert_eq!(usage["completion_tokens"], MOCK_COMPLETION_TOKENS);
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        MOCK_CACHED_TOKENS
    );

    // The adapter asked OpenAI for stream usage itself.
    let sent = &mock.requests()[0].body;
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_tool_call_arguments_are_reassembled_exactly() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;
    let (status, _, events) = gateway
        .chat_stream(json!({
            "model": "gpt-5-mini",
            "messages": user_message("please use the tool"),
            "tools": tools(),
            "stream": true,
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut calls: BTreeMap<u64, (String, String, String)> = BTreeMap::new();
    for chunk in chunks(&events) {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let entry = calls.entry(call["index"].as_u64().unwrap()).or_default();
            if let Some(id) = call["id"].as_str() {
                entry.0 = id.to_string();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.1 = name.to_string();
            }
            entry
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (id, name, arguments) = &calls[&0];
    assert_eq!(id, "call_mock_1");
    assert_eq!(name, "get_weather");
    assert_eq!(arguments, MOCK_TOOL_ARGUMENTS);
    // The tools went upstream in OpenAI's shape.
    assert_eq!(
        mock.requests()[0].body["tools"][0]["function"]["name"],
        "get_weather"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn non_streamed_tool_calls_keep_their_arguments() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;
    let (status, _, body) = gateway
        .chat(json!({"model": "gpt-5-mini", "messages": user_message("use the tool"), "tools": tools()}))
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        MOCK_TOOL_ARGUMENTS
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_cut_mid_way_ends_with_an_error_not_a_clean_finish() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;
    let (status, _, events) = gateway
        .chat_stream(json!({
            "model": "gpt-5-mini",
            "messages": user_message("cut the stream after a few words"),
            "stream": true,
        }))
        .await;
    // Content had started, so the status was already sent; the failure is in the stream.
    assert_eq!(status, 200);
    assert!(
        !events.iter().any(|e| e == "[DONE]"),
        "a cut stream must not end with [DONE]: {events:?}"
    );
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("ended before the provider signalled completion"),
        "{last}"
    );
    let chunks = chunks(&events);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()),
        "no finish_reason may be reported for a cut stream"
    );
}
