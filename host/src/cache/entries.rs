//! Cached answers: what is stored per request, expiry by age and eviction by count.

use crate::plugins::bindings::types::{
    CompletionResponse, ContentPart, FinishReason, ToolCall, Usage,
};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// A response as the cache keeps it (the WIT types have no serde).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredResponse {
    pub text: String,
    pub tool_calls: Vec<StoredToolCall>,
    pub finish_reason: String,
    pub usage: Option<StoredUsage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct StoredUsage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_output_tokens: u64,
    pub estimated: bool,
}

impl StoredResponse {
    pub fn from_response(response: &CompletionResponse) -> Self {
        StoredResponse {
            text: response
                .content
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text(t) => Some(t.as_str()),
                    ContentPart::Image(_) => None,
                })
                .collect(),
            tool_calls: response
                .tool_calls
                .iter()
                .map(|c| StoredToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
            finish_reason: finish_label(response.finish_reason).into(),
            usage: response.usage.as_ref().map(|u| StoredUsage {
                input_tokens: u.input_tokens,
                cached_input_tokens: u.cached_input_tokens,
                output_tokens: u.output_tokens,
                reasoning_output_tokens: u.reasoning_output_tokens,
                estimated: u.estimated,
            }),
        }
    }

    pub fn to_response(&self) -> CompletionResponse {
        CompletionResponse {
            id: None,
            model: None,
            content: if self.text.is_empty() {
                Vec::new()
            } else {
                vec![ContentPart::Text(self.text.clone())]
            },
            tool_calls: self
                .tool_calls
                .iter()
                .map(|c| ToolCall {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect(),
            finish_reason: match self.finish_reason.as_str() {
                "stop" => FinishReason::Stop,
                "length" => FinishReason::Length,
                "tool_calls" => FinishReason::ToolCalls,
                "content_filter" => FinishReason::ContentFilter,
                _ => FinishReason::Other,
            },
            usage: self.usage.map(|u| Usage {
                input_tokens: u.input_tokens,
                cached_input_tokens: u.cached_input_tokens,
                cache_write_input_tokens: 0,
                output_tokens: u.output_tokens,
                reasoning_output_tokens: u.reasoning_output_tokens,
                estimated: u.estimated,
            }),
        }
    }
}

pub fn finish_label(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Other => "other",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub exact_key: String,
    pub scope: u64,
    /// The normalised last user turn, for the false-hit guard; `None` when the entry is only
    /// reachable by its exact key.
    pub query: Option<String>,
    pub response: StoredResponse,
    /// The catalog model and provider that answered.
    pub model: String,
    pub provider: String,
    /// What the answer cost upstream: what each hit saves.
    pub cost_usd: f64,
    /// Seconds since the Unix epoch, so age survives a restart.
    pub created_at: u64,
}

/// Every live entry, by id and by exact key, oldest first.
#[derive(Default)]
pub struct Entries {
    by_id: HashMap<u64, Entry>,
    by_key: HashMap<String, u64>,
    /// Insertion order; ids of entries already removed are skipped when met.
    order: VecDeque<u64>,
    next_id: u64,
}

impl Entries {
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let mut all = Entries::default();
        let mut entries = entries;
        entries.sort_by_key(|e| (e.created_at, e.id));
        for entry in entries {
            all.next_id = all.next_id.max(entry.id + 1);
            all.insert(entry);
        }
        all
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.by_id.get(&id)
    }

    pub fn by_exact_key(&self, key: &str) -> Option<&Entry> {
        self.by_key.get(key).and_then(|id| self.by_id.get(id))
    }

    /// Adds an entry; returns the id of the entry it replaced (same exact key), if any.
    pub fn insert(&mut self, entry: Entry) -> Option<u64> {
        let replaced = self.by_key.insert(entry.exact_key.clone(), entry.id);
        if let Some(old) = replaced {
            self.by_id.remove(&old);
        }
        self.order.push_back(entry.id);
        self.by_id.insert(entry.id, entry);
        replaced
    }

    /// Removes entries older than `max_age_secs` and, oldest first, as many as keep the count
    /// at most `max_entries`. Returns the removed ids.
    pub fn evict(&mut self, now: u64, max_age_secs: u64, max_entries: usize) -> Vec<u64> {
        let mut removed = Vec::new();
        while let Some(&id) = self.order.front() {
            let Some(entry) = self.by_id.get(&id) else {
                self.order.pop_front();
                continue;
            };
            let expired = now.saturating_sub(entry.created_at) >= max_age_secs;
            if !expired && self.by_id.len() <= max_entries {
                break;
            }
            self.order.pop_front();
            if let Some(entry) = self.by_id.remove(&id) {
                if self.by_key.get(&entry.exact_key) == Some(&id) {
                    self.by_key.remove(&entry.exact_key);
                }
                removed.push(id);
            }
        }
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, key: &str, created_at: u64) -> Entry {
        Entry {
            id,
            exact_key: key.into(),
            scope: 1,
            query: None,
            response: StoredResponse {
                text: "answer".into(),
                tool_calls: Vec::new(),
                finish_reason: "stop".into(),
                usage: None,
            },
            model: "m".into(),
            provider: "p".into(),
            cost_usd: 0.0,
            created_at,
        }
    }

    #[test]
    fn evicts_expired_then_oldest_and_replaces_by_key() {
        let mut entries = Entries::default();
        entries.insert(entry(0, "a", 100));
        entries.insert(entry(1, "b", 200));
        entries.insert(entry(2, "c", 300));
        assert_eq!(entries.insert(entry(3, "a", 300)), Some(0));
        assert_eq!(entries.len(), 3);
        // Entry 1 is past the age limit; then the count limit takes entry 2.
        assert_eq!(entries.evict(400, 150, 1), vec![1, 2]);
        assert_eq!(entries.by_exact_key("a").map(|e| e.id), Some(3));
        assert!(entries.by_exact_key("b").is_none());
    }
}
