//! Providers: where their credentials and base URLs come from, and the one HTTP client that
//! talks to all of them.
//!
//! Adapters build requests without credentials; this module adds them according to the
//! adapter's declared auth scheme, so a key never enters a plugin's memory.

mod credentials;
pub mod simulated;
pub mod sse;
mod upstream;

pub use credentials::{Credentials, Secret};
pub use upstream::{Endpoint, TransportError, UpstreamClient, read_response, transport_error};
