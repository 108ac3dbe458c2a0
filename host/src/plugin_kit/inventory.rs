//! `ai-gateway plugins list`: what a running gateway has loaded, from `GET /admin/plugins`.

use crate::plugins::ComponentReport;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Deserialize)]
struct List {
    data: Vec<ComponentReport>,
}

/// Fetches the inventory of the gateway at `base_url`, authenticating with `key` when given.
pub async fn fetch(base_url: &str, key: Option<&str>) -> anyhow::Result<Vec<ComponentReport>> {
    let url = format!("{}/admin/plugins", base_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut request = client.get(&url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("{url} answered {status}: {body}");
    }
    let list: List = response
        .json()
        .await
        .with_context(|| format!("{url} did not answer with a component list"))?;
    Ok(list.data)
}

/// The inventory as a table a terminal shows, then each load error in full.
pub fn render(reports: &[ComponentReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<20} {:<7} {:<14} {:<20} {:>9} {:>7}  LAST RELOAD ERROR",
        "WORLD", "NAME", "WIT", "SHA256", "LOADED (UTC)", "CALLS", "FAULTS"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<9} {:<20} {:<7} {:<14} {:<20} {:>9} {:>7}  {}",
            r.world,
            r.name,
            r.wit_version.as_deref().unwrap_or("-"),
            r.sha256.as_deref().map_or("-", |h| &h[..h.len().min(12)]),
            r.loaded_at_unix_ms.map_or_else(|| "-".into(), utc_time),
            r.calls,
            r.faults,
            if r.last_error.is_some() {
                "yes (below)"
            } else {
                "-"
            },
        );
    }
    for r in reports {
        if let Some(error) = &r.last_error {
            let _ = writeln!(out, "\n{} {} ({}): {error}", r.world, r.name, r.path);
        }
    }
    out
}

/// `2026-11-21 20:41:07` for milliseconds since the Unix epoch.
fn utc_time(unix_ms: u64) -> String {
    let secs = (UNIX_EPOCH + Duration::from_millis(unix_ms))
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_795_293_667_000), "2026-11-21 20:41:07");
    }
}
