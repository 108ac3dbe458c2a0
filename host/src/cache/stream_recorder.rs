//! Rebuilds a streamed answer from the chunks sent to the client, so a completed stream can be
//! stored like any other answer.

use super::entries::{StoredResponse, StoredToolCall, StoredUsage, finish_label};
use crate::pipeline::StreamChunk;

#[derive(Debug, Default)]
pub struct StreamRecorder {
    text: String,
    tool_calls: Vec<StoredToolCall>,
    finish_reason: Option<&'static str>,
    usage: Option<StoredUsage>,
}

impl StreamRecorder {
    pub fn observe(&mut self, chunk: &StreamChunk) {
        match chunk {
            StreamChunk::Text(text) => self.text.push_str(text),
            StreamChunk::ToolCall {
                index,
                id,
                name,
                arguments,
            } => {
                let at = usize::try_from(*index).unwrap_or(usize::MAX);
                if at >= self.tool_calls.len() {
                    // Indices are assigned in order of appearance, so this grows by one.
                    self.tool_calls
                        .resize_with(at.saturating_add(1).min(1024), || StoredToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                }
                if let Some(call) = self.tool_calls.get_mut(at) {
                    if let Some(id) = id {
                        call.id.clone_from(id);
                    }
                    if let Some(name) = name {
                        call.name.push_str(name);
                    }
                    call.arguments.push_str(arguments);
                }
            }
            StreamChunk::Finish(reason) => self.finish_reason = Some(finish_label(*reason)),
            StreamChunk::Usage(usage) => {
                self.usage = Some(StoredUsage {
                    input_tokens: usage.input_tokens,
                    cached_input_tokens: usage.cached_input_tokens,
                    output_tokens: usage.output_tokens,
                    reasoning_output_tokens: usage.reasoning_output_tokens,
                    estimated: usage.estimated,
                })
            }
            StreamChunk::Error(_) | StreamChunk::End => {}
        }
    }

    /// The answer as streamed; `None` if the provider never said why it finished.
    pub fn finish(self) -> Option<StoredResponse> {
        Some(StoredResponse {
            text: self.text,
            tool_calls: self.tool_calls,
            finish_reason: self.finish_reason?.to_string(),
            usage: self.usage,
        })
    }
}
