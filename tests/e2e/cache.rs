//! The response cache as a client meets it: repeated and reworded requests answered without
//! reaching the upstream, and the cases that must never be answered from the cache.

use crate::support::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const KEY: &str = "sk-test-cache-0123456789";

fn cached_config(cache: &str) -> TestConfig {
    let models = model_entry("gpt-5-mini", "openai", 2.0, 0.85);
    let config = TestConfig::new(&format!("[cache]\n{cache}\n"), OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    config
}

async fn start(config: &TestConfig, mock: &MockOpenAi, data_dir: Option<&Path>) -> GatewayProcess {
    let model_dir = model_dir();
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", mock.base_url.as_str()),
        ("AIGW_MODEL_DIR", model_dir.to_str().expect("a UTF-8 path")),
    ];
    match data_dir {
        Some(dir) => GatewayProcess::start_in(config, &env, None, dir).await,
        None => GatewayProcess::start(config, &env).await,
    }
}

fn ask(text: &str) -> Value {
    json!({"model": "gpt-5-mini", "messages": user_message(text)})
}

/// Sends a request and returns the `x-gateway-cache` header and the answer's text.
async fn send(gateway: &GatewayProcess, body: Value) -> (String, String) {
    let (status, headers, body) = gateway.chat(body).await;
    assert_eq!(status, 200, "{body}");
    (
        header(&headers, "x-gateway-cache").to_string(),
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// A counter's value on /metrics (0 when absent).
async fn metric(gateway: &GatewayProcess, series: &str) -> f64 {
    let text = gateway.get_text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identical_request_is_served_from_the_exact_tier_without_an_embedding() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("");
    let gateway = start(&config, &mock, None).await;

    let (status, headers, body) = gateway.chat(ask("What is the capital of France?")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-cache"), "miss");
    let embedded = metric(&gateway, "aigw_cache_embeddings_total").await;
    assert_eq!(embedded, 1.0, "a miss embeds the prompt once");

    // The same request, differing only in whitespace.
    let (status, headers, again) = gateway
        .chat(ask("  What is the capital of   France? "))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(header(&headers, "x-gateway-cache"), "hit-exact");
    assert_eq!(header(&headers, "x-gateway-cache-similarity"), "1.0000");
    assert_eq!(header(&headers, "x-gateway-cost-usd"), "0.00000000");
    assert_eq!(
        again["choices"][0]["message"]["content"],
        body["choices"][0]["message"]["content"]
    );
    assert_eq!(again["usage"], body["usage"]);
    assert_eq!(
        mock.requests().len(),
        1,
        "the hit never reached the upstream"
    );
    assert_eq!(
        metric(&gateway, "aigw_cache_embeddings_total").await,
        embedded,
        "an exact hit computes no embedding"
    );
    assert_eq!(
        metric(&gateway, "aigw_cache_lookups_total{result=\"exact\"}").await,
        1.0
    );
    assert!(
        metric(
            &gateway,
            "aigw_cost_saved_usd_total{provider=\"openai\",model=\"gpt-5-mini\"}"
        )
        .await
            > 0.0
    );

    // /unified_completion shares the cache and reports the hit in its summary.
    let response = reqwest::Client::new()
        .post(format!("{}/unified_completion", gateway.base))
        .json(&json!({"model": "gpt-5-mini", "prompt": "What is the capital of France?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let summary: Value = response.json().await.unwrap();
    assert_eq!(summary["cached"], true, "{summary}");
    assert_eq!(summary["cost_usd"], 0.0);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paraphrase_is_served_from_the_semantic_tier_and_a_different_number_is_not() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("");
    let gateway = start(&config, &mock, None).await;

    let (cache, first) = send(&gateway, ask("How do I reverse a list in Python?")).await;
    assert_eq!(cache, "miss");
    let (status, headers, body) = gateway
        .chat(ask("How can I reverse a list in Python?"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-cache"), "hit-semantic");
    let similarity: f64 = header(&headers, "x-gateway-cache-similarity")
        .parse()
        .expect("a similarity");
    assert!(similarity > 0.9 && similarity < 1.0, "{similarity}");
    assert_eq!(body["choices"][0]["message"]["content"], first.as_str());
    assert_eq!(mock.requests().len(), 1);

    // Close in embedding space, different in meaning: the guard sends it upstream.
    send(&gateway, ask("What is 15% of 80?")).await;
    let (cache, answer) = send(&gateway, ask("What is 25% of 80?")).await;
    assert_eq!(cache, "miss");
    assert_eq!(answer, "echo: What is 25% of 80?");
    assert_eq!(mock.requests().len(), 3);

    // Opting out per request: neither served nor stored.
    let mut body = ask("How can I reverse a list in Python?");
    body["cache"] = json!({"enabled": false});
    assert_eq!(send(&gateway, body).await.0, "bypass");
    // A stricter threshold than the paraphrase reaches.
    let mut body = ask("How can I reverse a list in Python?");
    body["cache"] = json!({"threshold": 0.9999});
    assert_eq!(send(&gateway, body).await.0, "miss");
    // Sampling too random to reuse, unless the request says otherwise.
    let mut body = ask("How do I reverse a list in Python?");
    body["temperature"] = json!(1.2);
    assert_eq!(send(&gateway, body.clone()).await.0, "bypass");
    body["cache"] = json!({"allow_high_temperature": true});
    assert_eq!(
        send(&gateway, body).await.0,
        "miss",
        "another temperature, another scope"
    );
    assert_eq!(mock.requests().len(), 7);

    let (status, _, body) = gateway
        .chat(json!({"model": "gpt-5-mini", "messages": user_message("hi"), "cache": {"threshold": 2}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["param"], "cache.threshold");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_system_prompt_tool_set_or_key_never_hits() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("");
    let model_dir = model_dir();
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", mock.base_url.as_str()),
        ("AIGW_MODEL_DIR", model_dir.to_str().unwrap()),
        ("GATEWAY_API_KEYS", "team-a:gw-key-a,team-b:gw-key-b"),
    ];
    let gateway = GatewayProcess::start_with_key(&config, &env, "gw-key-a").await;
    let client = reqwest::Client::new();
    let send = |key: &'static str, body: Value| {
        let request = client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response
                .headers()
                .get("x-gateway-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }
    };
    let question = "Summarise the plot of Hamlet in two sentences.";
    let paraphrase = "In two sentences, summarise the plot of Hamlet.";
    let with_system = |system: &str, text: &str| {
        json!({"model": "gpt-5-mini", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": text},
        ]})
    };
    let tool = json!([{"type": "function", "function": {"name": "lookup_play", "parameters": {"type": "object", "properties": {}}}}]);

    assert_eq!(
        send("gw-key-a", with_system("Be brief.", question)).await,
        "miss"
    );
    // The baseline: the same scope hits, exactly and reworded.
    assert_eq!(
        send("gw-key-a", with_system("Be brief.", question)).await,
        "hit-exact"
    );
    assert_eq!(
        send("gw-key-a", with_system("Be brief.", paraphrase)).await,
        "hit-semantic"
    );
    let upstream = mock.requests().len();
    assert_eq!(upstream, 1);

    let with_tools = |text: &str, tools: &Value| {
        let mut body = with_system("Be brief.", text);
        body["tools"] = tools.clone();
        body
    };
    let other_tool = json!([{"type": "function", "function": {"name": "search_web", "parameters": {"type": "object", "properties": {}}}}]);
    // Each request below is alone in its scope: whether it repeats the cached prompt or
    // rewords it, nothing may answer it but the upstream.
    for (key, body) in [
        ("gw-key-a", with_system("Answer in French.", question)),
        ("gw-key-a", ask(paraphrase)),
        ("gw-key-b", with_system("Be brief.", question)),
        ("gw-key-a", with_tools(question, &tool)),
        ("gw-key-a", with_tools(paraphrase, &other_tool)),
    ] {
        assert_eq!(send(key, body.clone()).await, "miss", "{key} {body}");
    }
    assert_eq!(mock.requests().len(), upstream + 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_entries_never_hit() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("ttl_seconds = 1");
    let gateway = start(&config, &mock, None).await;

    assert_eq!(
        send(&gateway, ask("Name three prime numbers.")).await.0,
        "miss"
    );
    assert_eq!(
        send(&gateway, ask("Name three prime numbers.")).await.0,
        "hit-exact"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        send(&gateway, ask("Name three prime numbers.")).await.0,
        "miss"
    );
    assert_eq!(
        send(&gateway, ask("Name three prime numbers")).await.0,
        "hit-semantic"
    );
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_survives_a_restart() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("snapshot_interval_ms = 100");
    let data_dir = tempfile::tempdir().unwrap();

    let gateway = start(&config, &mock, Some(data_dir.path())).await;
    let (_, answer) = send(&gateway, ask("What does HTTP status 418 mean?")).await;
    assert!(
        gateway
            .wait_for_log("cache snapshot written", Duration::from_secs(10))
            .await,
        "{}",
        gateway.log()
    );
    // Killed, not shut down: only what the snapshot holds survives.
    drop(gateway);

    let gateway = start(&config, &mock, Some(data_dir.path())).await;
    assert!(
        gateway
            .wait_for_log("cache snapshot loaded", Duration::from_secs(5))
            .await,
        "{}",
        gateway.log()
    );
    assert_eq!(
        send(&gateway, ask("What does HTTP status 418 mean?")).await,
        ("hit-exact".to_string(), answer.clone())
    );
    assert_eq!(
        send(&gateway, ask("What does the HTTP status 418 mean?")).await,
        ("hit-semantic".to_string(), answer)
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_model_files_the_gateway_serves_the_exact_tier_only() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("");
    let empty = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(
        &config,
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &mock.base_url),
            ("AIGW_MODEL_DIR", empty.path().to_str().unwrap()),
        ],
    )
    .await;
    assert!(
        gateway
            .wait_for_log("exact-match cache only", Duration::from_secs(5))
            .await
    );
    let log = gateway.log();
    assert_eq!(
        log.matches("exact-match cache only").count(),
        1,
        "said once: {log}"
    );

    assert_eq!(
        send(&gateway, ask("How do I reverse a list in Python?"))
            .await
            .0,
        "miss"
    );
    assert_eq!(
        send(&gateway, ask("How do I reverse a list in Python?"))
            .await
            .0,
        "hit-exact"
    );
    assert_eq!(
        send(&gateway, ask("How can I reverse a list in Python?"))
            .await
            .0,
        "miss"
    );
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(metric(&gateway, "aigw_cache_embeddings_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_stream_is_cached_and_replayed_as_a_stream() {
    let mock = MockOpenAi::start(KEY).await;
    let config = cached_config("");
    let gateway = start(&config, &mock, None).await;
    let body = json!({
        "model": "gpt-5-mini",
        "messages": user_message("Stream a short greeting."),
        "stream": true,
        "stream_options": {"include_usage": true},
    });

    let (status, headers, events) = gateway.chat_stream(body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-gateway-cache"), "miss");
    let first = reassemble(&events);

    let (status, headers, events) = gateway.chat_stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-gateway-cache"), "hit-exact");
    let replayed = reassemble(&events);
    assert_eq!(replayed.text, first.text);
    assert!(!replayed.text.is_empty());
    assert!(replayed.done);
    assert_eq!(replayed.usage, first.usage);

    // The same prompt without streaming is the same request to the cache.
    let (cache, text) = send(&gateway, ask("Stream a short greeting.")).await;
    assert_eq!(
        (cache.as_str(), text.as_str()),
        ("hit-exact", first.text.as_str())
    );
    assert_eq!(mock.requests().len(), 1);
}
