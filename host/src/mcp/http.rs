//! MCP over Streamable HTTP at `/mcp`, behind the same bearer-key middleware as the HTTP API.
//! Sessions are kept in memory for the 2025 protocol revisions; 2026-07-28 clients are served
//! statelessly.

use super::GatewayMcp;
use crate::pipeline::Gateway;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

pub type McpService = StreamableHttpService<GatewayMcp, LocalSessionManager>;

pub fn service(gateway: Arc<Gateway>) -> McpService {
    let state = gateway.config();
    let settings = &state.config.gateway;
    let mut config = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(settings.server.max_body_bytes)
        .with_allowed_origins(settings.mcp.allowed_origins.iter().cloned())
        .enforce_origin_validation()
        // Ends open SSE streams when draining starts; otherwise they would hold shutdown up.
        .with_cancellation_token(gateway.shutdown_token());
    config = if settings.mcp.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.mcp.allowed_hosts.iter().cloned())
    };
    StreamableHttpService::new(
        move || Ok(GatewayMcp::new(gateway.clone(), None)),
        LocalSessionManager::default().into(),
        config,
    )
}
