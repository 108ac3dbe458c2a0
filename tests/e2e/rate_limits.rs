//! Rate limits through the running gateway: a client over its requests per minute, a provider
//! that answered 429 with a retry-after, and a model over its configured rate.

use crate::support::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-ratelimits-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_requests_per_minute_gets_429_with_retry_after() {
    let mock = MockOpenAi::start(KEY).await;
    let config =
        crate::ledger::ledger_config("\n[rate_limits.keys.alice]\nrequests_per_minute = 3\n");
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", mock.base_url.as_str()),
        ("GATEWAY_API_KEYS", "alice:sk-alice,bob:sk-bob"),
    ];
    let gateway = GatewayProcess::start_with_key(&config, &env, "sk-alice").await;
    let body = json!({"model": "metered", "messages": user_message("hello")});
    for _ in 0..3 {
        let (status, _, answer) = gateway
            .post_json("/v1/chat/completions", Some("sk-alice"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, headers, answer) = gateway
        .post_json("/v1/chat/completions", Some("sk-alice"), &body)
        .await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limit_exceeded");
    assert_eq!(answer["error"]["type"], "rate_limit_error");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("API key 'alice' is over its limit of 3 requests per minute"),
        "{message}"
    );
    // One request every 20 s: the next slot is at most 20 s away.
    let retry_after: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(mock.requests().len(), 3, "the throttled request never left");

    // Another key has its own (here: no) limit.
    for _ in 0..5 {
        let (status, _, answer) = gateway
            .post_json("/v1/chat/completions", Some("sk-bob"), &body)
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let metrics = gateway.get_text_with_key("/metrics", "sk-bob").await;
    assert!(
        metrics.contains("aigw_rate_limit_rejections_total{scope=\"key\",name=\"alice\"} 1"),
        "{metrics}"
    );
}

fn rate_limited(retry_after: &str) -> Canned {
    Canned {
        headers: vec![("retry-after", retry_after.into())],
        ..Canned::json(
            429,
            br#"{"error":{"message":"Rate limit reached for requests","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.to_vec(),
        )
    }
}

fn one_provider_config(upstream: &ReplayUpstream, gateway_extra: &str) -> TestConfig {
    let provider = format!(
        "[solo]\nadapter = \"openai\"\napi_key_env = \"SOLO_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let config = TestConfig::new(
        &format!("\n[routing]\nbackoff_base_ms = 1\nbackoff_max_ms = 5\n{gateway_extra}"),
        &provider,
        &model_entry("solo-model", "solo", 1.0, 0.8),
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    config
}

async fn ask(gateway: &GatewayProcess) -> (u16, String, Value) {
    let (status, headers, body) = gateway
        .chat(json!({"model": "solo-model", "messages": user_message("hello")}))
        .await;
    (
        status.as_u16(),
        header(&headers, "retry-after").to_string(),
        body,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn after_an_upstream_429_the_provider_gets_nothing_for_its_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let upstream = ReplayUpstream::start(move |request| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            rate_limited("2")
        } else {
            openai_completion(request.body["model"].as_str().unwrap_or("m"), "hi")
        }
    })
    .await;
    let config = one_provider_config(&upstream, "");
    let gateway = GatewayProcess::start(&config, &[("SOLO_KEY", KEY)]).await;

    // The provider's own 429 reaches the client with its retry-after.
    let (status, retry_after, body) = ask(&gateway).await;
    let limited_at = Instant::now();
    assert_eq!((status, retry_after.as_str()), (429, "2"), "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");

    // For those two seconds the gateway answers 429 itself and sends nothing upstream.
    let mut held = 0;
    while limited_at.elapsed() < Duration::from_millis(1500) {
        let (status, retry_after, body) = ask(&gateway).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded", "{body}");
        let retry_after: u64 = retry_after.parse().unwrap();
        assert!((1..=2).contains(&retry_after), "{retry_after}");
        held += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held > 5);
    assert_eq!(upstream.requests().len(), 1);

    // Once the retry-after is over, requests flow again.
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(limited_at.elapsed())).await;
    let (status, _, body) = ask(&gateway).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.requests().len(), 2);

    // The ledger recorded the 429 attempt and the success; the held requests made no attempt.
    let report = crate::ledger::wait_for_attempts(&gateway, None, 2).await;
    assert_eq!(report["totals"]["failed"], 1, "{report}");
    assert_eq!(report["totals"]["succeeded"], 1, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_over_its_configured_rate_fails_over_to_the_next_candidate() {
    let upstream = ReplayUpstream::start(|request| {
        openai_completion(request.body["model"].as_str().unwrap_or("m"), "hi")
    })
    .await;
    let providers = format!(
        "[alpha]\nadapter = \"openai\"\napi_key_env = \"SOLO_KEY\"\nbase_url = \"{0}/v1\"\n\n\
         [beta]\nadapter = \"openai\"\napi_key_env = \"SOLO_KEY\"\nbase_url = \"{0}/v1\"\n",
        upstream.base_url
    );
    let models = [
        model_entry("alpha-model", "alpha", 1.0, 0.8),
        model_entry("beta-model", "beta", 5.0, 0.8),
    ]
    .concat();
    let config = TestConfig::new(
        "\n[routing]\ndefault_policy = \"cheapest\"\n\n\
         [rate_limits.models.alpha-model]\nrequests_per_minute = 2\n",
        &providers,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("tests/guests/dist/cheapest.wasm", "cheapest");
    let gateway = GatewayProcess::start(&config, &[("SOLO_KEY", KEY)]).await;
    let mut served = Vec::new();
    for _ in 0..4 {
        let (status, headers, body) = gateway
            .chat(json!({"model": "auto", "messages": user_message("hello")}))
            .await;
        assert_eq!(status, 200, "{body}");
        served.push(header(&headers, "x-gateway-model").to_string());
    }
    assert_eq!(
        served,
        ["alpha-model", "alpha-model", "beta-model", "beta-model"]
    );
    let metrics = gateway.get_text("/metrics").await;
    assert!(
        metrics
            .contains("aigw_rate_limit_rejections_total{scope=\"model\",name=\"alpha-model\"} 2"),
        "{metrics}"
    );
}
