//! Budgets through the running gateway: concurrent requests cannot overshoot, the refusal says
//! why, alerts reach a webhook, and spend survives a restart.

use crate::ledger::{ledger_config, wait_for_attempts};
use crate::support::*;
use serde_json::{Value, json};

const KEY: &str = "sk-test-budgets-0123456789";
const CLIENT_KEY: &str = "sk-client-budgeted";
const OTHER_KEY: &str = "sk-client-unlimited";

/// At least as many tokens by the gateway's count as the mock reports (12), so the reservation
/// really is an upper bound of the cost.
const PROMPT: &str = "Please answer this budget test question with one short reply right now";

fn request() -> Value {
    json!({"model": "metered", "max_tokens": 7, "messages": user_message(PROMPT)})
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_requests_cannot_overshoot_a_budget_for_ten() {
    let mock = MockOpenAi::start(KEY).await;
    let webhook = ReplayUpstream::start(|_| Canned::json(200, b"{}".to_vec())).await;
    let keys = format!("acme:{CLIENT_KEY},other:{OTHER_KEY}");
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("OPENAI_BASE_URL", mock.base_url.as_str()),
        ("GATEWAY_API_KEYS", keys.as_str()),
    ];

    // What the gateway reserves per request: its estimate for the only candidate.
    let probe = ledger_config("");
    let gateway = GatewayProcess::start_with_key(&probe, &env, CLIENT_KEY).await;
    let (status, _, estimate) = gateway
        .post_json(
            "/v1/estimate_cost",
            Some(CLIENT_KEY),
            &json!({"model": "metered", "max_tokens": 7, "prompt": PROMPT}),
        )
        .await;
    assert_eq!(status, 200, "{estimate}");
    let candidate = &estimate["data"][0];
    assert_eq!(candidate["model"], "metered");
    assert_eq!(candidate["max_output_tokens"], 7);
    let input_tokens = candidate["input_tokens"].as_u64().unwrap();
    assert!(input_tokens >= MOCK_PROMPT_TOKENS, "{estimate}");
    let per_request = candidate["max_total_cost_usd"].as_f64().unwrap();
    assert!((per_request - (input_tokens as f64 * 2.0 + 7.0 * 8.0) / 1e6).abs() < 1e-15);
    drop(gateway);

    // Room for ten reservations and a half.
    let budget = per_request * 10.5;
    let config = ledger_config(&format!(
        "\n[budgets]\nalert_webhook = \"{}/alerts\"\n\n[budgets.keys.acme]\ndaily_usd = {budget}\n\
         alert_threshold = 0.5\n",
        webhook.base_url
    ));
    let data_dir = tempfile::tempdir().unwrap();
    let mut gateway =
        GatewayProcess::start_in(&config, &env, Some(CLIENT_KEY), data_dir.path()).await;

    let client = reqwest::Client::new();
    let sends = (0..50).map(|_| {
        let request = client
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(CLIENT_KEY)
            .json(&request());
        async move {
            let response = request.send().await.expect("the gateway answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let answers = futures::future::join_all(sends).await;
    let succeeded = answers.iter().filter(|(status, _)| *status == 200).count() as u64;
    // Ten reservations always fit; more only once earlier ones settled below their estimate.
    assert!(succeeded >= 10, "{succeeded} succeeded");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 402, "{body}");
        assert_eq!(body["error"]["code"], "budget_exceeded", "{body}");
        assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("daily budget of API key 'acme' exhausted"),
            "{message}"
        );
        assert!(
            message.contains(&format!("limit ${budget:.6}")),
            "{message}"
        );
        assert!(message.contains("spent $"), "{message}");
    }
    assert!(succeeded < 50);

    // The ledger holds exactly the successful requests, at or under the budget.
    let report = wait_for_attempts(&gateway, Some(CLIENT_KEY), succeeded).await;
    let spent = report["totals"]["cost_usd"].as_f64().unwrap();
    assert!(spent <= budget, "spent {spent} of {budget}");
    let actual = (8.0 * 2.0 + 4.0 * 0.5 + 7.0 * 8.0) / 1e6;
    assert!((spent - succeeded as f64 * actual).abs() < 1e-12);
    assert_eq!(
        mock.requests().len() as u64,
        succeeded,
        "refused requests never reach the upstream"
    );

    // Half the budget was crossed: logged, exported and POSTed once.
    assert!(
        gateway
            .wait_for_log("budget alert", std::time::Duration::from_secs(5))
            .await
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while webhook.requests().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let alerts = webhook.requests();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].path, "/alerts");
    assert_eq!(alerts[0].body["scope"], "key:acme");
    assert_eq!(alerts[0].body["period"], "daily");
    let metrics = gateway.get_text_with_key("/metrics", CLIENT_KEY).await;
    assert!(
        metrics.contains("aigw_budget_alerts_total{scope=\"key:acme\",period=\"daily\"} 1"),
        "{metrics}"
    );

    // Keys without a budget are not limited.
    let (status, _, body) = gateway
        .post_json("/v1/chat/completions", Some(OTHER_KEY), &request())
        .await;
    assert_eq!(status, 200, "{body}");

    // Use up what is left, one at a time, until the budget refuses.
    let mut refused = None;
    for _ in 0..20 {
        let (status, _, body) = gateway
            .post_json("/v1/chat/completions", Some(CLIENT_KEY), &request())
            .await;
        if status != 200 {
            assert_eq!(status, 402, "{body}");
            refused = Some(body["error"]["message"].as_str().unwrap().to_string());
            break;
        }
    }
    let refused = refused.expect("the budget refuses within 20 requests");

    // After a restart the spend is still counted: the same refusal, the same spend.
    assert!(gateway.terminate());
    let gateway = GatewayProcess::start_in(&config, &env, Some(CLIENT_KEY), data_dir.path()).await;
    let (status, _, body) = gateway
        .post_json("/v1/chat/completions", Some(CLIENT_KEY), &request())
        .await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["error"]["message"], refused.as_str());
}
