//! Settings for what the gateway counts and limits: the usage ledger, budgets per API key (and
//! team), and rate limits per key, provider and model. All in `gateway.toml`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// The SQLite file, relative to the data directory.
    pub file: String,
    /// Records waiting to be written; beyond this they are dropped, counted and logged.
    pub queue_capacity: usize,
    /// The most records written in one transaction.
    pub batch_size: usize,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            file: "ledger.sqlite".into(),
            queue_capacity: 65_536,
            batch_size: 512,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    /// Where budget alerts are POSTed as JSON, if anywhere.
    pub alert_webhook: Option<String>,
    /// Budgets by API key id (the `id` of an `id:key` entry in GATEWAY_API_KEYS).
    pub keys: BTreeMap<String, KeyBudget>,
    /// Budgets shared by every key that names the team.
    pub teams: BTreeMap<String, Budget>,
}

/// A key's budget: a `Budget` plus the team it belongs to. (Not a flattened `Budget`: serde
/// cannot combine `flatten` with `deny_unknown_fields`.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyBudget {
    /// The team whose budget this key's spend also counts against.
    pub team: Option<String>,
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub alert_threshold: f64,
}

impl Default for KeyBudget {
    fn default() -> Self {
        let budget = Budget::default();
        KeyBudget {
            team: None,
            daily_usd: budget.daily_usd,
            monthly_usd: budget.monthly_usd,
            alert_threshold: budget.alert_threshold,
        }
    }
}

impl KeyBudget {
    pub fn budget(&self) -> Budget {
        Budget {
            daily_usd: self.daily_usd,
            monthly_usd: self.monthly_usd,
            alert_threshold: self.alert_threshold,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budget {
    /// USD per UTC calendar day.
    pub daily_usd: Option<f64>,
    /// USD per UTC calendar month.
    pub monthly_usd: Option<f64>,
    /// The fraction of a limit at which an alert is raised once per window.
    pub alert_threshold: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            daily_usd: None,
            monthly_usd: None,
            alert_threshold: 0.8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Limits for every API key without its own entry in `keys`.
    pub default_key: Option<Rate>,
    /// Limits by API key id.
    pub keys: BTreeMap<String, Rate>,
    /// Limits on what the gateway sends to a provider.
    pub providers: BTreeMap<String, Rate>,
    /// Limits on what the gateway sends to one model.
    pub models: BTreeMap<String, Rate>,
    /// After an upstream 429, a provider's request rate is cut to this fraction of what it was
    /// sending; it grows back by `adaptive_recovery` (a factor) each `adaptive_interval_ms`
    /// without another 429.
    pub adaptive_decrease: f64,
    pub adaptive_recovery: f64,
    pub adaptive_interval_ms: u64,
    /// The adaptive ceiling never goes below this many requests per minute: at low rates the
    /// provider's retry-after alone decides when to send again.
    pub adaptive_floor_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            default_key: None,
            keys: BTreeMap::new(),
            providers: BTreeMap::new(),
            models: BTreeMap::new(),
            adaptive_decrease: 0.5,
            adaptive_recovery: 1.25,
            adaptive_interval_ms: 10_000,
            adaptive_floor_per_minute: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rate {
    pub requests_per_minute: Option<u32>,
    /// Prompt tokens (plus `max_tokens` when the request sets it) per minute, counted at admission.
    pub tokens_per_minute: Option<u32>,
}

/// Semantic problems as (field, problem) pairs, relative to `gateway.toml`.
pub fn problems(
    ledger: &LedgerSettings,
    budgets: &BudgetSettings,
    limits: &RateLimitSettings,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if ledger.file.trim().is_empty() {
        out.push(("ledger.file".into(), "must name a file".into()));
    }
    if ledger.queue_capacity == 0 {
        out.push(("ledger.queue_capacity".into(), "must be at least 1".into()));
    }
    if ledger.batch_size == 0 {
        out.push(("ledger.batch_size".into(), "must be at least 1".into()));
    }
    if let Some(url) = &budgets.alert_webhook {
        match reqwest::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
            _ => out.push((
                "budgets.alert_webhook".into(),
                format!("'{url}' is not an http(s) URL"),
            )),
        }
    }
    for (id, key) in &budgets.keys {
        budget_problems(&format!("budgets.keys.{id}"), &key.budget(), &mut out);
        if let Some(team) = &key.team
            && !budgets.teams.contains_key(team)
        {
            out.push((
                format!("budgets.keys.{id}.team"),
                format!("'{team}' has no [budgets.teams.{team}] table"),
            ));
        }
    }
    for (name, budget) in &budgets.teams {
        budget_problems(&format!("budgets.teams.{name}"), budget, &mut out);
    }
    let rates = limits
        .default_key
        .iter()
        .map(|r| ("rate_limits.default_key".to_string(), r))
        .chain(
            limits
                .keys
                .iter()
                .map(|(id, r)| (format!("rate_limits.keys.{id}"), r)),
        )
        .chain(
            limits
                .providers
                .iter()
                .map(|(id, r)| (format!("rate_limits.providers.{id}"), r)),
        )
        .chain(
            limits
                .models
                .iter()
                .map(|(id, r)| (format!("rate_limits.models.\"{id}\""), r)),
        );
    for (at, rate) in rates {
        for (field, value) in [
            ("requests_per_minute", rate.requests_per_minute),
            ("tokens_per_minute", rate.tokens_per_minute),
        ] {
            if value == Some(0) {
                out.push((format!("{at}.{field}"), "must be at least 1".into()));
            }
        }
    }
    if !(limits.adaptive_decrease > 0.0 && limits.adaptive_decrease < 1.0) {
        out.push((
            "rate_limits.adaptive_decrease".into(),
            "must be between 0 and 1 (exclusive)".into(),
        ));
    }
    if !(limits.adaptive_recovery > 1.0 && limits.adaptive_recovery.is_finite()) {
        out.push((
            "rate_limits.adaptive_recovery".into(),
            "must be greater than 1".into(),
        ));
    }
    if limits.adaptive_floor_per_minute == 0 {
        out.push((
            "rate_limits.adaptive_floor_per_minute".into(),
            "must be at least 1".into(),
        ));
    }
    if limits.adaptive_interval_ms == 0 {
        out.push((
            "rate_limits.adaptive_interval_ms".into(),
            "must be greater than 0".into(),
        ));
    }
    out
}

fn budget_problems(at: &str, budget: &Budget, out: &mut Vec<(String, String)>) {
    for (field, value) in [
        ("daily_usd", budget.daily_usd),
        ("monthly_usd", budget.monthly_usd),
    ] {
        if let Some(value) = value
            && !(value.is_finite() && value >= 0.0)
        {
            out.push((
                format!("{at}.{field}"),
                "must be a non-negative amount".into(),
            ));
        }
    }
    if !(budget.alert_threshold > 0.0 && budget.alert_threshold <= 1.0) {
        out.push((
            format!("{at}.alert_threshold"),
            "must be a fraction above 0 and at most 1".into(),
        ));
    }
}
