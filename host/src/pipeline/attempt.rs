//! One upstream attempt on one model: everything resolved from a consistent snapshot, so the
//! adapter, its context, the endpoint and the key cannot change halfway through.

use super::GatewayError;
use crate::config::ModelConfig;
use crate::plugins::bindings::adapter::{AdapterInfo, ProviderContext};
use crate::plugins::bindings::types::{
    CompletionRequest, HttpRequest, HttpResponse, ProviderError,
};
use crate::plugins::{CallLimits, LoadedComponent, PluginFault, PluginRuntime};
use crate::providers::{Endpoint, Secret};
use std::sync::Arc;

pub(super) struct Attempt {
    pub model: ModelConfig,
    pub adapter: Arc<LoadedComponent>,
    pub runtime: Arc<PluginRuntime>,
    pub limits: CallLimits,
    pub ctx: ProviderContext,
    pub base_url: String,
    pub key: Option<Secret>,
    pub info: AdapterInfo,
}

impl Attempt {
    pub fn endpoint(&self) -> Endpoint<'_> {
        Endpoint {
            base_url: &self.base_url,
            auth: &self.info.auth,
            key: self.key.as_ref(),
            static_headers: &self.info.static_headers,
        }
    }

    /// Asks the adapter for the upstream request, with the model's upstream id filled in.
    /// Failures here are about this request on this adapter, not about the provider's health.
    pub fn build_request(&self, request: &CompletionRequest) -> Result<HttpRequest, GatewayError> {
        let mut request = request.clone();
        request.model = self.model.upstream_id().to_string();
        self.adapter
            .call_adapter(&self.runtime, self.limits, |guest, store| {
                guest.call_build_request(store, &self.ctx, &request)
            })
            .map_err(|fault| GatewayError::Plugin {
                fault,
                provider: self.model.provider.clone(),
                model: self.model.id.clone(),
                building: true,
            })?
            .map_err(|e| GatewayError::Unsupported {
                message: e.message,
                provider: self.model.provider.clone(),
                model: self.model.id.clone(),
            })
    }

    /// Asks the adapter what a non-2xx response means.
    pub fn classify(&self, response: &HttpResponse) -> GatewayError {
        match self
            .adapter
            .call_adapter(&self.runtime, self.limits, |guest, store| {
                guest.call_classify_error(store, &self.ctx, response)
            }) {
            Ok(error) => self.upstream_error(error),
            Err(fault) => self.plugin_error(fault),
        }
    }

    pub fn upstream_error(&self, e: ProviderError) -> GatewayError {
        GatewayError::Upstream {
            class: e.class,
            message: e.message,
            status: e.status,
            retry_after_ms: e.retry_after_ms,
            provider: self.model.provider.clone(),
            model: self.model.id.clone(),
        }
    }

    pub fn plugin_error(&self, fault: PluginFault) -> GatewayError {
        GatewayError::Plugin {
            fault,
            provider: self.model.provider.clone(),
            model: self.model.id.clone(),
            building: false,
        }
    }
}
