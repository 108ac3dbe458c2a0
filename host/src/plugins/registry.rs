//! The set of loaded components, swapped atomically on reload.
//!
//! Readers take a snapshot (`Arc<ComponentSet>`) at the start of a request and keep it until the
//! request ends, so a request in flight finishes on the versions it started with. A reload builds
//! the new component completely (compile, link, smoke test) before publishing it; if any step
//! fails, the old version stays and the reason is kept for `plugins list` and the logs.

use super::component::{self, ComponentKind, LoadedComponent};
use super::runtime::{CallLimits, PluginRuntime};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// Every loaded component by name.
#[derive(Default, Clone)]
pub struct ComponentSet {
    pub providers: HashMap<String, Arc<LoadedComponent>>,
    pub policies: HashMap<String, Arc<LoadedComponent>>,
}

impl ComponentSet {
    fn of_kind(&mut self, kind: ComponentKind) -> &mut HashMap<String, Arc<LoadedComponent>> {
        match kind {
            ComponentKind::Provider => &mut self.providers,
            ComponentKind::Policy => &mut self.policies,
        }
    }

    pub fn get(&self, kind: ComponentKind, name: &str) -> Option<&Arc<LoadedComponent>> {
        match kind {
            ComponentKind::Provider => self.providers.get(name),
            ComponentKind::Policy => self.policies.get(name),
        }
    }
}

/// What a reload of one file did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new or changed component is now serving.
    Loaded { name: String, sha256: String },
    /// The file's content is what is already loaded.
    Unchanged { name: String },
    /// The file was removed, and so was its component.
    Removed { name: String },
    /// The file could not be loaded; the previous version (if any) keeps serving.
    Failed { name: String, reason: String },
    /// Not a component file (temporary files, other extensions).
    Ignored,
}

/// One component as `GET /admin/plugins` and `ai-gateway plugins list` show it: a loaded
/// component, or a file that failed to load and has nothing loaded under its name.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComponentReport {
    /// The file stem, which is how config and requests refer to it.
    pub name: String,
    /// `provider` or `policy`.
    pub world: String,
    pub path: String,
    /// The contract version the loaded component was built for (`0.1.0`).
    pub wit_version: Option<String>,
    /// SHA-256 of the loaded component's bytes.
    pub sha256: Option<String>,
    /// When the serving version was loaded, in milliseconds since the Unix epoch.
    pub loaded_at_unix_ms: Option<u64>,
    /// Calls into the serving version, and how many of them faulted (trap, deadline, memory).
    pub calls: u64,
    pub faults: u64,
    /// Why the file's latest content failed to load (the previous version, if any, serves).
    pub last_error: Option<String>,
}

/// A file whose content failed to load.
struct LoadError {
    kind: ComponentKind,
    /// The hash of the content that failed: the same broken bytes are not retried or reported
    /// again.
    sha256: String,
    reason: String,
}

pub struct Registry {
    runtime: Arc<PluginRuntime>,
    current: ArcSwap<ComponentSet>,
    /// The last load error per file, cleared when the file loads.
    errors: Mutex<BTreeMap<PathBuf, LoadError>>,
}

impl Registry {
    pub fn new(runtime: Arc<PluginRuntime>) -> Self {
        Registry {
            runtime,
            current: ArcSwap::from_pointee(ComponentSet::default()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    pub fn snapshot(&self) -> Arc<ComponentSet> {
        self.current.load_full()
    }

    /// The last load error of each file that failed and has not loaded since.
    pub fn errors(&self) -> BTreeMap<PathBuf, String> {
        self.errors
            .lock()
            .map(|e| {
                e.iter()
                    .map(|(p, error)| (p.clone(), error.reason.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every loaded component with its counters and last load error, then every file that
    /// failed with nothing loaded under its name; by world, then name.
    pub fn inventory(&self) -> Vec<ComponentReport> {
        let set = self.snapshot();
        let errors = self.errors.lock();
        let error_of = |path: &Path| {
            errors
                .as_ref()
                .ok()
                .and_then(|e| e.get(path).map(|error| error.reason.clone()))
        };
        let mut reports: Vec<ComponentReport> = set
            .providers
            .values()
            .chain(set.policies.values())
            .map(|c| ComponentReport {
                name: c.name.to_string(),
                world: c.kind().to_string(),
                path: c.path.display().to_string(),
                wit_version: Some(c.wit_version.clone()),
                sha256: Some(c.sha256.clone()),
                loaded_at_unix_ms: c
                    .loaded_at
                    .duration_since(UNIX_EPOCH)
                    .ok()
                    .and_then(|d| u64::try_from(d.as_millis()).ok()),
                calls: c.calls.load(Ordering::Relaxed),
                faults: c.faults.load(Ordering::Relaxed),
                last_error: error_of(&c.path),
            })
            .collect();
        if let Ok(errors) = &errors {
            for (path, error) in errors.iter() {
                let Some(name) = component::component_name(path) else {
                    continue;
                };
                if set.get(error.kind, &name).is_none() {
                    reports.push(ComponentReport {
                        name,
                        world: error.kind.to_string(),
                        path: path.display().to_string(),
                        wit_version: None,
                        sha256: None,
                        loaded_at_unix_ms: None,
                        calls: 0,
                        faults: 0,
                        last_error: Some(error.reason.clone()),
                    });
                }
            }
        }
        reports.sort_by(|a, b| (&a.world, &a.name).cmp(&(&b.world, &b.name)));
        reports
    }

    /// Loads every component file in `dir`. Files that fail are logged and skipped.
    pub fn load_dir(
        &self,
        dir: &Path,
        kind: ComponentKind,
        limits: CallLimits,
    ) -> Vec<ReloadOutcome> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "cannot read the {kind} directory: {e}");
                return Vec::new();
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        paths
            .iter()
            .map(|path| self.reload(path, kind, limits))
            .filter(|outcome| !matches!(outcome, ReloadOutcome::Ignored))
            .collect()
    }

    /// Brings the component at `path` up to date with the file: loads it if new or changed,
    /// removes it if the file is gone, and keeps the old version if the new one fails.
    pub fn reload(&self, path: &Path, kind: ComponentKind, limits: CallLimits) -> ReloadOutcome {
        if !is_component_file(path) {
            return ReloadOutcome::Ignored;
        }
        let Some(name) = component::component_name(path) else {
            return ReloadOutcome::Ignored;
        };
        if !path.exists() {
            let mut removed = false;
            self.current.rcu(|set| {
                let mut next = ComponentSet::clone(set);
                removed = next.of_kind(kind).remove(&name).is_some();
                next
            });
            self.clear_error(path);
            return if removed {
                ReloadOutcome::Removed { name }
            } else {
                ReloadOutcome::Ignored
            };
        }
        let Ok(bytes) = std::fs::read(path) else {
            // Vanished between the event and now; the removal event follows.
            return ReloadOutcome::Ignored;
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if self
            .snapshot()
            .get(kind, &name)
            .is_some_and(|existing| existing.sha256 == sha256)
        {
            return ReloadOutcome::Unchanged { name };
        }
        if self.errors.lock().is_ok_and(|errors| {
            errors
                .get(path)
                .is_some_and(|failed| failed.sha256 == sha256)
        }) {
            return ReloadOutcome::Unchanged { name };
        }
        match component::load(&self.runtime, path, Some(kind), limits) {
            Ok(loaded) => {
                let sha256 = loaded.sha256.clone();
                let loaded = Arc::new(loaded);
                self.current.rcu(|set| {
                    let mut next = ComponentSet::clone(set);
                    next.of_kind(kind).insert(name.clone(), loaded.clone());
                    next
                });
                self.clear_error(path);
                ReloadOutcome::Loaded { name, sha256 }
            }
            Err(e) => {
                let reason = format!("{e:#}");
                if let Ok(mut errors) = self.errors.lock() {
                    errors.insert(
                        path.to_path_buf(),
                        LoadError {
                            kind,
                            sha256,
                            reason: reason.clone(),
                        },
                    );
                }
                ReloadOutcome::Failed { name, reason }
            }
        }
    }

    fn clear_error(&self, path: &Path) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.remove(path);
        }
    }
}

/// Only `*.wasm` files that are not hidden (editors and `cp` write hidden temporaries).
pub fn is_component_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
        && path
            .file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}
