//! Live per-model and per-provider health: EWMA latency and time to first token, an EWMA success
//! rate, and a circuit breaker. The maps are swapped only when a model or provider is seen for the
//! first time, so looking one up on the request path takes no lock; the figures are atomics.

use super::circuit::Breaker;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Weight of the newest observation.
const ALPHA: f64 = 0.2;

#[derive(Default)]
pub struct ModelStats {
    models: HealthMap,
    providers: HealthMap,
}

pub struct ModelHealth {
    latency_ms: AtomicF64,
    ttft_ms: AtomicF64,
    success_rate: AtomicF64,
    pub breaker: Breaker,
}

impl Default for ModelHealth {
    fn default() -> Self {
        ModelHealth {
            latency_ms: AtomicF64::new(f64::NAN),
            ttft_ms: AtomicF64::new(f64::NAN),
            success_rate: AtomicF64::new(1.0),
            breaker: Breaker::default(),
        }
    }
}

impl ModelHealth {
    pub fn latency_ms(&self) -> Option<f64> {
        self.latency_ms.get()
    }

    pub fn ttft_ms(&self) -> Option<f64> {
        self.ttft_ms.get()
    }

    pub fn success_rate(&self) -> f64 {
        self.success_rate.get().unwrap_or(1.0)
    }

    pub fn record_success(&self, latency_ms: f64, ttft_ms: Option<f64>) {
        self.latency_ms.blend(latency_ms);
        if let Some(ttft) = ttft_ms {
            self.ttft_ms.blend(ttft);
        }
        self.success_rate.blend(1.0);
    }

    pub fn record_failure(&self) {
        self.success_rate.blend(0.0);
    }
}

impl ModelStats {
    pub fn get(&self, model: &str) -> Arc<ModelHealth> {
        self.models.get(model)
    }

    pub fn provider(&self, provider: &str) -> Arc<ModelHealth> {
        self.providers.get(provider)
    }
}

#[derive(Default)]
struct HealthMap(ArcSwap<HashMap<String, Arc<ModelHealth>>>);

impl HealthMap {
    fn get(&self, key: &str) -> Arc<ModelHealth> {
        if let Some(health) = self.0.load().get(key) {
            return health.clone();
        }
        let mut found = None;
        self.0.rcu(|map| {
            let mut next = HashMap::clone(map);
            found = Some(
                next.entry(key.to_string())
                    .or_insert_with(|| Arc::new(ModelHealth::default()))
                    .clone(),
            );
            next
        });
        found.unwrap_or_default()
    }
}

/// An f64 in an AtomicU64; NaN means "no observation yet".
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(value: f64) -> Self {
        AtomicF64(AtomicU64::new(value.to_bits()))
    }

    fn get(&self) -> Option<f64> {
        let v = f64::from_bits(self.0.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }

    fn blend(&self, sample: f64) {
        if !sample.is_finite() {
            return;
        }
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old.is_nan() {
                    sample
                } else {
                    old + ALPHA * (sample - old)
                };
                Some(new.to_bits())
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_starts_at_first_sample_and_moves_towards_new_ones() {
        let stats = ModelStats::default();
        let h = stats.get("m");
        assert_eq!(h.latency_ms(), None);
        h.record_success(100.0, None);
        assert_eq!(h.latency_ms(), Some(100.0));
        h.record_success(200.0, None);
        assert!((h.latency_ms().unwrap() - 120.0).abs() < 1e-9);
        h.record_failure();
        assert!((h.success_rate() - 0.8).abs() < 1e-9);
        assert!(Arc::ptr_eq(&h, &stats.get("m")));
    }
}
