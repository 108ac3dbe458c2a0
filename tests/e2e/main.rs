//! End-to-end tests: the real `ai-gateway` binary, real HTTP, components built by `.ci/setup`
//! from this repository, and wire-accurate mock upstreams on loopback.

mod budgets;
mod cache;
mod classification;
mod cli;
mod config_reload;
mod faults;
mod hot_reload;
mod http_api;
mod ledger;
mod mcp;
mod metrics;
mod openapi;
mod plugin_kit;
mod policy_suite;
mod providers;
mod rate_limits;
mod roundtrip;
mod routing;
mod shutdown;
mod streaming;
mod support;
