//! Config changes apply while the gateway runs; a broken config keeps the working one.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-config-0123456789abcdef";

async fn wait_for_model(gateway: &GatewayProcess, id: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if gateway
            .get_text("/v1/models")
            .await
            .contains(&format!("\"{id}\""))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_openai_compatible_provider_is_a_config_change_and_bad_config_is_refused() {
    let mock = MockOpenAi::start(KEY).await;
    let models = model_entry("first-model", "openai", 1.0, 0.8);
    let config = TestConfig::new("", OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &mock.base_url),
            ("ACME_KEY", KEY),
        ],
    )
    .await;
    assert!(!gateway.get_text("/v1/models").await.contains("acme-model"));

    // A new provider served by the existing OpenAI adapter, and a model on it.
    let providers = format!(
        "{OPENAI_PROVIDER}\n[acme]\nadapter = \"openai\"\napi_key_env = \"ACME_KEY\"\nbase_url = \"{}\"\n",
        mock.base_url
    );
    std::fs::write(config.path().join("providers.toml"), providers).unwrap();
    let models = format!("{models}{}", model_entry("acme-model", "acme", 1.0, 0.8));
    std::fs::write(config.path().join("models.toml"), &models).unwrap();
    assert!(
        wait_for_model(&gateway, "acme-model").await,
        "log:\n{}",
        gateway.log()
    );

    let (status, headers, body) = gateway
        .chat(json!({"model": "acme-model", "messages": user_message("hi acme")}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "x-gateway-provider"), "acme");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi acme");

    // A broken edit is refused with a reason; the working config stays in force.
    std::fs::write(config.path().join("models.toml"), "[[models]]\nid = \n").unwrap();
    assert!(
        gateway
            .wait_for_log("configuration not reloaded", Duration::from_secs(5))
            .await,
        "log:\n{}",
        gateway.log()
    );
    assert!(gateway.log().contains("models.toml"));
    let (status, _, body) = gateway
        .chat(json!({"model": "acme-model", "messages": user_message("still there?")}))
        .await;
    assert_eq!(status, 200, "{body}");
    let metrics = gateway.get_text("/metrics").await;
    assert!(
        metrics.contains("aigw_reloads_total{kind=\"config\",result=\"failed\"}"),
        "{metrics}"
    );
}
