//! What a request is allowed and what it cost: rate limits and budget reservations before the
//! upstream call, a ledger record (and the matching metrics) for every attempt after.

use super::{ConfigState, Gateway, GatewayError, RouteSummary};
use crate::budget::{BudgetExceeded, Budgets, Reservation};
use crate::config::ModelConfig;
use crate::ledger::{LedgerRecord, Outcome};
use crate::metrics::{ModelLabels, RequestLabels, TokenLabels};
use crate::plugins::bindings::types::Usage;
use crate::ratelimit::Throttled;
use crate::routing::Route;
use std::time::Duration;

/// A limit that refused the request before any upstream call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitError {
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
    #[error("rate limited: {0}")]
    RateLimited(#[from] Throttled),
}

/// Who asked for what: stamped on every ledger record of one request.
#[derive(Debug, Clone)]
pub(super) struct RequestMeta {
    pub request_id: Option<String>,
    pub api_key_id: Option<String>,
    pub team: Option<String>,
    pub task: &'static str,
    pub policy: String,
    pub streamed: bool,
    /// The prompt's tokens plus the requested output limit, for token rate limits.
    pub tokens: u64,
}

/// What one attempt used and how it ended.
pub(super) struct AttemptUsage<'a> {
    pub usage: Option<&'a Usage>,
    pub latency: Duration,
    pub ttft: Option<Duration>,
    pub outcome: Outcome,
    pub error_class: Option<&'static str>,
}

impl Gateway {
    /// Applies the caller's rate limits and reserves the request's worst-case cost: the
    /// priciest candidate in the chain, for the whole prompt and the requested (or default)
    /// output limit.
    pub(super) fn admit(
        &self,
        state: &ConfigState,
        input: &super::CompletionInput,
        route: &Route,
        summary: &RouteSummary,
        prompt_tokens: u64,
    ) -> Result<(RequestMeta, Reservation), GatewayError> {
        let gateway = &state.config.gateway;
        let key_id = input.api_key_id.as_deref();
        let requested_output = input.request.sampling.max_output_tokens;
        let tokens = prompt_tokens + u64::from(requested_output.unwrap_or(0));
        self.rate_limits
            .admit_key(&gateway.rate_limits, key_id, tokens)
            .map_err(|t| GatewayError::Limit(t.into()))?;
        let estimate = route
            .chain
            .iter()
            .map(|model| worst_case_cost(model, prompt_tokens, requested_output))
            .fold(0.0, f64::max);
        let reservation = self
            .budgets
            .reserve(&gateway.budgets, key_id, estimate, crate::ledger::now_ms())
            .map_err(|e| GatewayError::Limit(e.into()))?;
        let meta = RequestMeta {
            request_id: crate::request_scope::current_request_id(),
            api_key_id: input.api_key_id.clone(),
            team: key_id.and_then(|id| Budgets::team_of(&gateway.budgets, id)),
            task: summary.task.as_str(),
            policy: summary.policy.clone(),
            streamed: input.request.stream,
            tokens,
        };
        Ok((meta, reservation))
    }

    /// Records a failed attempt: a ledger row and the attempt counter. Failed attempts are not
    /// billed by providers, so they cost nothing.
    pub(super) fn account_failure(
        &self,
        meta: &RequestMeta,
        model: &ModelConfig,
        error: &GatewayError,
        latency: Duration,
    ) {
        self.account(
            meta,
            model,
            &AttemptUsage {
                usage: None,
                latency,
                ttft: None,
                outcome: Outcome::Error,
                error_class: Some(error.class_label()),
            },
        );
    }

    /// Records an attempt that produced output; returns its cost.
    pub(super) fn account(
        &self,
        meta: &RequestMeta,
        model: &ModelConfig,
        attempt: &AttemptUsage<'_>,
    ) -> f64 {
        let cost_usd = attempt
            .usage
            .map(|u| crate::pricing::cost_usd(model, u))
            .unwrap_or(0.0);
        let mut record = LedgerRecord::new(&model.provider, &model.id);
        record.request_id = meta.request_id.clone();
        record.api_key_id = meta.api_key_id.clone();
        record.team = meta.team.clone();
        record.task = meta.task.into();
        record.policy = meta.policy.clone();
        record.streamed = meta.streamed;
        if let Some(usage) = attempt.usage {
            record.input_tokens = usage.input_tokens;
            record.cached_input_tokens = usage.cached_input_tokens;
            record.cache_write_input_tokens = usage.cache_write_input_tokens;
            record.output_tokens = usage.output_tokens;
            record.tokens_estimated = usage.estimated;
        }
        record.cost_usd = cost_usd;
        record.latency_ms = attempt.latency.as_secs_f64() * 1000.0;
        record.ttft_ms = attempt.ttft.map(|t| t.as_secs_f64() * 1000.0);
        record.outcome = attempt.outcome;
        record.error_class = attempt.error_class.map(str::to_string);
        self.record_usage(record);
        cost_usd
    }

    /// Adds a record to the ledger and the matching counters to the metrics, so that the two
    /// always agree. Public for answers served without an upstream call (cache hits).
    pub fn record_usage(&self, record: LedgerRecord) {
        let model = ModelLabels {
            provider: record.provider.clone(),
            model: record.model.clone(),
        };
        let outcome = match (record.outcome, &record.error_class) {
            (Outcome::Ok, _) => "ok".to_string(),
            (_, Some(class)) => class.clone(),
            (other, None) => other.as_str().to_string(),
        };
        self.metrics
            .attempts
            .get_or_create(&RequestLabels {
                provider: record.provider.clone(),
                model: record.model.clone(),
                outcome,
            })
            .inc();
        for (kind, count) in [
            ("input", record.input_tokens),
            ("cached_input", record.cached_input_tokens),
            ("output", record.output_tokens),
        ] {
            if count > 0 {
                self.metrics
                    .tokens
                    .get_or_create(&TokenLabels {
                        provider: record.provider.clone(),
                        model: record.model.clone(),
                        kind: kind.into(),
                    })
                    .inc_by(count);
            }
        }
        if record.cost_usd > 0.0 {
            self.metrics
                .cost_usd
                .get_or_create(&model)
                .inc_by(record.cost_usd);
        }
        if record.cost_saved_usd > 0.0 {
            self.metrics
                .cost_saved_usd
                .get_or_create(&model)
                .inc_by(record.cost_saved_usd);
        }
        self.ledger.record(record);
    }

    /// A route that found no candidate because the providers that could serve the request are
    /// pausing after their own 429s is a rate limit the client can wait out: 429 with the
    /// soonest end of those pauses, not 503.
    pub(super) fn route_error(
        &self,
        config: &crate::config::Config,
        input: &super::CompletionInput,
        error: crate::routing::RouteError,
    ) -> GatewayError {
        if !matches!(error, crate::routing::RouteError::NoCandidate { .. }) {
            return GatewayError::Route(error);
        }
        let requested = config.model(&input.model);
        let providers: Vec<&str> = match requested {
            Some(model) => std::iter::once(model)
                .chain(model.fallbacks.iter().filter_map(|id| config.model(id)))
                .map(|m| m.provider.as_str())
                .collect(),
            None => config.models.iter().map(|m| m.provider.as_str()).collect(),
        };
        let now = std::time::Instant::now();
        let soonest = providers
            .into_iter()
            .filter_map(|p| {
                let left = self.stats.provider(p).breaker.backoff_left(now)?;
                Some((p, left))
            })
            .min_by_key(|(_, left)| *left);
        match soonest {
            Some((provider, retry_after)) => {
                GatewayError::Limit(LimitError::RateLimited(Throttled {
                    what: format!(
                        "provider '{provider}' asked for a pause after a 429 and no other candidate \
                     can serve this request ({error})"
                    ),
                    retry_after,
                }))
            }
            None => GatewayError::Route(error),
        }
    }

    pub(super) fn alert_webhook(&self) -> Option<String> {
        self.config().config.gateway.budgets.alert_webhook.clone()
    }
}

/// The most a request can cost on `model`: every prompt token at the dearest input rate
/// (uncached, or written to the provider's cache), and the full output limit (the caller's, or
/// what the gateway would ask the provider for).
pub(super) fn worst_case_cost(
    model: &ModelConfig,
    prompt_tokens: u64,
    requested_output: Option<u32>,
) -> f64 {
    let output = requested_output
        .unwrap_or(super::DEFAULT_MAX_OUTPUT_TOKENS)
        .min(model.max_output_tokens);
    let input_rate = model.input_per_mtok.max(model.cache_write_per_mtok());
    (prompt_tokens as f64 * input_rate + f64::from(output) * model.output_per_mtok) / 1_000_000.0
}
