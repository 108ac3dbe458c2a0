//! SIGTERM as Cloud Run sends it: requests and streams in flight finish, their usage reaches
//! the ledger, and the process exits 0 within the grace period.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-shutdown-0123456789";
const IN_FLIGHT: usize = 20;
const UPSTREAM_DELAY: Duration = Duration::from_millis(1500);
const GRACE_MS: u64 = 6000;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_requests_in_flight_finish_and_records_them_all() {
    let upstream = ReplayUpstream::start(|request| {
        let mut canned = if request.body["stream"] == true {
            openai_stream("gpt-5-mini", "a streamed answer that arrives in pieces")
        } else {
            openai_completion("gpt-5-mini", "a plain answer")
        };
        canned.delay = UPSTREAM_DELAY;
        canned
    })
    .await;
    let config = TestConfig::new(
        "",
        OPENAI_PROVIDER,
        &model_entry("gpt-5-mini", "openai", 2.0, 0.85),
    );
    // The grace period, through the environment as a container would set it.
    let grace = GRACE_MS.to_string();
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", upstream.base_url.as_str()),
        ("AIGW_SERVER__SHUTDOWN_GRACE_MS", grace.as_str()),
    ];
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let data_dir = tempfile::tempdir().unwrap();
    let mut gateway = GatewayProcess::start_in(&config, &env, None, data_dir.path()).await;

    let client = reqwest::Client::new();
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let stream = i % 2 == 0;
            let request = client
                .post(format!("{}/v1/chat/completions", gateway.base))
                .json(&json!({
                    "model": "gpt-5-mini",
                    "stream": stream,
                    "messages": user_message(&format!("request {i}")),
                }));
            tokio::spawn(async move {
                let response = request.send().await.expect("accepted before SIGTERM");
                let status = response.status().as_u16();
                let text = response.text().await.expect("the whole body");
                (stream, status, text)
            })
        })
        .collect();

    // Every request has reached the upstream, none has been answered: now stop.
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.requests().len() < IN_FLIGHT {
        assert!(
            Instant::now() < deadline,
            "requests did not reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = Instant::now();
    let clean = tokio::task::block_in_place(|| gateway.terminate());
    let took = stopping.elapsed();
    assert!(clean, "exit code 0 after SIGTERM; log:\n{}", gateway.log());
    assert!(
        took < Duration::from_millis(GRACE_MS),
        "exited {took:?} after SIGTERM, beyond the {GRACE_MS} ms grace period"
    );

    for request in requests {
        let (stream, status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
        if stream {
            assert!(
                text.ends_with("data: [DONE]\n\n"),
                "a stream in flight was finished, not cut: {text}"
            );
        } else {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(body["choices"][0]["message"]["content"], "a plain answer");
        }
    }

    // Restarted on the same data directory, the ledger has every request.
    let gateway = GatewayProcess::start_in(&config, &env, None, data_dir.path()).await;
    let report: serde_json::Value =
        serde_json::from_str(&gateway.get_text("/v1/usage?range=1h").await).unwrap();
    assert_eq!(report["totals"]["succeeded"], IN_FLIGHT as u64, "{report}");
}
