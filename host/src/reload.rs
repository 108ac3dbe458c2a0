//! Hot reload: watches the provider, policy and config directories and applies changes while
//! the gateway serves.
//!
//! Only events that change a file count: Linux reports reads as access events, and the gateway
//! reads every file it reloads, so counting those would make each reload trigger the next.
//! Events are debounced (editors and `cp` write in several steps), then handled off the request
//! path on a blocking thread: compiling a component takes tens to hundreds of milliseconds.

use crate::pipeline::Gateway;
use crate::plugins::ComponentKind;
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watcher alive; dropping it stops watching.
pub struct ReloadWatcher {
    _watcher: RecommendedWatcher,
}

struct Watched {
    providers: PathBuf,
    policies: PathBuf,
    config: PathBuf,
}

impl Watched {
    fn classify(&self, path: &Path) -> Option<Target> {
        let dir = path.parent().and_then(|d| d.canonicalize().ok())?;
        if dir == self.providers {
            Some(Target::Component(ComponentKind::Provider))
        } else if dir == self.policies {
            Some(Target::Component(ComponentKind::Policy))
        } else if dir == self.config
            && path.extension().is_some_and(|e| e == "toml")
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            Some(Target::Config)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Config,
    Component(ComponentKind),
}

/// Starts watching. Directories that do not exist yet are created so they can be watched.
pub fn watch(gateway: Arc<Gateway>) -> anyhow::Result<ReloadWatcher> {
    let state = gateway.config();
    let dirs = [
        state.config.provider_dir(),
        state.config.policy_dir(),
        state.config.dir.clone(),
    ];
    for dir in &dirs {
        std::fs::create_dir_all(dir)?;
    }
    let [providers, policies, config] = dirs.map(|d| d.canonicalize().unwrap_or(d));
    let watched = Arc::new(Watched {
        providers,
        policies,
        config,
    });

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PathBuf>>();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) if changes_content(&event.kind) => {
                let _ = tx.send(event.paths);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("file watcher error: {e}"),
        })?;
    for dir in [&watched.providers, &watched.policies, &watched.config] {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), "watching for changes");
    }

    tokio::spawn(async move {
        while let Some(mut paths) = rx.recv().await {
            // Debounce: keep collecting until the directory has been quiet for a moment.
            while let Ok(Some(more)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                paths.extend(more);
            }
            let changes: BTreeSet<(Target, PathBuf)> = paths
                .into_iter()
                .filter_map(|p| watched.classify(&p).map(|t| (t, p)))
                .collect();
            if changes.is_empty() {
                continue;
            }
            let gateway = gateway.clone();
            let applied = tokio::task::spawn_blocking(move || {
                let mut config_changed = false;
                for (target, path) in changes {
                    match target {
                        Target::Config => config_changed = true,
                        Target::Component(kind) => gateway.reload_component(&path, kind),
                    }
                }
                if config_changed {
                    // The error is logged and counted inside; the old config stays.
                    let _ = gateway.reload_config();
                }
            })
            .await;
            if let Err(e) = applied {
                tracing::error!("a reload task failed: {e}");
            }
        }
    });

    Ok(ReloadWatcher { _watcher: watcher })
}

fn changes_content(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    )
}
