//! The AI gateway host: HTTP front door, routing, the WebAssembly plugin runtime, and the
//! upstream I/O that plugins are not allowed to do themselves.

pub mod api;
pub mod budget;
pub mod cache;
pub mod config;
pub mod fsutil;
pub mod ledger;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod pipeline;
pub mod plugin_kit;
pub mod plugins;
pub mod pricing;
pub mod providers;
pub mod ratelimit;
pub mod reload;
pub mod request_scope;
pub mod routing;
pub mod tokens;
