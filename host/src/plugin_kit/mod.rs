//! The plugin authoring kit behind `ai-gateway plugins new|build|list`: scaffolding a plugin
//! crate on the guest SDK, building it into a component (and installing it where a gateway
//! picks it up live), and listing what a running gateway has loaded.

pub mod build;
pub mod inventory;
pub mod scaffold;
