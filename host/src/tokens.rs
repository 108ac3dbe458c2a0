//! Token counting with a real tokenizer: OpenAI's `o200k_base` BPE (shipped inside the
//! `tiktoken-rs` crate, so nothing is downloaded).
//!
//! It is exact for current OpenAI models and a close estimate for other providers' tokenizers.
//! It serves two purposes: routing (context-window checks and cost estimates before a request)
//! and usage for providers that report none, which is then marked `estimated`. Usage a provider
//! reports is always used as reported.

use crate::plugins::bindings::types::{CompletionRequest, ContentPart, Usage};
use tiktoken_rs::CoreBPE;

/// Tokens an image costs at most on current vision models (OpenAI high detail, 1024x1024).
const IMAGE_TOKENS: u64 = 765;
/// Per-message framing (role markers and separators), as OpenAI counts it.
const MESSAGE_OVERHEAD: u64 = 3;
/// The tokens that prime the assistant's reply.
const REPLY_PRIMING: u64 = 3;

fn bpe() -> &'static CoreBPE {
    tiktoken_rs::o200k_base_singleton()
}

/// Loads the tokenizer's tables (about 200k ranks) so the first request does not pay for it.
pub fn warm_up() {
    let _ = count_text("warm up");
}

pub fn count_text(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len() as u64
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
}
