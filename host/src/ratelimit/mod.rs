//! Rate limits: per API key (requests and tokens per minute, GCRA via `governor`), per provider
//! and per model on what the gateway sends upstream, and an adaptive ceiling per provider that
//! shrinks when the provider answers 429 and grows back while it does not.
//!
//! Limiters are built lazily from the configuration in force and rebuilt when a reload changes
//! their rate, so limits follow hot reloads.

mod adaptive;
mod headers;

pub use headers::upstream_reset;

use crate::config::{Rate, RateLimitSettings};
use adaptive::Adaptive;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The key id that requests without an API key are limited under.
pub const ANONYMOUS: &str = "(anonymous)";

/// A limit that was hit, and how long until it admits the request.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}; retry in {} ms", retry_after.as_millis())]
pub struct Throttled {
    pub what: String,
    pub retry_after: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// `key`, `provider`, `model` or `adaptive`.
    pub scope: String,
    /// The key id, provider or model.
    pub name: String,
}

/// Handles into the gateway's metrics registry.
#[derive(Clone, Default)]
pub struct RateLimitMetrics {
    pub rejections: Family<ThrottleLabels, Counter>,
    /// Times a provider's adaptive ceiling was cut after a 429.
    pub adaptive_cuts: Family<ThrottleLabels, Counter>,
}

/// A requests-per-minute and a tokens-per-minute limiter built from one `Rate`.
struct Limiter {
    rate: Rate,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    fn new(rate: Rate) -> Self {
        let per_minute = |n: Option<u32>| {
            n.and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_minute(n)))
        };
        Limiter {
            rate,
            requests: per_minute(rate.requests_per_minute),
            tokens: per_minute(rate.tokens_per_minute),
        }
    }

    /// Takes one request and `tokens` tokens, or says how long until they are available.
    fn check(&self, tokens: u64, what: &str) -> Result<(), Throttled> {
        let clock = DefaultClock::default();
        if let (Some(limiter), Some(limit)) = (&self.tokens, self.rate.tokens_per_minute) {
            let n = u32::try_from(tokens.max(1)).unwrap_or(u32::MAX);
            match NonZeroU32::new(n).map(|n| limiter.check_n(n)) {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(not_until))) => {
                    return Err(Throttled {
                        what: format!("{what} is over its limit of {limit} tokens per minute"),
                        retry_after: not_until.wait_time_from(clock.now()),
                    });
                }
                Some(Err(_)) => {
                    return Err(Throttled {
                        what: format!(
                            "this request needs {tokens} tokens, more than {what}'s whole limit \
                             of {limit} tokens per minute"
                        ),
                        retry_after: Duration::from_secs(60),
                    });
                }
            }
        }
        if let (Some(limiter), Some(limit)) = (&self.requests, self.rate.requests_per_minute)
            && let Err(not_until) = limiter.check()
        {
            return Err(Throttled {
                what: format!("{what} is over its limit of {limit} requests per minute"),
                retry_after: not_until.wait_time_from(clock.now()),
            });
        }
        Ok(())
    }
}

type Limiters = Mutex<HashMap<String, Arc<Limiter>>>;

#[derive(Default)]
pub struct RateLimits {
    keys: Limiters,
    providers: Limiters,
    models: Limiters,
    adaptive: Mutex<HashMap<String, Adaptive>>,
    pub metrics: RateLimitMetrics,
}

/// The limiter for `id` at `rate`, rebuilt when the configured rate changed.
fn limiter(map: &Limiters, id: &str, rate: Rate) -> Arc<Limiter> {
    let mut map = match map.lock() {
        Ok(map) => map,
        Err(poisoned) => poisoned.into_inner(),
    };
    match map.get(id) {
        Some(existing) if existing.rate == rate => existing.clone(),
        _ => {
            let built = Arc::new(Limiter::new(rate));
            map.insert(id.to_string(), built.clone());
            built
        }
    }
}

impl RateLimits {
    pub fn new(metrics: RateLimitMetrics) -> Self {
        RateLimits {
            metrics,
            ..RateLimits::default()
        }
    }

    /// Admits a client request of about `tokens` tokens for `key_id`.
    pub fn admit_key(
        &self,
        settings: &RateLimitSettings,
        key_id: Option<&str>,
        tokens: u64,
    ) -> Result<(), Throttled> {
        let id = key_id.unwrap_or(ANONYMOUS);
        let Some(rate) = settings.keys.get(id).or(settings.default_key.as_ref()) else {
            return Ok(());
        };
        limiter(&self.keys, id, *rate)
            .check(tokens, &format!("API key '{id}'"))
            .inspect_err(|_| self.count("key", id))
    }

    /// Admits one upstream attempt on `model` at `provider`: the configured limits of both, and
    /// the provider's adaptive ceiling.
    pub fn admit_upstream(
        &self,
        settings: &RateLimitSettings,
        provider: &str,
        model: &str,
        tokens: u64,
        now: Instant,
    ) -> Result<(), Throttled> {
        if let Some(rate) = settings.models.get(model) {
            limiter(&self.models, model, *rate)
                .check(tokens, &format!("model '{model}'"))
                .inspect_err(|_| self.count("model", model))?;
        }
        if let Some(rate) = settings.providers.get(provider) {
            limiter(&self.providers, provider, *rate)
                .check(tokens, &format!("provider '{provider}'"))
                .inspect_err(|_| self.count("provider", provider))?;
        }
        let mut adaptive = match self.adaptive.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        adaptive
            .entry(provider.to_string())
            .or_default()
            .admit(now, settings)
            .map_err(|retry_after| {
                self.count("adaptive", provider);
                Throttled {
                    what: format!(
                        "provider '{provider}' is held below its adaptive limit after a 429"
                    ),
                    retry_after,
                }
            })
    }

    /// The provider answered 429: cut its adaptive ceiling.
    pub fn upstream_rate_limited(
        &self,
        settings: &RateLimitSettings,
        provider: &str,
        now: Instant,
    ) {
        let mut adaptive = match self.adaptive.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let ceiling = adaptive
            .entry(provider.to_string())
            .or_default()
            .cut(now, settings);
        if let Some(ceiling) = ceiling {
            self.metrics
                .adaptive_cuts
                .get_or_create(&ThrottleLabels {
                    scope: "adaptive".into(),
                    name: provider.into(),
                })
                .inc();
            tracing::info!(
                provider,
                requests_per_minute = ceiling,
                "provider answered 429: adaptive request ceiling lowered"
            );
        }
    }

    /// The adaptive ceiling of a provider, in requests per minute, while one is in force.
    pub fn adaptive_ceiling(&self, provider: &str) -> Option<f64> {
        self.adaptive
            .lock()
            .ok()
            .and_then(|map| map.get(provider).and_then(Adaptive::ceiling))
    }

    fn count(&self, scope: &str, name: &str) {
        self.metrics
            .rejections
            .get_or_create(&ThrottleLabels {
                scope: scope.into(),
                name: name.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_requests_per_minute_waits_for_the_next_slot() {
        let limits = RateLimits::default();
        let mut settings = RateLimitSettings::default();
        settings.keys.insert(
            "k".into(),
            Rate {
                requests_per_minute: Some(2),
                tokens_per_minute: None,
            },
        );
        assert!(limits.admit_key(&settings, Some("k"), 10).is_ok());
        assert!(limits.admit_key(&settings, Some("k"), 10).is_ok());
        let throttled = limits.admit_key(&settings, Some("k"), 10).unwrap_err();
        // One slot every 30 s.
        assert!(
            throttled.retry_after > Duration::from_secs(25)
                && throttled.retry_after <= Duration::from_secs(30),
            "{throttled:?}"
        );
        // Other keys have no limit configured.
        for _ in 0..10 {
            assert!(limits.admit_key(&settings, Some("other"), 10).is_ok());
        }
    }

    #[test]
    fn tokens_per_minute_counts_the_request_size() {
        let limits = RateLimits::default();
        let settings = RateLimitSettings {
            default_key: Some(Rate {
                requests_per_minute: None,
                tokens_per_minute: Some(1000),
            }),
            ..RateLimitSettings::default()
        };
        assert!(limits.admit_key(&settings, None, 600).is_ok());
        assert!(limits.admit_key(&settings, None, 600).is_err());
        let too_big = limits.admit_key(&settings, None, 5000).unwrap_err();
        assert!(too_big.what.contains("more than"), "{}", too_big.what);
    }
}
