//! One request travels client → host → policy component → adapter component → mock upstream →
//! back, with the host injecting the key the adapter never sees.

use crate::support::*;
use serde_json::json;

const KEY: &str = "sk-test-roundtrip-0123456789";

async fn gateway_with_openai(mock: &MockOpenAi, key: &str) -> (TestConfig, GatewayProcess) {
    let models = [
        model_entry("gpt-5-mini", "openai", 2.0, 0.85),
        model_entry("gpt-5", "openai", 10.0, 0.95),
    ]
    .concat();
    let config = TestConfig::new("", OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", key), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;
    (config, gateway)
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_returns_upstream_text_and_real_usage_with_injected_key() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = gateway_with_openai(&mock, KEY).await;

    let (status, headers, body) = gateway
        .chat(json!({
            "model": "gpt-5-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hello, gateway"},
            ],
            "temperature": 0.2,
            "max_tokens": 50,
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-5-mini");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "echo: Hello, gateway"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], MOCK_PROMPT_TOKENS);
    assert_eq!(body["usage"]["completion_tokens"], MOCK_COMPLETION_TOKENS);
    assert_eq!(
        body["usage"]["total_tokens"],
        MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS
    );
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        MOCK_CACHED_TOKENS
    );
    assert_eq!(header(&headers, "x-gateway-model"), "gpt-5-mini");
    assert_eq!(header(&headers, "x-gateway-provider"), "openai");
    assert_eq!(header(&headers, "x-gateway-policy"), "explicit");
    assert!(!header(&headers, "x-request-id").is_empty());
    // 8 uncached input at $0.5/M + 4 cached at $0.05/M + 7 output at $2/M.
    let cost: f64 = header(&headers, "x-gateway-cost-usd").parse().unwrap();
    let expected = (8.0 * 0.5 + 4.0 * 0.05 + 7.0 * 2.0) / 1e6;
    assert!((cost - expected).abs() < 1e-9, "cost {cost} != {expected}");

    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert_eq!(
        sent.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(sent.body["model"], "gpt-5-mini");
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert_eq!(sent.body["messages"][1]["content"], "Hello, gateway");
    assert_eq!(sent.body["max_completion_tokens"], 50);
    assert!((sent.body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert!(!gateway.log().contains(KEY), "the key must never be logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_routes_through_the_policy_component() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = gateway_with_openai(&mock, KEY).await;

    let (status, headers, body) = gateway
        .chat(json!({
            "model": "auto",
            "messages": user_message("What is the capital of France?"),
            "requirements": {"low_cost": true},
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-policy"), "balanced");
    assert_eq!(header(&headers, "x-gateway-model"), "gpt-5-mini");
    assert!(header(&headers, "x-gateway-route-reason").starts_with("balanced"));
    let candidates = header(&headers, "x-gateway-candidates");
    assert!(
        candidates.contains("gpt-5-mini=") && candidates.contains("gpt-5="),
        "{candidates}"
    );
    assert_eq!(mock.requests()[0].body["model"], "gpt-5-mini");

    let (status, headers, _) = gateway
        .chat(json!({
            "model": "auto",
            "messages": user_message("Prove that there are infinitely many primes."),
            "requirements": {"high_quality": true},
        }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-gateway-model"), "gpt-5");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_auth_failure_is_classified_not_retried() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = gateway_with_openai(&mock, "sk-wrong-key").await;
    let (status, _, body) = gateway
        .chat(json!({"model": "gpt-5", "messages": user_message("hi")}))
        .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "auth");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key"),
        "{body}"
    );
    // Auth errors are never retried, not even on gpt-5's fallbacks.
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_without_a_key_is_unconfigured_not_a_startup_error() {
    let mock = MockOpenAi::start(KEY).await;
    let models = model_entry("gpt-5", "openai", 10.0, 0.95);
    let config = TestConfig::new("", OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(&config, &[("OPENAI_BASE_URL", &mock.base_url)]).await;
    let (status, _, body) = gateway
        .chat(json!({"model": "auto", "messages": user_message("hi")}))
        .await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("set OPENAI_API_KEY"), "{message}");
    assert!(mock.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_never_chooses_where_a_key_is_sent() {
    // A keyed provider with no base_url in the config: the adapter's default URL would decide
    // where the key goes, so the gateway refuses to use the provider at all.
    let provider = "[openai]\nadapter = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n";
    let config = TestConfig::new("", provider, &model_entry("gpt-5", "openai", 10.0, 0.95));
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(&config, &[("OPENAI_API_KEY", KEY)]).await;
    let (status, _, body) = gateway
        .chat(json!({"model": "gpt-5", "messages": user_message("hi")}))
        .await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no base_url in providers.toml"),
        "{message}"
    );
    let providers = gateway.get_text("/v1/providers").await;
    assert!(
        providers.contains("does not let an adapter component choose where a key is sent"),
        "{providers}"
    );
}
