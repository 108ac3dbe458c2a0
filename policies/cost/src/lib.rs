//! The `cost` routing policy: the cheapest model that meets the requirements and the task's
//! quality floor.
//!
//! A floor per task class, rather than a weighted score, states the trade outright: below the
//! floor a model is not worth its lower price (the caller pays again, in retries or in wrong
//! answers), above it extra quality is not worth paying for. A weighted score would trade a
//! little quality for a lot of savings in ways nobody can predict from the config.
//!
//! The host has already removed every candidate that cannot serve the request (context window,
//! capabilities, budget, denied providers, open circuits), so this policy only orders and skips
//! nothing: candidates below the floor follow the ones that meet it, best first, so that a
//! request never fails just because no model meets the floor. Of the requirements only
//! `high-quality` changes the order (it raises the floor): `low-cost` is what this policy does
//! anyway, the host enforces `max-cost-usd`, and latency is the `latency` policy's business.
//!
//! Qualities are compared as whole basis points (1/10,000). The catalog's qualities are `f32`s
//! and arrive with noise (0.70 is 0.69999998), and a 0.70 specialist with its 0.05 bonus must
//! meet a 0.75 floor; integer keys also give the sort the total order it needs.

use aigw_plugin_sdk::policy::*;

struct Cost;

aigw_plugin_sdk::export_policy!(Cost);

/// The quality a model needs for each task class, on the catalog's 0.0 to 1.0 scale.
///
/// Code, maths and reasoning need the top tier: a wrong answer there is expensive to notice (code
/// that does not compile, a wrong proof, a broken chain of steps). Open-ended writing and
/// translation tolerate a mid-tier model. Summarising or pulling fields out of text the caller
/// supplies is within reach of small models. Chat takes anything usable.
fn base_floor(task: TaskClass) -> f64 {
    match task {
        TaskClass::Code => 0.85,
        TaskClass::Math => 0.85,
        TaskClass::Reasoning => 0.85,
        TaskClass::Creative => 0.75,
        TaskClass::Translation => 0.75,
        TaskClass::Summarization => 0.70,
        TaskClass::Extraction => 0.70,
        TaskClass::Chat => 0.60,
    }
}

/// Added to the floor when the caller asks for `high-quality`: it still wants the cheapest
/// model, but from a better tier.
const HIGH_QUALITY_RAISE: f64 = 0.10;
/// Added to a candidate's quality when the request's task is one of its specialties: a
/// specialist does better at its task than its overall catalog score says.
const SPECIALTY_BONUS: f64 = 0.05;
/// The cost at which a candidate meeting the floor scores 0.5 (a free one scores 1.0).
const COST_SCALE_USD: f64 = 0.001;
/// Subtracted from the quality of candidates below the floor, so that their scores are negative
/// and always below those of the candidates that meet it (which score 0.0 to 1.0).
const BELOW_FLOOR_OFFSET: f64 = 2.0;

/// The floor for a request: its task's floor, raised for `high-quality`, capped at 1.0.
fn quality_floor(features: &RequestFeatures) -> f64 {
    let mut floor = base_floor(features.task);
    if features.requirements.high_quality {
        floor += HIGH_QUALITY_RAISE;
    }
    floor.min(1.0)
}

/// A candidate as this policy sorts it.
struct Entry<'a> {
    candidate: &'a Candidate,
    /// Quality in basis points, clamped to 0..1 (NaN counts as 0), plus the specialty bonus.
    quality: i64,
    specialist: bool,
    /// The estimated cost, `None` when it is not a finite, non-negative number.
    cost: Option<f64>,
    meets_floor: bool,
}

impl Policy for Cost {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("cost", "cheapest model meeting the task's quality floor")
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        if candidates.is_empty() {
            return Ranking::empty();
        }
        let floor = quality_floor(&features);
        let floor_points = quality_points(floor);
        let mut entries: Vec<Entry> = candidates
            .iter()
            .map(|c| {
                let quality = c.quality_points_for(features.task, SPECIALTY_BONUS);
                Entry {
                    candidate: c,
                    quality,
                    specialist: c.is_specialist(features.task),
                    cost: known_cost(c.estimated_cost_usd),
                    meets_floor: quality >= floor_points,
                }
            })
            .collect();

        // Meeting the floor first. Among those: cheapest (unknown costs last), then closed
        // before half-open circuits, then higher quality. Below the floor: highest quality, then
        // closed circuits, then cheapest. The id makes the order deterministic.
        entries.sort_by(|a, b| {
            b.meets_floor
                .cmp(&a.meets_floor)
                .then_with(|| {
                    if a.meets_floor {
                        cmp_cost(a.cost, b.cost)
                            .then_with(|| {
                                a.candidate.circuit.rank().cmp(&b.candidate.circuit.rank())
                            })
                            .then_with(|| b.quality.cmp(&a.quality))
                    } else {
                        b.quality
                            .cmp(&a.quality)
                            .then_with(|| {
                                a.candidate.circuit.rank().cmp(&b.candidate.circuit.rank())
                            })
                            .then_with(|| cmp_cost(a.cost, b.cost))
                    }
                })
                .then_with(|| a.candidate.id.cmp(&b.candidate.id))
        });
        dedup_by_id(&mut entries, |e| &e.candidate.id);

        let task = features.task.name();
        let best = &entries[0];
        let reason = if best.meets_floor {
            format!(
                "cheapest meeting the {task} quality floor {floor:.2}: {} ({})",
                best.candidate.id,
                match best.cost {
                    Some(cost) => format!("${cost:.6}"),
                    None => "cost unknown".into(),
                },
            )
        } else {
            format!(
                "no candidate meets the {task} floor {floor:.2}; highest quality first: {} \
                 (quality {:.2}{})",
                best.candidate.id,
                points_to_quality(quality_points(f64::from(best.candidate.quality))),
                if best.specialist {
                    " + specialist bonus"
                } else {
                    ""
                },
            )
        };

        // Scores fall along the ranking: 1 / (1 + cost / COST_SCALE_USD) for candidates meeting
        // the floor (0.0 when the cost is unknown), quality minus BELOW_FLOOR_OFFSET below it.
        // Both are finite for any input: costs are finite and qualities clamped.
        let ranked = entries
            .iter()
            .map(|e| Scored {
                id: e.candidate.id.clone(),
                score: if e.meets_floor {
                    e.cost
                        .map_or(0.0, |cost| 1.0 / (1.0 + cost / COST_SCALE_USD))
                } else {
                    points_to_quality(e.quality) - BELOW_FLOOR_OFFSET
                },
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
        RequestFeatures::new(task)
    }

    fn high_quality(task: TaskClass) -> RequestFeatures {
        let mut f = features(task);
        f.requirements.high_quality = true;
        f
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
        rank_checked::<Cost>(features, candidates)
    }

    #[test]
    fn describes_itself() {
        assert_eq!(Cost::describe().name, "cost");
    }

    #[test]
    fn floor_table() {
        let floors = [
            (TaskClass::Code, 0.85),
            (TaskClass::Math, 0.85),
            (TaskClass::Reasoning, 0.85),
            (TaskClass::Creative, 0.75),
            (TaskClass::Translation, 0.75),
            (TaskClass::Summarization, 0.70),
            (TaskClass::Extraction, 0.70),
            (TaskClass::Chat, 0.60),
        ];
        for (task, floor) in floors {
            assert_eq!(quality_floor(&features(task)), floor);
            let raised = quality_floor(&high_quality(task));
            assert!(
                (raised - (floor + 0.10)).abs() < 1e-12,
                "{task:?}: {raised}"
            );
            assert!(raised <= 1.0);
        }
    }

    #[test]
    fn cheapest_meeting_the_floor_wins() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("frontier", 0.95, 0.02),
                candidate("mini", 0.86, 0.000412),
                candidate("nano", 0.70, 0.0001),
            ],
        );
        assert_eq!(ids(&ranking), ["mini", "frontier", "nano"]);
        assert_eq!(
            ranking.reason,
            "cheapest meeting the code quality floor 0.85: mini ($0.000412)"
        );
    }

    #[test]
    fn a_quality_exactly_at_the_floor_meets_it() {
        // 0.85f32 is 0.85000002, 0.7f32 is 0.69999999: neither may flip the comparison.
        let ranking = rank(
            features(TaskClass::Summarization),
            vec![
                candidate("dear", 0.90, 0.01),
                candidate("at-floor", 0.70, 0.001),
            ],
        );
        assert_eq!(ids(&ranking), ["at-floor", "dear"]);
    }

    #[test]
    fn the_floor_depends_on_the_task() {
        let candidates = || {
            vec![
                candidate("frontier", 0.95, 0.02),
                candidate("nano", 0.65, 0.0001),
            ]
        };
        assert_eq!(
            ids(&rank(features(TaskClass::Chat), candidates())),
            ["nano", "frontier"]
        );
        assert_eq!(
            ids(&rank(features(TaskClass::Math), candidates())),
            ["frontier", "nano"]
        );
    }

    #[test]
    fn high_quality_raises_the_floor() {
        let candidates = || {
            vec![
                candidate("frontier", 0.95, 0.02),
                candidate("mini", 0.86, 0.002),
            ]
        };
        assert_eq!(
            ids(&rank(features(TaskClass::Code), candidates())),
            ["mini", "frontier"]
        );
        let ranking = rank(high_quality(TaskClass::Code), candidates());
        assert_eq!(ids(&ranking), ["frontier", "mini"]);
        assert_eq!(
            ranking.reason,
            "cheapest meeting the code quality floor 0.95: frontier ($0.020000)"
        );
    }

    #[test]
    fn specialists_get_a_bonus_for_the_floor() {
        let ranking = rank(
            features(TaskClass::Creative),
            vec![
                candidate("generalist", 0.80, 0.002),
                candidate("plain", 0.70, 0.0005),
                specialist("writer", 0.70, 0.001, TaskClass::Creative),
            ],
        );
        // The writer meets 0.75 only with its bonus; the plain 0.70 model does not.
        assert_eq!(ids(&ranking), ["writer", "generalist", "plain"]);
    }

    #[test]
    fn a_specialty_in_another_task_does_not_count() {
        let ranking = rank(
            features(TaskClass::Creative),
            vec![
                candidate("generalist", 0.80, 0.002),
                specialist("coder", 0.70, 0.001, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["generalist", "coder"]);
    }

    #[test]
    fn below_the_floor_go_last_best_first() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("cheap-bad", 0.60, 0.0001),
                candidate("ok", 0.90, 0.01),
                candidate("cheap-better", 0.80, 0.0002),
                candidate("cheap-worse", 0.70, 0.0001),
            ],
        );
        assert_eq!(
            ids(&ranking),
            ["ok", "cheap-better", "cheap-worse", "cheap-bad"]
        );
        assert!(ranking.ranked[0].score > 0.0);
        assert!(ranking.ranked[1..].iter().all(|s| s.score < 0.0));
    }

    #[test]
    fn nothing_meets_the_floor_highest_quality_first() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("small", 0.70, 0.0001),
                candidate("medium", 0.80, 0.001),
                specialist("tiny-coder", 0.60, 0.00001, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["medium", "small", "tiny-coder"]);
        assert_eq!(
            ranking.reason,
            "no candidate meets the code floor 0.85; highest quality first: medium (quality 0.80)"
        );
        assert!((ranking.ranked[0].score - (0.80 - 2.0)).abs() < 1e-9);
    }

    #[test]
    fn below_the_floor_the_specialist_bonus_counts_in_the_order() {
        let ranking = rank(
            features(TaskClass::Code),
            vec![
                candidate("medium", 0.78, 0.001),
                specialist("coder", 0.75, 0.002, TaskClass::Code),
            ],
        );
        assert_eq!(ids(&ranking), ["coder", "medium"]);
        assert!(
            ranking
                .reason
                .ends_with("coder (quality 0.75 + specialist bonus)")
        );
    }

    #[test]
    fn cost_ties_prefer_closed_circuits_then_quality_then_id() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                half_open(candidate("probe", 0.99, 0.001)),
                candidate("b", 0.80, 0.001),
                candidate("a", 0.80, 0.001),
                candidate("best", 0.90, 0.001),
            ],
        );
        assert_eq!(ids(&ranking), ["best", "a", "b", "probe"]);
    }

    #[test]
    fn a_cheaper_half_open_candidate_still_wins_on_cost() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("closed", 0.80, 0.002),
                half_open(candidate("probe", 0.80, 0.001)),
            ],
        );
        assert_eq!(ids(&ranking), ["probe", "closed"]);
    }

    #[test]
    fn free_models_are_cheapest() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("paid", 0.80, 0.001),
                candidate("local", 0.65, 0.0),
                candidate("negative-zero", 0.65, -0.0),
            ],
        );
        assert_eq!(ids(&ranking), ["local", "negative-zero", "paid"]);
        assert_eq!(ranking.ranked[0].score, 1.0);
    }

    #[test]
    fn unusable_costs_go_after_known_ones() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("nan", 0.99, f64::NAN),
                candidate("inf", 0.99, f64::INFINITY),
                candidate("negative", 0.99, -1.0),
                candidate("dear", 0.70, 5.0),
                candidate("huge", 0.70, f64::MAX),
            ],
        );
        assert_eq!(ids(&ranking), ["dear", "huge", "inf", "nan", "negative"]);
        assert!(ranking.ranked.iter().all(|s| s.score >= 0.0));
        let ranking = rank(
            features(TaskClass::Chat),
            vec![candidate("nan", 0.99, f64::NAN)],
        );
        assert_eq!(
            ranking.reason,
            "cheapest meeting the chat quality floor 0.60: nan (cost unknown)"
        );
    }

    #[test]
    fn unusable_qualities_count_as_zero() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("nan", f32::NAN, 0.0001),
                candidate("inf", f32::INFINITY, 0.0001),
                candidate("neg-inf", f32::NEG_INFINITY, 0.0001),
                candidate("over", 7.0, 0.0002),
                candidate("ok", 0.70, 0.001),
            ],
        );
        // Infinity clamps to 1.0 and so meets the floor; NaN and -inf count as 0.0.
        assert_eq!(ids(&ranking), ["inf", "over", "ok", "nan", "neg-inf"]);
    }

    #[test]
    fn all_nan_inputs_still_give_a_full_finite_ranking() {
        let mut c = candidate("x", f32::NAN, f64::NAN);
        c.success_rate = f32::NAN;
        c.ewma_latency_ms = Some(f64::NAN);
        let ranking = rank(
            features(TaskClass::Reasoning),
            vec![c, candidate("y", f32::NAN, f64::NEG_INFINITY)],
        );
        assert_eq!(ids(&ranking), ["x", "y"]);
        assert_eq!(
            ranking.reason,
            "no candidate meets the reasoning floor 0.85; highest quality first: x (quality 0.00)"
        );
    }

    #[test]
    fn empty_input() {
        let ranking = Cost::rank(features(TaskClass::Code), Vec::new());
        assert!(ranking.ranked.is_empty());
        assert_eq!(ranking.reason, "no candidates");
    }

    #[test]
    fn a_duplicated_id_is_ranked_once_at_its_best_place() {
        let ranking = rank(
            features(TaskClass::Chat),
            vec![
                candidate("twin", 0.80, 0.01),
                candidate("other", 0.80, 0.005),
                candidate("twin", 0.80, 0.001),
            ],
        );
        assert_eq!(ids(&ranking), ["twin", "other"]);
    }
}
