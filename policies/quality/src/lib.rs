//! The `quality` routing policy: the highest-quality model first, with a bonus for the task's
//! specialists.
//!
//! Quality is the catalog's score plus a small bonus when the request's task is one of the
//! model's specialties: a specialist does better at its task than its overall score says, but
//! only by about one tier step, so a much stronger generalist still wins. The bonus is not capped
//! at 1.0, so that it always counts. Among equals the cheaper model wins: extra spending that
//! buys no quality is waste. The caller's `max-cost-usd` is enforced by the host, which has also
//! removed every candidate that cannot serve the request, so nothing is skipped here.
//!
//! Half-open circuits go after every closed one whatever their quality: only probes should reach
//! them, and the best model is no use to a caller while its provider is failing.
//!
//! Qualities are compared as whole basis points (1/10,000). The catalog's qualities are `f32`s
//! and arrive with noise (0.85 + 0.05 is 0.90000002 while 0.90 is 0.89999998), which would
//! otherwise turn intended ties into wins; integer keys also give the sort the total order it
//! needs.

use aigw_plugin_sdk::policy::*;

struct Quality;

aigw_plugin_sdk::export_policy!(Quality);

/// Added to a candidate's quality when the request's task is one of its specialties.
const SPECIALTY_BONUS: f64 = 0.05;
/// Subtracted from the score per circuit step (half-open, then open), so that scores always fall
/// along the ranking: closed candidates score their quality (0.0 to 1.05), half-open ones their
/// quality minus 2.
const CIRCUIT_STEP: f64 = 2.0;

/// A candidate as this policy sorts it.
struct Entry<'a> {
    candidate: &'a Candidate,
    /// 0 closed, 1 half-open, 2 open (removed by the host; should one arrive it goes last).
    circuit: u8,
    /// Quality in basis points, clamped to 0..1 (NaN counts as 0), plus the specialty bonus.
    quality: i64,
    specialist: bool,
    /// The estimated cost, `None` when it is not a finite, non-negative number.
    cost: Option<f64>,
}

impl Policy for Quality {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "quality",
            "highest quality first, with a bonus for the task's specialists",
        )
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        if candidates.is_empty() {
            return Ranking::empty();
        }
        let mut entries: Vec<Entry> = candidates
            .iter()
            .map(|c| Entry {
                candidate: c,
                circuit: c.circuit.rank(),
                quality: c.quality_points_for(features.task, SPECIALTY_BONUS),
                specialist: c.is_specialist(features.task),
                cost: known_cost(c.estimated_cost_usd),
            })
            .collect();

        // Closed circuits first; then highest quality, cheapest (unknown costs last), and the id
        // to make the order deterministic.
        entries.sort_by(|a, b| {
            a.circuit
                .cmp(&b.circuit)
                .then_with(|| b.quality.cmp(&a.quality))
                .then_with(|| cmp_cost(a.cost, b.cost))
                .then_with(|| a.candidate.id.cmp(&b.candidate.id))
        });
        dedup_by_id(&mut entries, |e| &e.candidate.id);

        let best = &entries[0];
        let mut reason = format!(
            "highest quality: {} (quality {:.2}{})",
            best.candidate.id,
            points_to_quality(quality_points(f64::from(best.candidate.quality))),
            if best.specialist {
                " + specialist bonus"
            } else {
                ""
            },
        );
        if best.circuit > 0 {
            reason.push_str("; every candidate's circuit is half-open");
        }

        // Finite for any input: qualities are clamped.
        let ranked = entries
            .iter()
            .map(|e| Scored {
                id: e.candidate.id.clone(),
                score: points_to_quality(e.quality) - CIRCUIT_STEP * f64::from(e.circuit),
            })
            .collect();
        Ranking { ranked, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::{ids, rank_checked};

    fn features(task: TaskClass) -> RequestFeatures {
        RequestFeatures::new(task).with_requirements(Requirements {
            low_cost: false,
            high_quality: true,
            low_latency: false,
            ..Requirements::none()
        })
    }

    fn candidate(id: &str, quality: f32, cost: f64) -> Candidate {
        Candidate::new(id, "test")
            .with_quality(quality)
            .with_cost(cost)
    }

    fn specialist(id: &str, quality: f32, cost: f64, task: TaskClass) -> Candidate {
        candidate(id, quality, cost).with_specialties(&[task])
    }

    fn half_open(c: Candidate) -> Candidate {
        c.with_circuit(CircuitState::HalfOpen)
    }

    /// Ranks and checks the contract: every candidate exactly once, finite scores that never
    /// rise along the ranking.
    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        rank_checked::<Quality>(features, candidates)
    }

    #[test]
    fn describes_itself() {
        assert_eq!(Quality::describe().name, "quality");
    }

    #[test]
    fn highest_quality_first() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("mini", 0.80, 0.0004),
                candidate("frontier", 0.95, 0.02),
                candidate("mid", 0.88, 0.004),
            ],
        );
        assert_eq!(ids(&ranking), ["frontier", "mid", "mini"]);
        assert_eq!(ranking.reason, "highest quality: frontier (quality 0.95)");
        assert!((ranking.ranked[0].score - 0.95).abs() < 1e-9);
    }

    #[test]
    fn specialists_get_a_bonus() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("generalist", 0.90, 0.01),
                specialist("coder", 0.88, 0.01, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["coder", "generalist"]);
        assert_eq!(
            ranking.reason,
            "highest quality: coder (quality 0.88 + specialist bonus)"
        );
        assert!((ranking.ranked[0].score - 0.93).abs() < 1e-9);
    }

    #[test]
    fn the_bonus_is_only_for_the_requests_task() {
        let ranking = rank(
            features(TaskClass::Translation),
            vec![
                candidate("generalist", 0.90, 0.01),
                specialist("coder", 0.88, 0.001, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["generalist", "coder"]);
    }

    #[test]
    fn a_much_stronger_generalist_beats_a_specialist() {
        let ranking = rank(
            features(TaskClass::Math),
            vec![
                specialist("mathy", 0.80, 0.001, TaskClass::Math),
                candidate("frontier", 0.95, 0.02),
            ],
        );
        assert_eq!(ids(&ranking), ["frontier", "mathy"]);
    }

    #[test]
    fn the_bonus_is_not_capped() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("perfect", 1.0, 0.001),
                specialist("coder", 0.98, 0.01, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["coder", "perfect"]);
        assert!((ranking.ranked[0].score - 1.03).abs() < 1e-9);
    }

    #[test]
    fn a_bonus_that_reaches_a_tie_is_a_tie() {
        // 0.85f32 + 0.05 is 0.90000002 and 0.9f32 is 0.89999998: still a tie, the cheaper wins.
        let ranking = rank(
            features(TaskClass::Creative),
            vec![
                specialist("writer", 0.85, 0.002, TaskClass::Creative),
                candidate("generalist", 0.90, 0.001),
            ],
        );
        assert_eq!(ids(&ranking), ["generalist", "writer"]);
        assert_eq!(ranking.ranked[0].score, ranking.ranked[1].score);
    }

    #[test]
    fn ties_prefer_the_cheaper_then_the_id() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("dear", 0.90, 0.01),
                candidate("b", 0.90, 0.001),
                candidate("a", 0.90, 0.001),
                candidate("unpriced", 0.90, f64::NAN),
                candidate("free", 0.90, 0.0),
            ],
        );
        assert_eq!(ids(&ranking), ["free", "a", "b", "dear", "unpriced"]);
    }

    #[test]
    fn half_open_after_closed() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                half_open(candidate("probe", 0.99, 0.001)),
                candidate("closed", 0.60, 0.001),
                half_open(candidate("probe-2", 0.70, 0.001)),
            ],
        );
        assert_eq!(ids(&ranking), ["closed", "probe", "probe-2"]);
        assert!(ranking.ranked[1].score < 0.0);
        assert_eq!(ranking.reason, "highest quality: closed (quality 0.60)");
    }

    #[test]
    fn only_half_open_candidates_still_ranked_and_said() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![half_open(candidate("probe", 0.9, 0.001))],
        );
        assert_eq!(ids(&ranking), ["probe"]);
        assert_eq!(
            ranking.reason,
            "highest quality: probe (quality 0.90); every candidate's circuit is half-open"
        );
    }

    #[test]
    fn unusable_qualities_count_as_zero() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("nan", f32::NAN, 0.0001),
                candidate("neg-inf", f32::NEG_INFINITY, 0.0002),
                candidate("low", 0.10, 0.01),
                candidate("inf", f32::INFINITY, 0.01),
                candidate("over", 3.0, 0.001),
            ],
        );
        // Out-of-range qualities clamp to 0.0..1.0; NaN counts as 0.0.
        assert_eq!(ids(&ranking), ["over", "inf", "low", "nan", "neg-inf"]);
        assert_eq!(ranking.ranked[0].score, 1.0);
        assert_eq!(ranking.ranked[4].score, 0.0);
    }

    #[test]
    fn nan_inputs_everywhere() {
        let mut c = candidate("x", f32::NAN, f64::NAN);
        c.success_rate = f32::NAN;
        c.ewma_latency_ms = Some(f64::NAN);
        c.rate_limit_headroom = f32::NAN;
        let ranking = rank(
            features(TaskClass::Chat),
            vec![c, candidate("y", f32::NAN, f64::INFINITY)],
        );
        assert_eq!(ids(&ranking), ["x", "y"]);
        assert_eq!(ranking.reason, "highest quality: x (quality 0.00)");
    }

    #[test]
    fn empty_input() {
        let ranking = Quality::rank(features(TaskClass::Code), Vec::new());
        assert!(ranking.ranked.is_empty());
        assert_eq!(ranking.reason, "no candidates");
    }

    #[test]
    fn a_duplicated_id_is_ranked_once_at_its_best_place() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("twin", 0.70, 0.001),
                candidate("other", 0.80, 0.001),
                candidate("twin", 0.90, 0.001),
            ],
        );
        assert_eq!(ids(&ranking), ["twin", "other"]);
    }
}
