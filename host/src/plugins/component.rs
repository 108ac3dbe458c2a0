//! Loading one component file: compile (or reuse the compiled cache), check which world and
//! contract version it was built for, link it, and smoke-test it before anyone routes to it.

use super::bindings::policy::{Policy, PolicyPre};
use super::bindings::provider::{Provider, ProviderPre};
use super::bindings::{WIT_PACKAGE, WIT_VERSION, adapter, ranker};
use super::runtime::{CallLimits, KeptInstance, PluginFault, PluginRuntime, PluginState};
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;
use wasmtime::Store;
use wasmtime::component::Component;

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    Provider,
    Policy,
}

impl ComponentKind {
    /// The interface a component of this kind exports.
    fn interface(self) -> &'static str {
        match self {
            ComponentKind::Provider => "adapter",
            ComponentKind::Policy => "ranker",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentKind::Provider => "provider",
            ComponentKind::Policy => "policy",
        })
    }
}

/// The typed, linked form of a component, ready to instantiate per call.
pub enum Plugin {
    Provider {
        pre: ProviderPre<PluginState>,
        info: adapter::AdapterInfo,
    },
    Policy {
        pre: PolicyPre<PluginState>,
        info: ranker::PolicyInfo,
    },
}

/// A component that passed loading and its smoke test.
pub struct LoadedComponent {
    /// The file stem, which is how config and requests refer to it.
    pub name: Arc<str>,
    pub path: PathBuf,
    pub sha256: String,
    pub wit_version: String,
    pub loaded_at: SystemTime,
    pub plugin: Plugin,
    pub calls: AtomicU64,
    pub faults: AtomicU64,
}

impl LoadedComponent {
    pub fn kind(&self) -> ComponentKind {
        match self.plugin {
            Plugin::Provider { .. } => ComponentKind::Provider,
            Plugin::Policy { .. } => ComponentKind::Policy,
        }
    }

    pub fn adapter_info(&self) -> Option<&adapter::AdapterInfo> {
        match &self.plugin {
            Plugin::Provider { info, .. } => Some(info),
            Plugin::Policy { .. } => None,
        }
    }

    pub fn policy_info(&self) -> Option<&ranker::PolicyInfo> {
        match &self.plugin {
            Plugin::Policy { info, .. } => Some(info),
            Plugin::Provider { .. } => None,
        }
    }

    /// Calls the adapter in a fresh sandbox. Panics never escape: every failure is a fault.
    pub fn call_adapter<R>(
        &self,
        runtime: &PluginRuntime,
        limits: CallLimits,
        f: impl FnOnce(&adapter::Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let Plugin::Provider { pre, .. } = &self.plugin else {
            return Err(self.wrong_kind(ComponentKind::Provider));
        };
        self.counted(runtime.call(&self.name, limits, |store| {
            let instance = pre.instantiate(&mut *store)?;
            f(instance.aigw_plugin_adapter(), store)
        }))
    }

    /// A sandbox for the calls of one streamed response: the first call instantiates the
    /// adapter and later ones reuse that instance, until the session is dropped or a call
    /// faults. It must never outlive the request it was opened for.
    pub fn adapter_session(self: &Arc<Self>, runtime: &PluginRuntime) -> AdapterSession {
        AdapterSession {
            component: self.clone(),
            permit: runtime.keep_instance(),
            live: None,
        }
    }

    /// Calls the policy in a fresh sandbox.
    pub fn call_policy<R>(
        &self,
        runtime: &PluginRuntime,
        limits: CallLimits,
        f: impl FnOnce(&ranker::Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let Plugin::Policy { pre, .. } = &self.plugin else {
            return Err(self.wrong_kind(ComponentKind::Policy));
        };
        self.counted(runtime.call(&self.name, limits, |store| {
            let instance = pre.instantiate(&mut *store)?;
            f(instance.aigw_plugin_ranker(), store)
        }))
    }

    fn counted<R>(&self, result: Result<R, PluginFault>) -> Result<R, PluginFault> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.faults.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn wrong_kind(&self, wanted: ComponentKind) -> PluginFault {
        PluginFault::Instantiation {
            plugin: self.name.to_string(),
            detail: format!("is a {} component, not a {wanted}", self.kind()),
        }
    }
}

/// One request's adapter instance, reused for each event of its stream.
pub struct AdapterSession {
    component: Arc<LoadedComponent>,
    /// Without it (the pool is busy with other streams), every call gets a fresh instance.
    permit: Option<KeptInstance>,
    live: Option<(Store<PluginState>, Provider)>,
}

impl AdapterSession {
    /// Calls the adapter, in this session's instance once there is one. Panics never escape:
    /// every failure is a fault, and a faulted instance is discarded.
    pub fn call<R>(
        &mut self,
        runtime: &PluginRuntime,
        limits: CallLimits,
        f: impl FnOnce(&adapter::Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let component = &*self.component;
        let Plugin::Provider { pre, .. } = &component.plugin else {
            return Err(component.wrong_kind(ComponentKind::Provider));
        };
        let (mut store, instance) = match self.live.take() {
            Some((store, instance)) => (store, Some(instance)),
            None => (runtime.new_store(&component.name, limits), None),
        };
        let result = runtime.run(&mut store, &component.name, limits, |store| {
            let instance = match instance {
                Some(instance) => instance,
                None => pre.instantiate(&mut *store)?,
            };
            let value = f(instance.aigw_plugin_adapter(), store)?;
            Ok((instance, value))
        });
        let result = result.map(|(instance, value)| {
            if self.permit.is_some() {
                self.live = Some((store, instance));
            }
            value
        });
        component.counted(result)
    }

    /// Gives the instance back to the pool before the session is dropped.
    pub fn close(&mut self) {
        self.live = None;
        self.permit = None;
    }
}

/// Loads, links and smoke-tests the component at `path`. With `expected`, a component of the
/// other kind is refused (a policy dropped into the provider directory, say).
pub fn load(
    runtime: &PluginRuntime,
    path: &Path,
    expected: Option<ComponentKind>,
    limits: CallLimits,
) -> anyhow::Result<LoadedComponent> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let name: Arc<str> = component_name(path)
        .with_context(|| format!("{} has no file name", path.display()))?
        .into();
    let component = runtime.compile(&bytes, &sha256)?;
    let (kind, wit_version) = identify(runtime, &component)?;
    if let Some(expected) = expected
        && expected != kind
    {
        bail!("is a {kind} component, but it is in the {expected} directory");
    }
    let pre = runtime.instance_pre(&component)?;
    let plugin = match kind {
        ComponentKind::Provider => {
            let pre = ProviderPre::new(pre)
                .map_err(|e| anyhow::anyhow!("does not match the provider world: {e:#}"))?;
            let info = runtime
                .call(&name, limits, |store| {
                    let instance: Provider = pre.instantiate(&mut *store)?;
                    instance.aigw_plugin_adapter().call_describe(&mut *store)
                })
                .context("smoke test: describe() failed")?;
            Plugin::Provider { pre, info }
        }
        ComponentKind::Policy => {
            let pre = PolicyPre::new(pre)
                .map_err(|e| anyhow::anyhow!("does not match the policy world: {e:#}"))?;
            let (info, ranking) = runtime
                .call(&name, limits, |store| {
                    let instance: Policy = pre.instantiate(&mut *store)?;
                    let guest = instance.aigw_plugin_ranker();
                    let info = guest.call_describe(&mut *store)?;
                    let (features, candidates) = smoke_test_request();
                    let ranking = guest.call_rank(&mut *store, &features, &candidates)?;
                    Ok((info, ranking))
                })
                .context("smoke test: describe() or rank() failed")?;
            tracing::debug!(
                plugin = &*name,
                reason = ranking.reason,
                "policy smoke test passed"
            );
            Plugin::Policy { pre, info }
        }
    };
    Ok(LoadedComponent {
        name,
        path: path.to_path_buf(),
        sha256,
        wit_version,
        loaded_at: SystemTime::now(),
        plugin,
        calls: AtomicU64::new(0),
        faults: AtomicU64::new(0),
    })
}

/// A component's name is its file stem: `plugins/dist/openai.wasm` is `openai`.
pub fn component_name(path: &Path) -> Option<String> {
    path.file_stem().map(|s| s.to_string_lossy().into_owned())
}

/// Reads which of our interfaces a component exports and for which contract version, so that a
/// component built for another version is refused with both versions named, before linking.
fn identify(
    runtime: &PluginRuntime,
    component: &Component,
) -> anyhow::Result<(ComponentKind, String)> {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(runtime.engine())
        .map(|(name, _)| name.to_string())
        .collect();
    for kind in [ComponentKind::Provider, ComponentKind::Policy] {
        let prefix = format!("{WIT_PACKAGE}/{}", kind.interface());
        for export in &exports {
            let Some(rest) = export.strip_prefix(&prefix) else {
                continue;
            };
            let version = rest.strip_prefix('@').unwrap_or("");
            if version != WIT_VERSION {
                bail!(
                    "was built against {WIT_PACKAGE}@{} but this host speaks \
                     {WIT_PACKAGE}@{WIT_VERSION}: rebuild it against this gateway's wit/ folder",
                    if version.is_empty() {
                        "(unversioned)"
                    } else {
                        version
                    }
                );
            }
            return Ok((kind, version.to_string()));
        }
    }
    bail!(
        "exports neither {WIT_PACKAGE}/adapter@{WIT_VERSION} (a provider) nor \
         {WIT_PACKAGE}/ranker@{WIT_VERSION} (a policy); it exports: {}",
        if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        }
    )
}

/// Two plausible candidates, so a policy's smoke test exercises its real ranking code.
fn smoke_test_request() -> (ranker::RequestFeatures, Vec<ranker::Candidate>) {
    let features = ranker::RequestFeatures {
        task: ranker::TaskClass::Chat,
        task_confidence: 1.0,
        estimated_input_tokens: 12,
        max_output_tokens: Some(64),
        requirements: ranker::Requirements {
            low_cost: false,
            high_quality: false,
            low_latency: false,
            max_cost_usd: None,
            max_latency_ms: None,
        },
        needs_tools: false,
        needs_vision: false,
        needs_json: false,
        api_key_id: None,
        requested_model: None,
    };
    let candidate = |id: &str, price: f64, quality: f32| ranker::Candidate {
        id: id.into(),
        provider: "smoke-test".into(),
        input_price_per_mtok: price,
        cached_input_price_per_mtok: price / 10.0,
        output_price_per_mtok: price * 4.0,
        estimated_cost_usd: price * 1e-4,
        quality,
        specialties: vec![ranker::TaskClass::Chat],
        context_window: 128_000,
        ewma_latency_ms: Some(100.0),
        ewma_ttft_ms: None,
        success_rate: 1.0,
        circuit: ranker::CircuitState::Closed,
        rate_limit_headroom: 1.0,
    };
    (
        features,
        vec![
            candidate("smoke-a", 1.0, 0.9),
            candidate("smoke-b", 0.1, 0.6),
        ],
    )
}
