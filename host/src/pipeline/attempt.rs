//! One upstream attempt on one model: everything resolved from a consistent snapshot, so the
//! adapter, its context, the endpoint and the key cannot change halfway through.

use super::GatewayError;
use crate::config::ModelConfig;
use crate::plugins::bindings::adapter::{self, AdapterInfo, ProviderContext};
use crate::plugins::bindings::types::{
    CompletionRequest, HttpRequest, HttpResponse, ProviderError,
};
use crate::plugins::runtime::PluginState;
use crate::plugins::{AdapterSession, CallLimits, PluginFault, PluginRuntime};
use crate::providers::{Endpoint, Secret};
use std::sync::Arc;

pub(super) struct Attempt {
    pub model: ModelConfig,
    pub runtime: Arc<PluginRuntime>,
    pub limits: CallLimits,
    pub ctx: ProviderContext,
    pub base_url: String,
    pub key: Option<Secret>,
    pub info: AdapterInfo,
    /// The adapter instance this attempt's calls share.
    pub session: AdapterSession,
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
    pub fn build_request(
        &mut self,
        request: &CompletionRequest,
    ) -> Result<HttpRequest, GatewayError> {
        let mut request = request.clone();
        request.model = self.model.upstream_id().to_string();
        self.call(|guest, store, ctx| guest.call_build_request(store, ctx, &request))
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
    pub fn classify(&mut self, response: &HttpResponse) -> GatewayError {
        match self.call(|guest, store, ctx| guest.call_classify_error(store, ctx, response)) {
            Ok(error) => self.upstream_error(error),
            Err(fault) => self.plugin_error(fault),
        }
    }

    /// Calls the adapter in this attempt's instance.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(
            &adapter::Guest,
            &mut wasmtime::Store<PluginState>,
            &ProviderContext,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let ctx = &self.ctx;
        self.session
            .call(&self.runtime, self.limits, |guest, store| {
                f(guest, store, ctx)
            })
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
