//! The response cache: an exact tier (a hash of the normalised request, checked first and
//! without embedding anything) and a semantic tier (the nearest earlier request of the same
//! scope by embedding of the last user turn, above a similarity threshold and past the
//! false-hit guard). Entries expire, are evicted oldest first past a size cap, and are
//! snapshotted into the data directory.

mod controls;
mod embedder;
mod encoder;
mod entries;
pub mod guard;
mod index;
mod request_key;
mod snapshot;
mod stream_recorder;

pub use controls::CacheControls;
pub use embedder::{EmbedError, Embedder};
pub use encoder::{DIMENSIONS, EncoderError};
pub use entries::{StoredResponse, StoredToolCall, StoredUsage};
pub use index::{IndexParams, Neighbour, VectorIndex};
pub use request_key::{RequestKey, normalise_text};
pub use stream_recorder::StreamRecorder;

use crate::config::CacheSettings;
use crate::pipeline::CompletionInput;
use entries::{Entries, Entry};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The snapshot's file name inside the data directory.
pub const SNAPSHOT_FILE: &str = "cache.snapshot";
/// Semantic candidates fetched per lookup: the nearest may be rejected by the guard.
const CANDIDATES: usize = 4;

/// Which tier answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Exact,
    Semantic,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Exact => "exact",
            Tier::Semantic => "semantic",
        }
    }
}

/// A cached answer for a request.
#[derive(Debug, Clone)]
pub struct CacheHit {
    pub tier: Tier,
    /// Cosine similarity of the prompts (1 for an exact hit).
    pub similarity: f32,
    pub response: StoredResponse,
    pub model: String,
    pub provider: String,
    /// What the answer cost when it was fetched, saved now.
    pub saved_usd: f64,
}

/// What a request found in the cache.
pub enum Lookup {
    Hit(CacheHit),
    /// Not in the cache: store the answer with `Pending::store` once it succeeds.
    Miss(Pending),
    /// The cache does not apply (disabled, opted out, or sampling too random).
    Bypass,
}

/// A missed request, carried to the store: its key and, when computed, its embedding.
pub struct Pending {
    key: RequestKey,
    embedding: Option<Vec<f32>>,
}

impl Pending {
    /// The embedding of the request's last user turn, when the lookup computed one (task
    /// classification reuses it rather than embedding the prompt again).
    pub fn embedding(&self) -> Option<&[f32]> {
        self.embedding.as_deref()
    }
}

/// What one lookup did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct LookupTrace {
    pub embedded: bool,
    pub guard_rejection: Option<guard::Conflict>,
}

/// The snapshot-able state: entries and their vectors, changed together.
struct State {
    entries: Entries,
    index: VectorIndex,
}

pub struct ResponseCache {
    state: RwLock<State>,
    embedder: Option<Embedder>,
    snapshot: Option<PathBuf>,
    dirty: AtomicBool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ResponseCache {
    /// A cache kept in memory only, with the given embedder (or exact tier only).
    pub fn in_memory(embedder: Option<Embedder>) -> Self {
        let index = VectorIndex::new(IndexParams::default())
            .unwrap_or_else(|e| panic!("usearch cannot create an index: {e}"));
        ResponseCache {
            state: RwLock::new(State {
                entries: Entries::default(),
                index,
            }),
            embedder,
            snapshot: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// Opens the cache of `data_dir`, loading its snapshot, and the embedding model from
    /// `model_dir`. Neither is fatal: a missing model leaves the exact tier, a broken snapshot
    /// an empty cache; each is logged once.
    pub fn open(data_dir: &Path, model_dir: &Path, settings: &CacheSettings) -> Self {
        let embedder = if settings.semantic {
            match Embedder::load(model_dir, settings.embedding_threads) {
                Ok(embedder) => {
                    tracing::info!(model_dir = %model_dir.display(), "semantic cache ready");
                    Some(embedder)
                }
                Err(e) => {
                    tracing::warn!("semantic cache unavailable, exact-match cache only: {e}");
                    None
                }
            }
        } else {
            None
        };
        let mut cache = Self::in_memory(embedder);
        let path = data_dir.join(SNAPSHOT_FILE);
        match snapshot::read(&path) {
            Ok(None) => {}
            Ok(Some((entries, index))) => {
                match VectorIndex::from_bytes(IndexParams::default(), &index) {
                    Ok(index) => {
                        let entries = Entries::from_entries(entries);
                        tracing::info!(entries = entries.len(), "cache snapshot loaded");
                        cache.state = RwLock::new(State { entries, index });
                    }
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        "cache snapshot ignored, starting empty: {e}"
                    ),
                }
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                "cache snapshot ignored, starting empty: {e}"
            ),
        }
        cache.snapshot = Some(path);
        cache
    }

    /// The embedding service, when the model loaded.
    pub fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_ref()
    }

    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // A panic while holding the lock leaves whole entries behind; the state stays usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Looks a request up: exact tier first, then (if allowed and available) the semantic tier.
    pub async fn lookup(
        &self,
        input: &CompletionInput,
        settings: &CacheSettings,
    ) -> (Lookup, LookupTrace) {
        let mut trace = LookupTrace::default();
        let controls = &input.cache;
        let too_random = input
            .request
            .sampling
            .temperature
            .is_some_and(|t| t > settings.max_temperature);
        if !settings.enabled
            || controls.enabled == Some(false)
            || (too_random && !controls.allow_high_temperature)
        {
            return (Lookup::Bypass, trace);
        }
        let key = RequestKey::of(input);
        let now = now_secs();
        let fresh = |entry: &Entry| now.saturating_sub(entry.created_at) < settings.ttl_seconds;
        if let Some(entry) = self.read().entries.by_exact_key(&key.exact)
            && fresh(entry)
        {
            return (Lookup::Hit(hit(entry, Tier::Exact, 1.0)), trace);
        }
        let semantic = settings.semantic && controls.semantic != Some(false);
        let (Some(embedder), Some(query), true) = (&self.embedder, &key.query, semantic) else {
            return (
                Lookup::Miss(Pending {
                    key,
                    embedding: None,
                }),
                trace,
            );
        };
        let embedding = match embedder.embed(query).await {
            Ok(embedding) => embedding,
            Err(e) => {
                tracing::debug!("no embedding for the cache lookup: {e}");
                return (
                    Lookup::Miss(Pending {
                        key,
                        embedding: None,
                    }),
                    trace,
                );
            }
        };
        trace.embedded = true;
        let threshold = controls.threshold.unwrap_or(settings.threshold);
        let found = {
            let state = self.read();
            let candidates = state.index.search(&embedding, CANDIDATES, |id| {
                state
                    .entries
                    .get(id)
                    .is_some_and(|e| e.scope == key.scope && e.query.is_some() && fresh(e))
            });
            match candidates {
                Ok(candidates) => candidates
                    .into_iter()
                    .filter(|n| n.similarity >= threshold)
                    .filter_map(|n| state.entries.get(n.id).map(|e| (n, e)))
                    .find(|(_, entry)| {
                        let stored = entry.query.as_deref().unwrap_or("");
                        match settings
                            .guard
                            .then(|| guard::conflict(query, stored))
                            .flatten()
                        {
                            Some(conflict) => {
                                trace.guard_rejection.get_or_insert(conflict);
                                false
                            }
                            None => true,
                        }
                    })
                    .map(|(n, entry)| hit(entry, Tier::Semantic, n.similarity)),
                Err(e) => {
                    tracing::warn!("cache search failed: {e}");
                    None
                }
            }
        };
        match found {
            Some(hit) => (Lookup::Hit(hit), trace),
            None => (
                Lookup::Miss(Pending {
                    key,
                    embedding: Some(embedding),
                }),
                trace,
            ),
        }
    }

    /// What storing an answer for `input` needs (its key and, when the semantic tier is
    /// available, its embedding), without looking anything up: for filling a cache in bulk.
    pub async fn pending_for(&self, input: &CompletionInput) -> Result<Pending, EmbedError> {
        let key = RequestKey::of(input);
        let embedding = match (&self.embedder, &key.query) {
            (Some(embedder), Some(query)) => Some(embedder.embed(query).await?),
            _ => None,
        };
        Ok(Pending { key, embedding })
    }

    /// Stores a successful answer for a missed request.
    pub fn store(
        &self,
        pending: Pending,
        response: StoredResponse,
        model: &str,
        provider: &str,
        cost_usd: f64,
        settings: &CacheSettings,
    ) {
        // Answers cut short or withheld are not worth repeating.
        if !matches!(response.finish_reason.as_str(), "stop" | "tool_calls") {
            return;
        }
        let Pending { key, embedding } = pending;
        let mut state = self.write();
        let State { entries, index } = &mut *state;
        let id = entries.next_id();
        let (query, embedding) = match (key.query, embedding) {
            (Some(query), Some(embedding)) => (Some(query), Some(embedding)),
            _ => (None, None),
        };
        let replaced = entries.insert(Entry {
            id,
            exact_key: key.exact,
            scope: key.scope,
            query,
            response,
            model: model.to_string(),
            provider: provider.to_string(),
            cost_usd,
            created_at: now_secs(),
        });
        let mut removed: Vec<u64> = replaced.into_iter().collect();
        removed.extend(entries.evict(now_secs(), settings.ttl_seconds, settings.max_entries));
        for id in removed {
            if let Err(e) = index.remove(id) {
                tracing::debug!("cache index: {e}");
            }
        }
        if let Some(embedding) = embedding
            && let Err(e) = index.add(id, &embedding)
        {
            tracing::warn!("cache index: {e}");
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the snapshot if anything changed since the last one.
    pub fn save_if_changed(&self) {
        let Some(path) = &self.snapshot else {
            return;
        };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        // Encoded under the lock, written after it, so lookups and stores never wait for the disk.
        let encoded = {
            let state = self.read();
            let entries: Vec<&Entry> = state.entries.iter().collect();
            state
                .index
                .to_bytes()
                .map_err(|e| e.to_string())
                .and_then(|index| snapshot::encode(&entries, &index).map_err(|e| e.to_string()))
                .map(|bytes| (bytes, entries.len()))
        };
        let written = encoded.and_then(|(bytes, count)| {
            snapshot::write(path, &bytes)
                .map(|()| count)
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(count) => tracing::info!(entries = count, "cache snapshot written"),
            Err(e) => {
                self.dirty.store(true, Ordering::Release);
                tracing::warn!(path = %path.display(), "cannot write the cache snapshot: {e}");
            }
        }
    }

    /// Writes the snapshot every `interval` while the cache changes, off the async workers.
    pub fn spawn_snapshots(
        cache: std::sync::Arc<Self>,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let cache = cache.clone();
                let _ = tokio::task::spawn_blocking(move || cache.save_if_changed()).await;
            }
        })
    }
}

fn hit(entry: &Entry, tier: Tier, similarity: f32) -> CacheHit {
    CacheHit {
        tier,
        similarity,
        response: entry.response.clone(),
        model: entry.model.clone(),
        provider: entry.provider.clone(),
        saved_usd: entry.cost_usd,
    }
}
