//! Incremental parsing of upstream stream framing: server-sent events, or JSON lines.
//!
//! Bytes arrive in arbitrary chunks (a UTF-8 character or a line may be split between two), so
//! the parser buffers bytes and only decodes complete lines.

use crate::plugins::bindings::adapter::{StreamEvent, StreamFraming};

/// The most a single event may grow to before the stream is treated as broken.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("an upstream stream event exceeded {MAX_EVENT_BYTES} bytes")]
    TooLarge,
}

pub struct EventParser {
    framing: StreamFraming,
    buffer: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl EventParser {
    pub fn new(framing: StreamFraming) -> Self {
        EventParser {
            framing,
            buffer: Vec::new(),
            event: None,
            data: Vec::new(),
        }
    }

    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<StreamEvent>, FramingError> {
        // Only the new bytes are searched for line ends, and consumed lines are removed once
        // per feed: a long line trickling in stays linear, not quadratic.
        let searched = self.buffer.len();
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        let mut from = searched;
        while let Some(offset) = self.buffer[from..].iter().position(|&b| b == b'\n') {
            let end = from + offset;
            let mut line = &self.buffer[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            if let Some(event) = self.line(line) {
                events.push(event);
            }
            start = end + 1;
            from = start;
        }
        self.buffer.drain(..start);
        let pending = self.buffer.len() + self.data.iter().map(String::len).sum::<usize>();
        if pending > MAX_EVENT_BYTES {
            return Err(FramingError::TooLarge);
        }
        Ok(events)
    }

    /// Flushes an event left unterminated when the stream ends.
    pub fn finish(&mut self) -> Option<StreamEvent> {
        if !self.buffer.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
            if let Some(event) = self.line(rest) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: String) -> Option<StreamEvent> {
        match self.framing {
            StreamFraming::JsonLines => (!line.trim().is_empty()).then_some(StreamEvent {
                event: None,
                data: line,
            }),
            StreamFraming::Sse => {
                if line.is_empty() {
                    return self.dispatch();
                }
                if line.starts_with(':') {
                    return None;
                }
                let (field, value) = match line.split_once(':') {
                    Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                    None => (line.as_str(), ""),
                };
                match field {
                    "event" => self.event = Some(value.to_string()),
                    "data" => self.data.push(value.to_string()),
                    _ => {}
                }
                None
            }
        }
    }

    fn dispatch(&mut self) -> Option<StreamEvent> {
        if self.data.is_empty() {
            self.event = None;
            return None;
        }
        Some(StreamEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data).join("\n"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut parser = EventParser::new(StreamFraming::Sse);
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(parser.feed(chunk).unwrap());
        }
        out.extend(parser.finish());
        out.into_iter().map(|e| (e.event, e.data)).collect()
    }

    #[test]
    fn events_split_anywhere_reassemble() {
        let body = "event: message_start\r\ndata: {\"a\":\"é\"}\r\n\r\n: keep-alive\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        let bytes = body.as_bytes();
        let whole = sse(&[bytes]);
        for split in 0..bytes.len() {
            assert_eq!(
                sse(&[&bytes[..split], &bytes[split..]]),
                whole,
                "split at {split}"
            );
        }
        assert_eq!(
            whole,
            vec![
                (Some("message_start".into()), "{\"a\":\"é\"}".into()),
                (None, "one\ntwo".into()),
                (None, "[DONE]".into()),
            ]
        );
    }

    #[test]
    fn an_unterminated_last_event_is_flushed() {
        assert_eq!(sse(&[b"data: tail"]), vec![(None, "tail".into())]);
    }

    #[test]
    fn json_lines_are_one_event_each() {
        let mut parser = EventParser::new(StreamFraming::JsonLines);
        let events = parser.feed(b"{\"a\":1}\n\n{\"b\"").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(parser.feed(b":2}\n").unwrap()[0].data, "{\"b\":2}");
    }
}
