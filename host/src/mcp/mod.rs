//! The MCP front door: the same `Gateway` the HTTP API calls, offered as MCP tools, a prompt
//! and resources, over stdio (`ai-gateway mcp`) and Streamable HTTP (`/mcp`). Like the HTTP
//! handlers, nothing here routes or prices: it translates arguments and results.

mod ab_test;
mod catalog;
pub mod http;
mod tools;

use crate::api::auth::Caller;
use crate::pipeline::Gateway;
use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
    GetPromptResult, Implementation, ListResourcesResult, PaginatedRequestParams, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, ResourceContents, Role,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler, prompt, prompt_handler, prompt_router,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const INSTRUCTIONS: &str = "ai-gateway routes LLM requests across providers (OpenAI, Anthropic, \
Gemini, xAI, Mistral, Groq and OpenAI-compatible servers). Call `unified_completion` to get an \
answer from the best model for the task under your cost/latency/quality requirements; \
`estimate_cost` before expensive calls; `list_models` and the `aigw://catalog/models` resource for \
what is available; `get_provider_status` and `health_check` when something fails; \
`get_usage_metrics` for spend; `optimize_prompt` and `run_ab_test` to improve prompts.";

/// One MCP server session. Cheap to create: the HTTP transport makes one per session.
#[derive(Clone)]
pub struct GatewayMcp {
    gateway: Arc<Gateway>,
    /// The key the whole session speaks for when the transport carries none (stdio).
    session_key_id: Option<String>,
    /// The least severe log notification the client asked for (`logging/setLevel`), as a
    /// rank: 0 = debug ... 7 = emergency.
    log_level: Arc<AtomicU8>,
    tool_router: ToolRouter<GatewayMcp>,
    prompt_router: PromptRouter<GatewayMcp>,
}

impl GatewayMcp {
    pub fn new(gateway: Arc<Gateway>, session_key_id: Option<String>) -> Self {
        Self {
            gateway,
            session_key_id,
            log_level: Arc::new(AtomicU8::new(LOG_INFO)),
            tool_router: Self::tool_router(),
            prompt_router: Self::prompt_router(),
        }
    }

    /// The caller's key id: over HTTP the auth middleware has checked the bearer key and put
    /// the caller in the request's extensions.
    fn caller_key_id(&self, ctx: &RequestContext<RoleServer>) -> Option<String> {
        ctx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Caller>())
            .and_then(|caller| caller.key_id.clone())
            .or_else(|| self.session_key_id.clone())
    }
}

const LOG_INFO: u8 = 1;
const LOG_WARNING: u8 = 3;

#[allow(deprecated)]
fn log_rank(level: rmcp::model::LoggingLevel) -> u8 {
    use rmcp::model::LoggingLevel as L;
    match level {
        L::Debug => 0,
        L::Info => LOG_INFO,
        L::Notice => 2,
        L::Warning => LOG_WARNING,
        L::Error => 4,
        L::Critical => 5,
        L::Alert => 6,
        L::Emergency => 7,
    }
}

impl GatewayMcp {
    /// Tells the client about a failed tool call as a log notification, if it asked for
    /// warnings; the tool result carries the error either way.
    #[allow(deprecated)]
    async fn warn_client(&self, ctx: &RequestContext<RoleServer>, message: &str) {
        if self.log_level.load(Ordering::Relaxed) > LOG_WARNING {
            return;
        }
        let param = rmcp::model::LoggingMessageNotificationParam::new(
            rmcp::model::LoggingLevel::Warning,
            serde_json::Value::String(message.to_string()),
        )
        .with_logger("ai-gateway");
        if let Err(e) = ctx.peer.notify_logging_message(param).await {
            tracing::debug!("cannot send a log notification: {e}");
        }
    }
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct GatewayPromptArgs {
    /// What you want done, in plain words (for example "summarise this contract in 5 bullets").
    pub task: String,
    /// Optional: what matters most: "low_cost", "high_quality" or "low_latency".
    #[serde(default)]
    pub priority: Option<String>,
}

#[prompt_router]
impl GatewayMcp {
    /// Sets up a task to be answered through the gateway: the model is told to call
    /// `unified_completion` with requirements that match the stated priority.
    #[prompt(name = "ai_gateway_prompt")]
    async fn ai_gateway_prompt(
        &self,
        Parameters(args): Parameters<GatewayPromptArgs>,
    ) -> Result<GetPromptResult, McpError> {
        let requirement = match args.priority.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p @ ("low_cost" | "high_quality" | "low_latency")) => Some(p),
            Some(other) => {
                return Err(McpError::invalid_params(
                    format!("priority '{other}' is not one of low_cost, high_quality, low_latency"),
                    None,
                ));
            }
        };
        let requirements = requirement
            .map(|r| format!(" with requirements {{\"{r}\": true}}"))
            .unwrap_or_default();
        let text = format!(
            "Use the ai-gateway tools for this task.\n\n\
             Task: {task}\n\n\
             1. If the task is large, call `estimate_cost` first and say what it will cost.\n\
             2. Call `unified_completion` with model \"auto\"{requirements}, putting the task \
             and any material it needs in `prompt`.\n\
             3. Answer with the result, then one line naming the model, provider, cost and the \
             routing reason the tool returned.",
            task = args.task.trim(),
        );
        Ok(
            GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
                .with_description("Answer a task through the ai-gateway's routed models"),
        )
    }
}

#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for GatewayMcp {
    // `enable_logging` is deprecated (SEP-2577); clients still call `logging/setLevel`.
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("ai-gateway", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS.to_string())
    }

    /// Like the generated dispatcher, except that arguments which fail to parse come back as a
    /// tool error the calling model can read and correct, rather than a protocol error.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let known = self.tool_router.has_route(&request.name);
        let call = ToolCallContext::new(self, request, context);
        match self.tool_router.call(call).await {
            Err(error) if known && error.code == ErrorCode::INVALID_PARAMS => {
                Ok(CallToolResult::error(vec![ContentBlock::text(format!(
                    "invalid arguments: {}",
                    error.message
                ))])
                .into())
            }
            other => other,
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, McpError> {
        Ok(rmcp::model::ListToolsResult::with_all_items(
            self.tool_router.list_all(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(ListResourcesResult::with_all_items(catalog::resources()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let state = self.gateway.config();
        let Some(body) = catalog::read(&request.uri, &state.config) else {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource '{}'; list them with resources/list",
                    request.uri
                ),
                None,
            ));
        };
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(body, request.uri).with_mime_type("application/json"),
        ])
        .into())
    }

    // MCP logging is deprecated (SEP-2577) but current clients still send `logging/setLevel`.
    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log_level
            .store(log_rank(request.level), Ordering::Relaxed);
        Ok(())
    }
}
