//! The usage ledger through the running gateway: exact token and cost totals against a mock
//! upstream that reports known usage, rows on disk after SIGTERM, and reports after a restart.

use crate::support::*;
use rusqlite::Connection;
use serde_json::{Value, json};

const KEY: &str = "sk-test-ledger-0123456789";
const CLIENT_KEY: &str = "sk-client-ledger";

/// A model priced so that every token class has its own rate: USD per million tokens.
const INPUT_PRICE: f64 = 2.0;
const CACHED_PRICE: f64 = 0.5;
const OUTPUT_PRICE: f64 = 8.0;

fn metered_model() -> String {
    format!(
        r#"
[[models]]
id = "metered"
provider = "openai"
context_window = 128000
max_output_tokens = 16000
input_per_mtok = {INPUT_PRICE}
cached_input_per_mtok = {CACHED_PRICE}
output_per_mtok = {OUTPUT_PRICE}
quality = 0.8
capabilities = {{ tools = true, json = true, streaming = true }}
"#
    )
}

/// What one mock completion costs: uncached input, cached input and output each at their own
/// rate, the cached tokens not counted a second time as input.
fn mock_request_cost() -> f64 {
    let uncached = (MOCK_PROMPT_TOKENS - MOCK_CACHED_TOKENS) as f64;
    (uncached * INPUT_PRICE
        + MOCK_CACHED_TOKENS as f64 * CACHED_PRICE
        + MOCK_COMPLETION_TOKENS as f64 * OUTPUT_PRICE)
        / 1e6
}

pub fn ledger_config(gateway_extra: &str) -> TestConfig {
    let config = TestConfig::new(gateway_extra, OPENAI_PROVIDER, &metered_model());
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    config
}

/// (rows, input, cached input, output, cost) summed over the ledger file.
fn ledger_totals(path: &std::path::Path) -> (i64, i64, i64, i64, f64) {
    let db = Connection::open(path).expect("the ledger opens with SQLite");
    db.query_row(
        "SELECT COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), \
         SUM(cost_usd) FROM requests",
        [],
        |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        },
    )
    .expect("the requests table")
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_totals_are_exact_and_every_row_survives_sigterm_and_restart() {
    let mock = MockOpenAi::start(KEY).await;
    let config = ledger_config("");
    let data_dir = tempfile::tempdir().unwrap();
    let keys = format!("acme:{CLIENT_KEY}");
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", mock.base_url.as_str()),
        ("GATEWAY_API_KEYS", keys.as_str()),
    ];
    let mut gateway =
        GatewayProcess::start_in(&config, &env, Some(CLIENT_KEY), data_dir.path()).await;

    let (plain, streamed) = (5u64, 3u64);
    let mut request_ids = Vec::new();
    for i in 0..plain {
        let (status, headers, body) = gateway
            .post_json(
                "/v1/chat/completions",
                Some(CLIENT_KEY),
                &json!({"model": "metered", "messages": user_message(&format!("summarize this text {i}"))}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let cost: f64 = header(&headers, "x-gateway-cost-usd").parse().unwrap();
        assert!((cost - mock_request_cost()).abs() < 1e-8, "{cost}");
        request_ids.push(header(&headers, "x-request-id").to_string());
    }
    for i in 0..streamed {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(CLIENT_KEY)
            .json(&json!({"model": "metered", "stream": true,
                          "messages": user_message(&format!("write a poem {i}"))}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        request_ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        let text = response.text().await.unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    }

    // Stop at once: records still queued must be written before the process exits.
    assert!(gateway.terminate(), "a clean exit on SIGTERM");
    let n = plain + streamed;
    let path = gateway.data_dir.join("ledger.sqlite");
    let (rows, input, cached, output, cost) = ledger_totals(&path);
    assert_eq!(rows, n as i64);
    assert_eq!(input, (n * MOCK_PROMPT_TOKENS) as i64);
    assert_eq!(cached, (n * MOCK_CACHED_TOKENS) as i64);
    assert_eq!(output, (n * MOCK_COMPLETION_TOKENS) as i64);
    assert!(
        (cost - n as f64 * mock_request_cost()).abs() < 1e-12,
        "{cost} != {n} x {}",
        mock_request_cost()
    );
    // Each row names its request, key, task and outcome.
    let db = Connection::open(&path).unwrap();
    let mut statement = db
        .prepare(
            "SELECT request_id, api_key_id, task, outcome, streamed, tokens_estimated, \
             ttft_ms IS NOT NULL FROM requests ORDER BY id",
        )
        .unwrap();
    let rows: Vec<(String, String, String, String, bool, bool, bool)> = statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        ids,
        request_ids.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (i, (_, key, task, outcome, was_streamed, estimated, has_ttft)) in rows.iter().enumerate() {
        assert_eq!((key.as_str(), outcome.as_str()), ("acme", "ok"));
        assert!(!estimated, "the provider reported usage");
        let streamed_row = i as u64 >= plain;
        assert_eq!((*was_streamed, *has_ttft), (streamed_row, streamed_row));
        assert_eq!(
            task,
            if streamed_row {
                "creative"
            } else {
                "summarization"
            }
        );
    }
    drop(statement);
    drop(db);

    // A new process on the same data directory reports every row.
    let gateway = GatewayProcess::start_in(&config, &env, Some(CLIENT_KEY), data_dir.path()).await;
    let (status, report) = gateway
        .get_json("/v1/usage?range=1h", Some(CLIENT_KEY))
        .await;
    assert_eq!(status, 200, "{report}");
    let totals = &report["totals"];
    assert_eq!(totals["attempts"], n);
    assert_eq!(totals["succeeded"], n);
    assert_eq!(totals["input_tokens"], n * MOCK_PROMPT_TOKENS);
    assert_eq!(totals["cached_input_tokens"], n * MOCK_CACHED_TOKENS);
    assert_eq!(totals["output_tokens"], n * MOCK_COMPLETION_TOKENS);
    let reported = totals["cost_usd"].as_f64().unwrap();
    assert!((reported - n as f64 * mock_request_cost()).abs() < 1e-12);
    let breakdown = |field: &str| -> Vec<(String, u64)> {
        report[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["key"].as_str().unwrap().to_string(),
                    b["attempts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(breakdown("by_key"), vec![("acme".to_string(), n)]);
    assert_eq!(breakdown("by_provider"), vec![("openai".to_string(), n)]);
    let mut by_task = breakdown("by_task");
    by_task.sort();
    assert_eq!(
        by_task,
        vec![
            ("creative".to_string(), streamed),
            ("summarization".to_string(), plain)
        ]
    );
    assert_eq!(report["latency_ms"]["count"], n);
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(report["ttft_ms"]["count"], streamed);
    // Scaled from at least an hour of traffic to thirty days.
    let projected = report["projected_monthly_usd"].as_f64().unwrap();
    assert!((projected - reported * 720.0).abs() < 1e-9, "{projected}");

    // A bad range is a clear 400.
    let (status, error) = gateway
        .get_json("/v1/usage?range=2w", Some(CLIENT_KEY))
        .await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1h, 24h, 7d, 30d")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_report_recommends_a_cheaper_model_that_meets_the_quality_floor() {
    let mock = MockOpenAi::start(KEY).await;
    // A pricey generalist and a cheap summarization specialist of nearly the same quality.
    let models = r#"
[[models]]
id = "opus-like"
provider = "openai"
context_window = 200000
max_output_tokens = 32000
input_per_mtok = 15.0
output_per_mtok = 75.0
quality = 0.95
capabilities = { streaming = true }

[[models]]
id = "flash-like"
provider = "openai"
context_window = 1000000
max_output_tokens = 65000
input_per_mtok = 0.3
output_per_mtok = 2.5
quality = 0.82
specialties = ["summarization"]
capabilities = { streaming = true }

[[models]]
id = "tiny-like"
provider = "openai"
context_window = 1000000
max_output_tokens = 65000
input_per_mtok = 0.01
output_per_mtok = 0.02
quality = 0.3
capabilities = { streaming = true }
"#;
    let config = TestConfig::new("", OPENAI_PROVIDER, models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;
    for _ in 0..4 {
        let (status, _, body) = gateway
            .chat(json!({"model": "opus-like", "messages": user_message("summarize this report")}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let report = wait_for_attempts(&gateway, None, 4).await;
    let recommendations = report["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 1, "{report}");
    let advice = &recommendations[0];
    assert_eq!(advice["task"], "summarization");
    assert_eq!(advice["current_model"], "opus-like");
    // Not the cheapest model: the one that meets the quality floor.
    assert_eq!(advice["suggested_model"], "flash-like");
    assert_eq!(advice["share"], 1.0);
    let message = advice["message"].as_str().unwrap();
    assert!(
        message.starts_with("100% of summarization requests went to opus-like; flash-like"),
        "{message}"
    );
    let current = 4.0 * (12.0 * 15.0 + 7.0 * 75.0) / 1e6;
    let suggested = 4.0 * (12.0 * 0.3 + 7.0 * 2.5) / 1e6;
    assert!((advice["current_cost_usd"].as_f64().unwrap() - current).abs() < 1e-12);
    assert!((advice["suggested_cost_usd"].as_f64().unwrap() - suggested).abs() < 1e-12);
    let saving = advice["estimated_monthly_saving_usd"].as_f64().unwrap();
    assert!(
        (saving - (current - suggested) * 720.0).abs() < 1e-9,
        "{saving}"
    );
}

/// Polls the usage report until the ledger holds `attempts` rows (it is written in the
/// background), and returns it.
pub async fn wait_for_attempts(
    gateway: &GatewayProcess,
    key: Option<&str>,
    attempts: u64,
) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, report) = gateway.get_json("/v1/usage?range=1h", key).await;
        assert_eq!(status, 200, "{report}");
        if report["totals"]["attempts"] == attempts {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ledger never reached {attempts} rows: {report}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
