//! The usage ledger: one row per upstream attempt (and per cache hit) in SQLite.
//!
//! The request path only pushes a record onto a bounded queue; a writer thread drains it in
//! batches, one transaction per batch, so a slow disk never holds a request. A full queue drops
//! the record, and every drop is counted (`aigw_ledger_dropped_total`) and logged. `flush`
//! waits for everything queued before it to be on disk: shutdown calls it after the server has
//! stopped accepting requests.

mod reports;
mod writer;

pub use reports::{
    Breakdown, LatencySummary, Recommendation, ReportRange, UsageReport, UsageTotals,
};

use crate::config::LedgerSettings;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The upstream or the gateway failed; `LedgerRecord::error_class` says how.
    Error,
    /// The client went away mid-stream; tokens generated until then are counted.
    ClientClosed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::ClientClosed => "client_closed",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone)]
pub struct LedgerRecord {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The `x-request-id` the client saw, when the request came over HTTP.
    pub request_id: Option<String>,
    pub api_key_id: Option<String>,
    pub team: Option<String>,
    pub task: String,
    pub policy: String,
    pub provider: String,
    pub model: String,
    pub streamed: bool,
    /// Every input token, cached and cache-written ones included (as the WIT `usage` counts).
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    /// Counted by the gateway because the provider reported none.
    pub tokens_estimated: bool,
    /// From the pricing table at the time of the attempt.
    pub cost_usd: f64,
    /// Answered from the gateway's cache: no upstream call was made.
    pub cached: bool,
    /// What the answer would have cost upstream, for cache hits.
    pub cost_saved_usd: f64,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub outcome: Outcome,
    /// The error class label (`rate_limited`, `server`, ...) of a failed attempt.
    pub error_class: Option<String>,
}

impl LedgerRecord {
    /// A record stamped now, with nothing counted yet.
    pub fn new(provider: &str, model: &str) -> Self {
        LedgerRecord {
            timestamp_ms: now_ms(),
            request_id: None,
            api_key_id: None,
            team: None,
            task: String::new(),
            policy: String::new(),
            provider: provider.into(),
            model: model.into(),
            streamed: false,
            input_tokens: 0,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
            output_tokens: 0,
            tokens_estimated: false,
            cost_usd: 0.0,
            cached: false,
            cost_saved_usd: 0.0,
            latency_ms: 0.0,
            ttft_ms: None,
            outcome: Outcome::Ok,
            error_class: None,
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the ledger writer has stopped")]
    Stopped,
    #[error("ledger report task failed: {0}")]
    Task(String),
}

/// (API key id, team, USD spent).
pub type SpendRow = (Option<String>, Option<String>, f64);

enum Message {
    Record(Box<LedgerRecord>),
    Flush(oneshot::Sender<()>),
}

/// Counters the ledger keeps up to date; handles into the gateway's metrics registry.
#[derive(Clone, Default)]
pub struct LedgerMetrics {
    pub queue_depth: Gauge,
    pub dropped: Counter,
    pub written: Counter,
    pub write_failures: Counter,
}

pub struct Ledger {
    path: PathBuf,
    tx: mpsc::Sender<Message>,
    metrics: LedgerMetrics,
}

impl Ledger {
    /// Opens (or creates) the ledger under `data_dir` and starts its writer thread.
    pub fn open(
        data_dir: &Path,
        settings: &LedgerSettings,
        metrics: LedgerMetrics,
    ) -> Result<Ledger, LedgerError> {
        let path = data_dir.join(&settings.file);
        let connection = writer::open(&path)?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let batch_size = settings.batch_size;
        let thread_metrics = metrics.clone();
        let thread_path = path.clone();
        // Detached: it ends when the gateway (the last sender) is dropped, or with the process;
        // shutdown flushes first, which is what makes it lose nothing.
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer::run(connection, &thread_path, rx, batch_size, &thread_metrics))
            .map_err(|e| LedgerError::Task(format!("cannot start the ledger writer: {e}")))?;
        Ok(Ledger { path, tx, metrics })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a record without waiting. A full queue drops it, counted and logged.
    pub fn record(&self, record: LedgerRecord) {
        // Counted before the send: the writer may take it (and count it out) at once.
        self.metrics.queue_depth.inc();
        let refused = match self.tx.try_send(Message::Record(Box::new(record))) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(message)) => {
                (message, "the ledger queue is full (ledger.queue_capacity)")
            }
            Err(mpsc::error::TrySendError::Closed(message)) => {
                (message, "the ledger writer has stopped")
            }
        };
        self.metrics.queue_depth.dec();
        self.metrics.dropped.inc();
        if let (Message::Record(record), why) = refused {
            tracing::error!(
                provider = record.provider,
                model = record.model,
                cost_usd = record.cost_usd,
                "{why}: usage record dropped"
            );
        }
    }

    /// Waits until every record queued before this call is written.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (done, written) = oneshot::channel();
        self.tx
            .send(Message::Flush(done))
            .await
            .map_err(|_| LedgerError::Stopped)?;
        written.await.map_err(|_| LedgerError::Stopped)
    }

    /// Spend per (API key, team) since `since_ms`, for budgets to start from after a restart.
    pub fn spend_since(&self, since_ms: i64) -> Result<Vec<SpendRow>, LedgerError> {
        let connection = reports::open_read(&self.path)?;
        let sqlite = sqlite_error(&self.path);
        let mut statement = connection
            .prepare(
                "SELECT api_key_id, team, SUM(cost_usd) FROM requests \
                 WHERE ts_ms >= ?1 AND (api_key_id IS NOT NULL OR team IS NOT NULL) \
                 GROUP BY api_key_id, team",
            )
            .map_err(&sqlite)?;
        let rows = statement
            .query_map([since_ms], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(&sqlite)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sqlite)
    }

    /// The usage report over `range`, optionally for one provider. Runs off the async runtime.
    pub async fn report(
        &self,
        range: ReportRange,
        provider: Option<String>,
        catalog: Vec<crate::config::ModelConfig>,
    ) -> Result<UsageReport, LedgerError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            reports::build(&path, range, provider.as_deref(), &catalog, now_ms())
        })
        .await
        .map_err(|e| LedgerError::Task(e.to_string()))?
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}
