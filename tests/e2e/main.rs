//! End-to-end tests: the real `ai-gateway` binary, real HTTP, components built by `.ci/setup`
//! from this repository, and wire-accurate mock upstreams on loopback.

mod cache;
mod classification;
mod cli;
mod config_reload;
mod faults;
mod hot_reload;
mod http_api;
mod openapi;
mod providers;
mod roundtrip;
mod routing;
mod streaming;
mod support;
