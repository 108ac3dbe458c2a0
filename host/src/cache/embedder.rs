//! The embedding service: one encoder on a dedicated thread, so model runs never block the
//! async workers, with concurrent requests batched into one model run.
//!
//! Public and cheap to clone: the semantic cache uses it, and so can anything else that needs
//! sentence embeddings (task classification by nearest centroid, for one).

use super::encoder::{Encoder, EncoderError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Requests waiting for the model beyond this are refused rather than queued without bound.
const QUEUE_DEPTH: usize = 256;
/// The most texts run through the model together. Past this a batch is mostly padding cost.
const MAX_BATCH: usize = 16;
/// A request's prompt that finds the model busy and waits this long behind other texts is
/// answered without an embedding: its cache lookup skips the semantic tier (the exact tier
/// still answers) and its task is classified by keywords. Under a burst the model then costs a
/// request at most this wait plus one batch, instead of a place in a queue that grows faster
/// than one core drains it. A prompt that finds the model idle is always embedded.
pub const PROMPT_MAX_WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedder is overloaded")]
    Busy,
    #[error("the embedder was busy for longer than a request may wait")]
    TooLate,
    #[error("the embedder has stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

struct Job {
    texts: Vec<String>,
    /// Past this the job is answered `TooLate` instead of run.
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

#[derive(Clone)]
pub struct Embedder {
    jobs: mpsc::SyncSender<Job>,
    computed: Arc<AtomicU64>,
    /// The model is running a batch.
    busy: Arc<AtomicBool>,
}

impl Embedder {
    /// Loads the model from `dir` and starts the thread that runs it.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, EncoderError> {
        let encoder = Encoder::load(dir, threads)?;
        let (jobs, queue) = mpsc::sync_channel(QUEUE_DEPTH);
        let computed = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicBool::new(false));
        let (counter, running) = (computed.clone(), busy.clone());
        std::thread::Builder::new()
            .name("aigw-embedder".into())
            .spawn(move || run(encoder, queue, &counter, &running))
            .map_err(|e| EncoderError::Model(format!("cannot start the embedder thread: {e}")))?;
        Ok(Embedder {
            jobs,
            computed,
            busy,
        })
    }

    /// The unit-length embedding of a request's prompt, or `TooLate` once it has waited
    /// [`PROMPT_MAX_WAIT`] for a busy model.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let deadline = self
            .busy
            .load(Ordering::Acquire)
            .then(|| Instant::now() + PROMPT_MAX_WAIT);
        let mut vectors = self.submit(vec![text.to_string()], deadline).await?;
        vectors.pop().ok_or(EmbedError::Stopped)
    }

    /// Embeddings of several texts, in order, however long the model is busy.
    pub async fn embed_many(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.submit(texts, None).await
    }

    async fn submit(
        &self,
        texts: Vec<String>,
        deadline: Option<Instant>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job {
                texts,
                deadline,
                reply,
            })
            .map_err(|e| match e {
                mpsc::TrySendError::Full(_) => EmbedError::Busy,
                mpsc::TrySendError::Disconnected(_) => EmbedError::Stopped,
            })?;
        answer.await.map_err(|_| EmbedError::Stopped)?
    }

    /// Texts embedded since start (each text counts once, whatever the batching).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

fn run(mut encoder: Encoder, queue: mpsc::Receiver<Job>, computed: &AtomicU64, busy: &AtomicBool) {
    // Ends when every `Embedder` clone is gone.
    loop {
        busy.store(false, Ordering::Release);
        let Ok(first) = queue.recv() else {
            break;
        };
        busy.store(true, Ordering::Release);
        let mut jobs = Vec::new();
        let mut texts = 0;
        let mut next = Some(first);
        while let Some(job) = next {
            if job
                .deadline
                .is_some_and(|deadline| deadline <= Instant::now())
            {
                let _ = job.reply.send(Err(EmbedError::TooLate));
            } else {
                texts += job.texts.len();
                jobs.push(job);
            }
            next = if texts < MAX_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if jobs.is_empty() {
            continue;
        }
        let all: Vec<&str> = jobs
            .iter()
            .flat_map(|j| j.texts.iter().map(String::as_str))
            .collect();
        // One job may bring many texts (training, benchmarks): the model still runs at most
        // MAX_BATCH at a time, since its activations grow with batch size times length squared.
        let result =
            all.chunks(MAX_BATCH)
                .try_fold(Vec::with_capacity(all.len()), |mut vectors, chunk| {
                    vectors.extend(encoder.encode(chunk)?);
                    Ok::<_, EncoderError>(vectors)
                });
        computed.fetch_add(
            u64::try_from(all.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        match result {
            Ok(mut vectors) => {
                for job in jobs.into_iter().rev() {
                    let rest = vectors.split_off(vectors.len().saturating_sub(job.texts.len()));
                    let _ = job.reply.send(Ok(rest));
                }
            }
            Err(e) => {
                let error = EmbedError::Failed(e.to_string());
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The model `.ci/setup` fetches.
    fn model_dir() -> PathBuf {
        std::env::var_os("AIGW_MODEL_DIR").map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/models")),
            PathBuf::from,
        )
    }

    #[tokio::test]
    async fn a_prompt_that_would_wait_too_long_is_answered_without_the_model() {
        let embedder = Embedder::load(&model_dir(), 1).expect("the model (run .ci/setup)");
        // Several full batches: the model is busy for far longer than a prompt may wait.
        let texts: Vec<String> = (0..96)
            .map(|i| format!("sentence {i} of a bulk job that keeps the embedding model busy"))
            .collect();
        let bulk = {
            let embedder = embedder.clone();
            tokio::spawn(async move { embedder.embed_many(texts).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let prompt = embedder.embed("What is the capital of France?").await;
        assert!(matches!(prompt, Err(EmbedError::TooLate)), "{prompt:?}");
        let bulk = bulk
            .await
            .expect("joins")
            .expect("a bulk job waits as long as it takes");
        assert_eq!(bulk.len(), 96);
        let idle = embedder.embed("What is the capital of France?").await;
        assert_eq!(idle.expect("embedded once the model is free").len(), 384);
    }
}
