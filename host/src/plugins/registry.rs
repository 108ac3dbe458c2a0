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
use std::sync::{Arc, Mutex};

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

pub struct Registry {
    runtime: Arc<PluginRuntime>,
    current: ArcSwap<ComponentSet>,
    /// The last load error per file (with the hash of the content that failed), cleared when
    /// the file loads. The hash stops the same broken bytes from being retried and re-reported.
    errors: Mutex<BTreeMap<PathBuf, (String, String)>>,
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
                    .map(|(p, (_, why))| (p.clone(), why.clone()))
                    .collect()
            })
            .unwrap_or_default()
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
                .is_some_and(|(failed, _)| *failed == sha256)
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
                    errors.insert(path.to_path_buf(), (sha256, reason.clone()));
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
