//! A plugin that traps, loops forever or grows memory without bound fails only its own request,
//! with an error that says what happened, while the host keeps serving everyone else. And a
//! plugin that goes looking for credentials finds none.

use crate::support::*;
use serde_json::{Value, json};

const KEY: &str = "sk-test-faults-abcdef0123456789";

fn misbehaving_provider(id: &str, mode: &str) -> String {
    format!(
        r#"
[{id}]
adapter = "misbehaving"
api_key_env = "OPENAI_API_KEY"
base_url_env = "OPENAI_BASE_URL"
[{id}.settings]
mode = "{mode}"
"#
    )
}

async fn start(mock: &MockOpenAi) -> (TestConfig, GatewayProcess) {
    let providers = [
        OPENAI_PROVIDER.to_string(),
        misbehaving_provider("trapper", "trap"),
        misbehaving_provider("looper", "loop"),
        misbehaving_provider("hoarder", "grow-memory"),
        misbehaving_provider("prober", "probe"),
    ]
    .concat();
    let models = [
        model_entry("ok-model", "openai", 1.0, 0.8),
        model_entry("trap-model", "trapper", 1.0, 0.8),
        model_entry("loop-model", "looper", 1.0, 0.8),
        model_entry("memory-model", "hoarder", 1.0, 0.8),
        model_entry("probe-model", "prober", 1.0, 0.8),
    ]
    .concat();
    let config = TestConfig::new(
        "call_timeout_ms = 200\nmemory_limit_mib = 32\n",
        &providers,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_provider("tests/guests/dist/misbehaving.wasm", "misbehaving")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;
    (config, gateway)
}

fn request(model: &str) -> Value {
    json!({"model": model, "messages": user_message("hello")})
}

#[tokio::test(flavor = "multi_thread")]
async fn faulty_plugins_fail_only_their_own_request() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;

    for (model, fault, expected) in [
        ("trap-model", "trap", "trapped"),
        ("loop-model", "deadline", "exceeded its 200 ms deadline"),
        (
            "memory-model",
            "memory",
            "exceeded its memory limit of 32 MiB",
        ),
    ] {
        // The faulty request and a healthy one, at the same time.
        let (bad, good) = tokio::join!(
            gateway.chat(request(model)),
            gateway.chat(request("ok-model"))
        );
        let (status, _, body) = bad;
        assert_eq!(status, 502, "{model}: {body}");
        assert_eq!(body["error"]["type"], "plugin_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("plugin 'misbehaving'"), "{message}");
        assert!(message.contains(expected), "{model}: {message}");
        if fault == "trap" {
            // The guest's own panic message is part of the error.
            assert!(message.contains("deliberate trap"), "{message}");
        }
        let (status, _, body) = good;
        assert_eq!(
            status, 200,
            "a healthy request failed beside {model}: {body}"
        );
        assert_eq!(body["choices"][0]["message"]["content"], "echo: hello");

        let metrics = gateway.get_text("/metrics").await;
        let line =
            format!("aigw_plugin_faults_total{{plugin=\"misbehaving\",fault=\"{fault}\"}} 1");
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }

    // A fault while building a request is about that request: however often a client sends
    // one, the provider's and the model's circuits stay closed for everyone else.
    for _ in 0..8 {
        let (status, _, _) = gateway.chat(request("trap-model")).await;
        assert_eq!(status, 502);
    }
    let providers = gateway.get_text("/v1/providers").await;
    let providers: Value = serde_json::from_str(&providers).unwrap();
    let trapper = providers["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "trapper")
        .unwrap()
        .clone();
    assert_eq!(trapper["circuit"], "closed", "{trapper}");

    // The host is still healthy and serving afterwards.
    assert_eq!(gateway.get_text("/health").await, r#"{"status":"ok"}"#);
    let (status, _, _) = gateway.chat(request("ok-model")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_see_no_credentials_environment_or_files() {
    let mock = MockOpenAi::start(KEY).await;
    let (_config, gateway) = start(&mock).await;

    let (status, _, body) = gateway.chat(request("probe-model")).await;
    assert_eq!(status, 200, "{body}");
    // The probe adapter turned everything it could see into its request; the mock echoed it.
    let seen = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!seen.contains(KEY), "the plugin saw the key: {seen}");
    let seen: Value = serde_json::from_str(seen).expect("the probe's report is JSON");
    assert_eq!(seen["env"], json!([]), "{seen}");
    assert_eq!(seen["args"], json!([]), "{seen}");
    for file in seen["files"].as_array().unwrap() {
        let file = file.as_str().unwrap();
        assert!(!file.contains(": read"), "the plugin read a file: {file}");
    }
    assert_eq!(seen["provider"], "prober");
    assert_eq!(seen["settings"], json!([["mode", "probe"]]));

    // The host did authenticate the request, outside the plugin.
    let probe = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/probe")
        .expect("the probe request reached the mock");
    assert_eq!(
        probe.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}
