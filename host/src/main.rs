//! `ai-gateway`: serve the gateway, or check configuration and plugin components.

use ai_gateway::cache::{Embedder, ResponseCache};
use ai_gateway::config::Config;
use ai_gateway::pipeline::Gateway;
use ai_gateway::plugins::bindings::adapter::AuthScheme;
use ai_gateway::plugins::{PluginRuntime, Registry, component};
use ai_gateway::routing::task_classifier::TaskClassifier;
use ai_gateway::{api, reload};
use anyhow::Context;
use axum::serve::ListenerExt;
use clap::{Parser, Subcommand, ValueEnum};
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
    /// Log format on stderr.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve {
            config,
            data_dir,
            model_dir,
        } => {
            let model_dir = model_dir.unwrap_or_else(|| data_dir.join("models"));
            serve(&config, &data_dir, &model_dir)
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => check_config(&config),
        Command::Plugins {
            command: PluginsCommand::Check { files },
        } => check_plugins(&files),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIGW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn serve(config_path: &Path, data_dir: &Path, model_dir: &Path) -> anyhow::Result<ExitCode> {
    let config = Config::load(config_path)?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
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
            Gateway::new(config, registry)?
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
        let _watcher = reload::watch(gateway.clone())?;
        // Off the start-up path: the first request would otherwise load the tokenizer.
        tokio::task::spawn_blocking(ai_gateway::tokens::warm_up);

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
        axum::serve(listener, api::router(gateway, keys))
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutting down: draining in-flight requests");
                draining.start_draining();
            })
            .await?;
        snapshots.abort();
        tokio::task::spawn_blocking(move || cache.save_if_changed()).await?;
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
