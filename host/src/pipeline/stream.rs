//! Streamed completions.
//!
//! Failover is only possible before the client has seen anything, so a stream is opened and read
//! up to its first piece of content before it is handed to the front door; errors until then try
//! the next candidate. After that, an upstream error or a stream that ends without the provider
//! signalling completion becomes an explicit `StreamChunk::Error`, never a clean finish.

use super::accounting::{AttemptUsage, RequestMeta};
use super::attempt::Attempt;
use super::{CacheStatus, ConfigState, Gateway, GatewayError, RouteSummary, transport_error};
use crate::budget::Reservation;
use crate::cache::{Lookup, Pending, StreamRecorder};
use crate::config::ModelConfig;
use crate::ledger::Outcome;
use crate::plugins::bindings::adapter::StreamOutcome;
use crate::plugins::bindings::types::{
    CompletionRequest, ErrorClass, FinishReason, ProviderError, StreamDelta, ToolCallDelta, Usage,
};
use crate::plugins::component::AdapterSession;
use crate::plugins::{CallLimits, ComponentSet};
use crate::providers::sse::EventParser;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Chunks buffered between the upstream reader and a slow client.
const CHANNEL_DEPTH: usize = 64;
/// How long a client may leave a full buffer unread before its stream is abandoned.
const CLIENT_STALL_LIMIT: Duration = Duration::from_secs(60);

/// What a front door forwards to its client, in order.
#[derive(Debug, Clone)]
pub enum StreamChunk {
    Text(String),
    /// A tool-call fragment. `index` is the call's position among this response's calls (the
    /// host renumbers whatever the adapter used); `id` and `name` come on a call's first fragment.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Finish(FinishReason),
    /// The merged usage of the whole response, sent once after the content.
    Usage(Usage),
    /// The stream failed after content was sent. Nothing follows.
    Error(GatewayError),
    /// The provider signalled completion and everything was forwarded. A stream whose channel
    /// closes without this (a task that died) did not complete.
    End,
}

/// A stream that has produced its first content.
pub struct CompletionStream {
    pub model: String,
    pub provider: String,
    pub route: RouteSummary,
    pub attempts: u32,
    pub chunks: mpsc::Receiver<StreamChunk>,
    pub cache: CacheStatus,
}

impl Gateway {
    /// Routes a completion and opens it as a stream, failing over until one candidate has
    /// produced content.
    pub async fn complete_stream(
        self: &Arc<Self>,
        mut input: super::CompletionInput,
    ) -> Result<CompletionStream, GatewayError> {
        let started = Instant::now();
        input.request.stream = true;
        let pending = match self.cache_lookup(&input).await {
            Lookup::Hit(hit) => return Ok(self.stream_from_hit(hit, &input)),
            Lookup::Miss(pending) => Some(pending),
            Lookup::Bypass => None,
        };
        let task = self.classify_task(&input, pending.as_ref()).await;
        let (state, components, limits, route, summary, prompt_tokens) =
            self.route(&input, task)?;
        let (meta, reservation) = self.admit(&state, &input, &route, &summary, prompt_tokens)?;
        let won = self
            .failover(&route, &state.config, started, &meta, |model| {
                let (state, components, request) = (&state, &components, &input.request);
                async move {
                    let mut upstream = self
                        .open_stream(state, components, model, request, limits)
                        .await?;
                    // Read until the first content, so failover stays possible until then.
                    let mut head = Vec::new();
                    while let Some(delta) = upstream.next().await {
                        let delta = delta?;
                        let content = has_content(&delta);
                        head.push(delta);
                        if content {
                            break;
                        }
                    }
                    Ok((upstream, head))
                }
            })
            .await;
        let won = match won {
            Ok(won) => won,
            Err(error) => {
                self.record_final_error(&route, &error);
                return Err(error);
            }
        };
        let (upstream, head) = won.value;
        let model = won.model;
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let gateway = self.clone();
        let served = Served {
            model: model.clone(),
            request: input.request.clone(),
            started,
            ttft: started.elapsed(),
            meta,
            reservation,
        };
        let cache = if pending.is_some() {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        };
        // The request's span (and its request id) follows the stream into the pump's logs.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                gateway.pump(upstream, head, tx, served, pending).await;
            },
            span,
        ));
        Ok(CompletionStream {
            model: model.id.clone(),
            provider: model.provider.clone(),
            route: summary,
            attempts: won.attempts,
            chunks: rx,
            cache,
        })
    }

    async fn open_stream(
        &self,
        state: &ConfigState,
        components: &ComponentSet,
        model: &ModelConfig,
        request: &CompletionRequest,
        limits: CallLimits,
    ) -> Result<UpstreamStream, GatewayError> {
        // A stream must start, and keep flowing, within the first-byte timeout; a completion
        // that is not streamed has only the total timeout (reasoning models think long).
        let idle = Duration::from_millis(state.config.gateway.upstream.first_byte_timeout_ms);
        let (attempt, response) = tokio::time::timeout(
            idle,
            self.open_attempt(state, components, model, request, limits),
        )
        .await
        .map_err(|_| stalled(model, idle))??;
        Ok(UpstreamStream {
            adapter: attempt.adapter.adapter_session(&attempt.runtime),
            idle,
            failed: None,
            parser: EventParser::new(attempt.info.stream_framing),
            body: Box::pin(response.bytes_stream()),
            pending: VecDeque::new(),
            done: false,
            attempt,
        })
    }

    /// Forwards the rest of a stream to the front door, assembling usage and tool-call indices,
    /// then records the outcome.
    async fn pump(
        &self,
        mut upstream: UpstreamStream,
        head: Vec<StreamDelta>,
        tx: mpsc::Sender<StreamChunk>,
        served: Served,
        cache: Option<Pending>,
    ) {
        let Served {
            model,
            request,
            started,
            ttft,
            meta,
            reservation,
        } = served;
        // Whatever happens, what the provider generated is recorded and charged.
        let settle = |assembler: &mut Assembler, outcome: Outcome, class: Option<&'static str>| {
            if assembler.usage.is_none() {
                assembler.usage = Some(crate::tokens::estimate_usage(&request, &assembler.output));
            }
            self.account(
                &meta,
                &model,
                &AttemptUsage {
                    usage: assembler.usage.as_ref(),
                    latency: started.elapsed(),
                    ttft: Some(ttft),
                    outcome,
                    error_class: class,
                },
            )
        };
        let mut assembler = Assembler {
            recorder: cache.is_some().then(StreamRecorder::default),
            ..Assembler::default()
        };
        let mut pending = head.into_iter();
        loop {
            let next = match pending.next() {
                Some(delta) => Some(Ok(delta)),
                None => upstream.next().await,
            };
            match next {
                Some(Ok(delta)) => {
                    if !assembler.forward(delta, &tx).await {
                        // The client went away; dropping `upstream` closes the connection.
                        let cost = settle(&mut assembler, Outcome::ClientClosed, None);
                        reservation.settle(cost, self.alert_webhook().as_deref());
                        return;
                    }
                }
                Some(Err(error)) => {
                    self.record_failure(&model, 0, &error);
                    let cost = settle(&mut assembler, Outcome::Error, Some(error.class_label()));
                    reservation.settle(cost, self.alert_webhook().as_deref());
                    if super::failover::counts_against_circuit(&error) {
                        let routing = &self.config().config.gateway.routing;
                        let settings = crate::routing::circuit::BreakerSettings {
                            failure_threshold: routing.circuit_failure_threshold,
                            open_for: Duration::from_millis(routing.circuit_open_ms),
                        };
                        let now = Instant::now();
                        self.stats
                            .get(&model.id)
                            .breaker
                            .record_failure(settings, now);
                        self.stats
                            .provider(&model.provider)
                            .breaker
                            .record_failure(settings, now);
                    }
                    let _ = tx.send(StreamChunk::Error(error)).await;
                    return;
                }
                None => break,
            }
        }
        let cost = settle(&mut assembler, Outcome::Ok, None);
        reservation.settle(cost, self.alert_webhook().as_deref());
        let latency = started.elapsed();
        self.record_latency(&model, latency, Some(ttft));
        self.record_success(&model, latency);
        self.metrics
            .ttft
            .get_or_create(&crate::metrics::ModelLabels {
                provider: model.provider.clone(),
                model: model.id.clone(),
            })
            .observe(ttft.as_secs_f64());
        if let (Some(pending), Some(recorder)) = (cache, assembler.recorder.take()) {
            self.cache_store_stream(pending, recorder, &model, assembler.usage.as_ref());
        }
        if let Some(usage) = assembler.usage {
            let _ = tx.send(StreamChunk::Usage(usage)).await;
        }
        let _ = tx.send(StreamChunk::End).await;
    }
}

/// What a stream's outcome is recorded against once it ends.
struct Served {
    model: ModelConfig,
    /// The request, for counting tokens if the provider reports no usage.
    request: CompletionRequest,
    started: Instant,
    /// Time to the first content.
    ttft: Duration,
    meta: RequestMeta,
    /// The request's budget hold, settled with the real cost when the stream ends.
    reservation: Reservation,
}

/// Whether a delta carries something the client sees (not only usage or ids).
fn has_content(delta: &StreamDelta) -> bool {
    delta.text.as_deref().is_some_and(|t| !t.is_empty())
        || !delta.tool_calls.is_empty()
        || delta.finish_reason.is_some()
}

fn stalled(model: &ModelConfig, idle: Duration) -> GatewayError {
    GatewayError::Upstream {
        class: ErrorClass::Timeout,
        message: format!(
            "the upstream sent nothing for {} ms (upstream.first_byte_timeout_ms)",
            idle.as_millis()
        ),
        status: None,
        retry_after_ms: None,
        provider: model.provider.clone(),
        model: model.id.clone(),
    }
}

/// An open upstream stream, parsed into adapter deltas.
struct UpstreamStream {
    attempt: Attempt,
    /// One adapter instance parses all of this stream's events.
    adapter: AdapterSession,
    /// The longest silence allowed between reads.
    idle: Duration,
    /// An error met after deltas that are still pending: reported once they are delivered.
    failed: Option<GatewayError>,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    parser: EventParser,
    pending: VecDeque<StreamDelta>,
    done: bool,
}

impl UpstreamStream {
    async fn next(&mut self) -> Option<Result<StreamDelta, GatewayError>> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                return Some(Ok(delta));
            }
            if self.done {
                self.adapter.close();
                return self.failed.take().map(Err);
            }
            let next = match tokio::time::timeout(self.idle, self.body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    self.done = true;
                    return Some(Err(stalled(&self.attempt.model, self.idle)));
                }
            };
            match next {
                Some(Ok(bytes)) => {
                    let events = match self.parser.feed(&bytes) {
                        Ok(events) => events,
                        Err(e) => return Some(Err(self.cut(e.to_string()))),
                    };
                    for event in events {
                        if let Err(error) = self.handle(event) {
                            // Deltas parsed before the error still reach the client first.
                            self.done = true;
                            self.failed = Some(error);
                            break;
                        }
                        if self.done {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    let error = transport_error(crate::providers::transport_error(e));
                    return Some(Err(self.attempt.upstream_error(error)));
                }
                None => {
                    if let Some(event) = self.parser.finish()
                        && let Err(error) = self.handle(event)
                    {
                        self.done = true;
                        return Some(Err(error));
                    }
                    if !self.done {
                        self.done = true;
                        return Some(Err(self.cut(
                            "the upstream stream ended before the provider signalled completion"
                                .into(),
                        )));
                    }
                }
            }
        }
    }

    fn handle(
        &mut self,
        event: crate::plugins::bindings::adapter::StreamEvent,
    ) -> Result<(), GatewayError> {
        let attempt = &self.attempt;
        let outcome = self
            .adapter
            .call(&attempt.runtime, attempt.limits, |guest, store| {
                guest.call_parse_stream_event(store, &attempt.ctx, &event)
            })
            .map_err(|f| attempt.plugin_error(f))?
            .map_err(|e| attempt.upstream_error(e))?;
        match outcome {
            StreamOutcome::Deltas(deltas) => self.pending.extend(deltas),
            StreamOutcome::Done(deltas) => {
                self.pending.extend(deltas);
                self.done = true;
            }
        }
        Ok(())
    }

    fn cut(&self, message: String) -> GatewayError {
        self.attempt.upstream_error(ProviderError {
            class: ErrorClass::Server,
            message,
            retry_after_ms: None,
            status: None,
        })
    }
}

/// Turns adapter deltas into front-door chunks: tool calls renumbered in order of appearance,
/// usage merged across reports.
#[derive(Default)]
struct Assembler {
    /// (the adapter's index, the call's id) per output index.
    calls: Vec<(u32, Option<String>)>,
    usage: Option<Usage>,
    /// Everything generated, kept only to count tokens when the provider reports no usage.
    output: String,
    /// The whole answer, kept when it is to be cached.
    recorder: Option<StreamRecorder>,
}

impl Assembler {
    /// Returns false once the receiver is gone.
    async fn forward(&mut self, delta: StreamDelta, tx: &mpsc::Sender<StreamChunk>) -> bool {
        if let Some(usage) = delta.usage {
            self.merge_usage(usage);
        }
        let mut chunks = Vec::new();
        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
            if self.usage.is_none() {
                self.output.push_str(&text);
            }
            chunks.push(StreamChunk::Text(text));
        }
        for call in delta.tool_calls {
            if self.usage.is_none() {
                self.output.extend(call.name.as_deref());
                self.output.push_str(&call.arguments_fragment);
            }
            chunks.push(self.tool_call(call));
        }
        if let Some(mut reason) = delta.finish_reason {
            // Providers that send calls before the finishing event (Gemini) report a plain stop;
            // clients decide whether to run tools from this field.
            if reason == FinishReason::Stop && !self.calls.is_empty() {
                reason = FinishReason::ToolCalls;
            }
            chunks.push(StreamChunk::Finish(reason));
        }
        for chunk in chunks {
            if let Some(recorder) = &mut self.recorder {
                recorder.observe(&chunk);
            }
            // A client that stops reading but keeps its connection open must not pin this task
            // and the upstream connection for ever.
            if tx.send_timeout(chunk, CLIENT_STALL_LIMIT).await.is_err() {
                return false;
            }
        }
        true
    }

    fn tool_call(&mut self, call: ToolCallDelta) -> StreamChunk {
        let existing = self
            .calls
            .iter()
            .rposition(|(index, _)| *index == call.index)
            .filter(|&at| match (&call.id, &self.calls[at].1) {
                (Some(new), Some(old)) => new == old,
                _ => true,
            });
        let at = existing.unwrap_or_else(|| {
            self.calls.push((call.index, call.id.clone()));
            self.calls.len() - 1
        });
        StreamChunk::ToolCall {
            index: u32::try_from(at).unwrap_or(u32::MAX),
            id: call.id,
            name: call.name,
            arguments: call.arguments_fragment,
        }
    }

    /// Providers report usage in pieces (input at the start, output at the end) or
    /// cumulatively; the field-wise maximum is right for both.
    fn merge_usage(&mut self, new: Usage) {
        self.usage = Some(match self.usage.take() {
            None => new,
            Some(old) => Usage {
                input_tokens: old.input_tokens.max(new.input_tokens),
                cached_input_tokens: old.cached_input_tokens.max(new.cached_input_tokens),
                cache_write_input_tokens: old
                    .cache_write_input_tokens
                    .max(new.cache_write_input_tokens),
                output_tokens: old.output_tokens.max(new.output_tokens),
                reasoning_output_tokens: old
                    .reasoning_output_tokens
                    .max(new.reasoning_output_tokens),
                estimated: old.estimated && new.estimated,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(index: u32, id: Option<&str>, args: &str) -> ToolCallDelta {
        ToolCallDelta {
            index,
            id: id.map(str::to_string),
            name: id.map(|_| "f".to_string()),
            arguments_fragment: args.into(),
        }
    }

    fn index_of(chunk: StreamChunk) -> u32 {
        match chunk {
            StreamChunk::ToolCall { index, .. } => index,
            other => panic!("not a tool call: {other:?}"),
        }
    }

    #[test]
    fn tool_calls_are_renumbered_in_order_of_appearance() {
        let mut a = Assembler::default();
        // Anthropic-style: content block indices 1 and 3.
        assert_eq!(index_of(a.tool_call(call(1, Some("a"), ""))), 0);
        assert_eq!(index_of(a.tool_call(call(1, None, "{\"x\""))), 0);
        assert_eq!(index_of(a.tool_call(call(3, Some("b"), ""))), 1);
        assert_eq!(index_of(a.tool_call(call(1, None, ":1}"))), 0);
        // Gemini-style: a new id at a reused index is a new call.
        assert_eq!(index_of(a.tool_call(call(1, Some("c"), "{}"))), 2);
    }

    #[test]
    fn usage_reports_merge_field_by_field() {
        let mut a = Assembler::default();
        let usage = |input, output| Usage {
            input_tokens: input,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
            output_tokens: output,
            reasoning_output_tokens: 0,
            estimated: false,
        };
        a.merge_usage(usage(100, 1));
        a.merge_usage(usage(0, 42));
        let merged = a.usage.unwrap();
        assert_eq!((merged.input_tokens, merged.output_tokens), (100, 42));
    }
}
