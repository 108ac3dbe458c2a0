//! `[cache]` in gateway.toml: the response cache (exact and semantic tiers).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Serve repeated requests from the cache and store new answers in it.
    pub enabled: bool,
    /// Also serve requests whose last user turn means the same as a cached one (needs the
    /// embedding model; without it only identical requests are served).
    pub semantic: bool,
    /// The least cosine similarity for a semantic hit; requests may ask for a stricter one.
    pub threshold: f32,
    /// Reject semantic candidates that differ in numbers, negation, opposite words, named
    /// entities, units or direction.
    pub guard: bool,
    /// How long an answer may be served, in seconds.
    pub ttl_seconds: u64,
    /// The most answers kept; the oldest go first.
    pub max_entries: usize,
    /// Requests sampling above this temperature are neither served nor stored unless they set
    /// `cache.allow_high_temperature`. Requests that set no temperature are served.
    pub max_temperature: f32,
    /// How often the cache is written to the data directory when it has changed.
    pub snapshot_interval_ms: u64,
    /// ONNX Runtime threads per embedding.
    pub embedding_threads: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            semantic: true,
            threshold: 0.80,
            guard: true,
            ttl_seconds: 24 * 60 * 60,
            max_entries: 100_000,
            max_temperature: 0.7,
            snapshot_interval_ms: 10_000,
            embedding_threads: 1,
        }
    }
}

impl CacheSettings {
    /// `(field, problem)` for every invalid value.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            problems.push(("cache.threshold", "must be greater than 0 and at most 1"));
        }
        if self.ttl_seconds == 0 {
            problems.push(("cache.ttl_seconds", "must be at least 1"));
        }
        if self.max_entries == 0 {
            problems.push(("cache.max_entries", "must be at least 1"));
        }
        if !(0.0..=2.0).contains(&self.max_temperature) {
            problems.push(("cache.max_temperature", "must be between 0 and 2"));
        }
        if self.snapshot_interval_ms < 100 {
            problems.push(("cache.snapshot_interval_ms", "must be at least 100"));
        }
        if !(1..=64).contains(&self.embedding_threads) {
            problems.push(("cache.embedding_threads", "must be between 1 and 64"));
        }
        problems
    }
}
