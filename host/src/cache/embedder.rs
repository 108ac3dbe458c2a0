//! The embedding service: one encoder on a dedicated thread, so model runs never block the
//! async workers, with concurrent requests batched into one model run.
//!
//! Public and cheap to clone: the semantic cache uses it, and so can anything else that needs
//! sentence embeddings (task classification by nearest centroid, for one).

use super::encoder::{Encoder, EncoderError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Requests waiting for the model beyond this are refused rather than queued without bound.
const QUEUE_DEPTH: usize = 256;
/// The most texts run through the model together. Past this a batch is mostly padding cost.
const MAX_BATCH: usize = 16;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedder is overloaded")]
    Busy,
    #[error("the embedder has stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>,
}

#[derive(Clone)]
pub struct Embedder {
    jobs: mpsc::SyncSender<Job>,
    computed: Arc<AtomicU64>,
}

impl Embedder {
    /// Loads the model from `dir` and starts the thread that runs it.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, EncoderError> {
        let encoder = Encoder::load(dir, threads)?;
        let (jobs, queue) = mpsc::sync_channel(QUEUE_DEPTH);
        let computed = Arc::new(AtomicU64::new(0));
        let counter = computed.clone();
        std::thread::Builder::new()
            .name("aigw-embedder".into())
            .spawn(move || run(encoder, queue, &counter))
            .map_err(|e| EncoderError::Model(format!("cannot start the embedder thread: {e}")))?;
        Ok(Embedder { jobs, computed })
    }

    /// The unit-length embedding of `text`.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut vectors = self.embed_many(vec![text.to_string()]).await?;
        vectors.pop().ok_or(EmbedError::Stopped)
    }

    /// Embeddings of several texts, in order.
    pub async fn embed_many(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .try_send(Job { texts, reply })
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

fn run(mut encoder: Encoder, queue: mpsc::Receiver<Job>, computed: &AtomicU64) {
    // Ends when every `Embedder` clone is gone.
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        let mut texts: usize = jobs[0].texts.len();
        while texts < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => {
                    texts += job.texts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
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
