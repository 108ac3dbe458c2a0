//! Each provider adapter through the running gateway, against an upstream on loopback that
//! replays the provider's real wire format (tests/fixtures/<provider>/): text, streams, tool
//! calls, usage, every error class, and a stream cut mid-way.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "sk-test-providers-0123456789abcdef";

/// A gateway with one provider (served by `adapter`) and one model on it.
async fn gateway_for(
    adapter: &str,
    provider_toml: &str,
    model_toml: &str,
    env: &[(&str, &str)],
) -> (TestConfig, GatewayProcess) {
    // One attempt per request and a high circuit threshold: these tests are about how each
    // answer is classified; retries and breakers have their own tests.
    let config = TestConfig::new(
        "\n[routing]\nmax_attempts = 1\ncircuit_failure_threshold = 100\n",
        provider_toml,
        model_toml,
    );
    config
        .add_provider(&format!("plugins/dist/{adapter}.wasm"), adapter)
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(&config, env).await;
    (config, gateway)
}

fn ask(model: &str, scenario: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": format!("scenario:{scenario} What is the capital of France?")},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}],
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

/// Sends `scenario` expecting an error; returns (status, error object, retry-after header).
async fn error_case(
    gateway: &GatewayProcess,
    model: &str,
    scenario: &str,
) -> (StatusCode, Value, String) {
    let (status, headers, body) = gateway.chat(ask(model, scenario, false)).await;
    (
        status,
        body["error"].clone(),
        header(&headers, "retry-after").to_string(),
    )
}

fn drop_last_events(sse: &[u8], count: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(sse).replace("\r\n", "\n");
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect();
    let kept = &events[..events.len() - count];
    format!("{}\n\n", kept.join("\n\n")).into_bytes()
}

// ---------------------------------------------------------------------------------- Anthropic

const ANTHROPIC_PROVIDER: &str = r#"
[anthropic]
adapter = "anthropic"
api_key_env = "ANTHROPIC_API_KEY"
base_url_env = "ANTHROPIC_BASE_URL"
"#;

const CLAUDE: &str = r#"
[[models]]
id = "claude-sonnet-4-5"
provider = "anthropic"
upstream_id = "claude-sonnet-4-5-20250929"
context_window = 200000
max_output_tokens = 64000
input_per_mtok = 3.0
cached_input_per_mtok = 0.3
cache_write_per_mtok = 3.75
output_per_mtok = 15.0
quality = 0.95
capabilities = { tools = true, vision = true, json = true, streaming = true }
"#;

fn anthropic_script(request: &ReplayRequest) -> Canned {
    if request.headers.get("x-api-key").map(String::as_str) != Some(KEY) {
        return Canned::json(401, fixture("anthropic/error-401.json"));
    }
    let stream = request.body["stream"] == true;
    match (scenario(request).as_str(), stream) {
        ("text", false) => Canned::json(200, fixture("anthropic/response-text.json")),
        ("text", true) => Canned::sse(fixture("anthropic/stream-text.sse")),
        ("tool", false) => Canned::json(200, fixture("anthropic/response-tool-use.json")),
        ("tool", true) => Canned::sse(fixture("anthropic/stream-tool-use.sse")),
        // Without message_delta and message_stop: the connection closes mid-response.
        ("cut", _) => Canned::sse(drop_last_events(&fixture("anthropic/stream-text.sse"), 3)),
        ("429", _) => Canned {
            headers: vec![("retry-after", "7".into())],
            ..Canned::json(429, fixture("anthropic/error-429.json"))
        },
        ("529", _) => Canned::json(529, fixture("anthropic/error-529.json")),
        ("401", _) => Canned::json(401, fixture("anthropic/error-401.json")),
        ("400", _) => Canned::json(400, fixture("anthropic/error-400-prompt-too-long.json")),
        _ => Canned::json(
            500,
            br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#
                .to_vec(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anthropic_text_tools_usage_and_errors() {
    let upstream = ReplayUpstream::start(anthropic_script).await;
    let (_config, gateway) = gateway_for(
        "anthropic",
        ANTHROPIC_PROVIDER,
        CLAUDE,
        &[
            ("ANTHROPIC_API_KEY", KEY),
            ("ANTHROPIC_BASE_URL", &upstream.base_url),
        ],
    )
    .await;
    let model = "claude-sonnet-4-5";

    // Non-streamed text, with all three input token classes priced at their own rates.
    let (status, headers, body) = gateway.chat(ask(model, "text", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );
    assert_eq!(body["usage"]["prompt_tokens"], 21 + 3000 + 1500);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        3000
    );
    assert_eq!(body["usage"]["completion_tokens"], 9);
    let cost: f64 = header(&headers, "x-gateway-cost-usd").parse().unwrap();
    let expected = (21.0 * 3.0 + 3000.0 * 0.3 + 1500.0 * 3.75 + 9.0 * 15.0) / 1e6;
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    let sent = &upstream.requests()[0];
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.headers.get("anthropic-version").map(String::as_str),
        Some("2023-06-01")
    );
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.body["model"], "claude-sonnet-4-5-20250929");
    assert_eq!(sent.body["system"], "Be brief.");
    assert_eq!(sent.body["max_tokens"], 8192);
    assert_eq!(sent.body["tools"][0]["input_schema"]["type"], "object");

    // Non-streamed tool call.
    let (status, _, body) = gateway.chat(ask(model, "tool", false)).await;
    assert_eq!(status, 200, "{body}");
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");

    // Streamed text with usage.
    let (status, _, events) = gateway.chat_stream(ask(model, "text", true)).await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(stream.done && stream.error.is_none(), "{events:?}");
    assert_eq!(stream.text, "Hello! How can I help you today?");
    assert_eq!(stream.finish_reasons, vec!["stop"]);
    let usage = stream.usage.expect("usage chunk");
    assert_eq!(usage["prompt_tokens"], 1225);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 1200);
    assert_eq!(usage["completion_tokens"], 12);

    // Streamed tool call: Anthropic's content-block index 1 becomes call 0, and the arguments
    // split across four input_json_delta events come out exact.
    let (_, _, events) = gateway.chat_stream(ask(model, "tool", true)).await;
    let stream = reassemble(&events);
    assert!(stream.done, "{events:?}");
    assert_eq!(stream.text, "Let me check the weather in Paris.");
    assert_eq!(stream.calls.len(), 1, "{:?}", stream.calls);
    let (id, name, arguments) = &stream.calls[&0];
    assert_eq!(id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6");
    assert_eq!(name, "get_weather");
    assert_eq!(arguments, r#"{"city": "Paris", "unit": "celsius"}"#);
    assert_eq!(stream.finish_reasons, vec!["tool_calls"]);
    assert_eq!(stream.usage.expect("usage")["completion_tokens"], 89);

    // A stream cut mid-way is an error, not a finish.
    let (status, _, events) = gateway.chat_stream(ask(model, "cut", true)).await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(
        !stream.done && stream.finish_reasons.is_empty(),
        "{events:?}"
    );
    assert!(stream.error.is_some(), "{events:?}");

    // Every error class.
    let (status, error, _) = error_case(&gateway, model, "529").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    let (status, error, _) = error_case(&gateway, model, "401").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("auth"))
    );
    let (status, error, _) = error_case(&gateway, model, "400").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("context_too_long"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("prompt is too long"),
        "{error}"
    );
    let (status, error, _) = error_case(&gateway, model, "500").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("server"))
    );
    // Last: after a rate limit the provider backs off for its retry-after.
    let (status, error, retry_after) = error_case(&gateway, model, "429").await;
    assert_eq!(
        (status, error["code"].as_str(), retry_after.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"), "7")
    );
}

// ------------------------------------------------------------------------------------- Gemini

const GEMINI_PROVIDER: &str = r#"
[gemini]
adapter = "gemini"
api_key_env = "GEMINI_API_KEY"
base_url_env = "GEMINI_BASE_URL"
"#;

const GEMINI_FLASH: &str = r#"
[[models]]
id = "gemini-2.5-flash"
provider = "gemini"
context_window = 1048576
max_output_tokens = 65536
input_per_mtok = 0.3
cached_input_per_mtok = 0.03
output_per_mtok = 2.5
quality = 0.86
capabilities = { tools = true, vision = true, json = true, streaming = true }
"#;

fn gemini_script(request: &ReplayRequest) -> Canned {
    if !request.query.split('&').any(|p| p == format!("key={KEY}")) {
        return Canned::json(400, fixture("gemini/error-400-api-key-invalid.json"));
    }
    let stream = request.path.ends_with(":streamGenerateContent");
    match (scenario(request).as_str(), stream) {
        ("text", false) => Canned::json(200, fixture("gemini/response-text.json")),
        ("text", true) => Canned::sse(fixture("gemini/stream-text.sse")),
        ("tool", false) => Canned::json(200, fixture("gemini/response-function-call.json")),
        ("tool", true) => Canned::sse(fixture("gemini/stream-function-call.sse")),
        // Without the chunk that carries finishReason.
        ("cut", _) => Canned::sse(drop_last_events(&fixture("gemini/stream-text.sse"), 1)),
        ("429", _) => Canned::json(429, fixture("gemini/error-429-rate-limit.json")),
        ("400", _) => Canned::json(400, fixture("gemini/error-400-token-limit.json")),
        ("401", _) => Canned::json(400, fixture("gemini/error-400-api-key-invalid.json")),
        ("503", _) => Canned::json(503, fixture("gemini/error-503-unavailable.json")),
        _ => Canned::json(
            500,
            br#"{"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}"#.to_vec(),
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_text_tools_usage_and_errors() {
    let upstream = ReplayUpstream::start(gemini_script).await;
    let base = format!("{}/v1beta", upstream.base_url);
    let (_config, gateway) = gateway_for(
        "gemini",
        GEMINI_PROVIDER,
        GEMINI_FLASH,
        &[("GEMINI_API_KEY", KEY), ("GEMINI_BASE_URL", &base)],
    )
    .await;
    let model = "gemini-2.5-flash";

    let (status, _, body) = gateway.chat(ask(model, "text", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "The capital of France is Paris."
    );
    assert_eq!(body["usage"]["prompt_tokens"], 2068);
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        2048
    );
    // Thinking tokens are output tokens.
    assert_eq!(body["usage"]["completion_tokens"], 7 + 88);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        88
    );
    let sent = &upstream.requests()[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    // The key went in the query string, added by the host, and nowhere else.
    assert!(
        !sent.headers.contains_key("x-goog-api-key") && !sent.headers.contains_key("authorization")
    );
    assert_eq!(
        sent.body["systemInstruction"]["parts"][0]["text"],
        "Be brief."
    );

    let (status, _, body) = gateway.chat(ask(model, "tool", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert!(
        body["choices"][0]["message"]["tool_calls"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );

    let (status, _, events) = gateway.chat_stream(ask(model, "text", true)).await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(stream.done && stream.error.is_none(), "{events:?}");
    assert_eq!(stream.text, "Hello! How can I help you today?");
    assert_eq!(stream.finish_reasons, vec!["stop"]);
    assert!(
        upstream
            .requests()
            .iter()
            .any(|r| r.path.ends_with(":streamGenerateContent") && r.query.contains("alt=sse"))
    );

    // Two parallel calls arrive whole in one chunk; text came in the chunk before.
    let (_, _, events) = gateway.chat_stream(ask(model, "tool", true)).await;
    let stream = reassemble(&events);
    assert!(stream.done, "{events:?}");
    assert_eq!(stream.text, "Let me check both.");
    let calls: Vec<(&str, &str)> = stream
        .calls
        .values()
        .map(|(_, name, args)| (name.as_str(), args.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("get_weather", r#"{"city":"Paris"}"#),
            ("get_time", r#"{"timezone":"Europe/Paris"}"#)
        ]
    );
    assert!(stream.calls.values().all(|(id, _, _)| !id.is_empty()));
    assert_eq!(stream.finish_reasons, vec!["tool_calls"]);

    let (status, _, events) = gateway.chat_stream(ask(model, "cut", true)).await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(!stream.done && stream.error.is_some(), "{events:?}");

    let (status, error, _) = error_case(&gateway, model, "400").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("context_too_long"))
    );
    let (status, error, _) = error_case(&gateway, model, "401").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("auth"))
    );
    let (status, error, _) = error_case(&gateway, model, "503").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded"))
    );
    let (status, error, _) = error_case(&gateway, model, "500").await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("server"))
    );
    // Last: after a rate limit the provider backs off for its retry-after.
    let (status, error, retry_after) = error_case(&gateway, model, "429").await;
    assert_eq!(
        (status, error["code"].as_str(), retry_after.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"), "32")
    );
}

// ------------------------------------------- OpenAI and OpenAI-compatible servers: error classes

fn openai_error(status: u16, code: &str, kind: &str, message: &str) -> Canned {
    Canned::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string()
            .into_bytes(),
    )
}

fn openai_script(request: &ReplayRequest) -> Canned {
    match scenario(request).as_str() {
        "429" => Canned {
            headers: vec![("retry-after", "3".into())],
            ..openai_error(429, "rate_limit_exceeded", "requests", "Rate limit reached for requests")
        },
        "401" => openai_error(401, "invalid_api_key", "invalid_request_error", "Incorrect API key provided"),
        "400" => openai_error(
            400,
            "context_length_exceeded",
            "invalid_request_error",
            "This model's maximum context length is 128000 tokens.",
        ),
        "400-plain" => openai_error(400, "invalid_value", "invalid_request_error", "Invalid value for 'temperature'"),
        // vLLM answers context errors with only a message, in FastAPI's shape.
        "400-vllm" => Canned::json(
            400,
            br#"{"object":"error","message":"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.","type":"BadRequestError","param":null,"code":400}"#.to_vec(),
        ),
        "503" => openai_error(503, "", "server_error", "The engine is currently overloaded"),
        // A server that reports no usage at all.
        "nousage" if request.body["stream"] == true => Canned::sse(
            b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello there, friend.\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_vec(),
        ),
        "nousage" => Canned::json(
            200,
            br#"{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, friend."},"finish_reason":"stop"}]}"#.to_vec(),
        ),
        "cut" => Canned::sse(
            b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n".to_vec(),
        ),
        _ => openai_error(500, "", "server_error", "The server had an error while processing your request."),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn openai_compatible_error_classes() {
    let upstream = ReplayUpstream::start(openai_script).await;
    let provider = format!(
        "[compat]\nadapter = \"openai\"\napi_key_env = \"COMPAT_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let (_config, gateway) = gateway_for(
        "openai",
        &provider,
        &model_entry("compat-model", "compat", 1.0, 0.8),
        &[("COMPAT_KEY", KEY)],
    )
    .await;
    let model = "compat-model";
    let (status, _, events) = gateway.chat_stream(ask(model, "cut", true)).await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert_eq!(stream.text, "Hel");
    assert!(!stream.done && stream.error.is_some(), "{events:?}");
    for (scenario, status, code) in [
        ("401", StatusCode::BAD_GATEWAY, "auth"),
        ("400", StatusCode::BAD_REQUEST, "context_too_long"),
        ("400-plain", StatusCode::BAD_REQUEST, "bad_request"),
        ("400-vllm", StatusCode::BAD_REQUEST, "context_too_long"),
        ("503", StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        ("500", StatusCode::BAD_GATEWAY, "server"),
        // Last: after a rate limit the provider backs off for its retry-after.
        ("429", StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
    ] {
        let (got_status, error, retry_after) = error_case(&gateway, model, scenario).await;
        assert_eq!(
            (got_status, error["code"].as_str()),
            (status, Some(code)),
            "{scenario}: {error}"
        );
        if scenario == "429" {
            assert_eq!(retry_after, "3");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_a_provider_does_not_report_is_counted_and_marked_estimated() {
    let upstream = ReplayUpstream::start(openai_script).await;
    let provider = format!(
        "[compat]\nadapter = \"openai\"\napi_key_env = \"COMPAT_KEY\"\nbase_url = \"{}/v1\"\n[compat.settings]\nstream_usage = \"false\"\n",
        upstream.base_url
    );
    let (_config, gateway) = gateway_for(
        "openai",
        &provider,
        &model_entry("compat-model", "compat", 1.0, 0.8),
        &[("COMPAT_KEY", KEY)],
    )
    .await;
    let expected_output = ai_gateway::tokens::count_text("Hello there, friend.");

    let (status, _, body) = gateway.chat(ask("compat-model", "nousage", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["estimated"], true, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], expected_output);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 10);

    let (status, _, events) = gateway
        .chat_stream(ask("compat-model", "nousage", true))
        .await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(stream.done, "{events:?}");
    let usage = stream.usage.expect("a usage chunk");
    assert_eq!(usage["estimated"], true);
    assert_eq!(usage["completion_tokens"], expected_output);
    // The `stream_usage = "false"` setting kept stream_options out of the upstream request.
    let streamed = upstream
        .requests()
        .into_iter()
        .find(|r| r.body["stream"] == true)
        .unwrap();
    assert!(
        streamed.body.get("stream_options").is_none(),
        "{}",
        streamed.body
    );
}

// ----------------------------------------------------------------------------------- Simulated

#[tokio::test(flavor = "multi_thread")]
async fn the_bundled_config_answers_offline_through_the_simulated_provider() {
    // The README's run command: bundled config, no keys at all.
    let config = bundled_config("");
    let gateway = GatewayProcess::start(&config, &[]).await;

    let (status, headers, body) = gateway
        .chat(json!({"model": "auto", "messages": user_message("Say hi")}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-provider"), "simulated");
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.starts_with("[simulated]"), "{text}");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let (status, _, events) = gateway
        .chat_stream(json!({"model": "auto", "messages": user_message("Say hi"), "stream": true}))
        .await;
    assert_eq!(status, 200);
    let stream = reassemble(&events);
    assert!(
        stream.done && stream.text.starts_with("[simulated]"),
        "{events:?}"
    );

    // A real provider named explicitly says what is missing.
    let (status, _, body) = gateway
        .chat(json!({"model": "claude-sonnet-4-5", "messages": user_message("hi")}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("set ANTHROPIC_API_KEY"),
        "{body}"
    );
}
