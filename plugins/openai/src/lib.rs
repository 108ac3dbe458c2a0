//! Provider adapter for the OpenAI chat completions API (`POST /chat/completions`), and for
//! every server that speaks it: xAI, Groq, Mistral, Ollama, vLLM, llama.cpp. One adapter,
//! configured per provider through `settings` in providers.toml:
//!
//! - `max_tokens_field`: `max_completion_tokens` (default; OpenAI rejects `max_tokens` for
//!   reasoning models) or `max_tokens` (servers that only know the older name).
//! - `stream_usage`: `true` (default) asks for usage on streams with
//!   `stream_options.include_usage`; `false` for servers that reject the option.
//!
//! A pure translator: unified request → OpenAI JSON, OpenAI JSON → unified response. The host
//! sends the request and adds the bearer key; this component never sees it. The wire format
//! lives in the SDK (`aigw_plugin_sdk::openai`) so that adapters for other OpenAI-compatible
//! servers can reuse it; this crate is the example of such an adapter.

use aigw_plugin_sdk::openai;
use aigw_plugin_sdk::provider::*;

struct OpenAi;

aigw_plugin_sdk::export_provider!(OpenAi);

impl Adapter for OpenAi {
    fn describe() -> AdapterInfo {
        AdapterInfo::new(
            "openai",
            "OpenAI chat completions API",
            "https://api.openai.com/v1",
        )
    }

    fn build_request(
        ctx: ProviderContext,
        request: CompletionRequest,
    ) -> Result<HttpRequest, ProviderError> {
        Ok(openai::build_request(&ctx, &request))
    }

    fn parse_response(
        _ctx: ProviderContext,
        response: HttpResponse,
    ) -> Result<CompletionResponse, ProviderError> {
        openai::parse_response(&response)
    }

    fn parse_stream_event(
        _ctx: ProviderContext,
        event: StreamEvent,
    ) -> Result<StreamOutcome, ProviderError> {
        openai::parse_stream_event(&event)
    }

    fn classify_error(_ctx: ProviderContext, response: HttpResponse) -> ProviderError {
        openai::classify_error(&response)
    }
}
