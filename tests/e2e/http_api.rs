//! The HTTP front door as a client meets it: API keys, and bad input of every kind answered with
//! the right 4xx and a message that says what to fix, never a crash or a hang.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::{Value, json};

const GATEWAY_KEY: &str = "sk-gw-test-secret-0123456789";

async fn gateway_with_keys() -> (TestConfig, GatewayProcess) {
    let config = bundled_config("");
    let keys = format!("team-a:{GATEWAY_KEY},sk-gw-other-key-9876543210");
    let gateway =
        GatewayProcess::start_with_key(&config, &[("GATEWAY_API_KEYS", &keys)], GATEWAY_KEY).await;
    (config, gateway)
}

async fn send(
    gateway: &GatewayProcess,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value, String) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", gateway.base);
    let mut request = match &body {
        Some(_) => client.post(url).header("content-type", "application/json"),
        None => client.get(url),
    };
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, request_id)
}

fn json_body(value: Value) -> Option<Vec<u8>> {
    Some(value.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_but_health_needs_a_valid_key() {
    let (_config, gateway) = gateway_with_keys().await;
    let (status, _, _) = send(&gateway, "/health", None, None).await;
    assert_eq!(status, 200);

    let (status, body, request_id) = send(&gateway, "/v1/models", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    assert!(!request_id.is_empty(), "errors carry a request id too");

    let chat = json_body(json!({"model": "auto", "messages": user_message("hi")}));
    let (status, body, _) = send(
        &gateway,
        "/v1/chat/completions",
        Some("sk-gw-wrong"),
        chat.clone(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
    for path in ["/ready", "/metrics", "/v1/providers"] {
        let (status, _, _) = send(&gateway, path, None, None).await;
        assert_eq!(status, 401, "{path}");
    }

    let (status, body, _) = send(
        &gateway,
        "/v1/chat/completions",
        Some(GATEWAY_KEY),
        chat.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = send(
        &gateway,
        "/v1/chat/completions",
        Some("sk-gw-other-key-9876543210"),
        chat,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !gateway.log().contains(GATEWAY_KEY),
        "a gateway key was logged"
    );
    assert!(
        !gateway.log().contains("sk-gw-wrong"),
        "a presented key was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_that_says_what_to_fix() {
    let (_config, gateway) = gateway_with_keys().await;
    let key = Some(GATEWAY_KEY);
    let chat = "/v1/chat/completions";
    let cases: Vec<(&str, Option<Vec<u8>>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            Some(b"{\"model\": \"auto\", \"messages\": [".to_vec()),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "empty body",
            Some(Vec::new()),
            StatusCode::BAD_REQUEST,
            "body is empty",
        ),
        (
            "wrong type",
            json_body(json!({"model": "auto", "messages": "hi"})),
            StatusCode::BAD_REQUEST,
            "messages",
        ),
        (
            "wrong nested type",
            json_body(json!({"model": "auto", "messages": [{"role": 7, "content": "hi"}]})),
            StatusCode::BAD_REQUEST,
            "messages[0].role",
        ),
        (
            "missing model",
            json_body(json!({"messages": user_message("hi")})),
            StatusCode::BAD_REQUEST,
            "model",
        ),
        (
            "empty message list",
            json_body(json!({"model": "auto", "messages": []})),
            StatusCode::BAD_REQUEST,
            "at least one message",
        ),
        (
            "unknown role",
            json_body(json!({"model": "auto", "messages": [{"role": "robot", "content": "hi"}]})),
            StatusCode::BAD_REQUEST,
            "'robot' is not one of",
        ),
        (
            "temperature out of range",
            json_body(json!({"model": "auto", "messages": user_message("hi"), "temperature": 5})),
            StatusCode::BAD_REQUEST,
            "temperature must be between 0 and 2",
        ),
        (
            "unknown model",
            json_body(json!({"model": "gpt-99", "messages": user_message("hi")})),
            StatusCode::NOT_FOUND,
            "'gpt-99' is not in the catalog",
        ),
        (
            "unknown policy",
            json_body(json!({"model": "auto", "policy": "nope", "messages": user_message("hi")})),
            StatusCode::BAD_REQUEST,
            "policy 'nope' is not loaded",
        ),
        (
            "n > 1",
            json_body(json!({"model": "auto", "n": 3, "messages": user_message("hi")})),
            StatusCode::BAD_REQUEST,
            "only n = 1",
        ),
    ];
    for (case, body, status, says) in cases {
        let (got, response, _) = send(&gateway, chat, key, body).await;
        assert_eq!(got, status, "{case}: {response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{case}: '{message}' does not say '{says}'"
        );
        assert!(
            response["error"]["type"].is_string(),
            "{case}: not OpenAI-shaped: {response}"
        );
    }

    // A body over the limit (4 MiB by default).
    let huge = json!({"model": "auto", "messages": user_message(&"x".repeat(5 * 1024 * 1024))});
    let (status, response, _) = send(&gateway, chat, key, json_body(huge)).await;
    assert_eq!(status, 413, "{response}");
    assert_eq!(response["error"]["code"], "request_too_large");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than this gateway accepts")
    );

    let (status, response, _) = send(&gateway, "/v1/nothing-here", key, None).await;
    assert_eq!(status, 404);
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/chat/completions")
    );

    // Still healthy and serving.
    let (status, _, _) = send(
        &gateway,
        chat,
        key,
        json_body(json!({"model": "auto", "messages": user_message("hi")})),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn unified_completion_answers_with_cost_tokens_and_the_route() {
    let (_config, gateway) = gateway_with_keys().await;
    let key = Some(GATEWAY_KEY);
    let (status, body, _) = send(
        &gateway,
        "/unified_completion",
        key,
        json_body(json!({"prompt": "Summarize the plot of Hamlet", "system": "Be brief.", "max_tokens": 100})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["text"].as_str().unwrap().starts_with("[simulated]"));
    assert_eq!(body["model"], "simulated");
    assert_eq!(body["provider"], "simulated");
    assert_eq!(body["cached"], false);
    assert!(body["tokens"]["input"].as_u64().unwrap() > 0);
    assert_eq!(body["routing"]["policy"], "balanced");
    assert_eq!(body["routing"]["task"], "summarization");
    assert!(
        body["routing"]["reason"]
            .as_str()
            .unwrap()
            .contains("simulated")
    );
    assert!(body["cost_usd"].is_number() && body["latency_ms"].is_number());

    for (case, request, says) in [
        (
            "both prompt and messages",
            json!({"prompt": "a", "messages": user_message("b")}),
            "not both",
        ),
        ("neither", json!({"model": "auto"}), "non-empty prompt"),
        (
            "unknown field",
            json!({"prompt": "a", "temprature": 0.2}),
            "temprature",
        ),
    ] {
        let (status, response, _) =
            send(&gateway, "/unified_completion", key, json_body(request)).await;
        assert_eq!(status, 400, "{case}: {response}");
        let message = response["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{case}: {message}");
    }
}
