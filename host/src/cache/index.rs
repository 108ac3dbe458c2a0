//! The approximate-nearest-neighbour index over prompt embeddings (usearch HNSW, cosine).

use super::encoder::DIMENSIONS;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// HNSW parameters, chosen on real MiniLM embeddings (see the cache benchmark): with 100k
/// entries these keep recall@1 near 1 at well under a millisecond per search.
#[derive(Debug, Clone, Copy)]
pub struct IndexParams {
    pub connectivity: usize,
    pub expansion_add: usize,
    pub expansion_search: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("vector index: {0}")]
pub struct IndexError(String);

fn err(e: impl std::fmt::Display) -> IndexError {
    IndexError(e.to_string())
}

/// usearch reports cosine distance; callers think in similarity.
fn neighbours(matches: &usearch::ffi::Matches) -> Vec<Neighbour> {
    matches
        .keys
        .iter()
        .zip(&matches.distances)
        .map(|(&id, &distance)| Neighbour {
            id,
            similarity: 1.0 - distance,
        })
        .collect()
}

pub struct VectorIndex {
    index: Index,
}

/// One neighbour: the entry id and its cosine similarity to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    pub id: u64,
    pub similarity: f32,
}

impl VectorIndex {
    pub fn new(params: IndexParams) -> Result<Self, IndexError> {
        let options = IndexOptions {
            dimensions: DIMENSIONS,
            metric: MetricKind::Cos,
            // Full precision: the thresholds that matter are a hundredth apart.
            quantization: ScalarKind::F32,
            connectivity: params.connectivity,
            expansion_add: params.expansion_add,
            expansion_search: params.expansion_search,
            multi: false,
        };
        Ok(VectorIndex {
            index: Index::new(&options).map_err(err)?,
        })
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add(&self, id: u64, vector: &[f32]) -> Result<(), IndexError> {
        if self.index.size() >= self.index.capacity() {
            let grown = (self.index.capacity() * 2).max(1024);
            self.index.reserve(grown).map_err(err)?;
        }
        self.index.add(id, vector).map_err(err)
    }

    pub fn remove(&self, id: u64) -> Result<(), IndexError> {
        self.index.remove(id).map(|_| ()).map_err(err)
    }

    /// The `count` nearest entries that `accept` lets through, nearest first.
    pub fn search(
        &self,
        query: &[f32],
        count: usize,
        accept: impl Fn(u64) -> bool,
    ) -> Result<Vec<Neighbour>, IndexError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let matches = self
            .index
            .filtered_search(query, count, accept)
            .map_err(err)?;
        Ok(neighbours(&matches))
    }

    /// Brute-force search over every entry: the ground truth recall is measured against.
    pub fn exact_search(&self, query: &[f32], count: usize) -> Result<Vec<Neighbour>, IndexError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let matches = self.index.exact_search(query, count).map_err(err)?;
        Ok(neighbours(&matches))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, IndexError> {
        let mut buffer = vec![0u8; self.index.serialized_length()];
        self.index.save_to_buffer(&mut buffer).map_err(err)?;
        Ok(buffer)
    }

    pub fn from_bytes(params: IndexParams, bytes: &[u8]) -> Result<Self, IndexError> {
        let index = Self::new(params)?;
        index.index.load_from_buffer(bytes).map_err(err)?;
        // Loading restores the saved expansion settings; the configured ones win.
        index.index.change_expansion_search(params.expansion_search);
        index.index.change_expansion_add(params.expansion_add);
        Ok(index)
    }
}
