//! Token counting with a real tokenizer: OpenAI's `o200k_base` BPE, its ranks compiled into
//! the binary (nothing is downloaded) and held compactly (`o200k`).
//!
//! It is exact for current OpenAI models and a close estimate for other providers' tokenizers.
//! It serves two purposes: routing (context-window checks and cost estimates before a request)
//! and usage for providers that report none, which is then marked `estimated`. Usage a provider
//! reports is always used as reported.

mod o200k;

use crate::plugins::bindings::types::{CompletionRequest, ContentPart, Usage};
use o200k::Encoding;
use std::sync::OnceLock;

/// Tokens an image costs at most on current vision models (OpenAI high detail, 1024x1024).
const IMAGE_TOKENS: u64 = 765;
/// Per-message framing (role markers and separators), as OpenAI counts it.
const MESSAGE_OVERHEAD: u64 = 3;
/// The tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;

/// The encoding, loaded on first use; `None` (every count estimated) if the bundled ranks
/// do not load, which a unit test rules out for a released binary.
fn encoding() -> Option<&'static Encoding> {
    static ENCODING: OnceLock<Option<Encoding>> = OnceLock::new();
    ENCODING
        .get_or_init(|| match Encoding::load() {
            Ok(encoding) => Some(encoding),
            Err(e) => {
                tracing::error!("token counts are estimated at four bytes per token: {e}");
                None
            }
        })
        .as_ref()
}

/// Loads the tokenizer's tables (about 200k ranks) so the first request does not pay for it.
pub fn warm_up() {
    let _ = count_text("warm up");
}

/// Text up to this size is counted exactly; longer text is counted on a sample and scaled, so
/// that a huge prompt costs bounded time on the request path.
const EXACT_LIMIT: usize = 32 * 1024;
/// A run of this many non-space (or space) characters makes BPE quadratic and its regex
/// recurse deeply; such text is estimated at four bytes per token instead.
const PATHOLOGICAL_RUN: usize = 1024;

pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    if text.len() <= EXACT_LIMIT {
        return exact_or_estimate(text);
    }
    let mut cut = EXACT_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let sample = &text[..cut];
    let tokens = exact_or_estimate(sample) as f64 * text.len() as f64 / sample.len() as f64;
    tokens.ceil() as u64
}

fn exact_or_estimate(text: &str) -> u64 {
    let estimate = (text.len() as u64).div_ceil(4);
    if has_long_run(text) {
        return estimate;
    }
    // The split expression backtracks; past its limit it fails, and the text is estimated.
    encoding()
        .and_then(|encoding| encoding.count(text).ok())
        .map_or(estimate, |tokens| tokens as u64)
}

fn has_long_run(text: &str) -> bool {
    let mut run = 0usize;
    let mut last_space = None;
    for c in text.chars() {
        let space = c.is_whitespace();
        run = if last_space == Some(space) {
            run + 1
        } else {
            1
        };
        last_space = Some(space);
        if run > PATHOLOGICAL_RUN {
            return true;
        }
    }
    false
}

/// The prompt's size in tokens: messages, tool calls in the history, and tool definitions.
pub fn count_prompt_tokens(request: &CompletionRequest) -> u64 {
    let mut total = REPLY_PRIMING;
    for message in &request.messages {
        total += MESSAGE_OVERHEAD;
        for part in &message.content {
            total += match part {
                ContentPart::Text(text) => count_text(text),
                ContentPart::Image(_) => IMAGE_TOKENS,
            };
        }
        for call in &message.tool_calls {
            total += count_text(&call.name) + count_text(&call.arguments) + MESSAGE_OVERHEAD;
        }
    }
    for tool in &request.tools {
        total += count_text(&tool.name)
            + tool.description.as_deref().map_or(0, count_text)
            + count_text(&tool.parameters_json);
    }
    total
}

/// Usage for a response whose provider reported none, counted and marked as estimated.
pub fn estimate_usage(request: &CompletionRequest, output_text: &str) -> Usage {
    Usage {
        input_tokens: count_prompt_tokens(request),
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        output_tokens: count_text(output_text),
        reasoning_output_tokens: 0,
        estimated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_o200k_tokenizer() {
        // "hello world" is two tokens in o200k_base.
        assert_eq!(count_text("hello world"), 2);
        assert_eq!(count_text(""), 0);
        assert!(count_text(&"token ".repeat(1000)) >= 1000);
    }

    #[test]
    fn pathological_and_huge_input_is_bounded() {
        // Would make the tokenizer's regex overflow its stack, or BPE go quadratic.
        assert_eq!(count_text(&" ".repeat(1_000_000)), 250_000);
        assert_eq!(count_text(&"a".repeat(4_000_000)), 1_000_000);
        // Large normal text is scaled from an exact sample: within a few percent.
        let tokens = count_text(&"word ".repeat(150_000));
        assert!((145_000..=155_000).contains(&tokens), "{tokens}");
    }
}
