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
    /// Cache lookups by result.
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// Upstream cost not spent thanks to cache hits, in USD.
    pub cache_saved_usd: Counter<f64, AtomicU64>,
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
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Response cache lookups by result",
            cache_lookups.clone(),
        );
        let cache_saved_usd = Counter::<f64, AtomicU64>::default();
        registry.register(
            "cache_saved_usd",
            "Upstream cost saved by cache hits, in USD",
            cache_saved_usd.clone(),
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
            cache_saved_usd,
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
