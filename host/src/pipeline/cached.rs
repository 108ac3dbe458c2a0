//! The response cache on the request path: looked up before routing, filled after a success,
//! and a hit turned into the same `Completion` or stream a provider's answer would be.

use super::{Completion, CompletionInput, CompletionStream, Gateway, RouteSummary, StreamChunk};
use crate::cache::{CacheHit, Lookup, Pending, StoredResponse, StreamRecorder, Tier};
use crate::ledger::LedgerRecord;
use crate::metrics::{CacheGuardLabels, CacheLabels};
use crate::plugins::bindings::types::Usage;
use crate::routing::task_classifier::TaskVerdict;
use std::time::Instant;
use tokio::sync::mpsc;

/// How the cache took part in a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CacheStatus {
    /// Not looked up (disabled, opted out, or sampling too random to reuse).
    Bypass,
    /// Looked up, not found; the answer was stored.
    Miss,
    Hit {
        tier: Tier,
        similarity: f32,
    },
}

impl CacheStatus {
    /// The `x-gateway-cache` header value.
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Bypass => "bypass",
            CacheStatus::Miss => "miss",
            CacheStatus::Hit {
                tier: Tier::Exact, ..
            } => "hit-exact",
            CacheStatus::Hit {
                tier: Tier::Semantic,
                ..
            } => "hit-semantic",
        }
    }

    pub fn is_hit(self) -> bool {
        matches!(self, CacheStatus::Hit { .. })
    }

    pub fn similarity(self) -> Option<f32> {
        match self {
            CacheStatus::Hit { similarity, .. } => Some(similarity),
            _ => None,
        }
    }
}

impl Gateway {
    /// Looks the request up and counts what happened.
    pub(super) async fn cache_lookup(&self, input: &CompletionInput) -> Lookup {
        let settings = self.config().config.gateway.cache.clone();
        let (lookup, trace) = self.cache.lookup(input, &settings).await;
        let metrics = &self.metrics;
        if trace.embedded {
            metrics.cache_embeddings.inc();
        }
        if let Some(conflict) = trace.guard_rejection {
            metrics
                .cache_guard_rejections
                .get_or_create(&CacheGuardLabels {
                    reason: conflict.as_str().into(),
                })
                .inc();
        }
        let result = match &lookup {
            Lookup::Hit(hit) => hit.tier.as_str(),
            Lookup::Miss(_) => "miss",
            Lookup::Bypass => "bypass",
        };
        metrics
            .cache_lookups
            .get_or_create(&CacheLabels {
                result: result.into(),
            })
            .inc();
        lookup
    }

    pub(super) fn cache_store(
        &self,
        pending: Pending,
        response: StoredResponse,
        model: &str,
        provider: &str,
        cost_usd: f64,
    ) {
        let settings = &self.config().config.gateway.cache;
        self.cache
            .store(pending, response, model, provider, cost_usd, settings);
        self.metrics
            .cache_entries
            .set(i64::try_from(self.cache.len()).unwrap_or(i64::MAX));
    }

    /// Stores a completed stream's answer.
    pub(super) fn cache_store_stream(
        &self,
        pending: Pending,
        mut recorder: StreamRecorder,
        model: &crate::config::ModelConfig,
        usage: Option<&Usage>,
    ) {
        // The merged usage goes to the client after the content, past the recorder.
        if let Some(usage) = usage {
            recorder.observe(&StreamChunk::Usage(*usage));
        }
        let Some(response) = recorder.finish() else {
            return;
        };
        let cost = usage.map_or(0.0, |u| crate::pricing::cost_usd(model, u));
        self.cache_store(pending, response, &model.id, &model.provider, cost);
    }

    fn cached_route(&self, input: &CompletionInput, hit: &CacheHit) -> RouteSummary {
        // A hit is not routed, and an exact hit has no embedding: keywords are enough to
        // report, and keep hits free of model runs.
        let task = TaskVerdict::by_keywords(&super::last_user_text(&input.request));
        RouteSummary {
            policy: "cache".into(),
            reason: format!(
                "served from the {} cache tier (similarity {:.4})",
                hit.tier.as_str(),
                hit.similarity
            ),
            scores: Vec::new(),
            task: task.task,
            task_confidence: task.confidence,
            task_source: task.source,
        }
    }

    /// A cache hit's ledger row: no upstream tokens, no cost, and what the answer saved.
    fn record_hit(
        &self,
        input: &CompletionInput,
        hit: &CacheHit,
        route: &RouteSummary,
        latency: f64,
    ) {
        let budgets = &self.config().config.gateway.budgets;
        let mut record = LedgerRecord::new(&hit.provider, &hit.model);
        record.request_id = crate::request_scope::current_request_id();
        record.api_key_id = input.api_key_id.clone();
        record.team = input
            .api_key_id
            .as_deref()
            .and_then(|id| crate::budget::Budgets::team_of(budgets, id));
        record.task = route.task.as_str().into();
        record.policy = route.policy.clone();
        record.streamed = input.request.stream;
        record.cached = true;
        record.cost_saved_usd = hit.saved_usd;
        record.latency_ms = latency;
        self.record_usage(record);
    }

    pub(super) fn completion_from_hit(
        &self,
        hit: CacheHit,
        input: &CompletionInput,
        started: Instant,
    ) -> Completion {
        let route = self.cached_route(input, &hit);
        self.record_hit(
            input,
            &hit,
            &route,
            started.elapsed().as_secs_f64() * 1000.0,
        );
        Completion {
            response: hit.response.to_response(),
            route,
            model: hit.model,
            provider: hit.provider,
            attempts: 0,
            cost_usd: 0.0,
            latency: started.elapsed(),
            cache: CacheStatus::Hit {
                tier: hit.tier,
                similarity: hit.similarity,
            },
        }
    }

    /// Replays a cached answer as a stream: its text, tool calls, finish and usage.
    pub(super) fn stream_from_hit(
        &self,
        hit: CacheHit,
        input: &CompletionInput,
    ) -> CompletionStream {
        let response = hit.response.to_response();
        let mut chunks: Vec<StreamChunk> = Vec::new();
        if !hit.response.text.is_empty() {
            chunks.push(StreamChunk::Text(hit.response.text.clone()));
        }
        for (index, call) in response.tool_calls.iter().enumerate() {
            chunks.push(StreamChunk::ToolCall {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                id: Some(call.id.clone()),
                name: Some(call.name.clone()),
                arguments: call.arguments.clone(),
            });
        }
        chunks.push(StreamChunk::Finish(response.finish_reason));
        if let Some(usage) = response.usage {
            chunks.push(StreamChunk::Usage(usage));
        }
        chunks.push(StreamChunk::End);
        let (tx, rx) = mpsc::channel(chunks.len());
        for chunk in chunks {
            // The channel holds every chunk, so this never waits or fails.
            let _ = tx.try_send(chunk);
        }
        let route = self.cached_route(input, &hit);
        self.record_hit(input, &hit, &route, 0.0);
        CompletionStream {
            route,
            model: hit.model,
            provider: hit.provider,
            attempts: 0,
            chunks: rx,
            cache: CacheStatus::Hit {
                tier: hit.tier,
                similarity: hit.similarity,
            },
        }
    }
}
