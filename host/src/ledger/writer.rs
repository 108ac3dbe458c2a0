//! The ledger's writer thread: drains the queue in batches, one transaction each.

use super::{LedgerError, LedgerMetrics, LedgerRecord, Message, sqlite_error};
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long the first record of a batch waits for others to join it. Records are queued
/// without waiting either way; this only delays when they become visible in reports, and a
/// flush (shutdown) writes at once.
const GATHER_WINDOW: Duration = Duration::from_millis(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    request_id TEXT,
    api_key_id TEXT,
    team TEXT,
    task TEXT NOT NULL,
    policy TEXT NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    streamed INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cache_write_input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    tokens_estimated INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    cached INTEGER NOT NULL,
    cost_saved_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    outcome TEXT NOT NULL,
    error_class TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);
CREATE INDEX IF NOT EXISTS requests_key_ts ON requests (api_key_id, ts_ms);
";

const INSERT: &str = "
INSERT INTO requests (
    ts_ms, request_id, api_key_id, team, task, policy, provider, model, streamed,
    input_tokens, cached_input_tokens, cache_write_input_tokens, output_tokens, tokens_estimated,
    cost_usd, cached, cost_saved_usd, latency_ms, ttft_ms, outcome, error_class
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
          ?20, ?21)";

/// Opens the ledger for writing: WAL (readers never block the writer), schema created.
pub(super) fn open(path: &Path) -> Result<Connection, LedgerError> {
    let sqlite = sqlite_error(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| LedgerError::Task(e.to_string()))?;
    }
    let connection = Connection::open(path).map_err(&sqlite)?;
    // WAL with NORMAL sync: a committed batch survives a process crash; only a power loss can
    // take the last batches, which is the usual trade for not syncing on every commit.
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(&sqlite)?;
    connection
        .pragma_update(None, "synchronous", "NORMAL")
        .map_err(&sqlite)?;
    connection
        .busy_timeout(Duration::from_secs(5))
        .map_err(&sqlite)?;
    connection.execute_batch(SCHEMA).map_err(&sqlite)?;
    Ok(connection)
}

/// Runs until every sender is gone.
pub(super) fn run(
    mut connection: Connection,
    path: &Path,
    mut rx: mpsc::Receiver<Message>,
    batch_size: usize,
    metrics: &LedgerMetrics,
) {
    let mut batch: Vec<Box<LedgerRecord>> = Vec::with_capacity(batch_size);
    let mut flushes = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        let mut gathered = false;
        loop {
            match next.take() {
                Some(Message::Record(record)) => batch.push(record),
                Some(Message::Flush(done)) => flushes.push(done),
                // Someone waits for the batch: write it now.
                None if gathered || !flushes.is_empty() => break,
                None => {
                    // Let a busy gateway's records gather for a moment: one transaction for
                    // many records costs the writer (and the disk) far less than one each, and
                    // the thread wakes once per batch instead of once per record.
                    std::thread::sleep(GATHER_WINDOW);
                    gathered = true;
                }
            }
            if batch.len() >= batch_size {
                break;
            }
            if next.is_none() {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let count = batch.len() as u64;
            match write_batch(&mut connection, &batch) {
                Ok(()) => {
                    metrics.written.inc_by(count);
                }
                Err(e) => {
                    metrics.write_failures.inc_by(count);
                    tracing::error!(
                        ledger = %path.display(),
                        records = count,
                        "cannot write usage records to the ledger: {e}"
                    );
                }
            }
            metrics
                .queue_depth
                .dec_by(i64::try_from(count).unwrap_or(i64::MAX));
            batch.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

fn write_batch(connection: &mut Connection, batch: &[Box<LedgerRecord>]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut insert = transaction.prepare_cached(INSERT)?;
        for r in batch {
            insert.execute(params![
                r.timestamp_ms,
                r.request_id,
                r.api_key_id,
                r.team,
                r.task,
                r.policy,
                r.provider,
                r.model,
                r.streamed,
                clamp(r.input_tokens),
                clamp(r.cached_input_tokens),
                clamp(r.cache_write_input_tokens),
                clamp(r.output_tokens),
                r.tokens_estimated,
                r.cost_usd,
                r.cached,
                r.cost_saved_usd,
                r.latency_ms,
                r.ttft_ms,
                r.outcome.as_str(),
                r.error_class,
            ])?;
        }
    }
    transaction.commit()
}

/// SQLite integers are signed 64-bit.
fn clamp(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}
