//! Task classification as a client sees it: the `x-gateway-task*` headers and the routing
//! summary, by sentence embedding over `tasks.toml` when the embedding model is installed, by
//! keywords when it is not, and retrained when `tasks.toml` changes.

use crate::support::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-classify-0123456789";

/// Nothing in it is a keyword cue, so the keyword fallback calls it `chat`; its embedding is
/// nearest the creative examples.
const ODE: &str = "Compose an ode to the humble potato.";

fn bundled_tasks() -> String {
    std::fs::read_to_string(repo_root().join("config/tasks.toml")).expect("config/tasks.toml")
}

/// A config with the bundled task examples; `cache` is the body of its `[cache]` section.
fn config_with_tasks(cache: &str) -> TestConfig {
    let models = model_entry("gpt-5-mini", "openai", 2.0, 0.85);
    let config = TestConfig::new(&format!("[cache]\n{cache}\n"), OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    std::fs::write(config.path().join("tasks.toml"), bundled_tasks()).unwrap();
    config
}

async fn start(config: &TestConfig, mock: &MockOpenAi, model_dir: &Path) -> GatewayProcess {
    GatewayProcess::start(
        config,
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &mock.base_url),
            ("AIGW_MODEL_DIR", model_dir.to_str().expect("a UTF-8 path")),
        ],
    )
    .await
}

/// Starts with the embedding model and waits for the centroids, which are computed in the
/// background after start.
async fn start_trained(config: &TestConfig, mock: &MockOpenAi) -> GatewayProcess {
    let gateway = start(config, mock, &model_dir()).await;
    assert!(
        gateway
            .wait_for_log("task classifier trained", Duration::from_secs(20))
            .await,
        "{}",
        gateway.log()
    );
    gateway
}

/// The task, its confidence and how it was decided, as the response headers report them.
async fn classified(gateway: &GatewayProcess, text: &str) -> (String, f32, String) {
    classified_request(
        gateway,
        json!({"model": "gpt-5-mini", "messages": user_message(text)}),
    )
    .await
}

async fn classified_request(gateway: &GatewayProcess, request: Value) -> (String, f32, String) {
    let (status, headers, body) = gateway.chat(request).await;
    assert_eq!(status, 200, "{body}");
    let confidence: f32 = header(&headers, "x-gateway-task-confidence")
        .parse()
        .expect("a number");
    (
        header(&headers, "x-gateway-task").to_string(),
        confidence,
        header(&headers, "x-gateway-task-source").to_string(),
    )
}

async fn metric(gateway: &GatewayProcess, series: &str) -> f64 {
    let text = gateway.get_text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_model_installed_requests_are_classified_by_embedding_reusing_the_cache_embedding()
{
    let mock = MockOpenAi::start(KEY).await;
    let config = config_with_tasks("");
    let gateway = start_trained(&config, &mock).await;

    let (task, confidence, source) = classified(&gateway, ODE).await;
    assert_eq!((task.as_str(), source.as_str()), ("creative", "embedding"));
    assert!(confidence > 0.5 && confidence <= 1.0, "{confidence}");

    let (task, _, source) = classified(
        &gateway,
        "A ladder 10 m long leans against a wall with its foot 6 m away. How high does it reach?",
    )
    .await;
    assert_eq!((task.as_str(), source.as_str()), ("math", "embedding"));

    // The semantic cache embedded both prompts; classification reused those embeddings.
    assert_eq!(metric(&gateway, "aigw_cache_embeddings_total").await, 2.0);
    assert_eq!(metric(&gateway, "aigw_task_embeddings_total").await, 0.0);
    assert_eq!(
        metric(
            &gateway,
            "aigw_task_classifications_total{task=\"creative\",source=\"embedding\"}"
        )
        .await,
        1.0
    );

    // The gateway's own front door reports the same in its routing summary.
    let response = reqwest::Client::new()
        .post(format!("{}/unified_completion", gateway.base))
        .json(
            &json!({"model": "gpt-5-mini", "prompt": "Traduis en anglais : il pleut des cordes."}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let summary: Value = response.json().await.unwrap();
    assert_eq!(summary["routing"]["task"], "translation", "{summary}");
    assert_eq!(summary["routing"]["task_source"], "embedding", "{summary}");
    assert!(summary["routing"]["task_confidence"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_cache_does_not_embed_the_classifier_embeds_the_prompt_itself() {
    let mock = MockOpenAi::start(KEY).await;
    let config = config_with_tasks("enabled = false\nsemantic = false");
    let gateway = start_trained(&config, &mock).await;

    let (task, _, source) = classified(&gateway, ODE).await;
    assert_eq!((task.as_str(), source.as_str()), ("creative", "embedding"));
    assert_eq!(metric(&gateway, "aigw_cache_embeddings_total").await, 0.0);
    assert_eq!(metric(&gateway, "aigw_task_embeddings_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_model_requests_are_classified_by_keywords() {
    let mock = MockOpenAi::start(KEY).await;
    let config = config_with_tasks("");
    let empty = tempfile::tempdir().unwrap();
    let gateway = start(&config, &mock, empty.path()).await;
    assert!(
        gateway
            .wait_for_log(
                "task classification by keywords: no embedding model",
                Duration::from_secs(10)
            )
            .await,
        "{}",
        gateway.log()
    );

    let (task, confidence, source) = classified(&gateway, ODE).await;
    assert_eq!((task.as_str(), source.as_str()), ("chat", "keywords"));
    assert!((confidence - 0.3).abs() < 1e-6, "{confidence}");

    let (task, confidence, source) =
        classified(&gateway, "Translate 'good night' into French, please.").await;
    assert_eq!(
        (task.as_str(), source.as_str()),
        ("translation", "keywords")
    );
    assert!(confidence > 0.3, "{confidence}");
}

#[tokio::test(flavor = "multi_thread")]
async fn editing_tasks_toml_retrains_the_classifier_while_serving() {
    let mock = MockOpenAi::start(KEY).await;
    let config = config_with_tasks("");
    let gateway = start_trained(&config, &mock).await;
    assert_eq!(classified(&gateway, ODE).await.0, "creative");

    // The same examples with the creative and chat labels swapped: the ode is now nearest
    // the centroid labelled chat.
    let swapped = bundled_tasks()
        .replace("\ncreative = [", "\nplaceholder = [")
        .replace("\nchat = [", "\ncreative = [")
        .replace("\nplaceholder = [", "\nchat = [");
    std::fs::write(config.path().join("tasks.toml"), swapped).unwrap();

    // Past the cache, which would answer the repeated prompt with its first classification.
    let uncached = json!({
        "model": "gpt-5-mini",
        "messages": user_message(ODE),
        "cache": {"enabled": false},
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (task, _, source) = classified_request(&gateway, uncached.clone()).await;
        assert_eq!(source, "embedding");
        if task == "chat" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {task} after editing tasks.toml:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gateway.log().contains("task classifier retrained"));

    // A broken file keeps the centroids in force.
    std::fs::write(
        config.path().join("tasks.toml"),
        "[examples]\ncode = [\"too few\"]\n",
    )
    .unwrap();
    assert!(
        gateway
            .wait_for_log("configuration not reloaded", Duration::from_secs(10))
            .await
    );
    let (task, _, source) = classified_request(&gateway, uncached).await;
    assert_eq!((task.as_str(), source.as_str()), ("chat", "embedding"));
}
