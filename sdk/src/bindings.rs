//! The bindings generated from the WIT contract, one module per world.
//!
//! Both are generated with public export macros: the custom sections that describe a world's
//! exports are emitted where a plugin invokes [`crate::export_provider!`] or
//! [`crate::export_policy!`], so a component built with this SDK exports only the world it
//! implements although the SDK knows both.

/// The `provider` world: imports `host`, exports `adapter`.
pub mod provider {
    wit_bindgen::generate!({
        world: "provider",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_provider",
        default_bindings_module: "aigw_plugin_sdk::bindings::provider",
    });
}

/// The `policy` world: imports `host` (shared with the provider world's), exports `ranker`.
pub mod policy {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_policy",
        default_bindings_module: "aigw_plugin_sdk::bindings::policy",
        with: {
            "aigw:plugin/host@0.1.0": crate::bindings::provider::aigw::plugin::host,
        },
    });
}
