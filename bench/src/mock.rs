//! The mock upstream: OpenAI's chat-completions wire format on loopback, as cheap as hyper
//! allows, with an optional delay before the answer and optional pauses between stream chunks.
//!
//! `POST …/chat/completions` answers with content `tok0 tok1 … tok{N-1}` (the load generator
//! detects the first token by the text `tok0`), and with `"stream": true` as OpenAI does:
//! a role chunk, one chunk per token, a finish chunk, a usage chunk when
//! `stream_options.include_usage` is set, then `data: [DONE]`. `GET /__stats` returns how many
//! completions it served; `GET …/models` lists the requested models loosely.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// Address to listen on (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Delay before the response head (time to first byte), in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Content tokens per completion (each its own chunk when streaming).
    #[arg(long, default_value_t = 16)]
    pub chunks: usize,
    /// Pause between stream chunks, in milliseconds (0: all chunks written at once).
    #[arg(long, default_value_t = 0)]
    pub chunk_interval_ms: u64,
    /// Tokio worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The mock exits by itself after this long, should its parent fail to stop it.
    #[arg(long, default_value_t = 6 * 3600)]
    pub lifetime_secs: u64,
}

#[derive(Deserialize, Default)]
struct ChatRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

struct Mock {
    args: MockArgs,
    served: AtomicU64,
}

type Body = BoxBody<Bytes, Infallible>;

/// Runs the mock until killed or its lifetime ends. Prints `listening on http://ADDR`.
pub fn run(args: MockArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "the mock listens on loopback only"
    );
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

async fn serve(args: MockArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let lifetime = tokio::time::sleep(Duration::from_secs(args.lifetime_secs));
    tokio::pin!(lifetime);
    let mock = Arc::new(Mock {
        args,
        served: AtomicU64::new(0),
    });
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut lifetime => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(mock.clone(), request));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(mock: Arc<Mock>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if method == hyper::Method::GET && path == "/__stats" {
        let served = mock.served.load(Ordering::Relaxed);
        return Ok(json(StatusCode::OK, format!("{{\"served\":{served}}}")));
    }
    if method == hyper::Method::GET && path.ends_with("/models") {
        return Ok(json(
            StatusCode::OK,
            r#"{"object":"list","data":[{"id":"mock","object":"model","created":0,"owned_by":"mock"}]}"#
                .to_string(),
        ));
    }
    if method != hyper::Method::POST || !path.ends_with("/chat/completions") {
        return Ok(json(
            StatusCode::NOT_FOUND,
            format!(
                r#"{{"error":{{"message":"no route for {method} {path}","type":"invalid_request_error","param":null,"code":null}}}}"#
            ),
        ));
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(json(StatusCode::BAD_REQUEST, "{}".into())),
    };
    let chat: ChatRequest = match serde_json::from_slice(&body) {
        Ok(chat) => chat,
        Err(e) => {
            let message = serde_json::to_string(&e.to_string()).unwrap_or_default();
            return Ok(json(
                StatusCode::BAD_REQUEST,
                format!(
                    r#"{{"error":{{"message":{message},"type":"invalid_request_error","param":null,"code":null}}}}"#
                ),
            ));
        }
    };
    mock.served.fetch_add(1, Ordering::Relaxed);
    if mock.args.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(mock.args.delay_ms)).await;
    }
    let model = serde_json::to_string(&chat.model).unwrap_or_else(|_| "\"mock\"".into());
    if chat.stream {
        let include_usage = chat.stream_options.is_some_and(|o| o.include_usage);
        return Ok(stream_response(&mock.args, &model, include_usage));
    }
    Ok(json(StatusCode::OK, completion(&model, mock.args.chunks)))
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a valid response")
}

fn content(chunks: usize) -> String {
    (0..chunks.max(1))
        .map(|i| {
            if i == 0 {
                "tok0".to_string()
            } else {
                format!(" tok{i}")
            }
        })
        .collect()
}

const USAGE: &str = r#"{"prompt_tokens":24,"completion_tokens":16,"total_tokens":40,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;

/// A non-streaming chat completion; `model` is already JSON-encoded.
fn completion(model: &str, chunks: usize) -> String {
    let text = content(chunks);
    format!(
        r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":1700000000,"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":"{text}","refusal":null}},"logprobs":null,"finish_reason":"stop"}}],"usage":{USAGE},"service_tier":"default","system_fingerprint":"fp_mock"}}"#
    )
}

/// The SSE events of a streamed completion, each a complete `data: …\n\n` event.
fn stream_events(model: &str, chunks: usize, include_usage: bool) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"system_fingerprint\":\"fp_mock\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..chunks.max(1) {
        let token = if i == 0 {
            "tok0".to_string()
        } else {
            format!(" tok{i}")
        };
        events.push(chunk(&format!(r#"{{"content":"{token}"}}"#), "null"));
    }
    events.push(chunk("{}", "\"stop\""));
    if include_usage {
        events.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":{model},\"choices\":[],\"usage\":{USAGE}}}\n\n"
        )));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn stream_response(args: &MockArgs, model: &str, include_usage: bool) -> Response<Body> {
    let events = stream_events(model, args.chunks, include_usage);
    let interval = Duration::from_millis(args.chunk_interval_ms);
    let body: Body = if interval.is_zero() {
        let frames = events.into_iter().map(|e| Ok(Frame::data(e)));
        StreamBody::new(futures::stream::iter(frames)).boxed()
    } else {
        // The first event goes out at once; each later one after `interval`.
        let frames = futures::stream::unfold(
            (events.into_iter(), true),
            move |(mut events, first)| async move {
                let event = events.next()?;
                if !first {
                    tokio::time::sleep(interval).await;
                }
                Some((Ok(Frame::data(event)), (events, false)))
            },
        );
        StreamBody::new(frames).boxed()
    };
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .body(body)
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_is_openai_json() {
        let body: serde_json::Value =
            serde_json::from_str(&completion("\"m\"", 3)).expect("valid JSON");
        assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 tok2");
        assert_eq!(body["model"], "m");
        assert_eq!(body["usage"]["total_tokens"], 40);
    }

    #[test]
    fn stream_events_are_sse_with_done() {
        let events = stream_events("\"m\"", 2, true);
        // role, 2 tokens, finish, usage, [DONE]
        assert_eq!(events.len(), 6);
        let mut text = String::new();
        for event in &events[..events.len() - 1] {
            let payload = std::str::from_utf8(event)
                .unwrap()
                .strip_prefix("data: ")
                .unwrap()
                .trim_end();
            let chunk: serde_json::Value = serde_json::from_str(payload).expect("valid JSON");
            if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
        }
        assert_eq!(text, "tok0 tok1");
        assert_eq!(&events[5][..], b"data: [DONE]\n\n");
        assert_eq!(stream_events("\"m\"", 2, false).len(), 5);
    }
}
