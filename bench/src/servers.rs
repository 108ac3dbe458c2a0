//! Starting the processes under test: the mock upstream, the gateway (with a configuration
//! written for the benchmark, as the e2e tests do) and LiteLLM.

use crate::load::{self, HttpClient};
use crate::procs::{self, ChildProc};
use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The models every benchmark configuration lists, all served by the mock.
pub const MODELS: [(&str, f64, f64); 3] = [
    ("mock-small", 0.4, 0.70),
    ("mock-medium", 2.0, 0.85),
    ("mock-large", 10.0, 0.95),
];
/// The model named in fixed-model requests (and given to LiteLLM).
pub const FIXED_MODEL: &str = "mock-medium";
/// The variable the gateway reads the mock provider's key from.
const KEY_ENV: &str = "AIGW_BENCH_KEY";
const KEY: &str = "sk-bench-0123456789abcdef";

/// Provider variables cleared from children's environments, so no real key or base URL set on
/// this machine reaches the processes under test.
const CLEARED_ENV: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "XAI_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "PORT",
    "AIGW_CONFIG",
    "AIGW_DATA_DIR",
    "AIGW_LOG_FORMAT",
    // The gateway's own API keys: the benchmark runs it open, as the e2e tests do.
    "GATEWAY_API_KEYS",
];

/// GET with a deadline; returns the status and body.
pub async fn get(
    client: &HttpClient,
    url: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let request = hyper::Request::get(url).body(Full::new(Bytes::new()))?;
    exchange(client, request, timeout).await
}

pub async fn post_json(
    client: &HttpClient,
    url: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?;
    exchange(client, request, timeout).await
}

async fn exchange(
    client: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
    timeout: Duration,
) -> anyhow::Result<(u16, Bytes)> {
    let work = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .context("no answer in time")?
}

/// The mock upstream: this binary's `mock` subcommand in a child process.
pub struct MockServer {
    pub proc: ChildProc,
    /// e.g. `http://127.0.0.1:40000`
    pub origin: String,
}

impl MockServer {
    pub fn start(args: &crate::mock::MockArgs) -> anyhow::Result<MockServer> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut command = Command::new(exe);
        command
            .arg("mock")
            .arg("--listen")
            .arg(args.listen.to_string())
            .arg("--delay-ms")
            .arg(args.delay_ms.to_string())
            .arg("--chunks")
            .arg(args.chunks.to_string())
            .arg("--chunk-interval-ms")
            .arg(args.chunk_interval_ms.to_string())
            .arg("--threads")
            .arg(args.threads.to_string());
        let mut proc = ChildProc::spawn("mock upstream", command)?;
        let (addr, _) = proc.wait_listening(Duration::from_secs(10))?;
        Ok(MockServer {
            proc,
            origin: format!("http://{addr}"),
        })
    }

    /// The OpenAI-style base URL (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin)
    }
}

/// Which components and routing a gateway configuration has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The openai adapter and the balanced policy (default).
    Bench,
    /// As `Bench`, with the response cache on (exact and semantic tiers, bundled defaults).
    CacheOn,
    /// Every bundled adapter (3) and policy (4), balanced by default.
    AllBundled,
    /// The openai adapter and `router.wasm` = the cheapest-first test policy, with a cheap and a
    /// pricey model, for the hot-reload run.
    Reload,
}

/// A configuration directory for one gateway.
pub struct GatewayConfig {
    pub dir: tempfile::TempDir,
    pub policy_dir: PathBuf,
}

impl GatewayConfig {
    pub fn write(repo: &Path, mock_base_url: &str, setup: Setup) -> anyhow::Result<Self> {
        let dir = procs::scratch("aigw-bench-config-")?;
        let provider_dir = dir.path().join("providers");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir_all(&provider_dir)?;
        std::fs::create_dir_all(&policy_dir)?;
        let copy = |from: &str, to: &Path| -> anyhow::Result<()> {
            let source = repo.join(from);
            std::fs::copy(&source, to).with_context(|| {
                format!(
                    "{} is missing: run `.ci/setup --test` (or drop --no-build)",
                    source.display()
                )
            })?;
            Ok(())
        };
        let default_policy = match setup {
            Setup::Bench | Setup::CacheOn => {
                copy(
                    "plugins/dist/openai.wasm",
                    &provider_dir.join("openai.wasm"),
                )?;
                copy(
                    "policies/dist/balanced.wasm",
                    &policy_dir.join("balanced.wasm"),
                )?;
                "balanced"
            }
            Setup::AllBundled => {
                for (from, to) in [
                    ("plugins/dist", &provider_dir),
                    ("policies/dist", &policy_dir),
                ] {
                    for entry in std::fs::read_dir(repo.join(from))? {
                        let path = entry?.path();
                        if path.extension().is_some_and(|e| e == "wasm") {
                            std::fs::copy(&path, to.join(path.file_name().unwrap_or_default()))?;
                        }
                    }
                }
                "balanced"
            }
            Setup::Reload => {
                copy(
                    "plugins/dist/openai.wasm",
                    &provider_dir.join("openai.wasm"),
                )?;
                copy(
                    "tests/guests/dist/cheapest.wasm",
                    &policy_dir.join("router.wasm"),
                )?;
                "router"
            }
        };
        let cache = if matches!(setup, Setup::CacheOn) {
            "# The cache-on runs: the bundled cache settings.\n[cache]\nenabled = true\n"
        } else {
            "# The targets are judged with the response cache off: every request reaches the\n\
             # policy, the adapter and the mock.\n[cache]\nenabled = false\n"
        };
        let gateway = format!(
            "# Written by aigw-bench.\n[server]\nlisten = \"127.0.0.1:0\"\n\n[plugins]\n\
             provider_dir = \"providers\"\npolicy_dir = \"policies\"\n\n[routing]\n\
             default_policy = \"{default_policy}\"\n\n{cache}"
        );
        let providers = format!(
            "[mock]\nadapter = \"openai\"\napi_key_env = \"{KEY_ENV}\"\nbase_url = \"{mock_base_url}\"\n"
        );
        let models: String = match setup {
            Setup::Reload => [("cheap-model", 1.0, 0.7), ("pricey-model", 20.0, 0.95)]
                .iter()
                .map(|&(id, price, quality)| model_entry(id, price, quality))
                .collect(),
            _ => MODELS
                .iter()
                .map(|&(id, price, quality)| model_entry(id, price, quality))
                .collect(),
        };
        std::fs::write(dir.path().join("gateway.toml"), gateway)?;
        std::fs::write(dir.path().join("providers.toml"), providers)?;
        std::fs::write(dir.path().join("models.toml"), models)?;
        Ok(GatewayConfig { dir, policy_dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn model_entry(id: &str, output_price: f64, quality: f64) -> String {
    format!(
        "\n[[models]]\nid = \"{id}\"\nprovider = \"mock\"\ncontext_window = 128000\n\
         max_output_tokens = 16000\ninput_per_mtok = {input}\ncached_input_per_mtok = {cached}\n\
         output_per_mtok = {output_price}\nquality = {quality}\n\
         capabilities = {{ tools = true, vision = true, json = true, streaming = true }}\n",
        input = output_price / 4.0,
        cached = output_price / 40.0,
    )
}

/// A running gateway.
pub struct GatewayProc {
    pub proc: ChildProc,
    pub base: String,
    /// Spawn to the `listening on` line.
    pub listening_after: Duration,
    /// Spawn to the first `GET /ready` answering 200.
    pub ready_after: Duration,
}

impl GatewayProc {
    /// Starts `bin serve --config DIR --data-dir DATA` and waits (bounded) until `/ready` says
    /// 200. `log` is the `AIGW_LOG` filter.
    pub async fn start(
        bin: &Path,
        config: &Path,
        data_dir: &Path,
        log: &str,
    ) -> anyhow::Result<GatewayProc> {
        Self::start_with_model(bin, config, data_dir, log, None).await
    }

    /// As `start`, with the embedding model from `model_dir` (without it the gateway finds
    /// none in its scratch data directory: no semantic cache tier).
    pub async fn start_with_model(
        bin: &Path,
        config: &Path,
        data_dir: &Path,
        log: &str,
        model_dir: Option<&Path>,
    ) -> anyhow::Result<GatewayProc> {
        let mut command = Command::new(bin);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .env("AIGW_LOG", log)
            .env(KEY_ENV, KEY);
        for var in CLEARED_ENV {
            command.env_remove(var);
        }
        if let Some(dir) = model_dir {
            command.env("AIGW_MODEL_DIR", dir);
        }
        let mut proc = ChildProc::spawn("ai-gateway", command)?;
        let spawned = proc.spawned_at;
        let (addr, listening_at) = proc.wait_listening(Duration::from_secs(120))?;
        let base = format!("http://{addr}");
        let client = load::client();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready_after = loop {
            if let Ok((200, _)) =
                get(&client, &format!("{base}/ready"), Duration::from_secs(2)).await
            {
                break spawned.elapsed();
            }
            if !proc.is_running() || Instant::now() > deadline {
                bail!(
                    "the gateway never became ready ({}); its stderr:\n{}",
                    proc.exit_status(),
                    proc.stderr_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        Ok(GatewayProc {
            proc,
            base,
            listening_after: listening_at.saturating_duration_since(spawned),
            ready_after,
        })
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid
    }

    /// The gateway's `/metrics` text (empty if it does not answer).
    pub async fn metrics_text(&self) -> String {
        get(
            &load::client(),
            &format!("{}/metrics", self.base),
            Duration::from_secs(5),
        )
        .await
        .map(|(_, body)| String::from_utf8_lossy(&body).to_string())
        .unwrap_or_default()
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }

    pub fn rss_mib(&self) -> Option<f64> {
        procs::rss_kib(self.pid()).map(|k| k as f64 / 1024.0)
    }

    /// RSS once the process has settled after start-up (the gateway loads its tokenizer's
    /// tables in the background after `/ready`): at least 2 s after ready, then until two
    /// readings 250 ms apart agree within 0.1 MiB, at most 10 s.
    pub async fn settled_rss_mib(&self) -> Option<f64> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut last = self.rss_mib()?;
        for _ in 0..32 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.rss_mib()?;
            if (now - last).abs() < 0.1 {
                return Some(now);
            }
            last = now;
        }
        Some(last)
    }
}

/// The LiteLLM proxy: installed into a virtualenv (idempotently), configured with one
/// `openai/<model>` entry pointing at the mock.
pub struct LiteLlm {
    pub proc: ChildProc,
    pub base: String,
    pub _config: tempfile::TempDir,
}

pub struct LiteLlmSettings {
    pub venv: PathBuf,
    pub spec: String,
    pub workers: usize,
}

/// Installs `spec` into the virtualenv unless it is already there; returns the version.
pub fn install_litellm(settings: &LiteLlmSettings) -> anyhow::Result<String> {
    let python = settings.venv.join("bin/python");
    let pip_version = |python: &Path| -> Option<String> {
        let out = Command::new(python)
            .args(["-m", "pip", "show", "litellm"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Version:"))
            .map(|v| v.trim().to_string())
    };
    let wanted = settings
        .spec
        .split("==")
        .nth(1)
        .map(|v| v.trim().to_string());
    if settings.venv.join("bin/litellm").is_file()
        && let Some(have) = pip_version(&python)
        && wanted.as_ref().is_none_or(|w| *w == have)
    {
        eprintln!(
            "[bench] LiteLLM {have} already installed in {}",
            settings.venv.display()
        );
        return Ok(have);
    }
    if !python.is_file() {
        eprintln!(
            "[bench] creating the virtualenv {}",
            settings.venv.display()
        );
        let mut venv = Command::new("python3");
        venv.arg("-m").arg("venv").arg(&settings.venv);
        procs::run_bounded("python3 -m venv", venv, Duration::from_secs(180))
            .context("cannot create the virtualenv (is python3 with venv installed?)")?;
    }
    eprintln!(
        "[bench] installing {} into {} (a few minutes the first time)",
        settings.spec,
        settings.venv.display()
    );
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        &settings.spec,
    ]);
    procs::run_bounded("pip install", pip, Duration::from_secs(1200))
        .with_context(|| format!("pip could not install {}", settings.spec))?;
    pip_version(&python).context("pip reported success but litellm is not installed")
}

impl LiteLlm {
    pub async fn start(settings: &LiteLlmSettings, mock_base_url: &str) -> anyhow::Result<LiteLlm> {
        let config = procs::scratch("aigw-bench-litellm-")?;
        let yaml = format!(
            "# Written by aigw-bench: one model on the mock upstream.\n\
             model_list:\n  - model_name: {FIXED_MODEL}\n    litellm_params:\n      \
             model: openai/{FIXED_MODEL}\n      api_base: {mock_base_url}\n      \
             api_key: {KEY}\n\
             litellm_settings:\n  drop_params: true\n  telemetry: false\n"
        );
        let config_path = config.path().join("config.yaml");
        std::fs::write(&config_path, yaml)?;
        // A free loopback port (released just before LiteLLM binds it).
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new(settings.venv.join("bin/litellm"));
        command
            .arg("--config")
            .arg(&config_path)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--num_workers", &settings.workers.to_string()])
            .args(["--telemetry", "False"])
            .current_dir(config.path())
            // Offline: the bundled price map instead of a fetch from the internet.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_LOG", "ERROR")
            .env("PYTHONUNBUFFERED", "1");
        for var in CLEARED_ENV {
            command.env_remove(var);
        }
        let mut proc = ChildProc::spawn("litellm", command)?;
        let base = format!("http://127.0.0.1:{port}");
        let client = load::client();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok((200, _)) = get(
                &client,
                &format!("{base}/health/liveliness"),
                Duration::from_secs(2),
            )
            .await
            {
                break;
            }
            if !proc.is_running() {
                bail!(
                    "LiteLLM exited while starting ({}); its output:\n{}\n{}",
                    proc.exit_status(),
                    proc.stdout_tail(20),
                    proc.stderr_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "LiteLLM did not answer /health/liveliness within 180 s; its output:\n{}\n{}",
                    proc.stdout_tail(20),
                    proc.stderr_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(LiteLlm {
            proc,
            base,
            _config: config,
        })
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }
}
