//! Turning token usage into money.

use crate::config::ModelConfig;
use crate::plugins::bindings::types::Usage;

/// The cost of `usage` on `model` in USD. Cached and cache-written input tokens are part of
/// `input_tokens` (see the WIT contract) and are priced at their own rates, never twice.
pub fn cost_usd(model: &ModelConfig, usage: &Usage) -> f64 {
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let written = usage
        .cache_write_input_tokens
        .min(usage.input_tokens - cached);
    let uncached = usage.input_tokens - cached - written;
    (uncached as f64 * model.input_per_mtok
        + cached as f64 * model.cached_input_per_mtok()
        + written as f64 * model.cache_write_per_mtok()
        + usage.output_tokens as f64 * model.output_per_mtok)
        / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelConfig {
        toml::from_str(
            r#"
id = "m"
provider = "p"
context_window = 1000
max_output_tokens = 100
input_per_mtok = 2.0
cached_input_per_mtok = 0.5
cache_write_per_mtok = 2.5
output_per_mtok = 8.0
quality = 0.5
"#,
        )
        .unwrap()
    }

    #[test]
    fn each_token_class_is_priced_once_at_its_own_rate() {
        let usage = Usage {
            input_tokens: 1_000_000,
            cached_input_tokens: 400_000,
            cache_write_input_tokens: 100_000,
            output_tokens: 10_000,
            reasoning_output_tokens: 5_000,
            estimated: false,
        };
        // 500k uncached * 2 + 400k cached * 0.5 + 100k written * 2.5 + 10k out * 8, per million.
        let expected = 1.0 + 0.2 + 0.25 + 0.08;
        assert!((cost_usd(&model(), &usage) - expected).abs() < 1e-12);
    }

    #[test]
    fn inconsistent_counts_never_go_negative() {
        let usage = Usage {
            input_tokens: 10,
            cached_input_tokens: 50,
            cache_write_input_tokens: 50,
            output_tokens: 0,
            reasoning_output_tokens: 0,
            estimated: false,
        };
        assert!((cost_usd(&model(), &usage) - 10.0 * 0.5 / 1e6).abs() < 1e-15);
    }
}
