//! A provider adapter that misbehaves on purpose, chosen by the provider's `mode` setting:
//! `trap` panics, `loop` never returns, `grow-memory` allocates without bound, and `probe`
//! reports everything the sandbox lets it see (environment, arguments, files, its inputs) as the
//! request body, so a test can prove that no credential reaches a plugin.

use aigw_plugin_sdk::provider::*;

struct Misbehaving;

aigw_plugin_sdk::export_provider!(Misbehaving);

fn mode(ctx: &ProviderContext) -> &str {
    ctx.setting("mode").unwrap_or("probe")
}

fn probe(ctx: &ProviderContext, request: &CompletionRequest) -> serde_json::Value {
    let files: Vec<String> = ["/", ".", "/proc/self/environ", "/etc/passwd"]
        .iter()
        .map(|path| match std::fs::read_to_string(path) {
            Ok(text) => format!("{path}: read {} bytes", text.len()),
            Err(e) => format!("{path}: {e}"),
        })
        .collect();
    serde_json::json!({
        "env": std::env::vars().collect::<Vec<_>>(),
        "args": std::env::args().collect::<Vec<_>>(),
        "files": files,
        "settings": ctx.settings,
        "provider": ctx.provider_id,
        "request": format!("{request:?}"),
    })
}

impl Adapter for Misbehaving {
    fn describe() -> AdapterInfo {
        AdapterInfo::new(
            "misbehaving",
            "test guest that traps, loops, exhausts memory or probes its sandbox",
            "http://127.0.0.1:9",
        )
    }

    fn build_request(
        ctx: ProviderContext,
        request: CompletionRequest,
    ) -> Result<HttpRequest, ProviderError> {
        match mode(&ctx) {
            "trap" => panic!("misbehaving adapter: deliberate trap"),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow-memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => Ok(HttpRequest::post_json("/probe", &probe(&ctx, &request))),
        }
    }

    fn parse_response(
        _ctx: ProviderContext,
        response: HttpResponse,
    ) -> Result<CompletionResponse, ProviderError> {
        Ok(CompletionResponse {
            id: None,
            model: None,
            content: vec![ContentPart::Text(
                String::from_utf8_lossy(&response.body).into_owned(),
            )],
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: None,
        })
    }

    fn parse_stream_event(
        _ctx: ProviderContext,
        event: StreamEvent,
    ) -> Result<StreamOutcome, ProviderError> {
        Err(ProviderError::invalid_response(format!(
            "misbehaving adapter does not stream (got {:?})",
            event.data
        )))
    }

    fn classify_error(_ctx: ProviderContext, response: HttpResponse) -> ProviderError {
        ProviderError::new(
            ErrorClass::Server,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
        .with_status(response.status)
    }
}
