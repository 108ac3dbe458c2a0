//! Prompt size estimates for routing (context-window checks and cost estimates).
//!
//! This is a conservative byte-based estimate, not a tokenizer: BPE tokenizers used by current
//! models average about four bytes of English per token, so dividing by three over-counts, which
//! errs towards a larger context window rather than a request the model rejects. Usage recorded
//! for billing always comes from the provider's own counts, never from here.

use crate::plugins::bindings::types::{CompletionRequest, ContentPart};

/// Tokens an image costs at most on current vision models (OpenAI high detail, 1024x1024).
const IMAGE_TOKENS: u64 = 765;
/// Per-message framing (role markers and separators).
const MESSAGE_OVERHEAD: u64 = 4;

pub fn estimate_prompt_tokens(request: &CompletionRequest) -> u64 {
    let text_tokens = |bytes: usize| (bytes as u64).div_ceil(3);
    let mut total = 3;
    for message in &request.messages {
        total += MESSAGE_OVERHEAD;
        for part in &message.content {
            total += match part {
                ContentPart::Text(text) => text_tokens(text.len()),
                ContentPart::Image(_) => IMAGE_TOKENS,
            };
        }
        for call in &message.tool_calls {
            total += text_tokens(call.name.len() + call.arguments.len()) + MESSAGE_OVERHEAD;
        }
    }
    for tool in &request.tools {
        total += text_tokens(
            tool.name.len()
                + tool.description.as_deref().map_or(0, str::len)
                + tool.parameters_json.len(),
        );
    }
    total
}
