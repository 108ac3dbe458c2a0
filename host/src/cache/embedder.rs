//! The embedding service: one encoder on a dedicated thread, so model runs never block the
//! async workers, with concurrent requests batched into one model run.
//!
//! Public and cheap to clone: the semantic cache uses it, and so can anything else that needs
//! sentence embeddings (task classification by nearest centroid, for one).
//!
//! Requests' prompts go first: bulk work (training the task classifier, benchmarks) runs one
//! batch at a time between them, so a prompt never waits behind more than one batch of it.

use super::encoder::{Encoder, EncoderError};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Jobs waiting for the thread beyond this are refused rather than queued without bound.
const QUEUE_DEPTH: usize = 256;
/// The most texts run through the model together. Past this a batch is mostly padding cost.
const MAX_BATCH: usize = 16;
/// A prompt that finds this many prompts already waiting is answered at once without an
/// embedding: its cache lookup skips the semantic tier (the exact tier still answers) and its
/// task is classified by keywords. One ONNX Runtime thread embeds about a hundred short prompts
/// a second whatever the batch size, so a longer line only adds waiting: with at most four
/// ahead, a request waits for the model run in progress and its own, tens of milliseconds,
/// however hard the burst.
const MAX_PROMPTS_WAITING: usize = 4;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("the embedder is overloaded")]
    Busy,
    #[error("the embedder already has a full batch of prompts waiting")]
    Backlogged,
    #[error("the embedder has stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

enum Job {
    /// One request's prompt.
    Prompt { text: String, reply: Reply },
    /// Any number of texts, run a batch at a time between prompts.
    Bulk { texts: Vec<String>, reply: Reply },
}

#[derive(Clone)]
pub struct Embedder {
    jobs: mpsc::SyncSender<Job>,
    computed: Arc<AtomicU64>,
    /// Prompts sent to the thread and not yet in a batch.
    prompts_waiting: Arc<AtomicUsize>,
}

impl Embedder {
    /// Loads the model from `dir` and starts the thread that runs it.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, EncoderError> {
        let encoder = Encoder::load(dir, threads)?;
        let (jobs, queue) = mpsc::sync_channel(QUEUE_DEPTH);
        let computed = Arc::new(AtomicU64::new(0));
        let prompts_waiting = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            encoder,
            queue,
            computed: computed.clone(),
            prompts_waiting: prompts_waiting.clone(),
            prompts: VecDeque::new(),
            bulk: VecDeque::new(),
        };
        std::thread::Builder::new()
            .name("aigw-embedder".into())
            .spawn(move || worker.run())
            .map_err(|e| EncoderError::Model(format!("cannot start the embedder thread: {e}")))?;
        Ok(Embedder {
            jobs,
            computed,
            prompts_waiting,
        })
    }

    /// The unit-length embedding of a request's prompt, or `Backlogged` at once when a full
    /// batch of prompts is already waiting for the model.
    pub async fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let admitted =
            self.prompts_waiting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |waiting| {
                    (waiting < MAX_PROMPTS_WAITING).then_some(waiting + 1)
                });
        if admitted.is_err() {
            return Err(EmbedError::Backlogged);
        }
        let (reply, answer) = oneshot::channel();
        let job = Job::Prompt {
            text: text.to_string(),
            reply,
        };
        if let Err(e) = self.send(job) {
            self.prompts_waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        let mut vectors = answer.await.map_err(|_| EmbedError::Stopped)??;
        vectors.pop().ok_or(EmbedError::Stopped)
    }

    /// Embeddings of several texts, in order, however long the model is busy.
    pub async fn embed_many(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Bulk { texts, reply })?;
        answer.await.map_err(|_| EmbedError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), EmbedError> {
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => EmbedError::Busy,
            mpsc::TrySendError::Disconnected(_) => EmbedError::Stopped,
        })
    }

    /// Texts embedded since start (each text counts once, whatever the batching).
    pub fn computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

/// A bulk job part-way through.
struct BulkJob {
    texts: Vec<String>,
    done: Vec<Vec<f32>>,
    reply: Reply,
}

struct Worker {
    encoder: Encoder,
    queue: mpsc::Receiver<Job>,
    computed: Arc<AtomicU64>,
    prompts_waiting: Arc<AtomicUsize>,
    prompts: VecDeque<(String, Reply)>,
    bulk: VecDeque<BulkJob>,
}

impl Worker {
    /// Ends when every `Embedder` clone is gone and the work they sent is done.
    fn run(mut self) {
        loop {
            if self.prompts.is_empty() && self.bulk.is_empty() {
                match self.queue.recv() {
                    Ok(job) => self.accept(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = self.queue.try_recv() {
                self.accept(job);
            }
            if !self.prompts.is_empty() {
                self.run_prompts();
            } else {
                self.run_bulk_batch();
            }
        }
    }

    fn accept(&mut self, job: Job) {
        match job {
            Job::Prompt { text, reply } => self.prompts.push_back((text, reply)),
            Job::Bulk { texts, reply } => self.bulk.push_back(BulkJob {
                done: Vec::with_capacity(texts.len()),
                texts,
                reply,
            }),
        }
    }

    fn run_prompts(&mut self) {
        let take = self.prompts.len().min(MAX_BATCH);
        let batch: Vec<(String, Reply)> = self.prompts.drain(..take).collect();
        self.prompts_waiting.fetch_sub(take, Ordering::AcqRel);
        let texts: Vec<&str> = batch.iter().map(|(text, _)| text.as_str()).collect();
        match self.encode(&texts) {
            Ok(vectors) => {
                for ((_, reply), vector) in batch.into_iter().zip(vectors) {
                    let _ = reply.send(Ok(vec![vector]));
                }
            }
            Err(error) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// The next batch of the oldest bulk job; its reply once it is complete.
    fn run_bulk_batch(&mut self) {
        let Some(job) = self.bulk.front() else {
            return;
        };
        let start = job.done.len();
        let end = (start + MAX_BATCH).min(job.texts.len());
        let texts: Vec<String> = job.texts[start..end].to_vec();
        let result = if texts.is_empty() {
            Ok(Vec::new())
        } else {
            self.encode(&texts.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let Some(job) = self.bulk.front_mut() else {
            return;
        };
        let outcome = match result {
            Ok(vectors) => {
                job.done.extend(vectors);
                (job.done.len() >= job.texts.len()).then_some(Ok(()))
            }
            Err(error) => Some(Err(error)),
        };
        if let Some(outcome) = outcome
            && let Some(job) = self.bulk.pop_front()
        {
            let _ = job.reply.send(outcome.map(|()| job.done));
        }
    }

    fn encode(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let result = self.encoder.encode(texts);
        self.computed
            .fetch_add(texts.len() as u64, Ordering::Relaxed);
        result.map_err(|e| EmbedError::Failed(e.to_string()))
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

    fn sentences(count: usize, what: &str) -> Vec<String> {
        (0..count)
            .map(|i| format!("sentence {i} of {what}, long enough to keep the model busy"))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn prompts_go_before_bulk_work_and_a_backlog_is_refused() {
        let embedder = Embedder::load(&model_dir(), 1).expect("the model (run .ci/setup)");
        let bulk = {
            let embedder = embedder.clone();
            tokio::spawn(async move { embedder.embed_many(sentences(96, "a bulk job")).await })
        };
        // A prompt sent while the bulk job runs is answered before the bulk job completes.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let prompt = embedder.embed("What is the capital of France?").await;
        assert_eq!(prompt.expect("embedded").len(), 384);
        assert!(!bulk.is_finished(), "the bulk job was still running");

        // More prompts at once than one batch: those past a full batch are refused at once.
        let burst = futures::future::join_all(
            sentences(3 * MAX_PROMPTS_WAITING, "a burst")
                .into_iter()
                .map(|text| {
                    let embedder = embedder.clone();
                    async move { embedder.embed(&text).await }
                }),
        )
        .await;
        let refused = burst
            .iter()
            .filter(|r| matches!(r, Err(EmbedError::Backlogged)))
            .count();
        let embedded = burst.iter().filter(|r| r.is_ok()).count();
        assert_eq!(refused + embedded, burst.len(), "{burst:?}");
        assert!(embedded >= MAX_PROMPTS_WAITING, "{embedded} embedded");
        assert!(refused > 0, "none refused");

        let bulk = bulk
            .await
            .expect("joins")
            .expect("bulk work waits as long as it takes");
        assert_eq!(bulk.len(), 96);
    }
}
