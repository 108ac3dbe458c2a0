//! The WebAssembly plugin host: the wasmtime runtime, component loading and the registry of
//! loaded provider adapters and routing policies.

pub mod bindings;
pub mod component;
pub mod registry;
pub mod runtime;
mod wasi_io;

pub use component::{ComponentKind, LoadedComponent};
pub use registry::{ComponentReport, ComponentSet, Registry, ReloadOutcome};
pub use runtime::{CallLimits, PluginFault, PluginRuntime};
