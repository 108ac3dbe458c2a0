//! Guest SDK for AI gateway plugins.
//!
//! A plugin is a WebAssembly component that implements one of the two worlds of the WIT contract
//! (`wit/aigw-plugin.wit`, package `aigw:plugin@0.1.0`):
//!
//! - a provider adapter ([`provider`]): implement [`provider::Adapter`] and call
//!   [`export_provider!`];
//! - a routing policy ([`policy`]): implement [`policy::Policy`] and call [`export_policy!`].
//!
//! The SDK generates the bindings once, so a plugin crate needs no `wit_bindgen::generate!` and no
//! copy of the WIT files, and adds what every plugin rewrites otherwise: builders for the
//! contract's records, the OpenAI-compatible wire format ([`openai`]), error classification and
//! JSON field helpers ([`provider`]), and the ordering helpers policies share ([`policy`]).
//!
//! ```ignore
//! use aigw_plugin_sdk::policy::*;
//!
//! struct Cheapest;
//!
//! impl Policy for Cheapest {
//!     fn describe() -> PolicyInfo {
//!         PolicyInfo::new("cheapest", "cheapest model first")
//!     }
//!     fn rank(_features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
//!         Ranking::by_key(candidates, "cheapest first", |c| known_cost(c.estimated_cost_usd))
//!     }
//! }
//!
//! aigw_plugin_sdk::export_policy!(Cheapest);
//! ```

// The export macros name the bindings by the crate's own name, also from inside it (tests).
extern crate self as aigw_plugin_sdk;

pub mod bindings;
pub mod openai;
pub mod policy;
pub mod provider;
pub mod testing;

/// The version of the WIT contract this SDK builds plugins for. The host refuses components
/// built for a version it does not speak.
pub const WIT_VERSION: &str = "0.1.0";

pub use bindings::provider::aigw::plugin::host::LogLevel;
/// The JSON library the SDK's helpers speak, so that a plugin needs no second copy.
pub use serde_json;

/// Writes a line to the gateway's log, tagged with the plugin's name.
pub fn log(level: LogLevel, message: &str) {
    bindings::provider::aigw::plugin::host::log(level, message);
}

/// Exports a type implementing [`provider::Adapter`] as the component's `adapter` interface.
#[macro_export]
macro_rules! export_provider {
    ($ty:ident) => {
        $crate::bindings::provider::export_provider!($ty with_types_in $crate::bindings::provider);
    };
}

/// Exports a type implementing [`policy::Policy`] as the component's `ranker` interface.
#[macro_export]
macro_rules! export_policy {
    ($ty:ident) => {
        $crate::bindings::policy::export_policy!($ty with_types_in $crate::bindings::policy);
    };
}
