//! Routing policies: the contract's types, builders for them, and the ordering helpers every
//! policy needs (usable costs, qualities compared without float noise, circuit order, one place
//! per id, normalised scores, requirement filters).

use std::cmp::Ordering;
use std::collections::BTreeSet;

pub use crate::bindings::policy::exports::aigw::plugin::ranker::{
    Candidate, CircuitState, Guest as Policy, PolicyInfo, Ranking, RequestFeatures, Requirements,
    Scored, TaskClass,
};

/// Basis points per unit of quality: the precision at which [`quality_points`] compares.
pub const QUALITY_POINTS: f64 = 10_000.0;

/// A quality (0.0 to 1.0) in whole basis points, clamped to that range; NaN counts as 0.
///
/// The catalog's qualities are `f32`s and arrive with noise (0.85 + 0.05 is 0.90000002 while
/// 0.90 is 0.89999998), which would turn intended ties into wins; integer keys also give a sort
/// the total order it needs.
pub fn quality_points(quality: f64) -> i64 {
    let quality = if quality.is_nan() {
        0.0
    } else {
        quality.clamp(0.0, 1.0)
    };
    (quality * QUALITY_POINTS).round() as i64
}

/// The quality that [`quality_points`] gave.
pub fn points_to_quality(points: i64) -> f64 {
    points as f64 / QUALITY_POINTS
}

/// The estimated cost when it is usable: finite and not negative (zero is a free local model).
pub fn known_cost(cost: f64) -> Option<f64> {
    // `+ 0.0` turns -0.0 into 0.0, so that it sorts with the other free models.
    (cost.is_finite() && cost >= 0.0).then_some(cost + 0.0)
}

/// Cheaper first; an unknown cost after every known one.
pub fn cmp_cost(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Keeps the first item of each id, in order. The host rejects a ranking that names a model
/// twice, so a policy that sorted duplicates keeps each id's best place.
pub fn dedup_by_id<T>(items: &mut Vec<T>, id: impl Fn(&T) -> &str) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert(id(item).to_string()));
}

/// Rescales scores to 0.0..=1.0 (best 1.0, worst 0.0; all 1.0 when they are equal). A score that
/// is not finite becomes 0.0 first: the host refuses a ranking with one.
pub fn normalize_scores(scores: &mut [Scored]) {
    for s in scores.iter_mut() {
        if !s.score.is_finite() {
            s.score = 0.0;
        }
    }
    let (min, max) = scores
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(s.score), hi.max(s.score))
        });
    let span = max - min;
    for s in scores.iter_mut() {
        s.score = if span > 0.0 {
            (s.score - min) / span
        } else {
            1.0
        };
    }
}

/// A key [`Ranking::by_key`] can sort by: a total order, also for floats (by `total_cmp`, so a
/// NaN cannot make the sort inconsistent), with `None` after every `Some`, and tuples compared
/// field by field.
pub trait SortKey {
    fn compare(&self, other: &Self) -> Ordering;
}

macro_rules! ord_sort_key {
    ($($t:ty),*) => {$(
        impl SortKey for $t {
            fn compare(&self, other: &Self) -> Ordering {
                self.cmp(other)
            }
        }
    )*};
}
ord_sort_key!(bool, u8, u16, u32, u64, i8, i16, i32, i64, String, &str);

impl SortKey for f64 {
    fn compare(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl SortKey for f32 {
    fn compare(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl<T: SortKey> SortKey for Option<T> {
    /// Known values first: an unknown cost or latency should not win.
    fn compare(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Some(a), Some(b)) => a.compare(b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
}

impl<A: SortKey, B: SortKey> SortKey for (A, B) {
    fn compare(&self, other: &Self) -> Ordering {
        self.0
            .compare(&other.0)
            .then_with(|| self.1.compare(&other.1))
    }
}

impl<A: SortKey, B: SortKey, C: SortKey> SortKey for (A, B, C) {
    fn compare(&self, other: &Self) -> Ordering {
        self.0
            .compare(&other.0)
            .then_with(|| self.1.compare(&other.1))
            .then_with(|| self.2.compare(&other.2))
    }
}

impl CircuitState {
    /// 0 closed, 1 half-open (only probes should go there), 2 open (removed by the host; should
    /// one arrive it goes last).
    pub fn rank(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

impl TaskClass {
    pub fn name(self) -> &'static str {
        match self {
            TaskClass::Code => "code",
            TaskClass::Math => "math",
            TaskClass::Reasoning => "reasoning",
            TaskClass::Creative => "creative",
            TaskClass::Summarization => "summarization",
            TaskClass::Translation => "translation",
            TaskClass::Extraction => "extraction",
            TaskClass::Chat => "chat",
        }
    }
}

impl PolicyInfo {
    pub fn new(name: &str, description: &str) -> Self {
        PolicyInfo {
            name: name.into(),
            description: description.into(),
        }
    }
}

impl Scored {
    pub fn new(id: impl Into<String>, score: f64) -> Self {
        Scored {
            id: id.into(),
            score,
        }
    }
}

impl Ranking {
    /// The answer to an empty candidate list.
    pub fn empty() -> Self {
        Ranking {
            ranked: Vec::new(),
            reason: "no candidates".into(),
        }
    }

    /// Ranks candidates by a key, smallest first (ties by id, so the order is deterministic),
    /// each id once, with scores falling from the number of candidates down to 1.
    pub fn by_key<K: SortKey>(
        mut candidates: Vec<Candidate>,
        reason: impl Into<String>,
        key: impl Fn(&Candidate) -> K,
    ) -> Self {
        candidates.sort_by(|a, b| key(a).compare(&key(b)).then_with(|| a.id.cmp(&b.id)));
        dedup_by_id(&mut candidates, |c| &c.id);
        Ranking::in_order(candidates.into_iter().map(|c| c.id), reason)
    }

    /// A ranking of ids already in order, best first, with scores falling from their number
    /// down to 1.
    pub fn in_order(ids: impl IntoIterator<Item = String>, reason: impl Into<String>) -> Self {
        let ids: Vec<String> = ids.into_iter().collect();
        let count = ids.len();
        Ranking {
            ranked: ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| Scored::new(id, (count - i) as f64))
                .collect(),
            reason: reason.into(),
        }
    }
}

impl Requirements {
    /// No preferences and no limits.
    pub fn none() -> Self {
        Requirements {
            low_cost: false,
            high_quality: false,
            low_latency: false,
            max_cost_usd: None,
            max_latency_ms: None,
        }
    }
}

impl RequestFeatures {
    /// A request of one task class, classified with confidence 1, of 1000 prompt tokens, with no
    /// requirements, needs or key: a starting point for tests, refined with the `with_` methods.
    pub fn new(task: TaskClass) -> Self {
        RequestFeatures {
            task,
            task_confidence: 1.0,
            estimated_input_tokens: 1000,
            max_output_tokens: None,
            requirements: Requirements::none(),
            needs_tools: false,
            needs_vision: false,
            needs_json: false,
            api_key_id: None,
            requested_model: None,
        }
    }

    pub fn with_requirements(self, requirements: Requirements) -> Self {
        RequestFeatures {
            requirements,
            ..self
        }
    }

    pub fn with_api_key_id(self, id: &str) -> Self {
        RequestFeatures {
            api_key_id: Some(id.into()),
            ..self
        }
    }

    pub fn with_task_confidence(self, task_confidence: f32) -> Self {
        RequestFeatures {
            task_confidence,
            ..self
        }
    }
}

impl Candidate {
    /// A healthy candidate with nothing observed yet, quality 0.5, free and with no
    /// specialties: a starting point for tests, refined with the `with_` methods.
    pub fn new(id: &str, provider: &str) -> Self {
        Candidate {
            id: id.into(),
            provider: provider.into(),
            input_price_per_mtok: 0.0,
            cached_input_price_per_mtok: 0.0,
            output_price_per_mtok: 0.0,
            estimated_cost_usd: 0.0,
            quality: 0.5,
            specialties: Vec::new(),
            context_window: 128_000,
            ewma_latency_ms: None,
            ewma_ttft_ms: None,
            success_rate: 1.0,
            circuit: CircuitState::Closed,
            rate_limit_headroom: 1.0,
        }
    }

    pub fn with_quality(self, quality: f32) -> Self {
        Candidate { quality, ..self }
    }

    pub fn with_cost(self, estimated_cost_usd: f64) -> Self {
        Candidate {
            estimated_cost_usd,
            ..self
        }
    }

    pub fn with_specialties(self, specialties: &[TaskClass]) -> Self {
        Candidate {
            specialties: specialties.to_vec(),
            ..self
        }
    }

    pub fn with_latency_ms(self, ms: f64) -> Self {
        Candidate {
            ewma_latency_ms: Some(ms),
            ..self
        }
    }

    pub fn with_ttft_ms(self, ms: f64) -> Self {
        Candidate {
            ewma_ttft_ms: Some(ms),
            ..self
        }
    }

    pub fn with_success_rate(self, success_rate: f32) -> Self {
        Candidate {
            success_rate,
            ..self
        }
    }

    pub fn with_circuit(self, circuit: CircuitState) -> Self {
        Candidate { circuit, ..self }
    }

    pub fn with_rate_limit_headroom(self, rate_limit_headroom: f32) -> Self {
        Candidate {
            rate_limit_headroom,
            ..self
        }
    }

    /// Whether the request's task is one of the model's specialties.
    pub fn is_specialist(&self, task: TaskClass) -> bool {
        self.specialties.contains(&task)
    }

    /// The catalog quality in basis points, plus `bonus` when the model specialises in `task`.
    pub fn quality_points_for(&self, task: TaskClass, bonus: f64) -> i64 {
        let quality = quality_points(f64::from(self.quality));
        if self.is_specialist(task) {
            quality + quality_points(bonus)
        } else {
            quality
        }
    }

    /// Whether the candidate is known to meet the caller's hard preferences: an estimated cost
    /// within `max-cost-usd` and an observed latency within `max-latency-ms`. Unknown values
    /// pass: the host has already enforced what it could.
    pub fn meets(&self, requirements: &Requirements) -> bool {
        let cost_ok = requirements
            .max_cost_usd
            .is_none_or(|max| known_cost(self.estimated_cost_usd).is_none_or(|c| c <= max));
        let latency_ok = requirements.max_latency_ms.is_none_or(|max| {
            self.ewma_latency_ms
                .filter(|l| l.is_finite())
                .is_none_or(|l| l <= f64::from(max))
        });
        cost_ok && latency_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualities_compare_without_float_noise() {
        assert_eq!(
            quality_points(f64::from(0.85f32)) + quality_points(0.05),
            quality_points(f64::from(0.9f32))
        );
        assert_eq!(quality_points(f64::NAN), 0);
        assert_eq!(quality_points(3.0), 10_000);
        assert_eq!(points_to_quality(9_000), 0.9);
    }

    #[test]
    fn unknown_costs_sort_last() {
        let mut costs = vec![known_cost(f64::NAN), known_cost(0.2), known_cost(-0.0)];
        costs.sort_by(|a, b| cmp_cost(*a, *b));
        assert_eq!(costs, [Some(0.0), Some(0.2), None]);
        assert_eq!(known_cost(-1.0), None);
    }

    #[test]
    fn by_key_orders_dedups_and_scores_falling() {
        let ranking = Ranking::by_key(
            vec![
                Candidate::new("b", "p").with_cost(0.2),
                Candidate::new("a", "p").with_cost(0.2),
                Candidate::new("c", "p").with_cost(0.1),
                Candidate::new("a", "p").with_cost(0.3),
            ],
            "cheapest first",
            |c| c.estimated_cost_usd,
        );
        let ids: Vec<&str> = ranking.ranked.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        let scores: Vec<f64> = ranking.ranked.iter().map(|s| s.score).collect();
        assert_eq!(scores, [3.0, 2.0, 1.0]);
    }

    #[test]
    fn sort_keys_are_total_with_unknowns_last() {
        let ranking = Ranking::by_key(
            vec![
                Candidate::new("nan", "p").with_cost(f64::NAN),
                Candidate::new("free", "p").with_cost(0.0),
                Candidate::new("dear", "p").with_cost(1.0),
                Candidate::new("unknown", "p").with_cost(-1.0),
            ],
            "cheapest first",
            |c| known_cost(c.estimated_cost_usd),
        );
        assert_eq!(
            ranking
                .ranked
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["free", "dear", "nan", "unknown"]
        );
        assert_eq!((true, 2.0).compare(&(false, 9.0)), Ordering::Greater);
        assert_eq!(f64::NAN.compare(&f64::INFINITY), Ordering::Greater);
    }

    #[test]
    fn normalised_scores_span_zero_to_one() {
        let mut scores = vec![
            Scored::new("a", 4.0),
            Scored::new("b", 2.0),
            Scored::new("c", f64::NAN),
        ];
        normalize_scores(&mut scores);
        let got: Vec<f64> = scores.iter().map(|s| s.score).collect();
        assert_eq!(got, [1.0, 0.5, 0.0]);
        let mut same = vec![Scored::new("a", 3.0), Scored::new("b", 3.0)];
        normalize_scores(&mut same);
        assert!(same.iter().all(|s| s.score == 1.0));
    }

    #[test]
    fn requirements_filter_only_on_known_values() {
        let limits = Requirements {
            max_cost_usd: Some(0.01),
            max_latency_ms: Some(500),
            ..Requirements::none()
        };
        assert!(Candidate::new("cheap", "p").with_cost(0.001).meets(&limits));
        assert!(!Candidate::new("dear", "p").with_cost(0.1).meets(&limits));
        assert!(
            !Candidate::new("slow", "p")
                .with_latency_ms(900.0)
                .meets(&limits)
        );
        assert!(
            Candidate::new("unknown", "p")
                .with_cost(f64::NAN)
                .meets(&limits)
        );
    }

    #[test]
    fn specialists_get_their_bonus_only_on_their_task() {
        let coder = Candidate::new("coder", "p")
            .with_quality(0.8)
            .with_specialties(&[TaskClass::Code]);
        assert_eq!(coder.quality_points_for(TaskClass::Code, 0.05), 8_500);
        assert_eq!(coder.quality_points_for(TaskClass::Chat, 0.05), 8_000);
    }
}
