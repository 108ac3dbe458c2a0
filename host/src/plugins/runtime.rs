//! The wasmtime engine every plugin runs on, and the sandbox of one plugin call.
//!
//! One `Engine` for the process; a fresh `Store` per call (instantiated from a prepared
//! `InstancePre`), or per stream for the events of one streamed response (see
//! [`KeptInstances`]): instantiating is most of what a short call costs, and a stream makes a
//! call per event. A store never serves two requests, and one that faulted is never called
//! again, so nothing leaks between requests and a trapped instance is never reused.
//! Every call runs under an epoch deadline and a memory cap. The WASI context is empty: no
//! files, no environment, no arguments, no sockets, and stderr is captured so that a guest's
//! panic message becomes part of the error the caller sees.

use super::bindings::provider::Provider;
use super::bindings::provider::aigw::plugin::host::{Host, LogLevel};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the engine's epoch advances; deadlines are counted in these ticks, so a call is
/// interrupted between its timeout and one tick later. Coarse enough that the ticker thread
/// barely wakes the machine.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// How much of a guest's stderr is kept for error messages.
const STDERR_CAPTURE_BYTES: usize = 4096;

/// Limits applied to one plugin call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
}

/// Why a plugin call failed. Each is confined to the request that made the call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginFault {
    #[error("plugin '{plugin}' trapped: {detail}")]
    Trapped { plugin: String, detail: String },
    #[error("plugin '{plugin}' exceeded its {limit_ms} ms deadline and was interrupted")]
    DeadlineExceeded { plugin: String, limit_ms: u128 },
    #[error("plugin '{plugin}' exceeded its memory limit of {limit_mib} MiB and was stopped")]
    MemoryExhausted { plugin: String, limit_mib: usize },
    #[error("plugin '{plugin}' could not be instantiated: {detail}")]
    Instantiation { plugin: String, detail: String },
}

impl PluginFault {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginFault::Trapped { .. } => "trap",
            PluginFault::DeadlineExceeded { .. } => "deadline",
            PluginFault::MemoryExhausted { .. } => "memory",
            PluginFault::Instantiation { .. } => "instantiation",
        }
    }
}

/// The data a plugin's `Store` holds.
pub struct PluginState {
    plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl Host for PluginState {
    fn log(&mut self, level: LogLevel, message: String) {
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

/// The `types` interface has no functions; the linker still wants it implemented.
impl super::bindings::provider::aigw::plugin::types::Host for PluginState {}

/// Caps linear memory and remembers whether the cap was hit, so that the trap that follows a
/// refused allocation is reported as memory exhaustion rather than as a generic trap.
struct MemoryLimiter {
    max_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The engine, the linker with everything a plugin may import, and the compiled-artifact cache.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<PluginState>,
    compiled_dir: PathBuf,
    engine_hash: String,
    kept: Arc<KeptInstances>,
    _epoch: EpochTicker,
}

impl PluginRuntime {
    /// `compiled_dir` caches compiled components, keyed by content hash and engine version.
    pub fn new(compiled_dir: PathBuf) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        // No plugin uses component-model concurrency; turning it off makes each call cheaper.
        config.concurrency_support(false);
        let engine = match Engine::new(config.clone().allocation_strategy(pooled_instances())) {
            Ok(engine) => engine,
            Err(e) => {
                // The pool reserves its address space up front; where that is refused (a
                // `ulimit -v`, say), instances are allocated per call instead: slower, same
                // isolation.
                tracing::warn!("plugin instance pool unavailable, allocating per call: {e:#}");
                Engine::new(&config)?
            }
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        super::wasi_io::shadow_blocking_io(&mut linker)?;
        Provider::add_to_linker::<PluginState, HasSelf<PluginState>>(&mut linker, |s| s)?;

        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());

        Ok(PluginRuntime {
            _epoch: EpochTicker::start(engine.clone())?,
            engine,
            linker,
            compiled_dir,
            engine_hash,
            kept: Arc::new(KeptInstances {
                held: AtomicU32::new(0),
                limit: KEPT_INSTANCES,
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles a component, or loads its compiled form from the cache when this engine has
    /// compiled the same bytes before.
    pub fn compile(&self, bytes: &[u8], sha256: &str) -> anyhow::Result<Component> {
        check_component_header(bytes)?;
        let cached = self
            .compiled_dir
            .join(format!("{sha256}-{}.cwasm", self.engine_hash));
        if cached.is_file() {
            // SAFETY: the file was written by `precompile_component` of an engine with the
            // same compatibility hash (part of its name) into the gateway's own data
            // directory, which is as trusted as the binary; wasmtime also checks its header.
            match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    path = %cached.display(),
                    "discarding unusable compiled component: {e:#}"
                ),
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow::anyhow!("does not compile as a component: {e:#}"))?;
        if let Err(e) = crate::fsutil::write_atomically(&cached, &compiled) {
            tracing::warn!(
                path = %cached.display(),
                "cannot cache the compiled component (start-up will recompile it): {e:#}"
            );
        }
        // SAFETY: `compiled` was produced just above by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| anyhow::anyhow!("cannot load the compiled component: {e:#}"))
    }

    /// Resolves a component's imports against what the host provides.
    pub fn instance_pre(&self, component: &Component) -> anyhow::Result<InstancePre<PluginState>> {
        self.linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("imports something this host does not provide: {e:#}"))
    }

    /// Runs `f` in a fresh, limited store. `f` instantiates the component and makes its call.
    pub fn call<R>(
        &self,
        plugin: &Arc<str>,
        limits: CallLimits,
        f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let mut store = self.new_store(plugin, limits);
        self.run(&mut store, plugin, limits, f)
    }

    /// A limited store with nothing instantiated in it yet.
    pub fn new_store(&self, plugin: &Arc<str>, limits: CallLimits) -> Store<PluginState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = PluginState {
            plugin: plugin.clone(),
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: limits.memory_bytes,
                exceeded: false,
            },
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Runs one call in `store` under a fresh deadline. After a fault the store must be dropped.
    pub fn run<R>(
        &self,
        store: &mut Store<PluginState>,
        plugin: &str,
        limits: CallLimits,
        f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFault> {
        let ticks = limits.timeout.as_micros() / EPOCH_TICK.as_micros() + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        // Inline on the calling (possibly async worker) thread: a call is short and bounded by
        // its deadline, and the few WASI functions that block step off the runtime themselves
        // (see `wasi_io`).
        f(store).map_err(|e| classify_fault(plugin, limits, store.data(), &e))
    }

    /// A permit to keep an instance alive across calls, while the pool has room for it.
    pub fn keep_instance(&self) -> Option<KeptInstance> {
        self.kept.acquire()
    }
}

/// How many instances streams may keep at once: the rest of the pool stays for per-call
/// instances, so a burst of long streams never starves ordinary calls; streams beyond this
/// instantiate per event, as every call used to.
const KEPT_INSTANCES: u32 = POOL_INSTANCES * 3 / 4;

/// Counts the instances kept across calls (one per open stream).
pub struct KeptInstances {
    held: AtomicU32,
    limit: u32,
}

impl KeptInstances {
    fn acquire(self: &Arc<Self>) -> Option<KeptInstance> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.limit).then_some(held + 1)
            })
            .ok()?;
        Some(KeptInstance {
            count: self.clone(),
        })
    }
}

/// Held by whoever keeps an instance; gives its place back when dropped.
pub struct KeptInstance {
    count: Arc<KeptInstances>,
}

impl Drop for KeptInstance {
    fn drop(&mut self) {
        self.count.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Component instances the pool has room for at once.
const POOL_INSTANCES: u32 = 1024;

/// Up to how much of a memory's or table's working set is reset in place instead of handed
/// back to the kernel. With `PAGEMAP_SCAN` (Linux 6.7+) only the pages the instance wrote
/// count, so a short call's few dirty pages (the top of the guest's stack, a little heap) are
/// restored with `memcpy` and its slot never needs `madvise`: no page faults for the next
/// instance and no TLB shootdown interrupting the other cores.
const RESET_DIRTY_PAGES_BYTES: usize = 2 * 1024 * 1024;
/// Without `PAGEMAP_SCAN` the first bytes are reset with `memset`, touched or not, and the
/// rest with `madvise`: kept small, as `memset` costs in proportion.
const RESET_FIRST_BYTES: usize = 256 * 1024;

/// Every plugin call instantiates a fresh component; the pool keeps the instance slots, linear
/// memories and tables mapped between calls, so a call costs no `mmap`/`munmap`, and a memory
/// slot reused for the same component keeps its copy-on-write image and is only reset, not
/// rebuilt.
fn pooled_instances() -> wasmtime::PoolingAllocationConfig {
    // A thread runs one plugin call at a time, and each open stream keeps one instance (up to
    // `KEPT_INSTANCES`); this is still small enough to reserve (each memory slot reserves
    // 4 GiB of address space, not memory: 8 TiB of the 128 TiB a process can map).
    const INSTANCES: u32 = POOL_INSTANCES;
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(INSTANCES)
        // A component is its own core module plus the WASI adapter and shim modules.
        .total_core_instances(INSTANCES * 8)
        .total_memories(INSTANCES * 2)
        .total_tables(INSTANCES * 4)
        // Components written in other languages (JavaScript) bring larger function tables.
        .table_elements(100_000)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let reset_in_place = if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        RESET_DIRTY_PAGES_BYTES
    } else {
        RESET_FIRST_BYTES
    };
    pool.linear_memory_keep_resident(reset_in_place)
        .table_keep_resident(reset_in_place);
    pool
}

fn classify_fault(
    plugin: &str,
    limits: CallLimits,
    state: &PluginState,
    error: &wasmtime::Error,
) -> PluginFault {
    let plugin = plugin.to_string();
    if state.limiter.exceeded {
        return PluginFault::MemoryExhausted {
            plugin,
            limit_mib: limits.memory_bytes / (1024 * 1024),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginFault::DeadlineExceeded {
            plugin,
            limit_ms: limits.timeout.as_millis(),
        },
        Some(trap) => {
            let stderr = state.stderr.contents();
            let said = String::from_utf8_lossy(&stderr);
            let said = said.trim();
            let detail = if said.is_empty() {
                trap.to_string()
            } else {
                format!("{trap}; the plugin said: {}", said.replace('\n', " "))
            };
            PluginFault::Trapped { plugin, detail }
        }
        None => PluginFault::Instantiation {
            plugin,
            detail: format!("{error:#}"),
        },
    }
}

/// Gives an actionable error for the common wrong inputs before wasmtime's generic one.
fn check_component_header(bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        anyhow::bail!("is not a WebAssembly file (it lacks the \\0asm header)");
    }
    // Bytes 4..8: a core module is version 1, layer 0; a component is layer 1.
    if bytes[6..8] == [0, 0] {
        anyhow::bail!(
            "is a core WebAssembly module, not a component: build it with \
             `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
        );
    }
    Ok(())
}

/// Advances the engine's epoch on a background thread until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("aigw-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_and_junk_get_actionable_errors() {
        let junk = check_component_header(b"hello world")
            .unwrap_err()
            .to_string();
        assert!(junk.contains("not a WebAssembly file"), "{junk}");
        let core = check_component_header(b"\0asm\x01\0\0\0")
            .unwrap_err()
            .to_string();
        assert!(core.contains("core WebAssembly module"), "{core}");
        check_component_header(b"\0asm\x0d\0\x01\0").unwrap();
    }

    #[test]
    fn streams_keep_instances_only_while_the_pool_has_room() {
        let kept = Arc::new(KeptInstances {
            held: AtomicU32::new(0),
            limit: 2,
        });
        let first = kept.acquire().expect("room for the first");
        let _second = kept.acquire().expect("room for the second");
        assert!(kept.acquire().is_none(), "the limit is enforced");
        drop(first);
        assert!(
            kept.acquire().is_some(),
            "a dropped permit gives its place back"
        );
    }
}
