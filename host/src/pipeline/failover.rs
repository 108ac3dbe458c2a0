//! The failover loop shared by streamed and non-streamed completions.
//!
//! The ranked route is the fallback chain. Each round walks it in order, skipping candidates
//! whose circuit is open or whose provider is backing off after a rate limit; a retryable failure
//! moves on to the next candidate. When a round ends with attempts and time left, the next round
//! starts after a jittered exponential pause, retrying only candidates whose failure was
//! transient. Non-retryable errors (bad request, auth, content filtered) end the request at once.
//! Candidates over a configured provider or model rate limit (or a provider's adaptive ceiling)
//! are skipped like open circuits; when that leaves nothing to try, the caller is told when to
//! retry. Every failed attempt is recorded in the ledger.

use super::accounting::RequestMeta;
use super::{Gateway, GatewayError, empty_route};
use crate::config::{Config, ModelConfig};
use crate::plugins::bindings::types::ErrorClass;
use crate::routing::circuit::BreakerSettings;
use crate::routing::{Route, RouteError};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// A successful attempt: its value, the model that produced it and how many attempts it took.
pub(super) struct Won<'r, T> {
    pub value: T,
    pub model: &'r ModelConfig,
    pub attempts: u32,
}

impl Gateway {
    pub(super) async fn failover<'r, T, Fut>(
        &self,
        route: &'r Route,
        config: &Config,
        started: Instant,
        meta: &RequestMeta,
        mut attempt: impl FnMut(&'r ModelConfig) -> Fut,
    ) -> Result<Won<'r, T>, GatewayError>
    where
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let routing = &config.gateway.routing;
        let breaker = BreakerSettings {
            failure_threshold: routing.circuit_failure_threshold,
            open_for: Duration::from_millis(routing.circuit_open_ms),
        };
        let deadline = started + Duration::from_millis(config.gateway.server.request_timeout_ms);
        let mut attempts = 0u32;
        let mut last_error: Option<GatewayError> = None;
        let mut skipped: Vec<String> = Vec::new();
        // The soonest a candidate skipped for a rate limit admits requests again.
        let mut throttled: Option<crate::ratelimit::Throttled> = None;
        // Candidates not worth a second round: their failure was not transient.
        let mut settled: HashSet<&str> = HashSet::new();
        for round in 0u32.. {
            let mut tried = false;
            for model in &route.chain {
                if attempts >= routing.max_attempts || Instant::now() >= deadline {
                    break;
                }
                if settled.contains(model.id.as_str()) {
                    continue;
                }
                let now = Instant::now();
                let provider = self.stats.provider(&model.provider);
                let health = self.stats.get(&model.id);
                if let Err(why) = provider
                    .breaker
                    .available(now)
                    .and_then(|()| health.breaker.available(now))
                {
                    // A provider backing off after its own 429 is a rate limit the client can
                    // wait out, like the gateway's.
                    if let Some(left) = provider.breaker.backoff_left(now) {
                        note_throttled(
                            &mut throttled,
                            crate::ratelimit::Throttled {
                                what: format!(
                                    "provider '{}' asked for a pause (retry-after)",
                                    model.provider
                                ),
                                retry_after: left,
                            },
                        );
                    }
                    skipped.push(format!("{}: {why}", model.id));
                    continue;
                }
                if let Err(limit) = self.rate_limits.admit_upstream(
                    &config.gateway.rate_limits,
                    &model.provider,
                    &model.id,
                    meta.tokens,
                    now,
                ) {
                    skipped.push(format!("{}: {limit}", model.id));
                    note_throttled(&mut throttled, limit);
                    continue;
                }
                let Some(provider_probe) = provider.breaker.admit(now) else {
                    continue;
                };
                let Some(model_probe) = health.breaker.admit(now) else {
                    if provider_probe {
                        provider.breaker.release_probe();
                    }
                    continue;
                };
                // If this future is dropped mid-attempt (the client went away), the guard gives
                // back the half-open probe slots this attempt took, and only those.
                let mut probe = ProbeGuard {
                    held: [
                        provider_probe.then_some(&provider.breaker),
                        model_probe.then_some(&health.breaker),
                    ],
                    settled: false,
                };
                attempts += 1;
                tried = true;
                let attempt_started = Instant::now();
                let left = deadline.saturating_duration_since(attempt_started);
                let outcome = match tokio::time::timeout(left, attempt(model)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(GatewayError::Upstream {
                        class: ErrorClass::Timeout,
                        message: format!(
                            "the request deadline ({} ms, server.request_timeout_ms) passed \
                             while waiting for the provider",
                            config.gateway.server.request_timeout_ms
                        ),
                        status: None,
                        retry_after_ms: None,
                        provider: model.provider.clone(),
                        model: model.id.clone(),
                    }),
                };
                probe.settled = true;
                match outcome {
                    Ok(value) => {
                        provider.breaker.record_success();
                        health.breaker.record_success();
                        return Ok(Won {
                            value,
                            model,
                            attempts,
                        });
                    }
                    Err(error) => {
                        let now = Instant::now();
                        self.record_failure(model, attempts as usize - 1, &error);
                        self.account_failure(meta, model, &error, now - attempt_started);
                        if counts_against_circuit(&error) {
                            if health.breaker.record_failure(breaker, now) {
                                tracing::warn!(model = model.id, "circuit opened");
                            }
                            if provider.breaker.record_failure(breaker, now) {
                                tracing::warn!(
                                    provider = model.provider,
                                    "provider circuit opened"
                                );
                            }
                        } else {
                            // The upstream answered: it is alive, whatever it said.
                            provider.breaker.record_success();
                            health.breaker.record_success();
                        }
                        if let GatewayError::Upstream {
                            class: ErrorClass::RateLimited,
                            retry_after_ms,
                            ..
                        } = &error
                        {
                            self.rate_limits.upstream_rate_limited(
                                &config.gateway.rate_limits,
                                &model.provider,
                                now,
                            );
                            if let Some(ms) = retry_after_ms {
                                provider.breaker.back_off(now, Duration::from_millis(*ms));
                                tracing::info!(
                                    provider = model.provider,
                                    retry_after_ms = ms,
                                    "backing off a rate-limited provider"
                                );
                            }
                        }
                        if !is_transient(&error) {
                            settled.insert(model.id.as_str());
                        }
                        let retryable = error.retryable();
                        last_error = Some(error);
                        if !retryable {
                            return Err(last_error.unwrap_or_else(empty_route));
                        }
                    }
                }
            }
            if !tried || attempts >= routing.max_attempts {
                break;
            }
            let pause = backoff(routing.backoff_base_ms, routing.backoff_max_ms, round);
            if Instant::now() + pause >= deadline {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        if last_error.is_none()
            && let Some(limit) = throttled
        {
            return Err(GatewayError::Limit(limit.into()));
        }
        Err(last_error.unwrap_or_else(|| {
            GatewayError::Route(RouteError::NoCandidate {
                reasons: if skipped.is_empty() {
                    vec!["no attempt could be made before the deadline".into()]
                } else {
                    skipped
                },
            })
        }))
    }
}

/// Keeps the limit that frees up soonest.
fn note_throttled(
    soonest: &mut Option<crate::ratelimit::Throttled>,
    limit: crate::ratelimit::Throttled,
) {
    if soonest
        .as_ref()
        .is_none_or(|t| limit.retry_after < t.retry_after)
    {
        *soonest = Some(limit);
    }
}

/// Releases the half-open probe slots an attempt took unless the attempt reached a verdict.
struct ProbeGuard<'a> {
    held: [Option<&'a crate::routing::circuit::Breaker>; 2],
    settled: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.settled {
            for breaker in self.held.into_iter().flatten() {
                breaker.release_probe();
            }
        }
    }
}

/// Failures that say something about the upstream's health. Faults while building the
/// request, and requests an adapter cannot express, are about the request, not the provider: a
/// client must not be able to open circuits for everyone with an odd request.
pub(super) fn counts_against_circuit(error: &GatewayError) -> bool {
    match error {
        GatewayError::Upstream { class, .. } => matches!(
            class,
            ErrorClass::Server
                | ErrorClass::Overloaded
                | ErrorClass::Timeout
                | ErrorClass::InvalidResponse
        ),
        GatewayError::Plugin { building, .. } => !building,
        GatewayError::Unsupported { .. }
        | GatewayError::InvalidRequest { .. }
        | GatewayError::Route(_)
        | GatewayError::Internal(_)
        | GatewayError::Limit(_) => false,
    }
}

/// Failures that may go away if the same candidate is tried again.
fn is_transient(error: &GatewayError) -> bool {
    matches!(
        error,
        GatewayError::Upstream {
            class: ErrorClass::Server
                | ErrorClass::Overloaded
                | ErrorClass::Timeout
                | ErrorClass::RateLimited,
            ..
        }
    )
}

/// Full-jitter exponential back-off: uniformly up to `base * 2^round`, capped.
fn backoff(base_ms: u64, max_ms: u64, round: u32) -> Duration {
    let ceiling = base_ms
        .saturating_mul(1u64 << round.min(20))
        .min(max_ms)
        .max(1);
    Duration::from_millis(rand::random_range(ceiling / 2..=ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..100 {
            let first = backoff(100, 2000, 0).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let late = backoff(100, 2000, 10).as_millis();
            assert!((1000..=2000).contains(&late), "{late}");
        }
    }
}
