//! Spend limits per API key and per team, over UTC calendar days and months.
//!
//! A request reserves its worst-case cost before the upstream call and settles with the real
//! cost after, all under one lock, so concurrent requests can never together pass a limit that
//! each alone would respect. A reservation that is dropped unsettled (the request failed) is
//! released. Spend in the current windows is loaded from the ledger at start-up.

use crate::config::{Budget, BudgetSettings};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Key(String),
    Team(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Key(id) => write!(f, "API key '{id}'"),
            Scope::Team(name) => write!(f, "team '{name}'"),
        }
    }
}

impl Scope {
    fn label(&self) -> String {
        match self {
            Scope::Key(id) => format!("key:{id}"),
            Scope::Team(name) => format!("team:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "daily",
            Period::Month => "monthly",
        }
    }

    /// When the window containing `now_ms` started.
    pub fn start(self, now_ms: i64) -> i64 {
        let day = now_ms.div_euclid(DAY_MS);
        match self {
            Period::Day => day * DAY_MS,
            Period::Month => {
                let (year, month, _) = civil_from_days(day);
                days_from_civil(year, month, 1) * DAY_MS
            }
        }
    }

    fn limit(self, budget: &Budget) -> Option<f64> {
        match self {
            Period::Day => budget.daily_usd,
            Period::Month => budget.monthly_usd,
        }
    }
}

/// A request the budget does not allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{period} budget of {scope} exhausted: limit ${limit:.6}, spent ${spent:.6}{in_flight}, and \
     this request may cost up to ${estimate:.6}; it resets at the start of the next UTC {unit}",
    period = period.as_str(),
    in_flight = if *reserved > 0.0 { format!(" (+ ${reserved:.6} held by requests in flight)") } else { String::new() },
    unit = match period { Period::Day => "day", Period::Month => "month" },
)]
pub struct BudgetExceeded {
    pub scope: Scope,
    pub period: Period,
    pub limit: f64,
    pub spent: f64,
    pub reserved: f64,
    pub estimate: f64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `key:<id>` or `team:<name>`.
    pub scope: String,
    /// `daily` or `monthly`.
    pub period: String,
}

/// Handles into the gateway's metrics registry.
#[derive(Clone, Default)]
pub struct BudgetMetrics {
    pub spend_usd: Family<BudgetLabels, Gauge<f64, AtomicU64>>,
    pub alerts: Family<BudgetLabels, Counter>,
    pub rejections: Family<BudgetLabels, Counter>,
}

#[derive(Debug, Default)]
struct Window {
    start_ms: i64,
    spent: f64,
    reserved: f64,
    alerted: bool,
}

impl Window {
    /// Moves to the window containing `now_ms`; money in flight stays held.
    fn roll(&mut self, period: Period, now_ms: i64) {
        let start = period.start(now_ms);
        if start != self.start_ms {
            *self = Window {
                start_ms: start,
                reserved: self.reserved,
                ..Window::default()
            };
        }
    }
}

#[derive(Debug, Default)]
struct Account {
    day: Window,
    month: Window,
}

impl Account {
    fn window(&mut self, period: Period, now_ms: i64) -> &mut Window {
        let window = match period {
            Period::Day => &mut self.day,
            Period::Month => &mut self.month,
        };
        window.roll(period, now_ms);
        window
    }
}

/// An alert to deliver: crossing a budget's threshold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BudgetAlert {
    pub scope: String,
    pub period: &'static str,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub threshold: f64,
}

pub struct Budgets {
    accounts: Mutex<HashMap<Scope, Account>>,
    metrics: BudgetMetrics,
    webhook_client: reqwest::Client,
}

/// Money held for one request until it settles.
pub struct Reservation {
    budgets: Option<Arc<Budgets>>,
    scopes: Vec<(Scope, Budget)>,
    amount: f64,
}

impl Reservation {
    /// A reservation that holds nothing (no budget applies).
    pub fn none() -> Self {
        Reservation {
            budgets: None,
            scopes: Vec::new(),
            amount: 0.0,
        }
    }

    /// Replaces the held amount with the real cost, and reports threshold crossings.
    pub fn settle(mut self, cost_usd: f64, webhook: Option<&str>) {
        if let Some(budgets) = self.budgets.take() {
            budgets.settle(&self.scopes, self.amount, cost_usd, webhook);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(budgets) = self.budgets.take() {
            budgets.settle(&self.scopes, self.amount, 0.0, None);
        }
    }
}

impl Budgets {
    pub fn new(metrics: BudgetMetrics) -> Self {
        Budgets {
            accounts: Mutex::new(HashMap::new()),
            metrics,
            webhook_client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    /// Adds spend recorded before this process started (from the ledger).
    pub fn preload(&self, scope: Scope, period: Period, spent: f64, now_ms: i64) {
        if let Ok(mut accounts) = self.accounts.lock() {
            accounts
                .entry(scope)
                .or_default()
                .window(period, now_ms)
                .spent += spent;
        }
    }

    /// The budgets that apply to a key: its own and its team's.
    fn scopes_for(settings: &BudgetSettings, key_id: &str) -> Vec<(Scope, Budget)> {
        let Some(key) = settings.keys.get(key_id) else {
            return Vec::new();
        };
        let mut scopes = vec![(Scope::Key(key_id.to_string()), key.budget())];
        if let Some(team) = &key.team
            && let Some(budget) = settings.teams.get(team)
        {
            scopes.push((Scope::Team(team.clone()), budget.clone()));
        }
        scopes
    }

    /// The team a key's spend counts against, if any.
    pub fn team_of(settings: &BudgetSettings, key_id: &str) -> Option<String> {
        settings.keys.get(key_id).and_then(|k| k.team.clone())
    }

    /// Holds `estimate` against every budget of the key, or says which one it would pass.
    pub fn reserve(
        self: &Arc<Self>,
        settings: &BudgetSettings,
        key_id: Option<&str>,
        estimate: f64,
        now_ms: i64,
    ) -> Result<Reservation, BudgetExceeded> {
        let scopes = key_id.map_or_else(Vec::new, |id| Self::scopes_for(settings, id));
        if scopes.is_empty() {
            return Ok(Reservation::none());
        }
        let mut accounts = match self.accounts.lock() {
            Ok(accounts) => accounts,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (scope, budget) in &scopes {
            let account = accounts.entry(scope.clone()).or_default();
            for period in [Period::Day, Period::Month] {
                let Some(limit) = period.limit(budget) else {
                    continue;
                };
                let window = account.window(period, now_ms);
                if window.spent + window.reserved + estimate > limit {
                    self.metrics
                        .rejections
                        .get_or_create(&labels(scope, period))
                        .inc();
                    return Err(BudgetExceeded {
                        scope: scope.clone(),
                        period,
                        limit,
                        spent: window.spent,
                        reserved: window.reserved,
                        estimate,
                    });
                }
            }
        }
        for (scope, _) in &scopes {
            let account = accounts.entry(scope.clone()).or_default();
            for period in [Period::Day, Period::Month] {
                account.window(period, now_ms).reserved += estimate;
            }
        }
        Ok(Reservation {
            budgets: Some(self.clone()),
            scopes,
            amount: estimate,
        })
    }

    fn settle(&self, scopes: &[(Scope, Budget)], held: f64, cost: f64, webhook: Option<&str>) {
        let now_ms = crate::ledger::now_ms();
        let mut alerts = Vec::new();
        {
            let mut accounts = match self.accounts.lock() {
                Ok(accounts) => accounts,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (scope, budget) in scopes {
                let account = accounts.entry(scope.clone()).or_default();
                for period in [Period::Day, Period::Month] {
                    let window = account.window(period, now_ms);
                    window.reserved = (window.reserved - held).max(0.0);
                    window.spent += cost;
                    let Some(limit) = period.limit(budget) else {
                        continue;
                    };
                    self.metrics
                        .spend_usd
                        .get_or_create(&labels(scope, period))
                        .set(window.spent);
                    if !window.alerted && window.spent >= limit * budget.alert_threshold {
                        window.alerted = true;
                        alerts.push(BudgetAlert {
                            scope: scope.label(),
                            period: period.as_str(),
                            limit_usd: limit,
                            spent_usd: window.spent,
                            threshold: budget.alert_threshold,
                        });
                    }
                }
            }
        }
        for alert in alerts {
            self.alert(alert, webhook);
        }
    }

    fn alert(&self, alert: BudgetAlert, webhook: Option<&str>) {
        tracing::warn!(
            scope = alert.scope,
            period = alert.period,
            limit_usd = alert.limit_usd,
            spent_usd = alert.spent_usd,
            "budget alert: {:.0}% of the {} budget is spent",
            alert.threshold * 100.0,
            alert.period
        );
        self.metrics
            .alerts
            .get_or_create(&BudgetLabels {
                scope: alert.scope.clone(),
                period: alert.period.into(),
            })
            .inc();
        let (Some(url), Ok(runtime)) = (webhook, tokio::runtime::Handle::try_current()) else {
            return;
        };
        let request = self.webhook_client.post(url).json(&alert);
        runtime.spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => tracing::error!(
                    status = response.status().as_u16(),
                    "the budget alert webhook refused the alert"
                ),
                Err(e) => tracing::error!("cannot deliver the budget alert webhook: {e}"),
            }
        });
    }
}

fn labels(scope: &Scope, period: Period) -> BudgetLabels {
    BudgetLabels {
        scope: scope.label(),
        period: period.as_str().into(),
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`).
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

/// The inverse of `civil_from_days`.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyBudget;

    fn settings(daily: f64) -> BudgetSettings {
        let mut settings = BudgetSettings::default();
        settings.keys.insert(
            "k".into(),
            KeyBudget {
                daily_usd: Some(daily),
                ..KeyBudget::default()
            },
        );
        settings
    }

    #[test]
    fn calendar_windows_start_at_utc_midnight_and_the_first_of_the_month() {
        // 2024-03-15T13:20:00Z
        let now = 1_710_460_800_000 + 13 * 3_600_000 + 20 * 60_000;
        assert_eq!(Period::Day.start(now), 1_710_460_800_000);
        // 2024-03-01T00:00:00Z
        assert_eq!(Period::Month.start(now), 1_709_251_200_000);
        // Leap day, and a date before the epoch.
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn reservations_hold_money_until_settled_or_dropped() {
        let budgets = Arc::new(Budgets::new(BudgetMetrics::default()));
        let settings = settings(1.0);
        // Settling stamps with the real clock, so the test works in today's windows.
        let now = crate::ledger::now_ms();
        let a = budgets.reserve(&settings, Some("k"), 0.6, now).unwrap();
        let refused = budgets
            .reserve(&settings, Some("k"), 0.6, now)
            .err()
            .unwrap();
        assert_eq!((refused.spent, refused.reserved), (0.0, 0.6));
        assert!(refused.to_string().contains("limit $1.000000"), "{refused}");
        // Settling at a lower real cost frees the difference.
        a.settle(0.3, None);
        let b = budgets.reserve(&settings, Some("k"), 0.6, now).unwrap();
        // A dropped reservation (a failed request) gives everything back.
        drop(b);
        assert!(budgets.reserve(&settings, Some("k"), 0.7, now).is_ok());
        // Keys without a budget are never limited.
        assert!(budgets.reserve(&settings, Some("other"), 1e9, now).is_ok());
        assert!(budgets.reserve(&settings, None, 1e9, now).is_ok());
    }

    #[test]
    fn a_new_day_starts_from_zero_but_keeps_money_in_flight() {
        let budgets = Arc::new(Budgets::new(BudgetMetrics::default()));
        let settings = settings(1.0);
        // Settling stamps with the real clock, so the test works in today's windows.
        let now = crate::ledger::now_ms();
        budgets.preload(Scope::Key("k".into()), Period::Day, 0.9, now);
        assert!(budgets.reserve(&settings, Some("k"), 0.2, now).is_err());
        let held = budgets.reserve(&settings, Some("k"), 0.05, now).unwrap();
        let tomorrow = now + DAY_MS;
        let refused = budgets.reserve(&settings, Some("k"), 0.96, tomorrow);
        assert!(refused.is_err(), "the 0.05 in flight still counts");
        assert!(budgets.reserve(&settings, Some("k"), 0.9, tomorrow).is_ok());
        drop(held);
    }
}
