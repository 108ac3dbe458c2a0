//! Prometheus metrics, served as text on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub provider: String,
    pub model: String,
    /// `ok` or an error class.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    /// `input`, `cached_input` or `output`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `provider`, `policy` or `config`.
    pub kind: String,
    /// `loaded`, `removed` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub plugin: String,
    /// `trap`, `deadline`, `memory` or `instantiation`.
    pub fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `exact`, `semantic`, `miss` or `bypass`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheGuardLabels {
    /// What differed: `numbers`, `negation`, `opposites`, `terms` or `direction`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
    /// `embedding` or `keywords`.
    pub source: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type UsdCounter = Counter<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by final model and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// End-to-end latency of answered requests, in seconds.
    pub request_duration: HistogramFamily<ModelLabels>,
    /// Upstream attempts that failed, by error class.
    pub upstream_errors: Family<RequestLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub plugin_faults: Family<FaultLabels, Counter>,
    /// Times a policy's answer was unusable and another ranking was used.
    pub policy_fallbacks: Family<PolicyLabels, Counter>,
    pub components_loaded: Family<KindLabels, Gauge>,
    /// Ledger rows by outcome (`ok` or an error class): upstream attempts and cache hits.
    pub attempts: Family<RequestLabels, Counter>,
    /// Time to the first content of streamed responses, in seconds.
    pub ttft: HistogramFamily<ModelLabels>,
    pub cost_usd: Family<ModelLabels, UsdCounter>,
    pub cost_saved_usd: Family<ModelLabels, UsdCounter>,
    /// 0 closed, 1 half-open, 2 open; refreshed on every scrape.
    pub circuit_state: Family<ProviderLabels, Gauge>,
    pub ledger: crate::ledger::LedgerMetrics,
    pub budgets: crate::budget::BudgetMetrics,
    pub rate_limits: crate::ratelimit::RateLimitMetrics,
    /// Cache lookups by result.
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// Prompts embedded for the semantic tier (exact hits embed nothing).
    pub cache_embeddings: Counter,
    /// Semantic candidates above the threshold that the false-hit guard rejected.
    pub cache_guard_rejections: Family<CacheGuardLabels, Counter>,
    pub cache_entries: Gauge,
    /// Routed requests by task class and how it was decided.
    pub task_classifications: Family<TaskLabels, Counter>,
    /// Prompts embedded for task classification because the cache had not embedded them.
    pub task_embeddings: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aigw");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered", requests.clone());
        let request_duration: HistogramFamily<ModelLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "End-to-end latency of answered requests",
            request_duration.clone(),
        );
        let upstream_errors = Family::<RequestLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream attempts by error class",
            upstream_errors.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("tokens", "Tokens reported by providers", tokens.clone());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Hot reloads of components and config, by result",
            reloads.clone(),
        );
        let plugin_faults = Family::<FaultLabels, Counter>::default();
        registry.register(
            "plugin_faults",
            "Plugin calls that trapped, timed out or ran out of memory",
            plugin_faults.clone(),
        );
        let policy_fallbacks = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_fallbacks",
            "Rankings replaced because the policy's answer was unusable",
            policy_fallbacks.clone(),
        );
        let components_loaded = Family::<KindLabels, Gauge>::default();
        registry.register(
            "components_loaded",
            "Components currently loaded, by kind",
            components_loaded.clone(),
        );
        let attempts = Family::<RequestLabels, Counter>::default();
        registry.register(
            "attempts",
            "Usage ledger records (upstream attempts and cache hits), by outcome",
            attempts.clone(),
        );
        let ttft: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first content of streamed responses",
            ttft.clone(),
        );
        let cost_usd = Family::<ModelLabels, UsdCounter>::default();
        registry.register(
            "cost_usd",
            "Spend in USD, priced from the catalog",
            cost_usd.clone(),
        );
        let cost_saved_usd = Family::<ModelLabels, UsdCounter>::default();
        registry.register(
            "cost_saved_usd",
            "Spend avoided by answering from the cache, in USD",
            cost_saved_usd.clone(),
        );
        let circuit_state = Family::<ProviderLabels, Gauge>::default();
        registry.register(
            "circuit_state",
            "Provider circuit: 0 closed, 1 half-open, 2 open",
            circuit_state.clone(),
        );
        let ledger = crate::ledger::LedgerMetrics::default();
        registry.register(
            "ledger_queue_depth",
            "Usage records waiting to be written",
            ledger.queue_depth.clone(),
        );
        registry.register(
            "ledger_dropped",
            "Usage records dropped because the ledger queue was full",
            ledger.dropped.clone(),
        );
        registry.register(
            "ledger_written",
            "Usage records written to the ledger",
            ledger.written.clone(),
        );
        registry.register(
            "ledger_write_failures",
            "Usage records the ledger could not write",
            ledger.write_failures.clone(),
        );
        let budgets = crate::budget::BudgetMetrics::default();
        registry.register(
            "budget_spend_usd",
            "Spend in the current budget window",
            budgets.spend_usd.clone(),
        );
        registry.register(
            "budget_alerts",
            "Budget alert thresholds crossed",
            budgets.alerts.clone(),
        );
        registry.register(
            "budget_rejections",
            "Requests refused because a budget was exhausted",
            budgets.rejections.clone(),
        );
        let rate_limits = crate::ratelimit::RateLimitMetrics::default();
        registry.register(
            "rate_limit_rejections",
            "Requests or attempts held back by a rate limit",
            rate_limits.rejections.clone(),
        );
        registry.register(
            "adaptive_limit_cuts",
            "Adaptive provider ceilings lowered after an upstream 429",
            rate_limits.adaptive_cuts.clone(),
        );
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Response cache lookups by result",
            cache_lookups.clone(),
        );
        let cache_embeddings = Counter::default();
        registry.register(
            "cache_embeddings",
            "Prompts embedded for the semantic cache",
            cache_embeddings.clone(),
        );
        let cache_guard_rejections = Family::<CacheGuardLabels, Counter>::default();
        registry.register(
            "cache_guard_rejections",
            "Semantic cache candidates rejected by the false-hit guard",
            cache_guard_rejections.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Answers in the response cache",
            cache_entries.clone(),
        );
        let task_classifications = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_classifications",
            "Routed requests by task class and how the class was decided",
            task_classifications.clone(),
        );
        let task_embeddings = Counter::default();
        registry.register(
            "task_embeddings",
            "Prompts embedded for task classification (the cache's embedding is reused when \
             it computed one)",
            task_embeddings.clone(),
        );
        Metrics {
            registry,
            task_classifications,
            task_embeddings,
            cache_lookups,
            cache_embeddings,
            cache_guard_rejections,
            cache_entries,
            requests,
            request_duration,
            upstream_errors,
            tokens,
            reloads,
            plugin_faults,
            policy_fallbacks,
            components_loaded,
            attempts,
            ttft,
            cost_usd,
            cost_saved_usd,
            circuit_state,
            ledger,
            budgets,
            rate_limits,
        }
    }
}

impl Metrics {
    pub fn record_reload(&self, kind: &str, result: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        text
    }
}
