//! The gateway service: one object that both front doors (HTTP and MCP) call, holding the
//! request path: route → adapter builds the request → host sends it → adapter parses the
//! answer → failover on retryable errors → metrics.

mod accounting;
mod attempt;
mod cached;
mod failover;
mod stream;
mod usage;

use attempt::Attempt;

pub use accounting::LimitError;
pub use cached::CacheStatus;
pub use stream::{CompletionStream, StreamChunk};
pub use usage::CostEstimate;

use crate::budget::Budgets;
use crate::cache::{CacheControls, Lookup, Pending, ResponseCache, StoredResponse};
use crate::config::{Config, ModelConfig, TaskClass};
use crate::ledger::{Ledger, Outcome};
use crate::metrics::{
    FaultLabels, KindLabels, Metrics, ModelLabels, PolicyLabels, ProviderLabels, RequestLabels,
    TaskLabels,
};
use crate::plugins::bindings::adapter::ProviderContext;
use crate::plugins::bindings::types::{
    CompletionRequest, CompletionResponse, ContentPart, ErrorClass, FinishReason, ProviderError,
    ResponseFormat, Role,
};
use crate::plugins::{
    CallLimits, ComponentKind, ComponentSet, PluginFault, Registry, ReloadOutcome,
};
use crate::providers::{Credentials, TransportError, UpstreamClient, read_response};
use crate::ratelimit::RateLimits;
use crate::routing::stats::ModelStats;
use crate::routing::task_classifier::{TaskClassifier, TaskSource, TaskVerdict};
use crate::routing::{RequestFeatures, Requirements, Route, RouteError, Router};
use arc_swap::ArcSwap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The output-token limit requested from providers that require one when the caller set none.
const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 8192;

/// Config and the credentials resolved for it, swapped together on reload.
pub struct ConfigState {
    pub config: Config,
    pub credentials: Credentials,
}

/// A completion request as the front doors hand it in.
#[derive(Debug, Clone)]
pub struct CompletionInput {
    /// A catalog model id, or `auto`.
    pub model: String,
    /// The unified request; its `model` field is filled per attempt.
    pub request: CompletionRequest,
    /// A policy component to rank with instead of the default.
    pub policy: Option<String>,
    pub requirements: Requirements,
    /// The caller's key id (never the key), for per-tenant routing and cache scoping.
    pub api_key_id: Option<String>,
    pub cache: CacheControls,
}

/// How the route was chosen, for explainability headers and fields.
#[derive(Debug, Clone)]
pub struct RouteSummary {
    pub policy: String,
    pub reason: String,
    pub scores: Vec<(String, f64)>,
    pub task: TaskClass,
    pub task_confidence: f32,
    pub task_source: TaskSource,
}

/// A successful completion.
#[derive(Debug, Clone)]
pub struct Completion {
    pub response: CompletionResponse,
    /// The catalog id of the model that answered.
    pub model: String,
    pub provider: String,
    pub route: RouteSummary,
    /// Upstream attempts made, including the successful one.
    pub attempts: u32,
    pub cost_usd: f64,
    pub latency: Duration,
    pub cache: CacheStatus,
}

/// A completion as the gateway's own front doors report it (`POST /unified_completion` and the
/// MCP `unified_completion` tool): the answer plus what it cost and why it went where it went.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CompletionSummary {
    pub text: String,
    pub model: String,
    pub provider: String,
    pub finish_reason: &'static str,
    pub tool_calls: Vec<ToolCallSummary>,
    pub tokens: TokenSummary,
    pub cost_usd: f64,
    /// Whether the answer came from the gateway's cache.
    pub cached: bool,
    /// For a cached answer, how close the prompt was to the cached one (1 for identical).
    pub cache_similarity: Option<f32>,
    pub latency_ms: u64,
    pub attempts: u32,
    pub routing: RoutingSummary,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ToolCallSummary {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct TokenSummary {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    /// True when counted by the gateway because the provider reported none.
    pub estimated: bool,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct RoutingSummary {
    pub policy: String,
    pub reason: String,
    pub task: &'static str,
    pub task_confidence: f32,
    /// `embedding` (nearest example centroid) or `keywords` (the fallback).
    pub task_source: &'static str,
    pub candidates: Vec<CandidateScore>,
}

#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CandidateScore {
    pub model: String,
    pub score: f64,
}

impl Completion {
    pub fn summary(&self) -> CompletionSummary {
        let usage = self.response.usage.as_ref();
        CompletionSummary {
            text: output_text_only(&self.response),
            model: self.model.clone(),
            provider: self.provider.clone(),
            finish_reason: match self.response.finish_reason {
                FinishReason::Stop | FinishReason::Other => "stop",
                FinishReason::Length => "length",
                FinishReason::ToolCalls => "tool_calls",
                FinishReason::ContentFilter => "content_filter",
            },
            tool_calls: self
                .response
                .tool_calls
                .iter()
                .map(|c| ToolCallSummary {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
            tokens: TokenSummary {
                input: usage.map_or(0, |u| u.input_tokens),
                cached_input: usage.map_or(0, |u| u.cached_input_tokens),
                output: usage.map_or(0, |u| u.output_tokens),
                estimated: usage.is_some_and(|u| u.estimated),
            },
            cost_usd: self.cost_usd,
            cached: self.cache.is_hit(),
            cache_similarity: self.cache.similarity(),
            latency_ms: u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
            attempts: self.attempts,
            routing: RoutingSummary {
                policy: self.route.policy.clone(),
                reason: self.route.reason.clone(),
                task: self.route.task.as_str(),
                task_confidence: self.route.task_confidence,
                task_source: self.route.task_source.as_str(),
                candidates: self
                    .route
                    .scores
                    .iter()
                    .map(|(model, score)| CandidateScore {
                        model: model.clone(),
                        score: *score,
                    })
                    .collect(),
            },
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("{provider} ({model}): {message}")]
    Upstream {
        class: ErrorClass,
        message: String,
        status: Option<u16>,
        retry_after_ms: Option<u64>,
        provider: String,
        model: String,
    },
    #[error("{provider} ({model}): {fault}")]
    Plugin {
        fault: PluginFault,
        provider: String,
        model: String,
        /// The fault happened while building the upstream request from the client's request.
        building: bool,
    },
    /// Something inside the gateway failed; nothing the caller or provider did.
    #[error("internal gateway error: {0}")]
    Internal(String),
    /// The adapter cannot express this request for its provider (e.g. a response format the
    /// API lacks): another candidate may.
    #[error("{provider} ({model}) cannot serve this request: {message}")]
    Unsupported {
        message: String,
        provider: String,
        model: String,
    },
    /// A budget or rate limit refused the request before any upstream call.
    #[error(transparent)]
    Limit(#[from] LimitError),
}

impl GatewayError {
    /// Whether the next candidate may be tried after this error.
    fn retryable(&self) -> bool {
        match self {
            GatewayError::Upstream { class, .. } => !matches!(
                class,
                ErrorClass::Auth | ErrorClass::BadRequest | ErrorClass::ContentFiltered
            ),
            // A fault on the client's request recurs on the same adapter; the next candidate may
            // use another one.
            GatewayError::Plugin { .. } | GatewayError::Unsupported { .. } => true,
            GatewayError::InvalidRequest { .. }
            | GatewayError::Route(_)
            | GatewayError::Internal(_)
            | GatewayError::Limit(_) => false,
        }
    }

    /// A short label for metrics and logs.
    pub fn class_label(&self) -> &'static str {
        match self {
            GatewayError::InvalidRequest { .. } => "invalid_request",
            GatewayError::Route(_) => "no_route",
            GatewayError::Plugin { .. } => "plugin_fault",
            GatewayError::Unsupported { .. } => "unsupported",
            GatewayError::Internal(_) => "internal",
            GatewayError::Upstream { class, .. } => error_class_label(*class),
            GatewayError::Limit(LimitError::Budget(_)) => "budget_exceeded",
            GatewayError::Limit(LimitError::RateLimited(_)) => "throttled",
        }
    }
}

pub fn error_class_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::RateLimited => "rate_limited",
        ErrorClass::Auth => "auth",
        ErrorClass::BadRequest => "bad_request",
        ErrorClass::ContextTooLong => "context_too_long",
        ErrorClass::ContentFiltered => "content_filtered",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Overloaded => "overloaded",
        ErrorClass::Server => "server",
        ErrorClass::Timeout => "timeout",
        ErrorClass::InvalidResponse => "invalid_response",
    }
}

/// Why a provider with a key but no configured base URL is not used.
pub fn key_without_base_url(provider: &str) -> String {
    format!(
        "provider '{provider}' has an API key but no base_url in providers.toml (or its \
         base_url_env): the gateway does not let an adapter component choose where a key is sent"
    )
}

/// A provider as `GET /v1/providers` (and MCP's `get_provider_status`) reports it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ProviderStatus {
    pub id: String,
    pub adapter: String,
    /// Why it cannot be used (no key, adapter not loaded, disabled), if it cannot.
    pub unavailable: Option<String>,
    pub circuit: &'static str,
    /// Set while the circuit is open or a rate-limit back-off runs.
    pub backing_off: Option<String>,
    pub success_rate: f64,
    pub ewma_latency_ms: Option<f64>,
    pub models: Vec<String>,
}

/// One routing decision with the snapshot it was made against, and the prompt's token count.
type Routed = (
    Arc<ConfigState>,
    Arc<ComponentSet>,
    CallLimits,
    Route,
    RouteSummary,
    u64,
);

fn empty_route() -> GatewayError {
    GatewayError::Route(RouteError::NoCandidate {
        reasons: vec!["the route was empty".into()],
    })
}

pub struct Gateway {
    state: ArcSwap<ConfigState>,
    registry: Arc<Registry>,
    upstream: UpstreamClient,
    stats: ModelStats,
    cache: Arc<ResponseCache>,
    classifier: Arc<TaskClassifier>,
    pub metrics: Metrics,
    loaded: AtomicBool,
    draining: AtomicBool,
    ledger: Ledger,
    budgets: Arc<Budgets>,
    rate_limits: RateLimits,
    /// Cancelled when draining starts, so long-lived streams (MCP's SSE) end and let the
    /// server shut down.
    shutdown: CancellationToken,
}

/// What `/ready` and MCP's `health_check` report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Readiness {
    /// Components loaded and not draining.
    pub ready: bool,
    pub draining: bool,
    /// Loaded provider adapters and policies, by name.
    pub providers: Vec<String>,
    pub policies: Vec<String>,
    /// Component files that failed to load, with the reason.
    pub load_errors: Vec<String>,
}

impl Gateway {
    /// A gateway whose usage ledger lives in `data_dir`; budgets start from the spend the ledger
    /// holds for the current day and month.
    pub fn new(config: Config, registry: Arc<Registry>, data_dir: &Path) -> anyhow::Result<Self> {
        let upstream = UpstreamClient::new(&config.gateway.upstream)?;
        let credentials = Credentials::from_env(&config);
        let metrics = Metrics::default();
        let ledger = Ledger::open(data_dir, &config.gateway.ledger, metrics.ledger.clone())?;
        let budgets = Arc::new(Budgets::new(metrics.budgets.clone()));
        Self::preload_budgets(&ledger, &budgets)?;
        let rate_limits = RateLimits::new(metrics.rate_limits.clone());
        Ok(Gateway {
            state: ArcSwap::from_pointee(ConfigState {
                config,
                credentials,
            }),
            registry,
            upstream,
            stats: ModelStats::default(),
            cache: Arc::new(ResponseCache::in_memory(None)),
            classifier: Arc::new(TaskClassifier::keywords_only()),
            metrics,
            loaded: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            ledger,
            budgets,
            rate_limits,
        })
    }

    fn preload_budgets(ledger: &Ledger, budgets: &Budgets) -> anyhow::Result<()> {
        use crate::budget::{Period, Scope};
        let now = crate::ledger::now_ms();
        for period in [Period::Day, Period::Month] {
            for (key, team, spent) in ledger.spend_since(period.start(now))? {
                if let Some(key) = key {
                    budgets.preload(Scope::Key(key), period, spent, now);
                }
                if let Some(team) = team {
                    budgets.preload(Scope::Team(team), period, spent, now);
                }
            }
        }
        Ok(())
    }

    /// Serves and stores answers through `cache` (by default an in-memory, exact-only one).
    pub fn with_cache(mut self, cache: Arc<ResponseCache>) -> Self {
        self.cache = cache;
        self
    }

    pub fn cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }

    /// Classifies tasks with `classifier` (by default, keywords only).
    pub fn with_classifier(mut self, classifier: Arc<TaskClassifier>) -> Self {
        self.classifier = classifier;
        self
    }

    /// Trains the task classifier on the current config's examples (at start; config reloads
    /// retrain by themselves).
    pub async fn train_classifier(&self) {
        let tasks = self.config().config.tasks.clone();
        match self.classifier.train(tasks.as_ref()).await {
            Ok(_) if self.classifier.centroids().is_some() => {
                tracing::info!("task classifier trained on the examples in tasks.toml")
            }
            Ok(_) if tasks.is_none() => {
                tracing::info!("task classification by keywords: there is no tasks.toml")
            }
            Ok(_) => tracing::info!("task classification by keywords: no embedding model"),
            Err(e) => tracing::warn!("task classification by keywords: {e}"),
        }
    }

    /// Classifies the request's last user turn, reusing the cache's embedding of it if the
    /// lookup computed one.
    async fn classify_task(
        &self,
        input: &CompletionInput,
        pending: Option<&Pending>,
    ) -> TaskVerdict {
        let text = last_user_text(&input.request);
        let verdict = self
            .classifier
            .classify(&text, pending.and_then(Pending::embedding))
            .await;
        self.metrics
            .task_classifications
            .get_or_create(&TaskLabels {
                task: verdict.task.as_str().into(),
                source: verdict.source.as_str().into(),
            })
            .inc();
        if verdict.embedded_here {
            self.metrics.task_embeddings.inc();
        }
        verdict
    }

    pub fn config(&self) -> Arc<ConfigState> {
        self.state.load_full()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn call_limits(config: &Config) -> CallLimits {
        let plugins = &config.gateway.plugins;
        CallLimits {
            timeout: Duration::from_millis(plugins.call_timeout_ms),
            memory_bytes: usize::try_from(plugins.memory_limit_mib)
                .unwrap_or(usize::MAX / (1024 * 1024))
                .saturating_mul(1024 * 1024),
        }
    }

    /// Loads every component in the configured directories. Called once at start-up.
    pub fn load_components(&self) {
        let state = self.config();
        let limits = Self::call_limits(&state.config);
        for (dir, kind) in [
            (state.config.provider_dir(), ComponentKind::Provider),
            (state.config.policy_dir(), ComponentKind::Policy),
        ] {
            for outcome in self.registry.load_dir(&dir, kind, limits) {
                self.report_load(kind, &dir, &outcome, false);
            }
        }
        self.update_component_gauges();
        self.loaded.store(true, Ordering::Release);
    }

    /// Re-reads one component file after a change on disk.
    pub fn reload_component(&self, path: &Path, kind: ComponentKind) {
        let limits = Self::call_limits(&self.config().config);
        let outcome = self.registry.reload(path, kind, limits);
        let dir = path.parent().unwrap_or(Path::new("."));
        self.report_load(kind, dir, &outcome, true);
        self.update_component_gauges();
    }

    /// Logs a load; `is_reload` also counts it in the reload metrics (start-up loads are not
    /// reloads).
    fn report_load(
        &self,
        kind: ComponentKind,
        dir: &Path,
        outcome: &ReloadOutcome,
        is_reload: bool,
    ) {
        let kind_label = kind.to_string();
        let count = |result: &str| {
            if is_reload {
                self.metrics.record_reload(&kind_label, result);
            }
        };
        match outcome {
            ReloadOutcome::Loaded { name, sha256 } => {
                tracing::info!(kind = %kind, component = name, sha256 = &sha256[..12], "component loaded");
                count("loaded");
            }
            ReloadOutcome::Removed { name } => {
                tracing::info!(kind = %kind, component = name, "component file removed; unloaded");
                count("removed");
            }
            ReloadOutcome::Failed { name, reason } => {
                tracing::error!(
                    kind = %kind,
                    component = name,
                    dir = %dir.display(),
                    "component {name}.wasm was not loaded ({reason}); the previous version, if any, keeps serving"
                );
                count("failed");
            }
            ReloadOutcome::Unchanged { .. } | ReloadOutcome::Ignored => {}
        }
    }

    fn update_component_gauges(&self) {
        let set = self.registry.snapshot();
        for (kind, count) in [
            ("provider", set.providers.len()),
            ("policy", set.policies.len()),
        ] {
            self.metrics
                .components_loaded
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Re-reads the config directory. A broken config keeps the old one and says why.
    pub fn reload_config(&self) -> Result<(), crate::config::ConfigError> {
        let current = self.config();
        match Config::load(&current.config.dir) {
            Ok(config) => {
                let old = &current.config.gateway.plugins;
                let new = &config.gateway.plugins;
                if old.provider_dir != new.provider_dir || old.policy_dir != new.policy_dir {
                    tracing::warn!(
                        "plugin directories changed in the config; restart to watch the new ones"
                    );
                }
                let (was, is) = (&current.config.gateway, &config.gateway);
                if was.upstream.connect_timeout_ms != is.upstream.connect_timeout_ms
                    || was.upstream.total_timeout_ms != is.upstream.total_timeout_ms
                    || was.server.max_body_bytes != is.server.max_body_bytes
                    || was.server.listen != is.server.listen
                {
                    tracing::warn!(
                        "server.listen, server.max_body_bytes and upstream connect/total timeouts \
                         changed in the config; they apply after a restart"
                    );
                }
                if was.mcp.allowed_hosts != is.mcp.allowed_hosts
                    || was.mcp.allowed_origins != is.mcp.allowed_origins
                {
                    tracing::warn!(
                        "mcp.allowed_hosts / mcp.allowed_origins changed in the config; they \
                         apply after a restart"
                    );
                }
                let credentials = Credentials::from_env(&config);
                tracing::info!(
                    dir = %config.dir.display(),
                    providers = config.providers.len(),
                    models = config.models.len(),
                    "configuration reloaded"
                );
                let tasks_changed = current.config.tasks != config.tasks;
                self.state.store(Arc::new(ConfigState {
                    config,
                    credentials,
                }));
                if tasks_changed {
                    self.retrain_classifier();
                }
                self.metrics.record_reload("config", "loaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!("configuration not reloaded, the previous one stays in force: {e}");
                self.metrics.record_reload("config", "failed");
                Err(e)
            }
        }
    }

    /// Retrains the task classifier in the background: embedding the examples takes a moment,
    /// and requests keep the previous centroids meanwhile.
    fn retrain_classifier(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("tasks.toml changed but no runtime is there to retrain the classifier");
            return;
        };
        let classifier = self.classifier.clone();
        let tasks = self.config().config.tasks.clone();
        runtime.spawn(async move {
            match classifier.train(tasks.as_ref()).await {
                Ok(true) => tracing::info!("task classifier retrained on the new tasks.toml"),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    "task classifier not retrained, the previous classification stays in force: {e}"
                ),
            }
        });
    }

    /// Every configured provider: whether it can be used, and its live health.
    pub fn provider_status(&self) -> Vec<ProviderStatus> {
        let state = self.config();
        let components = self.registry.snapshot();
        let router = Router {
            config: &state.config,
            credentials: &state.credentials,
            components: &components,
            stats: &self.stats,
            runtime: self.registry.runtime(),
            limits: Self::call_limits(&state.config),
        };
        let now = Instant::now();
        state
            .config
            .providers
            .iter()
            .map(|(id, provider)| {
                let health = self.stats.provider(id);
                ProviderStatus {
                    id: id.clone(),
                    adapter: provider.adapter.clone(),
                    unavailable: router.provider_unavailable(id),
                    circuit: match health.breaker.state(now) {
                        crate::routing::circuit::CircuitState::Closed => "closed",
                        crate::routing::circuit::CircuitState::HalfOpen => "half-open",
                        crate::routing::circuit::CircuitState::Open => "open",
                    },
                    backing_off: health.breaker.available(now).err(),
                    success_rate: health.success_rate(),
                    ewma_latency_ms: health.latency_ms(),
                    models: state
                        .config
                        .models
                        .iter()
                        .filter(|m| &m.provider == id)
                        .map(|m| m.id.clone())
                        .collect(),
                }
            })
            .collect()
    }

    /// Ready once the components have loaded, until draining starts.
    pub fn is_ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.shutdown.cancel();
    }

    /// Cancelled once draining starts.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn readiness(&self) -> Readiness {
        let components = self.registry.snapshot();
        let mut providers: Vec<String> = components.providers.keys().cloned().collect();
        providers.sort();
        let mut policies: Vec<String> = components.policies.keys().cloned().collect();
        policies.sort();
        Readiness {
            ready: self.is_ready(),
            draining: self.draining.load(Ordering::Acquire),
            providers,
            policies,
            load_errors: self
                .registry
                .errors()
                .into_iter()
                .map(|(path, why)| format!("{}: {why}", path.display()))
                .collect(),
        }
    }

    /// The metrics in Prometheus text format, with the circuit gauges read fresh.
    pub fn metrics_text(&self) -> String {
        let now = Instant::now();
        for provider in self.config().config.providers.keys() {
            let state = match self.stats.provider(provider).breaker.state(now) {
                crate::routing::circuit::CircuitState::Closed => 0,
                crate::routing::circuit::CircuitState::HalfOpen => 1,
                crate::routing::circuit::CircuitState::Open => 2,
            };
            self.metrics
                .circuit_state
                .get_or_create(&ProviderLabels {
                    provider: provider.clone(),
                })
                .set(state);
        }
        self.metrics.encode()
    }

    /// Routes a request against one consistent snapshot of config and components.
    fn route(&self, input: &CompletionInput, task: TaskVerdict) -> Result<Routed, GatewayError> {
        let state = self.config();
        let components = self.registry.snapshot();
        let config = &state.config;
        let limits = Self::call_limits(config);
        let features = features_of(input, task);
        let route = Router {
            config,
            credentials: &state.credentials,
            components: &components,
            stats: &self.stats,
            runtime: self.registry.runtime(),
            limits,
        }
        .route(&features, input.policy.as_deref())
        .map_err(|e| self.route_error(config, input, e))?;
        let prompt_tokens = features.estimated_input_tokens;
        if let Some(why) = &route.policy_fallback {
            tracing::warn!(
                policy = route.policy,
                "policy answer unusable, fell back: {why}"
            );
            self.metrics
                .policy_fallbacks
                .get_or_create(&PolicyLabels {
                    policy: input
                        .policy
                        .clone()
                        .unwrap_or_else(|| config.gateway.routing.default_policy.clone()),
                })
                .inc();
        }
        let summary = RouteSummary {
            policy: route.policy.clone(),
            reason: route.reason.clone(),
            scores: route.scores.clone(),
            task: features.task,
            task_confidence: features.task_confidence,
            task_source: task.source,
        };
        Ok((state, components, limits, route, summary, prompt_tokens))
    }

    /// Routes and runs one completion, failing over along the ranked chain.
    pub async fn complete(&self, input: CompletionInput) -> Result<Completion, GatewayError> {
        let started = Instant::now();
        let pending = match self.cache_lookup(&input).await {
            Lookup::Hit(hit) => return Ok(self.completion_from_hit(hit, &input, started)),
            Lookup::Miss(pending) => Some(pending),
            Lookup::Bypass => None,
        };
        let task = self.classify_task(&input, pending.as_ref()).await;
        let (state, components, limits, route, summary, prompt_tokens) =
            self.route(&input, task)?;
        let (meta, reservation) = self.admit(&state, &input, &route, &summary, prompt_tokens)?;
        let won = self
            .failover(&route, &state.config, started, &meta, |model| {
                let (state, components, request) = (&state, &components, &input.request);
                async move {
                    let attempt_started = Instant::now();
                    let response = self
                        .attempt(state, components, model, request, limits)
                        .await?;
                    Ok((response, attempt_started.elapsed()))
                }
            })
            .await;
        let won = match won {
            Ok(won) => won,
            Err(error) => {
                self.record_final_error(&route, &error);
                return Err(error);
            }
        };
        let (mut response, upstream_latency) = won.value;
        let model = won.model;
        if response.usage.is_none() {
            response.usage = Some(crate::tokens::estimate_usage(
                &input.request,
                &output_text(&response),
            ));
        }
        let latency = started.elapsed();
        self.record_latency(model, upstream_latency, None);
        let cost_usd = self.account(
            &meta,
            model,
            &accounting::AttemptUsage {
                usage: response.usage.as_ref(),
                latency: upstream_latency,
                ttft: None,
                outcome: Outcome::Ok,
                error_class: None,
            },
        );
        reservation.settle(cost_usd, self.alert_webhook().as_deref());
        self.record_success(model, latency);
        let cache = match pending {
            Some(pending) => {
                let stored = StoredResponse::from_response(&response);
                self.cache_store(pending, stored, &model.id, &model.provider, cost_usd);
                CacheStatus::Miss
            }
            None => CacheStatus::Bypass,
        };
        Ok(Completion {
            response,
            model: model.id.clone(),
            provider: model.provider.clone(),
            route: summary,
            attempts: won.attempts,
            cost_usd,
            latency,
            cache,
        })
    }

    /// Resolves everything one attempt on `model` needs from the current snapshot.
    fn prepare_attempt(
        &self,
        state: &ConfigState,
        components: &ComponentSet,
        model: &ModelConfig,
        limits: CallLimits,
    ) -> Result<Attempt, GatewayError> {
        let gone =
            |why: String| GatewayError::Route(RouteError::NoCandidate { reasons: vec![why] });
        let provider = state.config.providers.get(&model.provider).ok_or_else(|| {
            gone(format!(
                "provider '{}' vanished from the config",
                model.provider
            ))
        })?;
        let adapter = components
            .providers
            .get(&provider.adapter)
            .cloned()
            .ok_or_else(|| {
                gone(format!(
                    "adapter '{}' is no longer loaded",
                    provider.adapter
                ))
            })?;
        let info = adapter
            .adapter_info()
            .cloned()
            .ok_or_else(|| gone(format!("'{}' is not a provider adapter", provider.adapter)))?;
        let key = state.credentials.key(&model.provider).cloned();
        let configured = state
            .credentials
            .base_url_override(&model.provider)
            .or(provider.base_url.as_deref());
        let base_url = match configured {
            Some(url) => url.to_string(),
            // An adapter may suggest where to send requests, but never where to send a key.
            None if key.is_none() => info.default_base_url.clone(),
            None => return Err(gone(key_without_base_url(&model.provider))),
        };
        Ok(Attempt {
            model: model.clone(),
            adapter,
            runtime: self.registry.runtime().clone(),
            limits,
            ctx: ProviderContext {
                provider_id: model.provider.clone(),
                settings: provider.settings_for_adapter(),
                default_max_output_tokens: model.max_output_tokens.min(DEFAULT_MAX_OUTPUT_TOKENS),
            },
            base_url,
            key,
            info,
        })
    }

    /// Sends one attempt's request and returns the response head once it is a success; a
    /// failure status is read and classified by the adapter.
    async fn open_attempt(
        &self,
        state: &ConfigState,
        components: &ComponentSet,
        model: &ModelConfig,
        request: &CompletionRequest,
        limits: CallLimits,
    ) -> Result<(Attempt, reqwest::Response), GatewayError> {
        let attempt = self.prepare_attempt(state, components, model, limits)?;
        let http_request = attempt.build_request(request)?;
        let response = self
            .upstream
            .open(&attempt.endpoint(), http_request)
            .await
            .map_err(|e| attempt.upstream_error(transport_error(e)))?;
        if !response.status().is_success() {
            let response = read_response(response)
                .await
                .map_err(|e| attempt.upstream_error(transport_error(e)))?;
            let mut error = attempt.classify(&response);
            // A 429 without retry-after may still say when its quota resets.
            if let GatewayError::Upstream {
                class: ErrorClass::RateLimited,
                retry_after_ms: retry_after_ms @ None,
                ..
            } = &mut error
            {
                let headers: Vec<(&str, &str)> = response
                    .headers
                    .iter()
                    .map(|h| (h.name.as_str(), h.value.as_str()))
                    .collect();
                *retry_after_ms = crate::ratelimit::upstream_reset(&headers, false)
                    .map(|reset| u64::try_from(reset.as_millis()).unwrap_or(u64::MAX));
            }
            return Err(error);
        }
        // A success that used up the provider's quota: wait for its reset instead of a 429.
        let headers: Vec<(&str, &str)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        if let Some(reset) = crate::ratelimit::upstream_reset(&headers, true) {
            self.stats
                .provider(&model.provider)
                .breaker
                .back_off(Instant::now(), reset);
            tracing::info!(
                provider = model.provider,
                reset_ms = reset.as_millis() as u64,
                "provider quota exhausted: backing off until it resets"
            );
        }
        Ok((attempt, response))
    }

    async fn attempt(
        &self,
        state: &ConfigState,
        components: &ComponentSet,
        model: &ModelConfig,
        request: &CompletionRequest,
        limits: CallLimits,
    ) -> Result<CompletionResponse, GatewayError> {
        let (attempt, response) = self
            .open_attempt(state, components, model, request, limits)
            .await?;
        let response = read_response(response)
            .await
            .map_err(|e| attempt.upstream_error(transport_error(e)))?;
        attempt
            .adapter
            .call_adapter(&attempt.runtime, limits, |guest, store| {
                guest.call_parse_response(store, &attempt.ctx, &response)
            })
            .map_err(|f| attempt.plugin_error(f))?
            .map_err(|e| attempt.upstream_error(e))
    }

    /// Counts a failed attempt and reports whether the next candidate may be tried.
    /// Feeds a success's latency to the model's and the provider's health.
    fn record_latency(&self, model: &ModelConfig, latency: Duration, ttft: Option<Duration>) {
        let ms = latency.as_secs_f64() * 1000.0;
        let ttft = ttft.map(|t| t.as_secs_f64() * 1000.0);
        self.stats.get(&model.id).record_success(ms, ttft);
        self.stats
            .provider(&model.provider)
            .record_success(ms, ttft);
    }

    fn record_failure(&self, model: &ModelConfig, attempt: usize, error: &GatewayError) -> bool {
        self.stats.get(&model.id).record_failure();
        self.stats.provider(&model.provider).record_failure();
        self.metrics
            .upstream_errors
            .get_or_create(&RequestLabels {
                provider: model.provider.clone(),
                model: model.id.clone(),
                outcome: error.class_label().into(),
            })
            .inc();
        if let GatewayError::Plugin { fault, .. } = error {
            tracing::error!(model = model.id, "{error}");
            self.metrics
                .plugin_faults
                .get_or_create(&FaultLabels {
                    plugin: plugin_name(fault),
                    fault: fault.kind().into(),
                })
                .inc();
        } else {
            tracing::warn!(
                model = model.id,
                attempt = attempt + 1,
                "attempt failed: {error}"
            );
        }
        error.retryable()
    }

    /// Counts a request that failed for good.
    fn record_final_error(&self, route: &Route, error: &GatewayError) {
        if let Some(model) = route.chain.first() {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    provider: model.provider.clone(),
                    model: model.id.clone(),
                    outcome: error.class_label().into(),
                })
                .inc();
        }
    }

    /// Counts an answered request; its tokens and cost are counted with its ledger record.
    fn record_success(&self, model: &ModelConfig, latency: Duration) {
        let labels = |outcome: &str| RequestLabels {
            provider: model.provider.clone(),
            model: model.id.clone(),
            outcome: outcome.into(),
        };
        self.metrics.requests.get_or_create(&labels("ok")).inc();
        self.metrics
            .request_duration
            .get_or_create(&ModelLabels {
                provider: model.provider.clone(),
                model: model.id.clone(),
            })
            .observe(latency.as_secs_f64());
    }
}

/// The text parts of a response, in order.
fn output_text_only(response: &CompletionResponse) -> String {
    response
        .content
        .iter()
        .filter_map(|p| match p {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image(_) => None,
        })
        .collect()
}

/// Everything the model generated, as text, for counting when the provider reports no usage.
fn output_text(response: &CompletionResponse) -> String {
    let mut text = output_text_only(response);
    for call in &response.tool_calls {
        text.push_str(&call.name);
        text.push_str(&call.arguments);
    }
    text
}

fn plugin_name(fault: &PluginFault) -> String {
    match fault {
        PluginFault::Trapped { plugin, .. }
        | PluginFault::DeadlineExceeded { plugin, .. }
        | PluginFault::MemoryExhausted { plugin, .. }
        | PluginFault::Instantiation { plugin, .. } => plugin.clone(),
    }
}

fn transport_error(error: TransportError) -> ProviderError {
    let class = match &error {
        TransportError::Timeout(_) => ErrorClass::Timeout,
        TransportError::InvalidRequest(_) => ErrorClass::BadRequest,
        TransportError::Connect(_) | TransportError::Io(_) => ErrorClass::Server,
    };
    ProviderError {
        class,
        message: error.to_string(),
        retry_after_ms: None,
        status: None,
    }
}

/// The text of the last user turn, where the request's intent is stated.
fn last_user_text(request: &CompletionRequest) -> String {
    request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| {
            m.content
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text(t) => Some(t.as_str()),
                    ContentPart::Image(_) => None,
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// What routing needs to know about a request.
fn features_of(input: &CompletionInput, task: TaskVerdict) -> RequestFeatures {
    let request = &input.request;
    RequestFeatures {
        task: task.task,
        task_confidence: task.confidence,
        estimated_input_tokens: crate::tokens::count_prompt_tokens(request),
        max_output_tokens: request.sampling.max_output_tokens,
        needs_tools: !request.tools.is_empty(),
        needs_vision: request
            .messages
            .iter()
            .any(|m| m.content.iter().any(|p| matches!(p, ContentPart::Image(_)))),
        needs_json: matches!(
            request.response_format,
            Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema(_))
        ),
        requirements: input.requirements.clone(),
        api_key_id: input.api_key_id.clone(),
        requested_model: (input.model != "auto").then(|| input.model.clone()),
    }
}
