//! Per-request cache controls: the `cache` extension object on `/v1/chat/completions` and
//! `/unified_completion`.

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CacheControls {
    /// `false`: neither served from nor stored in the cache.
    pub enabled: Option<bool>,
    /// `false`: only an identical earlier request may answer.
    pub semantic: Option<bool>,
    /// The least similarity for a semantic hit, instead of the gateway's `cache.threshold`.
    /// Entries are scoped to the caller's key, so a looser value only risks the caller's own
    /// answers.
    pub threshold: Option<f32>,
    /// Serve and store even when the temperature is above the gateway's `cache.max_temperature`.
    pub allow_high_temperature: bool,
}

impl CacheControls {
    /// A message for the first invalid value.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        match self.threshold {
            Some(t) if !(t > 0.0 && t <= 1.0) => Some((
                "cache.threshold",
                "cache.threshold must be greater than 0 and at most 1",
            )),
            _ => None,
        }
    }
}
