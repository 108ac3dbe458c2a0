//! Host-side bindings generated from `wit/`. Each world gets its own module; the `host`
//! interface that both import is generated once, in `provider`, and shared.

pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit",
    });
}

pub mod policy {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../wit",
        with: {
            "aigw:plugin/host": super::provider::aigw::plugin::host,
        },
    });
}

pub use policy::exports::aigw::plugin::ranker;
pub use provider::aigw::plugin::types;
pub use provider::exports::aigw::plugin::adapter;

/// The package and version of the contract this host speaks, as components name it in their
/// exports (`aigw:plugin/adapter@0.1.0`).
pub const WIT_PACKAGE: &str = "aigw:plugin";
pub const WIT_VERSION: &str = "0.1.0";
