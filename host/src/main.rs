//! `ai-gateway`: serve the gateway, or check configuration and plugin components.

use ai_gateway::cache::{Embedder, ResponseCache};
use ai_gateway::config::Config;
use ai_gateway::mcp::GatewayMcp;
use ai_gateway::pipeline::Gateway;
use ai_gateway::plugin_kit::{self, scaffold::World};
use ai_gateway::plugins::bindings::adapter::AuthScheme;
use ai_gateway::plugins::{ComponentKind, PluginRuntime, Registry, ReloadOutcome, component};
use ai_gateway::routing::task_classifier::TaskClassifier;
use ai_gateway::{api, reload};
use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand, ValueEnum};
use rmcp::ServiceExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ai-gateway",
    version,
    about = "An AI gateway with WebAssembly provider adapters and routing policies"
)]
struct Cli {
    /// Log format: `text` on stderr, or `json`: Cloud Logging structured entries, on stdout for
    /// `serve` (stderr otherwise).
    #[arg(long, global = true, env = "AIGW_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server.
    Serve {
        /// The configuration directory (or its gateway.toml).
        #[arg(long, env = "AIGW_CONFIG", default_value = "config")]
        config: PathBuf,
        /// Where the gateway writes everything it writes (compiled components, the cache
        /// snapshot, ...).
        #[arg(long, env = "AIGW_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The semantic cache's embedding model (what `.ci/setup` fetches); default
        /// `<data-dir>/models`.
        #[arg(long, env = "AIGW_MODEL_DIR")]
        model_dir: Option<PathBuf>,
    },
    /// Serve MCP on stdin/stdout (for Claude Code, Claude Desktop and other MCP clients that
    /// launch their servers). Logs go to stderr.
    Mcp {
        #[arg(long, env = "AIGW_CONFIG", default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "AIGW_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The semantic cache's embedding model; default `<data-dir>/models`.
        #[arg(long, env = "AIGW_MODEL_DIR")]
        model_dir: Option<PathBuf>,
        /// The API key id this session is accounted to (budgets, rate limits, usage reports).
        #[arg(long, env = "AIGW_MCP_KEY_ID")]
        key_id: Option<String>,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Plugin component commands.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and report every problem.
    Check {
        #[arg(long, env = "AIGW_CONFIG", default_value = "config")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginsCommand {
    /// Validate components against the WIT worlds and print what they declare.
    Check {
        /// Component files (`*.wasm`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Create a plugin crate on the guest SDK, ready to build into a component.
    New {
        /// The world the plugin implements.
        world: World,
        /// The plugin's name: its crate name and the file stem the gateway knows it by.
        name: String,
        /// The directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The guest SDK's directory (`sdk/` in the gateway's repository).
        #[arg(long, env = "AIGW_SDK_DIR")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate into a component and print the component's path.
    Build {
        /// The crate's directory or its Cargo.toml.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Also copy the component, atomically, into this directory (a gateway's provider_dir
        /// or policy_dir), as `<name>.wasm`.
        #[arg(long)]
        install: Option<PathBuf>,
    },
    /// Compile every component of a configuration into a data directory's compiled-component
    /// cache, so a gateway started on it loads them without compiling (container images).
    Precompile {
        #[arg(long, env = "AIGW_CONFIG", default_value = "config")]
        config: PathBuf,
        #[arg(long, env = "AIGW_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Show every component a running gateway has loaded.
    List {
        /// The gateway's base URL.
        #[arg(long, env = "AIGW_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// An API key of the gateway (`AIGW_API_KEYS` on its side).
        #[arg(long, env = "AIGW_API_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Serve { .. }));
    let result = match cli.command {
        Command::Serve {
            config,
            data_dir,
            model_dir,
        } => {
            let model_dir = model_dir.unwrap_or_else(|| data_dir.join("models"));
            serve(&config, &data_dir, &model_dir)
        }
        Command::Mcp {
            config,
            data_dir,
            model_dir,
            key_id,
        } => {
            let model_dir = model_dir.unwrap_or_else(|| data_dir.join("models"));
            serve_mcp_stdio(&config, &data_dir, &model_dir, key_id)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => check_config(&config),
        Command::Plugins { command } => match command {
            PluginsCommand::Check { files } => check_plugins(&files),
            PluginsCommand::New {
                world,
                name,
                dir,
                sdk,
            } => new_plugin(world, &name, &dir, sdk),
            PluginsCommand::Build { path, install } => build_plugin(&path, install.as_deref()),
            PluginsCommand::List { url, key } => list_plugins(&url, key.as_deref()),
            PluginsCommand::Precompile { config, data_dir } => precompile(&config, &data_dir),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, except JSON logs of `serve`, which go to stdout where Cloud Run's log
/// agent reads structured entries. (MCP on stdio owns stdout, so it always logs to stderr.)
fn init_logging(format: LogFormat, stdout_allowed: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_writer(std::io::stderr).init(),
        LogFormat::Json => {
            let builder = builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(ai_gateway::logging::CloudLoggingJson::from_env());
            if stdout_allowed {
                builder.with_writer(std::io::stdout).init();
            } else {
                builder.with_writer(std::io::stderr).init();
            }
        }
    }
}

/// A running gateway service, the watcher that hot-reloads its components and config, and the
/// task that snapshots its cache.
struct Started {
    gateway: Arc<Gateway>,
    cache: Arc<ResponseCache>,
    snapshots: tokio::task::JoinHandle<()>,
    _watcher: reload::ReloadWatcher,
}

/// Builds the gateway service and loads its components: everything but the front doors.
async fn start_gateway(
    config: Config,
    data_dir: &Path,
    model_dir: &Path,
) -> anyhow::Result<Started> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let plugin_runtime = Arc::new(PluginRuntime::new(data_dir.join("compiled"))?);
    let registry = Arc::new(Registry::new(plugin_runtime));
    let cache_settings = config.gateway.cache.clone();
    let cache = {
        let (data_dir, model_dir) = (data_dir.to_path_buf(), model_dir.to_path_buf());
        tokio::task::spawn_blocking(move || {
            ResponseCache::open(&data_dir, &model_dir, &cache_settings)
        })
        .await?
    };
    let cache = Arc::new(cache);
    let classifier = Arc::new(TaskClassifier::new(
        task_embedder(&cache, model_dir, &config).await?,
    ));
    let gateway = Arc::new(
        Gateway::new(config, registry, data_dir)?
            .with_cache(cache.clone())
            .with_classifier(classifier),
    );
    // In the background: embedding the examples takes about a second, and until it is done
    // requests are classified by keywords (their `x-gateway-task-source` says so).
    let trainer = gateway.clone();
    tokio::spawn(async move { trainer.train_classifier().await });
    let snapshots = ResponseCache::spawn_snapshots(
        cache.clone(),
        Duration::from_millis(gateway.config().config.gateway.cache.snapshot_interval_ms),
    );
    let loader = gateway.clone();
    tokio::task::spawn_blocking(move || loader.load_components()).await?;
    let watcher = reload::watch(gateway.clone())?;
    // Off the start-up path: the first request would otherwise load the tokenizer.
    tokio::task::spawn_blocking(ai_gateway::tokens::warm_up);
    Ok(Started {
        gateway,
        cache,
        snapshots,
        _watcher: watcher,
    })
}

impl Started {
    /// After the front door has stopped: write every queued ledger record and the cache.
    async fn finish(self) -> anyhow::Result<()> {
        self.gateway.flush_ledger().await;
        self.snapshots.abort();
        let cache = self.cache;
        tokio::task::spawn_blocking(move || cache.save_if_changed()).await?;
        Ok(())
    }
}

fn serve(config_path: &Path, data_dir: &Path, model_dir: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let mut addr: SocketAddr = config
        .gateway
        .server
        .listen
        .parse()
        .context("server.listen")?;
    if let Some(port) = std::env::var("PORT").ok().filter(|p| !p.is_empty()) {
        addr.set_port(
            port.parse()
                .with_context(|| format!("PORT '{port}' is not a port number"))?,
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = start_gateway(config, data_dir, model_dir).await?;
        let gateway = started.gateway.clone();

        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, "ai-gateway is serving");
        // A plain line on stdout, so scripts and tests can learn the port when it was 0.
        println!("listening on http://{bound}");

        let draining = gateway.clone();
        let keys = api::ApiKeys::from_env();
        if keys.enabled() {
            tracing::info!("API keys are required on every endpoint but /health");
        } else {
            tracing::warn!(
                "no API keys configured ({}): every endpoint is open to anyone who can reach it",
                api::auth::KEYS_ENV
            );
        }
        // Without TCP_NODELAY, small stream chunks wait for the client's delayed ACK (~40 ms).
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        });
        let grace = Duration::from_millis(gateway.config().config.gateway.server.shutdown_grace_ms);
        let (draining_started, drain_deadline) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(listener, api::router(gateway.clone(), keys))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!(
                    grace_ms = grace.as_millis() as u64,
                    "shutting down: no new connections, finishing the requests in flight"
                );
                draining.start_draining();
                let _ = draining_started.send(());
            })
            .into_future();
        tokio::select! {
            result = server => result?,
            () = async {
                if drain_deadline.await.is_ok() {
                    tokio::time::sleep(grace).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {
                tracing::warn!(
                    "the shutdown grace period ended with requests still in flight; they are cut"
                );
            }
        }
        // Every request has finished (or was cut) and queued its usage records: write them
        // all, and the cache.
        started.finish().await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// MCP over stdio: one session, ended by the client closing stdin (or a signal).
fn serve_mcp_stdio(
    config_path: &Path,
    data_dir: &Path,
    model_dir: &Path,
    key_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let started = start_gateway(config, data_dir, model_dir).await?;
        let server = GatewayMcp::new(started.gateway.clone(), key_id)
            .serve(rmcp::transport::stdio())
            .await
            .context("the MCP handshake on stdio failed")?;
        tracing::info!("ai-gateway MCP server is serving on stdio");
        let cancel = server.cancellation_token();
        tokio::select! {
            result = server.waiting() => {
                result.context("the MCP stdio session failed")?;
            }
            () = shutdown_signal() => {
                cancel.cancel();
            }
        }
        started.gateway.start_draining();
        started.finish().await?;
        tracing::info!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The embedder task classification uses: the cache's when it loaded one (one model in
/// memory, one embedding per request), else its own when there are examples to use it with.
async fn task_embedder(
    cache: &ResponseCache,
    model_dir: &Path,
    config: &Config,
) -> anyhow::Result<Option<Embedder>> {
    if let Some(embedder) = cache.embedder() {
        return Ok(Some(embedder.clone()));
    }
    if config.tasks.is_none() || config.gateway.cache.semantic {
        // Without examples there is nothing to embed for; with the semantic tier on, the
        // cache already tried to load the model and said why it could not.
        return Ok(None);
    }
    let (model_dir, threads) = (
        model_dir.to_path_buf(),
        config.gateway.cache.embedding_threads,
    );
    let loaded = tokio::task::spawn_blocking(move || Embedder::load(&model_dir, threads)).await?;
    Ok(match loaded {
        Ok(embedder) => Some(embedder),
        Err(e) => {
            tracing::warn!("task classification by keywords, no embedding model: {e}");
            None
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    match Config::load(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} providers, {} models, default policy '{}')",
                config.dir.display(),
                config.providers.len(),
                config.models.len(),
                config.gateway.routing.default_policy
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check_plugins(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // Compiled artifacts go to a throw-away directory: checking writes nothing of the user's.
    let scratch = tempfile::tempdir()?;
    let runtime = PluginRuntime::new(scratch.path().to_path_buf())?;
    let limits = Gateway::call_limits(&default_limits_config());
    let mut failed = false;
    for file in files {
        match component::load(&runtime, file, None, limits) {
            Ok(loaded) => {
                println!("{}: ok", file.display());
                println!("  world:       {}", loaded.kind());
                println!("  wit:         aigw:plugin@{}", loaded.wit_version);
                if let Some(info) = loaded.adapter_info() {
                    println!("  name:        {} ({})", info.name, info.description);
                    println!("  auth scheme: {}", auth_scheme(&info.auth));
                    println!("  base url:    {}", info.default_base_url);
                }
                if let Some(info) = loaded.policy_info() {
                    println!("  name:        {} ({})", info.name, info.description);
                    println!("  auth scheme: none (policies receive no credentials)");
                }
                println!("  sha256:      {}", loaded.sha256);
            }
            Err(e) => {
                failed = true;
                eprintln!("{}: rejected: {e:#}", file.display());
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn new_plugin(
    world: World,
    name: &str,
    parent: &Path,
    sdk: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let sdk = sdk.or_else(plugin_kit::scaffold::bundled_sdk_dir).context(
        "cannot find the guest SDK: pass --sdk <gateway checkout>/sdk (or set AIGW_SDK_DIR)",
    )?;
    let dir = plugin_kit::scaffold::new_plugin(world, name, parent, &sdk)?;
    println!("created {}", dir.display());
    println!("build it with: ai-gateway plugins build {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn build_plugin(path: &Path, install: Option<&Path>) -> anyhow::Result<ExitCode> {
    let built = plugin_kit::build::build(path)?;
    match install {
        Some(dir) => {
            let installed = plugin_kit::build::install(&built, dir)?;
            println!("{}", installed.display());
        }
        None => println!("{}", built.wasm.display()),
    }
    Ok(ExitCode::SUCCESS)
}

fn list_plugins(url: &str, key: Option<&str>) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reports = runtime.block_on(plugin_kit::inventory::fetch(url, key))?;
    print!("{}", plugin_kit::inventory::render(&reports));
    Ok(ExitCode::SUCCESS)
}

fn precompile(config_path: &Path, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    let compiled = data_dir.join("compiled");
    std::fs::create_dir_all(&compiled)
        .with_context(|| format!("cannot create {}", compiled.display()))?;
    let runtime = Arc::new(PluginRuntime::new(compiled.clone())?);
    let registry = Registry::new(runtime);
    let limits = Gateway::call_limits(&config);
    let mut failed = false;
    for (dir, kind) in [
        (config.provider_dir(), ComponentKind::Provider),
        (config.policy_dir(), ComponentKind::Policy),
    ] {
        for outcome in registry.load_dir(&dir, kind, limits) {
            match outcome {
                ReloadOutcome::Loaded { name, sha256 } => {
                    println!(
                        "{kind} {name}: compiled ({})",
                        &sha256[..12.min(sha256.len())]
                    );
                }
                ReloadOutcome::Failed { name, reason } => {
                    failed = true;
                    eprintln!("{kind} {name}: {reason}");
                }
                ReloadOutcome::Unchanged { .. }
                | ReloadOutcome::Removed { .. }
                | ReloadOutcome::Ignored => {}
            }
        }
    }
    println!("compiled components are in {}", compiled.display());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn auth_scheme(auth: &AuthScheme) -> String {
    match auth {
        AuthScheme::None => "none".into(),
        AuthScheme::Bearer => "bearer (Authorization: Bearer <key>)".into(),
        AuthScheme::Header(name) => format!("header ({name}: <key>)"),
        AuthScheme::Query(param) => format!("query (?{param}=<key>)"),
    }
}

/// Limits for `plugins check`: the defaults a gateway runs with.
fn default_limits_config() -> Config {
    Config {
        dir: PathBuf::from("."),
        gateway: Default::default(),
        providers: Default::default(),
        models: Vec::new(),
        tasks: None,
    }
}
