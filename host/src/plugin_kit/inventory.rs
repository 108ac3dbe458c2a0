//! `ai-gateway plugins list`: what a running gateway has loaded, from `GET /admin/plugins`.

use crate::plugins::ComponentReport;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let now = SystemTime::now();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<9} {:<20} {:<7} {:<14} {:<9} {:>9} {:>7}  LAST RELOAD ERROR",
        "WORLD", "NAME", "WIT", "SHA256", "LOADED", "CALLS", "FAULTS"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<9} {:<20} {:<7} {:<14} {:<9} {:>9} {:>7}  {}",
            r.world,
            r.name,
            r.wit_version.as_deref().unwrap_or("-"),
            r.sha256.as_deref().map_or("-", |h| &h[..h.len().min(12)]),
            r.loaded_at_unix_ms
                .map_or_else(|| "-".into(), |ms| age(ms, now)),
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

/// How long ago a moment (milliseconds since the Unix epoch) was, in the largest whole unit:
/// `42s ago`, `5m ago`, `3h ago`, `2d ago`.
fn age(unix_ms: u64, now: SystemTime) -> String {
    let now_ms = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let secs = now_ms.saturating_sub(unix_ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ms = |secs: u64| (1_000_000 - secs) * 1000;
        assert_eq!(age(ms(0), now), "0s ago");
        assert_eq!(age(ms(59), now), "59s ago");
        assert_eq!(age(ms(300), now), "5m ago");
        assert_eq!(age(ms(3 * 3600 + 5), now), "3h ago");
        assert_eq!(age(ms(2 * 86_400), now), "2d ago");
        // A clock that went backwards shows no negative age.
        assert_eq!(age(2_000_000_000, now), "0s ago");
    }
}
