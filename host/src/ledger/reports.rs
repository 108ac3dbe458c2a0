//! Reports computed from the ledger: totals, breakdowns, latency percentiles, cache savings,
//! projected spend and recommendations drawn from the actual traffic and the catalog.

use super::{LedgerError, sqlite_error};
use crate::config::{ModelConfig, TaskClass};
use crate::plugins::bindings::types::Usage;
use rusqlite::{Connection, OpenFlags, params};
use serde::Serialize;
use std::path::Path;

const HOUR_MS: i64 = 3_600_000;
const MONTH_MS: i64 = 30 * 24 * HOUR_MS;
/// A recommendation is made only when the alternative would have cost at most this fraction.
const SAVING_THRESHOLD: f64 = 0.7;
/// How far below the current model's quality an alternative may be (overall quality, or with a
/// bonus when the task is one of its specialties) and still meet the quality floor.
const QUALITY_SLACK: f32 = 0.1;
const SPECIALTY_BONUS: f32 = 0.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum ReportRange {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[serde(rename = "30d")]
    Month,
}

impl ReportRange {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1h" => Some(ReportRange::Hour),
            "24h" | "1d" => Some(ReportRange::Day),
            "7d" => Some(ReportRange::Week),
            "30d" => Some(ReportRange::Month),
            _ => None,
        }
    }

    pub fn millis(self) -> i64 {
        match self {
            ReportRange::Hour => HOUR_MS,
            ReportRange::Day => 24 * HOUR_MS,
            ReportRange::Week => 7 * 24 * HOUR_MS,
            ReportRange::Month => MONTH_MS,
        }
    }
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct UsageReport {
    pub range: ReportRange,
    pub provider: Option<String>,
    /// The window, in milliseconds since the Unix epoch.
    pub from_ms: i64,
    pub to_ms: i64,
    pub totals: UsageTotals,
    pub by_provider: Vec<Breakdown>,
    pub by_model: Vec<Breakdown>,
    /// By API key id; `(none)` for requests made without a key.
    pub by_key: Vec<Breakdown>,
    pub by_task: Vec<Breakdown>,
    /// Successful upstream attempts (cache hits excluded).
    pub latency_ms: LatencySummary,
    pub ttft_ms: LatencySummary,
    /// Cache hits over successful requests.
    pub cache_hit_rate: f64,
    /// The window's spend scaled to 30 days, over the part of the window with traffic (at
    /// least an hour), so a gateway started minutes ago is not averaged over a month.
    pub projected_monthly_usd: f64,
    pub recommendations: Vec<Recommendation>,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct UsageTotals {
    /// Ledger rows: upstream attempts and cache hits.
    pub attempts: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub cache_hits: u64,
    pub cost_saved_usd: f64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Breakdown {
    pub key: String,
    #[serde(flatten)]
    pub totals: UsageTotals,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Recommendation {
    pub task: String,
    pub current_model: String,
    pub suggested_model: String,
    /// The current model's share of the task's successful requests.
    pub share: f64,
    /// What the same tokens cost on the current and on the suggested model, in the window.
    pub current_cost_usd: f64,
    pub suggested_cost_usd: f64,
    pub estimated_monthly_saving_usd: f64,
    pub message: String,
}

pub(super) fn open_read(path: &Path) -> Result<Connection, LedgerError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_error(path))
}

/// The columns every aggregate reads, in `UsageTotals` order.
const TOTALS: &str = "COUNT(*), \
    COALESCE(SUM(outcome = 'ok'), 0), COALESCE(SUM(outcome != 'ok'), 0), \
    COALESCE(SUM(input_tokens), 0), COALESCE(SUM(cached_input_tokens), 0), \
    COALESCE(SUM(cache_write_input_tokens), 0), COALESCE(SUM(output_tokens), 0), \
    COALESCE(SUM(cost_usd), 0.0), COALESCE(SUM(cached), 0), COALESCE(SUM(cost_saved_usd), 0.0)";
/// Rows in the window, for one provider when `?2` is set.
const WINDOW: &str = "ts_ms >= ?1 AND (?2 IS NULL OR provider = ?2)";

fn totals_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<UsageTotals> {
    let count = |i: usize| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(at + i)?).unwrap_or(0))
    };
    Ok(UsageTotals {
        attempts: count(0)?,
        succeeded: count(1)?,
        failed: count(2)?,
        input_tokens: count(3)?,
        cached_input_tokens: count(4)?,
        cache_write_input_tokens: count(5)?,
        output_tokens: count(6)?,
        cost_usd: row.get(at + 7)?,
        cache_hits: count(8)?,
        cost_saved_usd: row.get(at + 9)?,
    })
}

pub(super) fn build(
    path: &Path,
    range: ReportRange,
    provider: Option<&str>,
    catalog: &[ModelConfig],
    now_ms: i64,
) -> Result<UsageReport, LedgerError> {
    let connection = open_read(path)?;
    let sqlite = sqlite_error(path);
    let from_ms = now_ms - range.millis();
    let totals = connection
        .query_row(
            &format!("SELECT {TOTALS} FROM requests WHERE {WINDOW}"),
            params![from_ms, provider],
            |row| totals_at(row, 0),
        )
        .map_err(&sqlite)?;
    let breakdown = |column: &str| -> Result<Vec<Breakdown>, LedgerError> {
        let mut statement = connection
            .prepare(&format!(
                "SELECT COALESCE({column}, '(none)'), {TOTALS} FROM requests WHERE {WINDOW} \
                 GROUP BY 1 ORDER BY SUM(cost_usd) DESC, 1"
            ))
            .map_err(&sqlite)?;
        let rows = statement
            .query_map(params![from_ms, provider], |row| {
                Ok(Breakdown {
                    key: row.get(0)?,
                    totals: totals_at(row, 1)?,
                })
            })
            .map_err(&sqlite)?;
        rows.collect::<Result<_, _>>().map_err(&sqlite)
    };
    let by_provider = breakdown("provider")?;
    let by_model = breakdown("model")?;
    let by_key = breakdown("api_key_id")?;
    let by_task = breakdown("task")?;
    let latency_ms = percentiles(&connection, "latency_ms", from_ms, provider).map_err(&sqlite)?;
    let ttft_ms = percentiles(&connection, "ttft_ms", from_ms, provider).map_err(&sqlite)?;
    let earliest: Option<i64> = connection
        .query_row(
            &format!("SELECT MIN(ts_ms) FROM requests WHERE {WINDOW}"),
            params![from_ms, provider],
            |row| row.get(0),
        )
        .map_err(&sqlite)?;
    let observed_ms = (now_ms - earliest.unwrap_or(now_ms).max(from_ms)).max(HOUR_MS);
    let monthly_factor = MONTH_MS as f64 / observed_ms as f64;
    let recommendations =
        recommend(&connection, from_ms, provider, catalog, monthly_factor).map_err(&sqlite)?;
    Ok(UsageReport {
        range,
        provider: provider.map(str::to_string),
        from_ms,
        to_ms: now_ms,
        cache_hit_rate: if totals.succeeded == 0 {
            0.0
        } else {
            totals.cache_hits as f64 / totals.succeeded as f64
        },
        projected_monthly_usd: totals.cost_usd * monthly_factor,
        totals,
        by_provider,
        by_model,
        by_key,
        by_task,
        latency_ms,
        ttft_ms,
        recommendations,
    })
}

/// Nearest-rank percentiles of a column over successful upstream attempts.
fn percentiles(
    connection: &Connection,
    column: &str,
    from_ms: i64,
    provider: Option<&str>,
) -> rusqlite::Result<LatencySummary> {
    let filter = format!("{WINDOW} AND outcome = 'ok' AND cached = 0 AND {column} IS NOT NULL");
    let count: i64 = connection.query_row(
        &format!("SELECT COUNT(*) FROM requests WHERE {filter}"),
        params![from_ms, provider],
        |row| row.get(0),
    )?;
    let mut summary = LatencySummary {
        count: u64::try_from(count).unwrap_or(0),
        ..LatencySummary::default()
    };
    if count == 0 {
        return Ok(summary);
    }
    let mut at = connection.prepare(&format!(
        "SELECT {column} FROM requests WHERE {filter} ORDER BY {column} LIMIT 1 OFFSET ?3"
    ))?;
    let mut rank = |p: f64| -> rusqlite::Result<Option<f64>> {
        let index = ((p * count as f64).ceil() as i64 - 1).clamp(0, count - 1);
        at.query_row(params![from_ms, provider, index], |row| row.get(0))
            .map(Some)
    };
    summary.p50 = rank(0.50)?;
    summary.p95 = rank(0.95)?;
    summary.p99 = rank(0.99)?;
    Ok(summary)
}

/// Per task, the models that took a real share of its traffic and a cheaper catalog model that
/// meets the quality floor: priced on the very tokens the traffic used.
fn recommend(
    connection: &Connection,
    from_ms: i64,
    provider: Option<&str>,
    catalog: &[ModelConfig],
    monthly_factor: f64,
) -> rusqlite::Result<Vec<Recommendation>> {
    let mut statement = connection.prepare(&format!(
        "SELECT task, model, COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), \
                SUM(cache_write_input_tokens), SUM(output_tokens), \
                SUM(COUNT(*)) OVER (PARTITION BY task) \
         FROM requests WHERE {WINDOW} AND outcome = 'ok' AND cached = 0 \
         GROUP BY task, model ORDER BY task, model"
    ))?;
    let rows = statement.query_map(params![from_ms, provider], |row| {
        let n = |i: usize| -> rusqlite::Result<u64> {
            Ok(u64::try_from(row.get::<_, i64>(i)?).unwrap_or(0))
        };
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            n(2)?,
            Usage {
                input_tokens: n(3)?,
                cached_input_tokens: n(4)?,
                cache_write_input_tokens: n(5)?,
                output_tokens: n(6)?,
                reasoning_output_tokens: 0,
                estimated: false,
            },
            n(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (task, model_id, requests, usage, task_requests) = row?;
        let Some(current) = catalog.iter().find(|m| m.id == model_id) else {
            continue;
        };
        let task_class = parse_task(&task);
        let current_cost = crate::pricing::cost_usd(current, &usage);
        if current_cost <= 0.0 {
            continue;
        }
        let best = catalog
            .iter()
            .filter(|alt| alt.id != current.id && !alt.fallback_only)
            .filter(|alt| covers_capabilities(alt, current))
            .filter(|alt| meets_quality_floor(alt, current, task_class))
            .map(|alt| (alt, crate::pricing::cost_usd(alt, &usage)))
            .filter(|(_, cost)| *cost <= current_cost * SAVING_THRESHOLD)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((suggested, suggested_cost)) = best else {
            continue;
        };
        let share = requests as f64 / task_requests.max(1) as f64;
        let saving = (current_cost - suggested_cost) * monthly_factor;
        let price_ratio = if suggested_cost > 0.0 {
            format!(
                "1/{:.0} of the price",
                (current_cost / suggested_cost).max(1.0)
            )
        } else {
            "no cost".to_string()
        };
        out.push(Recommendation {
            message: format!(
                "{:.0}% of {task} requests went to {model_id}; {} meets the quality floor for \
                 that task at {price_ratio}: estimated saving ${saving:.2}/month",
                share * 100.0,
                suggested.id
            ),
            task,
            current_model: model_id,
            suggested_model: suggested.id.clone(),
            share,
            current_cost_usd: current_cost,
            suggested_cost_usd: suggested_cost,
            estimated_monthly_saving_usd: saving,
        });
    }
    out.sort_by(|a, b| {
        b.estimated_monthly_saving_usd
            .total_cmp(&a.estimated_monthly_saving_usd)
    });
    Ok(out)
}

fn parse_task(task: &str) -> Option<TaskClass> {
    serde_json::from_value(serde_json::Value::String(task.to_string())).ok()
}

/// The alternative can do everything the current model can, so no request it served breaks.
fn covers_capabilities(alt: &ModelConfig, current: &ModelConfig) -> bool {
    let (a, c) = (&alt.capabilities, &current.capabilities);
    (a.tools || !c.tools)
        && (a.vision || !c.vision)
        && (a.json || !c.json)
        && (a.streaming || !c.streaming)
        && alt.context_window >= current.context_window.min(128_000)
}

fn meets_quality_floor(alt: &ModelConfig, current: &ModelConfig, task: Option<TaskClass>) -> bool {
    let bonus = if task.is_some_and(|t| alt.specialties.contains(&t)) {
        SPECIALTY_BONUS
    } else {
        0.0
    };
    alt.quality + bonus >= current.quality - QUALITY_SLACK
}
