//! MCP over Streamable HTTP at the JSON-RPC level: both front doors reach one service, so the
//! same request gets the same routing decision and cost through either. (The official Python
//! `mcp` client drives the full tool/prompt/resource flow in tests/python/test_mcp.py.)

use crate::support::*;
use serde_json::{Value, json};

const KEY: &str = "sk-test-mcp-0123456789";

/// A minimal MCP client session over Streamable HTTP (the 2025-06-18 handshake).
struct McpSession {
    url: String,
    session_id: String,
    next_id: u64,
}

impl McpSession {
    async fn open(base: &str) -> Self {
        let url = format!("{base}/mcp");
        let response = post(
            &url,
            None,
            json!({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "e2e", "version": "0"},
                },
            }),
        )
        .await;
        assert_eq!(response.status(), 200);
        let session_id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("a session id")
            .to_string();
        let init = rpc_result(response, 0).await;
        assert_eq!(init["protocolVersion"], "2025-06-18");
        assert_eq!(init["serverInfo"]["name"], "ai-gateway");
        let notified = post(
            &url,
            Some(&session_id),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert_eq!(notified.status(), 202);
        McpSession {
            url,
            session_id,
            next_id: 1,
        }
    }

    async fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let response = post(
            &self.url,
            Some(&self.session_id),
            json!({
                "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": name, "arguments": arguments},
            }),
        )
        .await;
        assert_eq!(response.status(), 200);
        rpc_result(response, id).await
    }
}

async fn post(url: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(KEY)
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.send().await.expect("the gateway answers")
}

/// The `result` of the JSON-RPC response with `id`, from a JSON body or an SSE stream.
async fn rpc_result(response: reqwest::Response, id: u64) -> Value {
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let messages: Vec<Value> = if sse {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    let reply = messages
        .into_iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no reply to request {id} in {text}"));
    assert!(reply.get("error").is_none(), "{reply}");
    reply["result"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_and_http_return_the_same_route_and_cost() {
    let mock = MockOpenAi::start(KEY).await;
    let models = [
        model_entry("gpt-5-mini", "openai", 2.0, 0.85),
        model_entry("gpt-5", "openai", 10.0, 0.95),
    ]
    .concat();
    let config = TestConfig::new("", OPENAI_PROVIDER, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced")
        .add_policy("policies/dist/quality.wasm", "quality");
    let gateway = GatewayProcess::start_with_key(
        &config,
        &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
        KEY,
    )
    .await;

    for policy in ["balanced", "quality"] {
        let prompt = format!("Write a haiku about routers ({policy})");
        let http = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gateway.base))
            .bearer_auth(KEY)
            .json(&json!({
                "model": "auto",
                "policy": policy,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(http.status(), 200);
        let headers = http.headers().clone();
        let http_body: Value = http.json().await.unwrap();

        let mut session = McpSession::open(&gateway.base).await;
        let result = session
            .call_tool(
                "unified_completion",
                json!({"prompt": prompt, "policy": policy, "max_tokens": 64}),
            )
            .await;
        assert_ne!(result["isError"], true, "{result}");
        let mcp = &result["structuredContent"];

        let header = |name: &str| headers[name].to_str().unwrap().to_string();
        assert_eq!(mcp["model"], http_body["model"]);
        assert_eq!(mcp["provider"], header("x-gateway-provider"));
        assert_eq!(mcp["routing"]["policy"], header("x-gateway-policy"));
        assert_eq!(mcp["routing"]["policy"], policy);
        // The reason quotes live latency, which the first of the two requests has just
        // changed; the decision it explains is the same.
        let decision = |reason: &str| reason.split(" scored").next().unwrap_or("").to_string();
        assert_eq!(
            decision(mcp["routing"]["reason"].as_str().unwrap()),
            decision(&header("x-gateway-route-reason"))
        );
        assert_eq!(mcp["routing"]["task"], header("x-gateway-task"));
        let http_cost: f64 = header("x-gateway-cost-usd").parse().unwrap();
        let mcp_cost = mcp["cost_usd"].as_f64().unwrap();
        assert!(mcp_cost > 0.0);
        assert!(
            (mcp_cost - http_cost).abs() < 1e-8,
            "{mcp_cost} vs {http_cost}"
        );
        assert_eq!(
            mcp["tokens"]["input"], http_body["usage"]["prompt_tokens"],
            "same usage, same price"
        );
        let candidates: Vec<String> = mcp["routing"]["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["model"].as_str().unwrap().to_string())
            .collect();
        let header_candidates: Vec<String> = header("x-gateway-candidates")
            .split(',')
            .map(|c| c.split('=').next().unwrap().to_string())
            .collect();
        assert_eq!(candidates, header_candidates);
    }
    // The two doors differ in the answer's wording only where the pipeline does: every call
    // above reached the same upstream.
    assert_eq!(mock.requests().len(), 4);
}
