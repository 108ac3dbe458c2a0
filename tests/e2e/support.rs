//! Test support: the real `ai-gateway` binary in a child process, a configuration written for
//! each test, and a mock upstream that speaks OpenAI's wire format on loopback.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_ai-gateway");

/// Provider key variables cleared from the gateway's environment, so the developer's own keys
/// never reach a test.
const PROVIDER_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "XAI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "PORT",
    "AIGW_CONFIG",
    "AIGW_DATA_DIR",
    "AIGW_MODEL_DIR",
    "GATEWAY_API_KEYS",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The embedding model `.ci/setup` fetches ($AIGW_MODEL_DIR, or data/models in the checkout).
pub fn model_dir() -> PathBuf {
    let dir = std::env::var_os("AIGW_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("data/models"));
    assert!(
        dir.join("model.onnx").is_file(),
        "{} has no embedding model: run `.ci/setup` to fetch it",
        dir.display()
    );
    dir
}

/// A built component, e.g. `plugins/dist/openai.wasm`.
pub fn component(relative: &str) -> PathBuf {
    let path = repo_root().join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `.ci/setup --test` to build the components",
        path.display()
    );
    path
}

/// A configuration directory for one test.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub provider_dir: PathBuf,
    pub policy_dir: PathBuf,
}

impl TestConfig {
    /// `providers` and `models` are TOML bodies of providers.toml and models.toml. The adapter
    /// and policy directories are fresh; copy components in with `add_provider`/`add_policy`.
    ///
    /// The response cache is off unless `gateway_extra` has a `[cache]` section: most tests send
    /// the same request more than once and count what reaches the upstream.
    pub fn new(gateway_extra: &str, providers: &str, models: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let provider_dir = dir.path().join("providers");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&provider_dir).unwrap();
        std::fs::create_dir_all(&policy_dir).unwrap();
        let cache_off = if gateway_extra.contains("[cache]") {
            ""
        } else {
            "\n[cache]\nenabled = false\n"
        };
        let gateway = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[plugins]\nprovider_dir = \"providers\"\n\
             policy_dir = \"policies\"\n{gateway_extra}\n{cache_off}"
        );
        std::fs::write(dir.path().join("gateway.toml"), gateway).unwrap();
        std::fs::write(dir.path().join("providers.toml"), providers).unwrap();
        std::fs::write(dir.path().join("models.toml"), models).unwrap();
        TestConfig {
            dir,
            provider_dir,
            policy_dir,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn add_provider(&self, built: &str, name: &str) -> &Self {
        std::fs::copy(
            component(built),
            self.provider_dir.join(format!("{name}.wasm")),
        )
        .unwrap();
        self
    }

    pub fn add_policy(&self, built: &str, name: &str) -> &Self {
        std::fs::copy(
            component(built),
            self.policy_dir.join(format!("{name}.wasm")),
        )
        .unwrap();
        self
    }
}

/// A running gateway. Killed on drop.
pub struct GatewayProcess {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
    /// Where it keeps its ledger and compiled components.
    pub data_dir: PathBuf,
    _owned_data_dir: Option<tempfile::TempDir>,
}

impl GatewayProcess {
    pub async fn start(config: &TestConfig, env: &[(&str, &str)]) -> Self {
        Self::start_inner(config, env, None, None).await
    }

    /// Starts a gateway on a data directory the test keeps, so that a second gateway can start
    /// where the first one stopped.
    pub async fn start_in(
        config: &TestConfig,
        env: &[(&str, &str)],
        key: Option<&str>,
        data_dir: &Path,
    ) -> Self {
        Self::start_inner(config, env, key, Some(data_dir)).await
    }

    async fn start_inner(
        config: &TestConfig,
        env: &[(&str, &str)],
        key: Option<&str>,
        data_dir: Option<&Path>,
    ) -> Self {
        let owned_data_dir = match data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp dir")),
        };
        let data_dir = data_dir
            .or(owned_data_dir.as_ref().map(|d| d.path()))
            .expect("a data directory")
            .to_path_buf();
        let mut command = Command::new(GATEWAY);
        command
            .arg("serve")
            .arg("--config")
            .arg(config.path())
            .arg("--data-dir")
            .arg(&data_dir)
            .env("AIGW_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for var in PROVIDER_ENV {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawning ai-gateway");

        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("AIGW_TEST_SHOW_LOGS").is_some() {
                    eprintln!("[gateway] {line}");
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("listening on ") {
                    let _ = tx.send(base.to_string());
                }
            }
        });
        let base = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the gateway did not start within 60 s; its log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        let gateway = GatewayProcess {
            child,
            base,
            log,
            data_dir,
            _owned_data_dir: owned_data_dir,
        };
        gateway.wait_ready(key).await;
        gateway
    }

    /// Starts a gateway that requires API keys; `key` is one of them, used to poll readiness.
    pub async fn start_with_key(config: &TestConfig, env: &[(&str, &str)], key: &str) -> Self {
        Self::start_inner(config, env, Some(key), None).await
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "cannot send SIGTERM to the gateway");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the gateway did not exit within 20 s of SIGTERM; its log:\n{}",
            self.log()
        );
    }

    async fn wait_ready(&self, key: Option<&str>) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut request = client.get(format!("{}/ready", self.base));
            if let Some(key) = key {
                request = request.bearer_auth(key);
            }
            if let Ok(r) = request.send().await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the gateway never became ready; its log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    pub async fn chat(&self, body: Value) -> (StatusCode, HeaderMap, Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body)
            .send()
            .await
            .expect("the gateway answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = convert_headers(response.headers());
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// Sends a streaming request and returns the status and every SSE `data:` payload.
    pub async fn chat_stream(&self, body: Value) -> (StatusCode, HeaderMap, Vec<String>) {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body)
            .send()
            .await
            .expect("the gateway answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = convert_headers(response.headers());
        let text = response.text().await.unwrap_or_default();
        let events = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(str::to_string)
            .collect();
        (status, headers, events)
    }

    /// POSTs JSON to `path`, with `key` as the bearer key when given.
    pub async fn post_json(
        &self,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let headers = convert_headers(response.headers());
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// GETs JSON from `path`, with `key` as the bearer key when given.
    pub async fn get_json(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    /// GETs `path` as text with a bearer key.
    pub async fn get_text_with_key(&self, path: &str, key: &str) -> String {
        reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("the gateway answers")
            .text()
            .await
            .unwrap_or_default()
    }

    pub async fn get_text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("the gateway answers")
            .text()
            .await
            .unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn convert_headers(headers: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.insert(name, value);
        }
    }
    out
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub fn user_message(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// One request the mock received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct MockState {
    expected_key: String,
    requests: Mutex<Vec<Recorded>>,
}

/// An OpenAI-compatible upstream on loopback. It checks the bearer key the way OpenAI does
/// (401 with an `invalid_api_key` error otherwise), answers chat completions with
/// `echo: <last user message>` and fixed, known usage, and echoes `/probe` bodies back.
pub struct MockOpenAi {
    pub base_url: String,
    state: Arc<MockState>,
    _server: tokio::task::JoinHandle<()>,
}

/// The usage every mock completion reports.
pub const MOCK_PROMPT_TOKENS: u64 = 12;
pub const MOCK_CACHED_TOKENS: u64 = 4;
pub const MOCK_COMPLETION_TOKENS: u64 = 7;

impl MockOpenAi {
    pub async fn start(expected_key: &str) -> Self {
        let state = Arc::new(MockState {
            expected_key: expected_key.to_string(),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(mock_chat))
            .route("/v1/probe", post(mock_probe))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockOpenAi {
            base_url: format!("http://{addr}/v1"),
            state,
            _server: server,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

fn record(state: &MockState, path: &str, headers: &HeaderMap, body: &Value) -> Option<Response> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.requests.lock().unwrap().push(Recorded {
        path: path.to_string(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let expected = format!("Bearer {}", state.expected_key);
    if authorization.as_deref() != Some(expected.as_str()) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {
                    "message": "Incorrect API key provided.",
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "invalid_api_key",
                }})),
            )
                .into_response(),
        );
    }
    None
}

/// The tool call the mock makes when asked to "use the tool", and how it splits the arguments
/// across stream events.
pub const MOCK_TOOL_ARGUMENTS: &str =
    r#"{"city": "Paris", "unit": "celsius", "note": "a \"quoted\" word, ünïcode"}"#;
const MOCK_TOOL_SPLITS: [usize; 3] = [1, 9, 30];

fn mock_usage() -> Value {
    json!({
        "prompt_tokens": MOCK_PROMPT_TOKENS,
        "completion_tokens": MOCK_COMPLETION_TOKENS,
        "total_tokens": MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": MOCK_CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

async fn mock_chat(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(rejection) = record(&state, "/v1/chat/completions", &headers, &body) {
        return rejection;
    }
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let wants_tool = last_user.contains("use the tool");
    if body["stream"] == true {
        return mock_stream(&body, &last_user, wants_tool);
    }
    let message = if wants_tool {
        json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [{
            "id": "call_mock_1", "type": "function",
            "function": {"name": "get_weather", "arguments": MOCK_TOOL_ARGUMENTS},
        }]})
    } else {
        json!({"role": "assistant", "content": format!("echo: {last_user}"), "refusal": null})
    };
    Json(json!({
        "id": "chatcmpl-mock-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body["model"],
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": if wants_tool { "tool_calls" } else { "stop" },
        }],
        "usage": mock_usage(),
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }))
    .into_response()
}

/// OpenAI's stream format: `data: <chunk>` events, a usage chunk when asked for, `[DONE]`.
/// A prompt containing "cut the stream" ends the connection after two chunks, mid-response.
fn mock_stream(body: &Value, last_user: &str, wants_tool: bool) -> Response {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-mock-stream", "object": "chat.completion.chunk",
            "created": 1_700_000_000, "model": body["model"], "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if wants_tool {
        let args = MOCK_TOOL_ARGUMENTS;
        let mut cuts = vec![0];
        cuts.extend(MOCK_TOOL_SPLITS);
        cuts.push(args.len());
        events.push(chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_mock_1", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}]}),
            Value::Null,
        ));
        for pair in cuts.windows(2) {
            events.push(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": &args[pair[0]..pair[1]]}}]}),
                Value::Null,
            ));
        }
        events.push(chunk(json!({}), json!("tool_calls")));
    } else {
        for word in format!("echo: {last_user}").split_inclusive(' ') {
            events.push(chunk(json!({"content": word}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
    }
    let cut = last_user.contains("cut the stream");
    if cut {
        events.truncate(3);
    }
    let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if !cut {
        if body["stream_options"]["include_usage"] == true {
            let usage = json!({
                "id": "chatcmpl-mock-stream", "object": "chat.completion.chunk",
                "created": 1_700_000_000, "model": body["model"], "choices": [],
                "usage": mock_usage(),
            });
            text.push_str(&format!("data: {usage}\n\n"));
        }
        text.push_str("data: [DONE]\n\n");
    }
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(trickle(text.as_bytes(), 37))
        .unwrap()
}

/// A body sent in small pieces with pauses between them, so that the gateway's parsers meet
/// events (and UTF-8 characters) split across reads.
fn trickle(bytes: &[u8], piece: usize) -> axum::body::Body {
    let pieces: Vec<Result<Vec<u8>, std::convert::Infallible>> =
        bytes.chunks(piece).map(|c| Ok(c.to_vec())).collect();
    let stream = futures::stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        piece
    });
    axum::body::Body::from_stream(stream)
}

async fn mock_probe(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(rejection) = record(&state, "/v1/probe", &headers, &body) {
        return rejection;
    }
    Json(body).into_response()
}

/// providers.toml for one OpenAI provider whose key and base URL come from the environment.
pub const OPENAI_PROVIDER: &str = r#"
[openai]
adapter = "openai"
api_key_env = "OPENAI_API_KEY"
base_url_env = "OPENAI_BASE_URL"
"#;

/// A catalog entry on `provider` with the given output price (the one policies compare).
pub fn model_entry(id: &str, provider: &str, output_price: f64, quality: f64) -> String {
    format!(
        r#"
[[models]]
id = "{id}"
provider = "{provider}"
context_window = 128000
max_output_tokens = 16000
input_per_mtok = {input}
cached_input_per_mtok = {cached}
output_per_mtok = {output_price}
quality = {quality}
capabilities = {{ tools = true, vision = true, json = true, streaming = true }}
"#,
        input = output_price / 4.0,
        cached = output_price / 40.0,
    )
}

/// Bytes of a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> Vec<u8> {
    let path = repo_root().join("tests/fixtures").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One request a `ReplayUpstream` received.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Value,
}

/// What a `ReplayUpstream` answers.
pub struct Canned {
    /// How long to wait before answering (latency injection).
    pub delay: Duration,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Canned {
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Canned {
            delay: Duration::ZERO,
            status,
            headers: Vec::new(),
            content_type: "application/json",
            body,
        }
    }

    pub fn sse(body: Vec<u8>) -> Self {
        Canned {
            delay: Duration::ZERO,
            status: 200,
            headers: Vec::new(),
            content_type: "text/event-stream",
            body,
        }
    }
}

type Script = dyn Fn(&ReplayRequest) -> Canned + Send + Sync;

/// A loopback upstream that answers each request with recorded wire data chosen by a script,
/// streaming bodies in small pieces so that parsers meet events split across reads.
pub struct ReplayUpstream {
    pub base_url: String,
    requests: Arc<Mutex<Vec<ReplayRequest>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl ReplayUpstream {
    pub async fn start(script: impl Fn(&ReplayRequest) -> Canned + Send + Sync + 'static) -> Self {
        let requests: Arc<Mutex<Vec<ReplayRequest>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let recorded = requests.clone();
        let app = Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (recorded, script) = (recorded.clone(), script.clone());
                async move {
                    let request = ReplayRequest {
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or("").to_string(),
                        headers: headers
                            .iter()
                            .filter_map(|(k, v)| {
                                Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                            })
                            .collect(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    };
                    recorded.lock().unwrap().push(request.clone());
                    let canned = script(&request);
                    tokio::time::sleep(canned.delay).await;
                    let mut response = Response::builder()
                        .status(canned.status)
                        .header("content-type", canned.content_type);
                    for (name, value) in canned.headers {
                        response = response.header(name, value);
                    }
                    response.body(trickle(&canned.body, 41)).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ReplayUpstream {
            base_url: format!("http://{addr}"),
            requests,
            _server: server,
        }
    }

    pub fn requests(&self) -> Vec<ReplayRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// The `scenario:NAME` marker a test put in its prompt, for scripts to act on.
pub fn scenario(request: &ReplayRequest) -> String {
    let text = request.body.to_string();
    text.split("scenario:")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .unwrap_or_default()
}

/// Text and tool calls reassembled from a gateway stream's `data:` payloads.
#[derive(Debug, Default)]
pub struct Reassembled {
    pub text: String,
    /// (id, name, arguments) by output index.
    pub calls: std::collections::BTreeMap<u64, (String, String, String)>,
    pub finish_reasons: Vec<String>,
    pub usage: Option<Value>,
    pub done: bool,
    pub error: Option<Value>,
}

pub fn reassemble(events: &[String]) -> Reassembled {
    let mut out = Reassembled::default();
    for event in events {
        if event == "[DONE]" {
            out.done = true;
            continue;
        }
        let chunk: Value =
            serde_json::from_str(event).unwrap_or_else(|_| panic!("not JSON: {event}"));
        if chunk.get("error").is_some() {
            out.error = Some(chunk["error"].clone());
            continue;
        }
        if !chunk["usage"].is_null() {
            out.usage = Some(chunk["usage"].clone());
        }
        let choice = &chunk["choices"][0];
        if let Some(text) = choice["delta"]["content"].as_str() {
            out.text.push_str(text);
        }
        for call in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let entry = out
                .calls
                .entry(call["index"].as_u64().unwrap())
                .or_default();
            if let Some(id) = call["id"].as_str() {
                entry.0 = id.to_string();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.1 = name.to_string();
            }
            entry
                .2
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            out.finish_reasons.push(reason.to_string());
        }
    }
    out
}

/// An OpenAI chat completion answering `text`, with small fixed usage.
pub fn openai_completion(model: &str, text: &str) -> Canned {
    Canned::json(
        200,
        json!({
            "id": "chatcmpl-replay", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        })
        .to_string()
        .into_bytes(),
    )
}

/// The same answer as `openai_completion`, streamed in OpenAI's format with usage and `[DONE]`.
pub fn openai_stream(model: &str, text: &str) -> Canned {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-replay", "object": "chat.completion.chunk", "created": 1,
               "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let events = [
        chunk(json!({"role": "assistant", "content": text}), Value::Null),
        chunk(json!({}), json!("stop")),
        json!({"id": "chatcmpl-replay", "object": "chat.completion.chunk", "created": 1,
               "model": model, "choices": [],
               "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}),
    ];
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    Canned::sse(body.into_bytes())
}

/// The bundled `config/` providers and models, with every built adapter and policy: what the
/// README's run command serves (with no keys, through the simulated provider).
pub fn bundled_config(gateway_extra: &str) -> TestConfig {
    let config = TestConfig::new(gateway_extra, "", "");
    for file in ["providers.toml", "models.toml"] {
        std::fs::copy(
            repo_root().join("config").join(file),
            config.path().join(file),
        )
        .unwrap();
    }
    for adapter in ["openai", "anthropic", "gemini"] {
        config.add_provider(&format!("plugins/dist/{adapter}.wasm"), adapter);
    }
    for policy in ["balanced", "cost", "latency", "quality"] {
        config.add_policy(&format!("policies/dist/{policy}.wasm"), policy);
    }
    config
}

/// A mock OpenAI-compatible upstream (streams too) and the providers.toml and models.toml bodies
/// for three catalog models on it, read with the key in `key_env`: `cheap` (quality 0.7), `mid`
/// (0.85, five times the price) and `dear` (0.95, twenty times).
pub async fn three_tier_catalog(key_env: &str) -> (ReplayUpstream, String, String) {
    let upstream = ReplayUpstream::start(|request| {
        let model = request.body["model"].as_str().unwrap_or_default();
        if request.body["stream"] == true {
            openai_stream(model, "ok")
        } else {
            openai_completion(model, "ok")
        }
    })
    .await;
    let providers = format!(
        "[mock]\nadapter = \"openai\"\napi_key_env = \"{key_env}\"\nbase_url = \"{}/v1\"\n",
        upstream.base_url
    );
    let models = [
        model_entry("cheap", "mock", 1.0, 0.7),
        model_entry("mid", "mock", 5.0, 0.85),
        model_entry("dear", "mock", 20.0, 0.95),
    ]
    .concat();
    (upstream, providers, models)
}
