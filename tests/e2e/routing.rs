//! Routing and reliability through the running gateway: failover, circuit breakers opening and
//! closing on real outcomes, rate-limit back-off, requirements, and context windows.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-routing-0123456789abcdef";

/// An upstream that fails with 500 while `failing` is set, and optionally answers 429 with a
/// retry-after of one second while `rate_limited` is set.
struct Switchable {
    upstream: ReplayUpstream,
    failing: Arc<AtomicBool>,
    rate_limited: Arc<AtomicBool>,
}

impl Switchable {
    async fn start(name: &'static str) -> Self {
        let failing = Arc::new(AtomicBool::new(false));
        let rate_limited = Arc::new(AtomicBool::new(false));
        let (f, r) = (failing.clone(), rate_limited.clone());
        let upstream = ReplayUpstream::start(move |request| {
            if r.load(Ordering::SeqCst) {
                return Canned {
                    headers: vec![("retry-after", "1".into())],
                    ..Canned::json(
                        429,
                        br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#.to_vec(),
                    )
                };
            }
            if f.load(Ordering::SeqCst) {
                return Canned::json(
                    500,
                    br#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#.to_vec(),
                );
            }
            let model = request.body["model"].as_str().unwrap_or(name);
            if request.body["stream"] == true {
                openai_stream(model, &format!("from {name}"))
            } else {
                openai_completion(model, &format!("from {name}"))
            }
        })
        .await;
        Switchable {
            upstream,
            failing,
            rate_limited,
        }
    }

    fn provider(&self, id: &str) -> String {
        format!(
            "[{id}]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
            self.upstream.base_url
        )
    }

    fn calls(&self) -> usize {
        self.upstream.requests().len()
    }
}

async fn two_providers(routing: &str) -> (Switchable, Switchable, TestConfig, GatewayProcess) {
    let alpha = Switchable::start("alpha").await;
    let beta = Switchable::start("beta").await;
    let providers = format!("{}{}", alpha.provider("alpha"), beta.provider("beta"));
    let models = [
        model_entry("alpha-model", "alpha", 1.0, 0.8),
        model_entry("beta-model", "beta", 5.0, 0.8),
    ]
    .concat();
    let config = TestConfig::new(
        &format!("\n[routing]\ndefault_policy = \"cheapest\"\n{routing}"),
        &providers,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("tests/guests/dist/cheapest.wasm", "cheapest");
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;
    (alpha, beta, config, gateway)
}

async fn served_by(gateway: &GatewayProcess) -> String {
    let (status, headers, body) = gateway
        .chat(json!({"model": "auto", "messages": user_message("hello")}))
        .await;
    assert_eq!(status, 200, "{body}");
    header(&headers, "x-gateway-model").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_provider_opens_its_circuit_and_a_probe_closes_it_on_recovery() {
    let (alpha, beta, _config, gateway) = two_providers(
        "circuit_failure_threshold = 3\ncircuit_open_ms = 700\nbackoff_base_ms = 1\nbackoff_max_ms = 5\n",
    )
    .await;
    alpha.failing.store(true, Ordering::SeqCst);

    // Every request succeeds through beta while alpha fails.
    for _ in 0..10 {
        assert_eq!(served_by(&gateway).await, "beta-model");
    }
    // Alpha was tried until its circuit opened, then no more.
    assert_eq!(
        alpha.calls(),
        3,
        "alpha must be skipped once its circuit is open"
    );
    assert_eq!(beta.calls(), 10);
    let status: serde_json::Value =
        serde_json::from_str(&gateway.get_text("/v1/providers").await).unwrap();
    let alpha_status = status["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha_status["circuit"], "open", "{alpha_status}");
    assert!(
        alpha_status["success_rate"].as_f64().unwrap() < 0.8,
        "{alpha_status}"
    );

    // Alpha recovers; once the circuit's open time is over, one probe goes through and closes it.
    alpha.failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        served_by(&gateway).await,
        "alpha-model",
        "the half-open probe"
    );
    for _ in 0..5 {
        assert_eq!(served_by(&gateway).await, "alpha-model", "closed again");
    }
    assert_eq!(alpha.calls(), 3 + 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_provider_is_left_alone_for_its_retry_after() {
    let (alpha, beta, _config, gateway) = two_providers("").await;
    alpha.rate_limited.store(true, Ordering::SeqCst);
    assert_eq!(served_by(&gateway).await, "beta-model");
    // The back-off started when the 429 arrived, before this point.
    let limited_at = Instant::now();
    assert_eq!(alpha.calls(), 1);
    alpha.rate_limited.store(false, Ordering::SeqCst);

    // Within the retry-after (1 s) alpha gets nothing, although it is the cheapest.
    while limited_at.elapsed() < Duration::from_millis(700) {
        assert_eq!(served_by(&gateway).await, "beta-model");
    }
    assert_eq!(alpha.calls(), 1);
    assert!(beta.calls() > 1);

    tokio::time::sleep(Duration::from_millis(1050).saturating_sub(limited_at.elapsed())).await;
    assert_eq!(served_by(&gateway).await, "alpha-model");
}

/// Three models with different prices, qualities and (injected) latencies.
async fn three_models() -> (ReplayUpstream, TestConfig, GatewayProcess) {
    let upstream = ReplayUpstream::start(|request| {
        let model = request.body["model"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let delay = if model == "fast" { 5 } else { 150 };
        Canned {
            delay: Duration::from_millis(delay),
            ..openai_completion(&model, "ok")
        }
    })
    .await;
    let provider = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let small_window = r#"
[[models]]
id = "small-window"
provider = "mock"
context_window = 16000
max_output_tokens = 4000
input_per_mtok = 0.01
output_per_mtok = 0.01
quality = 0.5
"#;
    let models = [
        model_entry("cheap", "mock", 1.0, 0.6),
        model_entry("smart", "mock", 20.0, 0.95),
        model_entry("fast", "mock", 5.0, 0.75),
        small_window.to_string(),
    ]
    .concat();
    let config = TestConfig::new("", &provider, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    for policy in ["cost", "latency", "quality"] {
        config.add_policy(&format!("policies/dist/{policy}.wasm"), policy);
    }
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;
    (upstream, config, gateway)
}

async fn auto_with(
    gateway: &GatewayProcess,
    requirements: serde_json::Value,
    prompt: &str,
) -> String {
    let (status, headers, body) = gateway
        .chat(json!({"model": "auto", "messages": user_message(prompt), "requirements": requirements}))
        .await;
    assert_eq!(status, 200, "{body}");
    header(&headers, "x-gateway-model").to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn requirements_pick_the_cheapest_the_best_and_the_fastest() {
    let (_upstream, _config, gateway) = three_models().await;
    // Observe every model's latency first (named requests record it too).
    for model in ["cheap", "smart", "fast", "small-window"] {
        for _ in 0..2 {
            let (status, _, body) = gateway
                .chat(json!({"model": model, "messages": user_message("warm up")}))
                .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    // A prompt too long for small-window, so only the three others are candidates.
    let long_prompt = "Please consider this sentence carefully. ".repeat(3000);
    assert_eq!(
        auto_with(&gateway, json!({"low_cost": true}), &long_prompt).await,
        "cheap"
    );
    assert_eq!(
        auto_with(&gateway, json!({"high_quality": true}), &long_prompt).await,
        "smart"
    );
    assert_eq!(
        auto_with(&gateway, json!({"low_latency": true}), &long_prompt).await,
        "fast"
    );
    // Without the long prompt, the tiny-priced small-window model is the cheapest.
    assert_eq!(
        auto_with(&gateway, json!({"low_cost": true}), "hi").await,
        "small-window"
    );
    // A latency ceiling drops the models observed to be slower (150 ms) than it.
    assert_eq!(
        auto_with(&gateway, json!({"max_latency_ms": 100}), &long_prompt).await,
        "fast"
    );

    // The dedicated policies, named per request.
    let with_policy = async |policy: &str, prompt: &str| {
        let (status, headers, body) = gateway
            .chat(json!({"model": "auto", "policy": policy, "messages": user_message(prompt)}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-gateway-policy"), policy);
        header(&headers, "x-gateway-model").to_string()
    };
    // Chat's quality floor is 0.6: small-window (0.5) misses it, cheap (0.6) is the cheapest
    // that meets it. Code's floor is 0.85: only smart meets it.
    assert_eq!(with_policy("cost", "hello there").await, "cheap");
    assert_eq!(
        with_policy("cost", "Write a Python function that parses JSON").await,
        "smart"
    );
    assert_eq!(with_policy("quality", "hello there").await, "smart");
    assert_eq!(with_policy("latency", "hello there").await, "fast");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prompt_needing_150k_tokens_never_goes_to_a_smaller_window() {
    let upstream = ReplayUpstream::start(|request| {
        openai_completion(request.body["model"].as_str().unwrap_or_default(), "ok")
    })
    .await;
    let provider = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let window = |id: &str, tokens: u64, price: f64| {
        format!(
            "[[models]]\nid = \"{id}\"\nprovider = \"mock\"\ncontext_window = {tokens}\n\
             max_output_tokens = 8000\ninput_per_mtok = {price}\noutput_per_mtok = {price}\nquality = 0.8\n"
        )
    };
    let models = [
        window("window-128k", 128_000, 0.1),
        window("window-200k", 200_000, 1.0),
        window("window-1m", 1_000_000, 5.0),
    ]
    .concat();
    let config = TestConfig::new("", &provider, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;

    // About 150k tokens of prompt ("word " is one token in o200k_base).
    let prompt = "word ".repeat(150_000);
    for requirements in [
        json!({"low_cost": true}),
        json!({}),
        json!({"low_latency": true}),
    ] {
        let model = auto_with(&gateway, requirements, &prompt).await;
        assert_ne!(
            model, "window-128k",
            "a 150k-token prompt was routed to a 128k window"
        );
    }
    // Named explicitly, the small model refuses rather than sending a request it cannot serve.
    let (status, _, body) = gateway
        .chat(json!({"model": "window-128k", "messages": user_message(&prompt)}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("its window is 128000"),
        "{body}"
    );
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| r.body["model"] != "window-128k")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_returns_garbage_cannot_break_routing() {
    let upstream = ReplayUpstream::start(|request| {
        openai_completion(request.body["model"].as_str().unwrap_or_default(), "ok")
    })
    .await;
    let provider = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let models = [
        model_entry("cheap", "mock", 1.0, 0.6),
        model_entry("smart", "mock", 20.0, 0.95),
    ]
    .concat();
    let config = TestConfig::new("", &provider, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced")
        .add_policy("tests/guests/dist/garbage.wasm", "garbage");
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;

    // Each kind of garbage: an unknown id, NaN scores, a duplicate, an empty list.
    let prompts = [
        "Write a Python function that sorts a list",
        "Solve the equation 2x + 3 = 7",
        "Write a haiku about autumn",
        "hello there",
    ];
    for prompt in prompts {
        let (status, headers, body) = gateway
            .chat(json!({"model": "auto", "policy": "garbage", "messages": user_message(prompt)}))
            .await;
        assert_eq!(status, 200, "{prompt}: {body}");
        // The default policy ranked instead, and only real candidates were called.
        assert_eq!(header(&headers, "x-gateway-policy"), "balanced", "{prompt}");
        assert!(["cheap", "smart"].contains(&header(&headers, "x-gateway-model")));
    }
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| ["cheap", "smart"].contains(&r.body["model"].as_str().unwrap_or("")))
    );
    let metrics = gateway.get_text("/metrics").await;
    assert!(
        metrics.contains("aigw_policy_fallbacks_total{policy=\"garbage\"} 4"),
        "{metrics}"
    );
    let log = gateway.log();
    for why in [
        "not a candidate",
        "non-finite score",
        "twice",
        "empty ranking",
    ] {
        assert!(log.contains(why), "the log does not say '{why}'");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_default_policy_falls_back_to_cheapest_first() {
    let upstream = ReplayUpstream::start(|request| {
        openai_completion(request.body["model"].as_str().unwrap_or_default(), "ok")
    })
    .await;
    let provider = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let models = [
        model_entry("cheap", "mock", 1.0, 0.6),
        model_entry("smart", "mock", 20.0, 0.95),
    ]
    .concat();
    let config = TestConfig::new(
        "\n[routing]\ndefault_policy = \"garbage\"\n",
        &provider,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("tests/guests/dist/garbage.wasm", "garbage");
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;
    let (status, headers, body) = gateway
        .chat(json!({"model": "auto", "messages": user_message("hello there")}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-policy"), "builtin-cheapest");
    assert_eq!(header(&headers, "x-gateway-model"), "cheap");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_fails_over_before_its_first_byte() {
    let (alpha, beta, _config, gateway) =
        two_providers("backoff_base_ms = 1\nbackoff_max_ms = 5\n").await;
    alpha.failing.store(true, Ordering::SeqCst);
    let (status, headers, events) = gateway
        .chat_stream(json!({"model": "auto", "messages": user_message("hello"), "stream": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-gateway-model"), "beta-model");
    assert_eq!(header(&headers, "x-gateway-attempts"), "2");
    let stream = reassemble(&events);
    assert!(stream.done && stream.error.is_none(), "{events:?}");
    assert_eq!(stream.text, "from beta");
    assert_eq!((alpha.calls(), beta.calls()), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_deadline_holds_while_an_upstream_thinks() {
    let upstream = ReplayUpstream::start(|request| Canned {
        delay: Duration::from_secs(5),
        ..openai_completion(request.body["model"].as_str().unwrap_or_default(), "late")
    })
    .await;
    let provider = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"ROUTING_KEY\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let config = TestConfig::new(
        "\n[server]\n",
        &provider,
        &model_entry("slow", "mock", 1.0, 0.8),
    );
    // The [server] table is written by TestConfig; set the deadline in it.
    let gateway_toml = std::fs::read_to_string(config.path().join("gateway.toml"))
        .unwrap()
        .replace(
            "[server]\nlisten",
            "[server]\nrequest_timeout_ms = 700\nlisten",
        )
        .replace("\n[server]\n\n", "\n");
    std::fs::write(config.path().join("gateway.toml"), gateway_toml).unwrap();
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(&config, &[("ROUTING_KEY", KEY)]).await;
    let started = Instant::now();
    let (status, _, body) = gateway
        .chat(json!({"model": "slow", "messages": user_message("take your time")}))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request deadline"),
        "{body}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the deadline was not enforced: {took:?}"
    );
}
