//! Choosing which models to try, in which order.
//!
//! The host filters the catalog down to models that can serve the request (hard constraints),
//! asks a policy component to rank them, and checks the answer: a policy can reorder and drop
//! candidates but never add one, so a buggy policy cannot route a request to a model that cannot
//! serve it. A garbage answer falls back to the default policy, then to cheapest-first.

pub mod centroid;
pub mod circuit;
pub mod classify;
pub mod stats;
pub mod task_classifier;

use crate::config::{Config, ModelConfig, TaskClass};
use crate::plugins::bindings::adapter::AuthScheme;
use crate::plugins::bindings::ranker;
use crate::plugins::{CallLimits, ComponentSet, PluginRuntime};
use crate::providers::Credentials;
use serde::Deserialize;
use stats::ModelStats;
use std::collections::HashSet;

/// Output tokens assumed for cost estimates when the caller sets no limit.
pub const EXPECTED_OUTPUT_TOKENS: u64 = 512;

/// What the caller asked of the route.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Requirements {
    /// Prefer cheaper models.
    pub low_cost: bool,
    /// Prefer higher-quality models.
    pub high_quality: bool,
    /// Prefer faster models.
    pub low_latency: bool,
    /// Only models whose estimated cost for this request is at most this many USD.
    pub max_cost_usd: Option<f64>,
    /// Only models whose recent latency is at most this many milliseconds.
    pub max_latency_ms: Option<u32>,
    /// Only models with at least this many tokens of context window.
    pub min_context_window: Option<u64>,
    /// Only these providers (empty: any).
    pub allowed_providers: Vec<String>,
    /// Never these providers.
    pub denied_providers: Vec<String>,
}

/// The request as routing sees it.
#[derive(Debug, Clone)]
pub struct RequestFeatures {
    pub task: TaskClass,
    pub task_confidence: f32,
    pub estimated_input_tokens: u64,
    pub max_output_tokens: Option<u32>,
    pub needs_tools: bool,
    pub needs_vision: bool,
    pub needs_json: bool,
    pub requirements: Requirements,
    pub api_key_id: Option<String>,
    /// `None` for `auto`.
    pub requested_model: Option<String>,
}

/// The outcome of routing: the models to try, in order, and why.
#[derive(Debug, Clone)]
pub struct Route {
    pub chain: Vec<ModelConfig>,
    /// The policy that ranked the chain (`explicit` when the caller named a model).
    pub policy: String,
    pub reason: String,
    /// Candidate scores, best first.
    pub scores: Vec<(String, f64)>,
    /// Set when the requested policy's answer was unusable and another ranking was used.
    pub policy_fallback: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    #[error("model '{model}' is not in the catalog; known models: {}", known.join(", "))]
    UnknownModel { model: String, known: Vec<String> },
    #[error("policy '{policy}' is not loaded; loaded policies: {}", loaded.join(", "))]
    UnknownPolicy { policy: String, loaded: Vec<String> },
    #[error("no model can serve this request: {}", reasons.join("; "))]
    NoCandidate { reasons: Vec<String> },
}

/// Everything routing reads, borrowed from one consistent snapshot.
pub struct Router<'a> {
    pub config: &'a Config,
    pub credentials: &'a Credentials,
    pub components: &'a ComponentSet,
    pub stats: &'a ModelStats,
    pub runtime: &'a PluginRuntime,
    pub limits: CallLimits,
}

impl Router<'_> {
    /// Why a provider cannot be used right now, if it cannot.
    pub fn provider_unavailable(&self, provider_id: &str) -> Option<String> {
        let Some(provider) = self.config.providers.get(provider_id) else {
            return Some(format!("provider '{provider_id}' is not configured"));
        };
        if !provider.enabled {
            return Some(format!(
                "provider '{provider_id}' is disabled in the config"
            ));
        }
        let Some(adapter) = self.components.providers.get(&provider.adapter) else {
            return Some(format!(
                "provider '{provider_id}' needs adapter component '{}', which is not loaded",
                provider.adapter
            ));
        };
        let needs_key = provider.api_key_required.unwrap_or_else(|| {
            adapter
                .adapter_info()
                .is_some_and(|info| !matches!(info.auth, AuthScheme::None))
        });
        if self.credentials.key(provider_id).is_some()
            && provider.base_url.is_none()
            && self.credentials.base_url_override(provider_id).is_none()
        {
            return Some(crate::pipeline::key_without_base_url(provider_id));
        }
        if needs_key && self.credentials.key(provider_id).is_none() {
            return Some(match &provider.api_key_env {
                Some(var) => format!("provider '{provider_id}' has no API key: set {var}"),
                None => format!("provider '{provider_id}' has no API key and no api_key_env"),
            });
        }
        None
    }

    /// Why `model` cannot serve this request, if it cannot.
    fn unfit(&self, model: &ModelConfig, f: &RequestFeatures) -> Option<String> {
        if let Some(why) = self.provider_unavailable(&model.provider) {
            return Some(why);
        }
        let r = &f.requirements;
        if !r.allowed_providers.is_empty() && !r.allowed_providers.contains(&model.provider) {
            return Some(format!(
                "provider '{}' is not in allowed_providers",
                model.provider
            ));
        }
        if r.denied_providers.contains(&model.provider) {
            return Some(format!("provider '{}' is denied", model.provider));
        }
        let caps = &model.capabilities;
        for (needed, has, what) in [
            (f.needs_tools, caps.tools, "tools"),
            (f.needs_vision, caps.vision, "image input"),
            (f.needs_json, caps.json, "JSON output"),
        ] {
            if needed && !has {
                return Some(format!("does not support {what}"));
            }
        }
        let output = f.max_output_tokens.map(u64::from).unwrap_or(0);
        if let Some(max) = f.max_output_tokens
            && max > model.max_output_tokens
        {
            return Some(format!(
                "max_tokens {max} exceeds its output limit {}",
                model.max_output_tokens
            ));
        }
        let needed = (f.estimated_input_tokens + output).max(r.min_context_window.unwrap_or(0));
        if needed > model.context_window {
            return Some(format!(
                "needs a {needed}-token context; its window is {}",
                model.context_window
            ));
        }
        let now = std::time::Instant::now();
        if let Err(why) = self.stats.provider(&model.provider).breaker.available(now) {
            return Some(format!("provider '{}': {why}", model.provider));
        }
        if let Err(why) = self.stats.get(&model.id).breaker.available(now) {
            return Some(why);
        }
        if let Some(max_cost) = r.max_cost_usd {
            let cost = estimate_cost(model, f);
            if cost > max_cost {
                return Some(format!(
                    "estimated ${cost:.6} exceeds max_cost_usd ${max_cost}"
                ));
            }
        }
        None
    }

    /// Routes a request: an explicit model with its configured fallbacks, or `auto` through the
    /// named (or default) policy.
    pub fn route(&self, f: &RequestFeatures, policy: Option<&str>) -> Result<Route, RouteError> {
        let mut reasons = Vec::new();
        let mut fit = |model: &ModelConfig| match self.unfit(model, f) {
            Some(why) => {
                reasons.push(format!("{}: {why}", model.id));
                false
            }
            None => true,
        };

        if let Some(requested) = &f.requested_model {
            let Some(model) = self.config.model(requested) else {
                return Err(RouteError::UnknownModel {
                    model: requested.clone(),
                    known: self.config.models.iter().map(|m| m.id.clone()).collect(),
                });
            };
            let chain: Vec<ModelConfig> = std::iter::once(model)
                .chain(
                    model
                        .fallbacks
                        .iter()
                        .filter_map(|id| self.config.model(id)),
                )
                .filter(|m| fit(m))
                .cloned()
                .collect();
            if chain.is_empty() {
                return Err(RouteError::NoCandidate { reasons });
            }
            return Ok(Route {
                scores: chain.iter().map(|m| (m.id.clone(), 1.0)).collect(),
                reason: if chain[0].id == *requested {
                    format!("'{requested}' was requested")
                } else {
                    format!(
                        "'{requested}' cannot serve it now; using its fallback '{}'",
                        chain[0].id
                    )
                },
                chain,
                policy: "explicit".into(),
                policy_fallback: None,
            });
        }

        let mut candidates: Vec<&ModelConfig> =
            self.config.models.iter().filter(|m| fit(m)).collect();
        if candidates.is_empty() {
            return Err(RouteError::NoCandidate { reasons });
        }
        if candidates.iter().any(|m| !m.fallback_only) {
            candidates.retain(|m| !m.fallback_only);
        }
        // A latency ceiling is a preference: models observed to be slower are dropped only
        // while others remain.
        if let Some(max) = f.requirements.max_latency_ms {
            let within = |m: &&ModelConfig| {
                self.stats
                    .get(&m.id)
                    .latency_ms()
                    .is_none_or(|observed| observed <= f64::from(max))
            };
            if candidates.iter().any(within) {
                candidates.retain(within);
            }
        }
        let default_policy = &self.config.gateway.routing.default_policy;
        let wanted = policy.unwrap_or(default_policy);
        if policy.is_some() && !self.components.policies.contains_key(wanted) {
            let mut loaded: Vec<String> = self.components.policies.keys().cloned().collect();
            loaded.sort();
            return Err(RouteError::UnknownPolicy {
                policy: wanted.to_string(),
                loaded,
            });
        }

        let mut order = vec![wanted];
        if wanted != default_policy {
            order.push(default_policy);
        }
        let mut fallback_notes = Vec::new();
        for name in order {
            match self.rank_with(name, f, &candidates) {
                Ok(route) => {
                    return Ok(Route {
                        policy_fallback: (!fallback_notes.is_empty())
                            .then(|| fallback_notes.join("; ")),
                        ..route
                    });
                }
                Err(why) => fallback_notes.push(format!("policy '{name}': {why}")),
            }
        }
        Ok(self.cheapest_first(f, &candidates, fallback_notes.join("; ")))
    }

    fn rank_with(
        &self,
        policy: &str,
        f: &RequestFeatures,
        candidates: &[&ModelConfig],
    ) -> Result<Route, String> {
        let component = self
            .components
            .policies
            .get(policy)
            .ok_or_else(|| "is not loaded".to_string())?;
        let features = self.wit_features(f);
        let wit_candidates: Vec<ranker::Candidate> = candidates
            .iter()
            .map(|m| self.wit_candidate(m, f))
            .collect();
        let ranking = component
            .call_policy(self.runtime, self.limits, |guest, store| {
                guest.call_rank(store, &features, &wit_candidates)
            })
            .map_err(|fault| fault.to_string())?;

        if ranking.ranked.is_empty() {
            return Err("returned an empty ranking".into());
        }
        let mut seen = HashSet::new();
        let mut chain = Vec::with_capacity(ranking.ranked.len());
        for scored in &ranking.ranked {
            if !scored.score.is_finite() {
                return Err(format!("gave '{}' a non-finite score", scored.id));
            }
            let Some(model) = candidates.iter().find(|m| m.id == scored.id) else {
                return Err(format!("ranked '{}', which is not a candidate", scored.id));
            };
            if !seen.insert(scored.id.as_str()) {
                return Err(format!("ranked '{}' twice", scored.id));
            }
            chain.push((*model).clone());
        }
        Ok(Route {
            chain,
            policy: policy.to_string(),
            reason: ranking.reason.chars().take(300).collect(),
            scores: ranking
                .ranked
                .iter()
                .map(|s| (s.id.clone(), s.score))
                .collect(),
            policy_fallback: None,
        })
    }

    /// The last resort when no policy component gives a usable answer.
    fn cheapest_first(
        &self,
        f: &RequestFeatures,
        candidates: &[&ModelConfig],
        why: String,
    ) -> Route {
        let mut chain: Vec<ModelConfig> = candidates.iter().map(|m| (*m).clone()).collect();
        chain.sort_by(|a, b| {
            estimate_cost(a, f)
                .total_cmp(&estimate_cost(b, f))
                .then_with(|| a.id.cmp(&b.id))
        });
        Route {
            scores: chain
                .iter()
                .map(|m| (m.id.clone(), -estimate_cost(m, f)))
                .collect(),
            chain,
            policy: "builtin-cheapest".into(),
            reason: "no policy component gave a usable ranking; cheapest first".into(),
            policy_fallback: Some(why),
        }
    }

    fn wit_features(&self, f: &RequestFeatures) -> ranker::RequestFeatures {
        ranker::RequestFeatures {
            task: wit_task(f.task),
            task_confidence: f.task_confidence,
            estimated_input_tokens: f.estimated_input_tokens,
            max_output_tokens: f.max_output_tokens,
            requirements: ranker::Requirements {
                low_cost: f.requirements.low_cost,
                high_quality: f.requirements.high_quality,
                low_latency: f.requirements.low_latency,
                max_cost_usd: f.requirements.max_cost_usd,
                max_latency_ms: f.requirements.max_latency_ms,
            },
            needs_tools: f.needs_tools,
            needs_vision: f.needs_vision,
            needs_json: f.needs_json,
            api_key_id: f.api_key_id.clone(),
            requested_model: f.requested_model.clone(),
        }
    }

    fn wit_candidate(&self, m: &ModelConfig, f: &RequestFeatures) -> ranker::Candidate {
        let health = self.stats.get(&m.id);
        let now = std::time::Instant::now();
        ranker::Candidate {
            id: m.id.clone(),
            provider: m.provider.clone(),
            input_price_per_mtok: m.input_per_mtok,
            cached_input_price_per_mtok: m.cached_input_per_mtok(),
            output_price_per_mtok: m.output_per_mtok,
            estimated_cost_usd: estimate_cost(m, f),
            quality: m.quality,
            specialties: m.specialties.iter().map(|t| wit_task(*t)).collect(),
            context_window: m.context_window,
            ewma_latency_ms: health.latency_ms(),
            ewma_ttft_ms: health.ttft_ms(),
            success_rate: health.success_rate() as f32,
            circuit: match worse(
                health.breaker.state(now),
                self.stats.provider(&m.provider).breaker.state(now),
            ) {
                circuit::CircuitState::Closed => ranker::CircuitState::Closed,
                circuit::CircuitState::HalfOpen => ranker::CircuitState::HalfOpen,
                circuit::CircuitState::Open => ranker::CircuitState::Open,
            },
            // Rate-limit headroom is not tracked yet (a provider's limit headers would feed it);
            // a rate-limited provider is instead excluded for its retry-after.
            rate_limit_headroom: 1.0,
        }
    }
}

/// Estimated cost of the request on `model`, in USD: the prompt at the uncached rate plus the
/// requested (or expected) output.
pub fn estimate_cost(model: &ModelConfig, f: &RequestFeatures) -> f64 {
    let output = f
        .max_output_tokens
        .map(u64::from)
        .unwrap_or(EXPECTED_OUTPUT_TOKENS.min(u64::from(model.max_output_tokens)));
    (f.estimated_input_tokens as f64 * model.input_per_mtok + output as f64 * model.output_per_mtok)
        / 1_000_000.0
}

fn worse(a: circuit::CircuitState, b: circuit::CircuitState) -> circuit::CircuitState {
    use circuit::CircuitState::{Closed, HalfOpen, Open};
    match (a, b) {
        (Open, _) | (_, Open) => Open,
        (HalfOpen, _) | (_, HalfOpen) => HalfOpen,
        (Closed, Closed) => Closed,
    }
}

fn wit_task(task: TaskClass) -> ranker::TaskClass {
    match task {
        TaskClass::Code => ranker::TaskClass::Code,
        TaskClass::Math => ranker::TaskClass::Math,
        TaskClass::Reasoning => ranker::TaskClass::Reasoning,
        TaskClass::Creative => ranker::TaskClass::Creative,
        TaskClass::Summarization => ranker::TaskClass::Summarization,
        TaskClass::Translation => ranker::TaskClass::Translation,
        TaskClass::Extraction => ranker::TaskClass::Extraction,
        TaskClass::Chat => ranker::TaskClass::Chat,
    }
}
