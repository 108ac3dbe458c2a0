//! The `latency` routing policy: the fastest model first, by observed latency.
//!
//! The measure is the time to first token when the host has seen streams on a model, else the
//! mean latency of its successful calls: first tokens are what a streaming caller waits for, and
//! requests carry no streaming flag for a finer choice. Comparing one model's first-token time
//! with another's full latency favours the streamed one; that bias is accepted for simplicity.
//!
//! Models with no observation yet come after the observed ones, cheapest first: price is the
//! best proxy for speed the catalog offers (cheap models are small, and small models are fast),
//! and putting unmeasured models after measured ones keeps a known-fast route from being traded
//! for a guess. They still get traffic whenever the observed ones fail. The request's
//! requirements do not change the order: `low-latency` is what this policy does anyway, and
//! fastest-first already puts the observed models over `max-latency-ms` after those under it.
//!
//! Health comes before speed: half-open circuits (which only probes should reach) go after
//! every closed one, and models failing more than half their recent calls go after everything,
//! because a fast failure costs the caller a retry. Nothing is skipped: the host has already
//! removed the candidates that cannot serve the request.

use std::cmp::Ordering;

use aigw_plugin_sdk::policy::*;

struct Latency;

aigw_plugin_sdk::export_policy!(Latency);

/// Below this success rate a candidate goes after every healthier one. A NaN rate counts as no
/// history (1.0): demoting a model takes evidence.
const MIN_SUCCESS_RATE: f32 = 0.5;
/// The numerator of the score of an observed candidate: 1000 / latency in ms, i.e. calls per
/// second.
const SPEED_SCALE_MS: f64 = 1000.0;
/// Latencies are clamped to this range for the score only (not the order), so that it stays
/// within 0.001..1000: a sub-millisecond or quarter-hour latency is a measuring artefact.
const MIN_SCORED_LATENCY_MS: f64 = 1.0;
const MAX_SCORED_LATENCY_MS: f64 = 1_000_000.0;
/// The score of the best unobserved candidate; the next ones get half, a third, and so on:
/// small, positive, and below every observed candidate's score (at least 0.001).
const UNOBSERVED_SCORE: f64 = 0.0005;
/// Subtracted from the score per tier below the first (half-open circuit, then low success
/// rate), so that scores always fall along the ranking: a tier's scores lie within
/// (-TIER_STEP * tier, -TIER_STEP * (tier - 1)].
const TIER_STEP: f64 = 1000.0;

/// Which observation a latency comes from.
#[derive(Clone, Copy)]
enum Measure {
    FirstToken,
    Latency,
}

/// A candidate as this policy sorts it.
struct Entry<'a> {
    candidate: &'a Candidate,
    /// 0 (healthy, closed) to 5: three circuit states, times two for a low success rate.
    tier: u8,
    /// The observed time in ms, when there is a usable (finite, positive) one.
    observed: Option<(f64, Measure)>,
    /// The estimated cost, `None` when it is not a finite, non-negative number.
    cost: Option<f64>,
}

impl Policy for Latency {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "latency",
            "fastest observed model first, healthy ones before probes",
        )
    }

    fn rank(_features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        if candidates.is_empty() {
            return Ranking::empty();
        }
        let mut entries: Vec<Entry> = candidates
            .iter()
            .map(|c| Entry {
                candidate: c,
                tier: tier(c),
                observed: observed(c),
                cost: known_cost(c.estimated_cost_usd),
            })
            .collect();

        // By tier; within one, observed before unobserved. Observed: fastest, then cheapest.
        // Unobserved: cheapest (unknown costs last). The id makes the order deterministic.
        entries.sort_by(|a, b| {
            a.tier
                .cmp(&b.tier)
                .then_with(|| match (a.observed, b.observed) {
                    (Some((a_ms, _)), Some((b_ms, _))) => {
                        a_ms.total_cmp(&b_ms).then_with(|| cmp_cost(a.cost, b.cost))
                    }
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => cmp_cost(a.cost, b.cost),
                })
                .then_with(|| a.candidate.id.cmp(&b.candidate.id))
        });
        dedup_by_id(&mut entries, |e| &e.candidate.id);

        let mut ranked = Vec::with_capacity(entries.len());
        let mut unobserved_in_tier = 0.0;
        for (i, e) in entries.iter().enumerate() {
            if i > 0 && entries[i - 1].tier != e.tier {
                unobserved_in_tier = 0.0;
            }
            let base = match e.observed {
                Some((ms, _)) => {
                    SPEED_SCALE_MS / ms.clamp(MIN_SCORED_LATENCY_MS, MAX_SCORED_LATENCY_MS)
                }
                None => {
                    unobserved_in_tier += 1.0;
                    UNOBSERVED_SCORE / unobserved_in_tier
                }
            };
            ranked.push(Scored::new(
                e.candidate.id.clone(),
                base - TIER_STEP * f64::from(e.tier),
            ));
        }

        let best = &entries[0];
        let mut reason = match best.observed {
            Some((ms, Measure::FirstToken)) => {
                format!("fastest: {} ({ms:.0} ms to first token)", best.candidate.id)
            }
            Some((ms, Measure::Latency)) => {
                format!("fastest: {} ({ms:.0} ms latency)", best.candidate.id)
            }
            None => format!(
                "no latency observed yet; cheapest first: {} ({})",
                best.candidate.id,
                match best.cost {
                    Some(cost) => format!("${cost:.6}"),
                    None => "cost unknown".into(),
                },
            ),
        };
        if best.tier > 0 {
            reason.push_str("; every candidate is half-open or failing");
        }
        Ranking { ranked, reason }
    }
}

/// Time to first token when observed, else latency; `None` when neither is finite and positive.
fn observed(c: &Candidate) -> Option<(f64, Measure)> {
    let usable = |ms: Option<f64>| ms.filter(|ms| ms.is_finite() && *ms > 0.0);
    usable(c.ewma_ttft_ms)
        .map(|ms| (ms, Measure::FirstToken))
        .or_else(|| usable(c.ewma_latency_ms).map(|ms| (ms, Measure::Latency)))
}

/// Closed before half-open circuits (open ones are removed by the host; should one arrive it
/// goes after both), and all of those before candidates below `MIN_SUCCESS_RATE`.
fn tier(c: &Candidate) -> u8 {
    // `<` is false for NaN, which therefore is not demoted.
    let failing = u8::from(c.success_rate < MIN_SUCCESS_RATE);
    failing * 3 + c.circuit.rank()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::{ids, rank_checked};

    fn features() -> RequestFeatures {
        RequestFeatures::new(TaskClass::Chat).with_requirements(Requirements {
            low_latency: true,
            ..Requirements::none()
        })
    }

    fn candidate(id: &str, cost: f64) -> Candidate {
        Candidate::new(id, "test").with_quality(0.8).with_cost(cost)
    }

    fn seen(id: &str, cost: f64, latency_ms: f64) -> Candidate {
        candidate(id, cost).with_latency_ms(latency_ms)
    }

    fn half_open(c: Candidate) -> Candidate {
        c.with_circuit(CircuitState::HalfOpen)
    }

    fn failing(c: Candidate, success_rate: f32) -> Candidate {
        c.with_success_rate(success_rate)
    }

    /// Ranks and checks the contract: every candidate exactly once, finite scores that never
    /// rise along the ranking.
    fn rank(candidates: Vec<Candidate>) -> Ranking {
        rank_checked::<Latency>(features(), candidates)
    }

    fn score(ranking: &Ranking, id: &str) -> f64 {
        ranking.ranked.iter().find(|s| s.id == id).unwrap().score
    }

    #[test]
    fn describes_itself() {
        assert_eq!(Latency::describe().name, "latency");
    }

    #[test]
    fn fastest_observed_first() {
        let ranking = rank(vec![
            seen("slow", 0.0001, 2000.0),
            seen("fast", 0.01, 250.0),
            seen("medium", 0.001, 800.0),
        ]);
        assert_eq!(ids(&ranking), ["fast", "medium", "slow"]);
        assert_eq!(score(&ranking, "fast"), 4.0);
        assert_eq!(score(&ranking, "slow"), 0.5);
        assert_eq!(ranking.reason, "fastest: fast (250 ms latency)");
    }

    #[test]
    fn time_to_first_token_is_used_when_known() {
        let mut streamed = seen("streamed", 0.001, 3000.0);
        streamed.ewma_ttft_ms = Some(200.0);
        let ranking = rank(vec![seen("plain", 0.001, 900.0), streamed]);
        assert_eq!(ids(&ranking), ["streamed", "plain"]);
        assert_eq!(score(&ranking, "streamed"), 5.0);
        assert_eq!(ranking.reason, "fastest: streamed (200 ms to first token)");
    }

    #[test]
    fn equal_latencies_prefer_the_cheaper_then_the_id() {
        let ranking = rank(vec![
            seen("b", 0.001, 500.0),
            seen("dear", 0.01, 500.0),
            seen("a", 0.001, 500.0),
        ]);
        assert_eq!(ids(&ranking), ["a", "b", "dear"]);
    }

    #[test]
    fn unobserved_after_observed_cheapest_first() {
        let ranking = rank(vec![
            candidate("new-dear", 0.02),
            candidate("new-cheap", 0.0001),
            seen("slowest-seen", 0.05, 60_000.0),
            candidate("new-unpriced", f64::NAN),
            candidate("new-mid", 0.001),
        ]);
        assert_eq!(
            ids(&ranking),
            [
                "slowest-seen",
                "new-cheap",
                "new-mid",
                "new-dear",
                "new-unpriced"
            ]
        );
        let scores: Vec<f64> = ranking.ranked.iter().map(|s| s.score).collect();
        assert!(
            scores[1..]
                .iter()
                .all(|s| *s > 0.0 && *s <= UNOBSERVED_SCORE)
        );
        assert!(scores[0] > scores[1]);
    }

    #[test]
    fn nothing_observed_yet() {
        let ranking = rank(vec![candidate("big", 0.01), candidate("small", 0.000412)]);
        assert_eq!(ids(&ranking), ["small", "big"]);
        assert_eq!(
            ranking.reason,
            "no latency observed yet; cheapest first: small ($0.000412)"
        );
    }

    #[test]
    fn half_open_after_closed() {
        let ranking = rank(vec![
            half_open(seen("probe-fast", 0.001, 100.0)),
            seen("closed-slow", 0.001, 5000.0),
            candidate("closed-new", 0.001),
            half_open(candidate("probe-new", 0.0001)),
        ]);
        assert_eq!(
            ids(&ranking),
            ["closed-slow", "closed-new", "probe-fast", "probe-new"]
        );
        assert!(score(&ranking, "probe-fast") < 0.0);
        assert_eq!(ranking.reason, "fastest: closed-slow (5000 ms latency)");
    }

    #[test]
    fn low_success_rates_go_last() {
        let ranking = rank(vec![
            failing(seen("flaky-fast", 0.001, 50.0), 0.3),
            half_open(seen("probe", 0.001, 900.0)),
            seen("steady", 0.001, 1200.0),
            failing(candidate("flaky-new", 0.0001), 0.49),
            seen("borderline", 0.001, 1500.0),
        ]);
        assert_eq!(
            ids(&ranking),
            ["steady", "borderline", "probe", "flaky-fast", "flaky-new"]
        );
    }

    #[test]
    fn only_failing_candidates_still_ranked_and_said() {
        let ranking = rank(vec![
            failing(seen("a", 0.001, 300.0), 0.1),
            half_open(failing(seen("b", 0.001, 100.0), 0.1)),
        ]);
        assert_eq!(ids(&ranking), ["a", "b"]);
        assert_eq!(
            ranking.reason,
            "fastest: a (300 ms latency); every candidate is half-open or failing"
        );
    }

    #[test]
    fn unusable_observations_count_as_none() {
        let mut ttft_nan = seen("ttft-nan", 0.001, 400.0);
        ttft_nan.ewma_ttft_ms = Some(f64::NAN);
        let ranking = rank(vec![
            seen("nan", 0.0001, f64::NAN),
            seen("inf", 0.0002, f64::INFINITY),
            seen("zero", 0.0003, 0.0),
            seen("negative", 0.0004, -5.0),
            ttft_nan,
        ]);
        assert_eq!(
            ids(&ranking),
            ["ttft-nan", "nan", "inf", "zero", "negative"]
        );
        assert_eq!(score(&ranking, "ttft-nan"), 2.5);
    }

    #[test]
    fn extreme_latencies_keep_scores_finite_and_ordered() {
        let ranking = rank(vec![
            seen("subnormal", 0.001, 1e-320),
            seen("tiny", 0.001, 0.5),
            seen("glacial", 0.001, 1e300),
            candidate("new", 0.001),
        ]);
        assert_eq!(ids(&ranking), ["subnormal", "tiny", "glacial", "new"]);
        assert_eq!(score(&ranking, "subnormal"), 1000.0);
        assert!(score(&ranking, "glacial") > score(&ranking, "new"));
    }

    #[test]
    fn nan_inputs_everywhere() {
        let mut c = seen("x", f64::NAN, f64::NAN);
        c.ewma_ttft_ms = Some(f64::NEG_INFINITY);
        c.success_rate = f32::NAN;
        c.quality = f32::NAN;
        c.rate_limit_headroom = f32::NAN;
        let ranking = rank(vec![c, failing(candidate("y", f64::NAN), 0.2)]);
        // A NaN success rate is no evidence of failure: x stays in the first tier.
        assert_eq!(ids(&ranking), ["x", "y"]);
        assert_eq!(
            ranking.reason,
            "no latency observed yet; cheapest first: x (cost unknown)"
        );
    }

    #[test]
    fn empty_input() {
        let ranking = Latency::rank(features(), Vec::new());
        assert!(ranking.ranked.is_empty());
        assert_eq!(ranking.reason, "no candidates");
    }

    #[test]
    fn a_duplicated_id_is_ranked_once_at_its_best_place() {
        let ranking = rank(vec![
            seen("twin", 0.001, 900.0),
            seen("other", 0.001, 500.0),
            seen("twin", 0.001, 100.0),
        ]);
        assert_eq!(ids(&ranking), ["twin", "other"]);
    }
}
