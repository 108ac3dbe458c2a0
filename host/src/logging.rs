//! Log output. `text` for people; `json` for machines, one object per line in the shape Google
//! Cloud Logging reads from a container: `severity`, `message`, `time`, the request id, and the
//! trace of the request (`logging.googleapis.com/trace`) when Cloud Run's load balancer sent
//! one, so a request's log lines group under its trace.

use serde_json::{Map, Value};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The span field that carries the trace id of `x-cloud-trace-context`.
pub const TRACE_FIELD: &str = "trace_id";
const TRACE_KEY: &str = "logging.googleapis.com/trace";

/// Formats events as Cloud Logging structured JSON. Span fields (the request id, path, trace)
/// are lifted into every line logged inside the span.
pub struct CloudLoggingJson {
    /// `projects/<id>/traces/` when the project is known (`GOOGLE_CLOUD_PROJECT`), which Cloud
    /// Logging needs to link a line to its trace.
    trace_prefix: Option<String>,
}

impl CloudLoggingJson {
    pub fn from_env() -> Self {
        let project = std::env::var("GOOGLE_CLOUD_PROJECT")
            .or_else(|_| std::env::var("GCP_PROJECT"))
            .ok()
            .filter(|p| !p.is_empty());
        CloudLoggingJson {
            trace_prefix: project.map(|p| format!("projects/{p}/traces/")),
        }
    }
}

pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S> FormatEvent<S, JsonFields> for CloudLoggingJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert(
            "time".into(),
            timestamp().map_or(Value::Null, Value::String),
        );
        line.insert("target".into(), meta.target().into());

        // Outermost span first, so inner spans' fields win on a clash.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields) {
                    line.extend(map);
                }
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        if !line.contains_key("message") {
            line.insert("message".into(), Value::String(String::new()));
        }
        if let Some(Value::String(trace)) = line.remove(TRACE_FIELD) {
            let value = match &self.trace_prefix {
                Some(prefix) => format!("{prefix}{trace}"),
                None => trace,
            };
            line.insert(TRACE_KEY.into(), value.into());
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// RFC 3339 in UTC, which Cloud Logging takes as the entry's timestamp.
fn timestamp() -> Option<String> {
    let mut text = String::new();
    tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut Writer::new(&mut text))
        .ok()?;
    Some(text)
}

/// The trace id in a `x-cloud-trace-context: TRACE_ID/SPAN_ID;o=1` header value.
pub fn trace_id_from_header(value: &str) -> Option<&str> {
    let id = value.split('/').next()?.trim();
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_headers() {
        assert_eq!(
            trace_id_from_header("105445aa7843bc8bf206b12000100000/1;o=1"),
            Some("105445aa7843bc8bf206b12000100000")
        );
        assert_eq!(trace_id_from_header("not-hex/1"), None);
        assert_eq!(trace_id_from_header(""), None);
    }
}
