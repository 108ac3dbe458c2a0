//! Task classification as the request path uses it: nearest centroid over the sentence
//! embedding when the embedding model and `tasks.toml` are there, keywords otherwise.
//!
//! Centroids are computed off the request path (at start and when `tasks.toml` changes) and
//! swapped in atomically. A request reuses the embedding the semantic cache already computed
//! for its last user turn, so classification costs no second model run; only a request the
//! cache did not embed (cache off, bypassed, exact-tier miss without the semantic tier) is
//! embedded here, on the embedder's own thread.

use super::centroid::{CentroidError, Centroids};
use super::classify as keywords;
use crate::cache::{EmbedError, Embedder};
use crate::config::{TaskClass, TaskExamples};
use arc_swap::ArcSwapOption;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How much keyword evidence counts next to the embedding: `KEYWORD_WEIGHT × (the class's
/// share of keyword cue hits)` is added to each centroid similarity. Chosen by leave-one-out
/// accuracy over the examples in `config/tasks.toml` (`aigw-bench classify`, bench/CLASSIFY.md),
/// where it beat the embedding alone (85.7% against 83.2%).
pub const KEYWORD_WEIGHT: f32 = 0.1;

/// Texts per embedding job when computing centroids: the embedder's batch size, so example
/// embedding interleaves with requests instead of holding the model for one long run.
const EXAMPLE_BATCH: usize = 16;

/// How a request's task was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSource {
    Embedding,
    Keywords,
}

impl TaskSource {
    /// The `x-gateway-task-source` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSource::Embedding => "embedding",
            TaskSource::Keywords => "keywords",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskVerdict {
    pub task: TaskClass,
    pub confidence: f32,
    pub source: TaskSource,
    /// Whether the prompt was embedded for this verdict (rather than reusing the cache's
    /// embedding, or not embedding at all).
    pub embedded_here: bool,
}

impl TaskVerdict {
    pub fn by_keywords(text: &str) -> Self {
        let (task, confidence) = keywords::classify(text);
        TaskVerdict {
            task,
            confidence,
            source: TaskSource::Keywords,
            embedded_here: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot embed the task examples: {0}")]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Centroids(#[from] CentroidError),
}

/// Centroids with the examples they were computed from, so an unchanged `tasks.toml` is not
/// embedded again on every config reload.
struct Trained {
    examples: TaskExamples,
    centroids: Centroids,
}

pub struct TaskClassifier {
    embedder: Option<Embedder>,
    trained: ArcSwapOption<Trained>,
    /// Bumped by every `train`, so a slow, older training cannot overwrite a newer one.
    generation: AtomicU64,
}

impl TaskClassifier {
    /// A classifier that uses `embedder` once trained; keywords only without one.
    pub fn new(embedder: Option<Embedder>) -> Self {
        TaskClassifier {
            embedder,
            trained: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
        }
    }

    /// A classifier that always uses keywords.
    pub fn keywords_only() -> Self {
        Self::new(None)
    }

    pub fn embedder(&self) -> Option<&Embedder> {
        self.embedder.as_ref()
    }

    /// The centroids in use, if any.
    pub fn centroids(&self) -> Option<Centroids> {
        self.trained.load().as_ref().map(|t| t.centroids.clone())
    }

    /// Computes centroids for `examples` (embedding each example once) and swaps them in;
    /// `None` goes back to keywords. Returns whether anything changed. On an error the
    /// previous centroids stay.
    pub async fn train(&self, examples: Option<&TaskExamples>) -> Result<bool, LoadError> {
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let (Some(examples), Some(embedder)) = (examples, &self.embedder) else {
            let had = self.trained.swap(None).is_some();
            return Ok(had);
        };
        if self
            .trained
            .load()
            .as_ref()
            .is_some_and(|t| &t.examples == examples)
        {
            return Ok(false);
        }
        let labelled: Vec<(TaskClass, &str)> = examples.labelled().collect();
        let mut embeddings = Vec::with_capacity(labelled.len());
        for batch in labelled.chunks(EXAMPLE_BATCH) {
            let texts = batch.iter().map(|(_, text)| text.to_string()).collect();
            embeddings.extend(embedder.embed_many(texts).await?);
        }
        let centroids = Centroids::from_labelled(
            labelled
                .iter()
                .zip(&embeddings)
                .map(|((class, _), embedding)| (*class, embedding.as_slice())),
        )?;
        if self.generation.load(Ordering::Acquire) != generation {
            // A newer `train` started meanwhile; its answer is the one that counts.
            return Ok(false);
        }
        self.trained.store(Some(Arc::new(Trained {
            examples: examples.clone(),
            centroids,
        })));
        Ok(true)
    }

    /// Classifies `text` (the last user turn). `embedding` is its embedding when the caller
    /// already has one; otherwise it is computed here if centroids are in use. Any failure
    /// (embedder busy, empty text) falls back to keywords.
    pub async fn classify(&self, text: &str, embedding: Option<&[f32]>) -> TaskVerdict {
        let trained = self.trained.load_full();
        let (Some(trained), Some(embedder)) = (trained, &self.embedder) else {
            return TaskVerdict::by_keywords(text);
        };
        if text.trim().is_empty() {
            return TaskVerdict::by_keywords(text);
        }
        if let Some(embedding) = embedding {
            return classify_embedded(&trained.centroids, text, embedding, KEYWORD_WEIGHT);
        }
        match embedder.embed(text).await {
            Ok(embedding) => TaskVerdict {
                embedded_here: true,
                ..classify_embedded(&trained.centroids, text, &embedding, KEYWORD_WEIGHT)
            },
            Err(e) => {
                tracing::debug!("task classified by keywords, no embedding: {e}");
                TaskVerdict::by_keywords(text)
            }
        }
    }
}

/// Nearest centroid to `embedding` (of `text`), with `keyword_weight` times the keyword evidence
/// in `text` added (0 for the embedding alone); keywords alone if the embedding does not fit.
pub fn classify_embedded(
    centroids: &Centroids,
    text: &str,
    embedding: &[f32],
    keyword_weight: f32,
) -> TaskVerdict {
    match centroids.classify(embedding) {
        Some(prediction) => {
            let prediction = prediction.with_evidence(&keywords::cue_shares(text), keyword_weight);
            TaskVerdict {
                task: prediction.class,
                confidence: prediction.confidence,
                source: TaskSource::Embedding,
                embedded_here: false,
            }
        }
        None => TaskVerdict::by_keywords(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }

    #[tokio::test]
    async fn without_an_embedder_it_classifies_by_keywords_even_with_examples() {
        let classifier = TaskClassifier::keywords_only();
        let examples = TaskExamples {
            examples: TaskClass::ALL
                .iter()
                .map(|c| (*c, vec!["a".into(), "b".into(), "c".into()]))
                .collect(),
        };
        assert!(!classifier.train(Some(&examples)).await.unwrap());
        assert!(classifier.centroids().is_none());
        let verdict = classifier
            .classify("Translate 'good night' into French", Some(&[1.0, 0.0]))
            .await;
        assert_eq!(verdict.task, TaskClass::Translation);
        assert_eq!(verdict.source, TaskSource::Keywords);
        assert!(!verdict.embedded_here);
    }

    #[test]
    fn keyword_evidence_breaks_a_tie_between_centroids() {
        let code = unit(&[1.0, 0.0]);
        let math = unit(&[0.0, 1.0]);
        let centroids = Centroids::from_labelled([
            (TaskClass::Code, code.as_slice()),
            (TaskClass::Math, math.as_slice()),
        ])
        .unwrap();
        let between = unit(&[1.0, 1.0]);
        let text = "solve this equation";
        let verdict = classify_embedded(&centroids, text, &between, KEYWORD_WEIGHT);
        assert_eq!(verdict.task, TaskClass::Math);
        assert_eq!(verdict.source, TaskSource::Embedding);
        // A prompt that does not fit the centroids falls back to keywords.
        let verdict = classify_embedded(&centroids, text, &[1.0, 0.0, 0.0], KEYWORD_WEIGHT);
        assert_eq!(verdict.source, TaskSource::Keywords);
        assert_eq!(verdict.task, TaskClass::Math);
    }
}
