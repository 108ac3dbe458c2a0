//! `/metrics` read by an independent Prometheus text-format parser, its counters checked against
//! the ledger after traffic with failed attempts, failover and streams.

use crate::support::*;
use prometheus_parse::{LineInfo, Scrape, Value as Metric};
use serde_json::json;

const KEY: &str = "sk-test-metrics-0123456789";

/// The sum of every sample of `name` whose labels include `labels`.
fn sum(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => v,
            Metric::Histogram(_) | Metric::Summary(_) => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_match_the_ledger() {
    let mock = MockOpenAi::start(KEY).await;
    let flaky = ReplayUpstream::start(|_| {
        Canned::json(
            500,
            br#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#.to_vec(),
        )
    })
    .await;
    let providers = format!(
        "{OPENAI_PROVIDER}\n[flaky]\nadapter = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n\
         base_url = \"{}/v1\"\n",
        flaky.base_url
    );
    // The cheapest policy tries the flaky provider first until its circuit opens.
    let models = [
        model_entry("flaky-model", "flaky", 1.0, 0.8),
        model_entry("steady-model", "openai", 4.0, 0.8),
    ]
    .concat();
    let config = TestConfig::new(
        "\n[routing]\ndefault_policy = \"cheapest\"\ncircuit_failure_threshold = 3\n\
         circuit_open_ms = 60000\nbackoff_base_ms = 1\nbackoff_max_ms = 5\n",
        &providers,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("tests/guests/dist/cheapest.wasm", "cheapest");
    let gateway = GatewayProcess::start(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
    )
    .await;

    for i in 0..4 {
        let (status, headers, body) = gateway
            .chat(json!({"model": "auto", "messages": user_message(&format!("question {i}"))}))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "x-gateway-model"), "steady-model");
    }
    for i in 0..2 {
        let (status, _, events) = gateway
            .chat_stream(json!({"model": "auto", "stream": true,
                                "messages": user_message(&format!("story {i}"))}))
            .await;
        assert_eq!(status, 200);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    // Three failed attempts opened the flaky circuit; six answers came from the steady model.
    assert_eq!(flaky.requests().len(), 3);
    let report = crate::ledger::wait_for_attempts(&gateway, None, 9).await;
    let totals = &report["totals"];
    assert_eq!(
        (totals["succeeded"].as_u64(), totals["failed"].as_u64()),
        (Some(6), Some(3))
    );

    // The writer counts a batch just after committing it: wait for the counter to catch up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = gateway.get_text("/metrics").await;
        if text.contains("aigw_ledger_written_total 9\n") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Every line is a comment or a sample the parser understands.
    for line in text.lines() {
        let parsed = LineInfo::parse(line);
        assert!(
            line.starts_with('#') || matches!(parsed, LineInfo::Sample { .. }),
            "not a Prometheus sample: {line}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses");

    let attempts = "aigw_attempts_total";
    assert_eq!(sum(&scrape, attempts, &[("outcome", "ok")]), 6.0);
    assert_eq!(
        sum(
            &scrape,
            attempts,
            &[("outcome", "server"), ("provider", "flaky")]
        ),
        3.0
    );
    assert_eq!(
        sum(&scrape, attempts, &[]),
        totals["attempts"].as_f64().unwrap()
    );
    for (kind, field) in [
        ("input", "input_tokens"),
        ("cached_input", "cached_input_tokens"),
        ("output", "output_tokens"),
    ] {
        assert_eq!(
            sum(&scrape, "aigw_tokens_total", &[("kind", kind)]),
            totals[field].as_f64().unwrap(),
            "{kind} tokens"
        );
    }
    assert_eq!(
        sum(&scrape, "aigw_tokens_total", &[("kind", "input")]),
        6.0 * MOCK_PROMPT_TOKENS as f64
    );
    let cost = sum(&scrape, "aigw_cost_usd_total", &[]);
    assert!(cost > 0.0);
    assert!(
        (cost - totals["cost_usd"].as_f64().unwrap()).abs() < 1e-12,
        "{cost} vs {totals}"
    );
    assert_eq!(
        sum(&scrape, "aigw_requests_total", &[("outcome", "ok")]),
        6.0
    );
    assert_eq!(sum(&scrape, "aigw_ledger_written_total", &[]), 9.0);
    assert_eq!(sum(&scrape, "aigw_ledger_dropped_total", &[]), 0.0);
    assert_eq!(sum(&scrape, "aigw_ledger_queue_depth", &[]), 0.0);
    assert_eq!(
        sum(&scrape, "aigw_circuit_state", &[("provider", "flaky")]),
        2.0,
        "open"
    );
    assert_eq!(
        sum(&scrape, "aigw_circuit_state", &[("provider", "openai")]),
        0.0
    );
    let ttft = scrape
        .samples
        .iter()
        .find(|s| s.metric == "aigw_time_to_first_token_seconds")
        .expect("a TTFT histogram");
    let Metric::Histogram(buckets) = &ttft.value else {
        panic!("TTFT is not a histogram: {ttft:?}");
    };
    assert_eq!(buckets.last().map(|b| b.count), Some(2.0), "two streams");
}
