//! The `balanced` routing policy: a weighted score over cost, quality (with a bonus for the
//! task's specialists) and observed latency, scaled by a health multiplier.
//!
//! Each factor is a 0..1 score on a fixed scale, so that the weights mean the same thing for
//! every request: cost and latency are compared as ratios to the best candidate on a log scale
//! (a 1000x price gap or a 100x latency gap spans the whole range), and quality is the catalog's
//! score stretched over 0.5..1.0, where all useful models sit. Min-max scaling across the
//! candidates was rejected because it turns a 0.85 vs 0.95 quality gap into 0 vs 1. Requirements
//! shift the weights rather than adding ad-hoc bonuses, which keeps scores comparable and finite.

use aigw_plugin_sdk::policy::*;

struct Balanced;

aigw_plugin_sdk::export_policy!(Balanced);

/// The bonus a candidate gets on quality when the request's task is one of its specialties.
const SPECIALTY_BONUS: f64 = 0.1;
/// Latency score for every candidate until at least two have been observed: with nothing to
/// compare against, no candidate is favoured or punished.
const NEUTRAL_LATENCY_SCORE: f64 = 0.5;
/// Added to a factor's weight when the request asks for it.
const REQUIREMENT_WEIGHT: f64 = 2.4;
/// A candidate this many times dearer than the cheapest scores 0 on cost.
const COST_SPAN: f64 = 1000.0;
/// A candidate this many times slower than the fastest scores 0 on latency.
const LATENCY_SPAN: f64 = 100.0;

struct Weights {
    cost: f64,
    quality: f64,
    latency: f64,
}

impl Weights {
    fn for_request(features: &RequestFeatures) -> Self {
        let r = &features.requirements;
        let mut w = Weights {
            cost: 0.3,
            quality: 0.4,
            latency: 0.3,
        };
        // A requirement makes its factor about 80% of the score (when it is the only one), so
        // `low_cost` picks the cheapest capable model rather than merely leaning towards it.
        if r.low_cost {
            w.cost += REQUIREMENT_WEIGHT;
        }
        if r.high_quality {
            w.quality += REQUIREMENT_WEIGHT;
        }
        if r.low_latency {
            w.latency += REQUIREMENT_WEIGHT;
        }
        let total = w.cost + w.quality + w.latency;
        Weights {
            cost: w.cost / total,
            quality: w.quality / total,
            latency: w.latency / total,
        }
    }
}

impl Policy for Balanced {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "balanced",
            "weighted cost, quality and latency, scaled by health",
        )
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        if candidates.is_empty() {
            return Ranking::empty();
        }
        let weights = Weights::for_request(&features);
        let cheapest = candidates
            .iter()
            .map(|c| c.estimated_cost_usd)
            .filter(|c| c.is_finite() && *c > 0.0)
            .fold(f64::INFINITY, f64::min);
        let observed: Vec<f64> = candidates
            .iter()
            .filter_map(|c| c.ewma_latency_ms)
            .filter(|l| l.is_finite() && *l > 0.0)
            .collect();
        let fastest = observed.iter().copied().fold(f64::INFINITY, f64::min);

        let mut ranked: Vec<Scored> = candidates
            .iter()
            .map(|c| {
                let cost = ratio_score(c.estimated_cost_usd, cheapest, COST_SPAN);
                let latency = match c.ewma_latency_ms {
                    Some(l) if observed.len() >= 2 => ratio_score(l, fastest, LATENCY_SPAN),
                    _ => NEUTRAL_LATENCY_SCORE,
                };
                let mut quality = f64::from(c.quality).clamp(0.0, 1.0);
                if c.is_specialist(features.task) {
                    quality = (quality + SPECIALTY_BONUS).min(1.0);
                }
                let quality = ((quality - 0.5) / 0.5).clamp(0.0, 1.0);
                let mut score =
                    weights.cost * cost + weights.quality * quality + weights.latency * latency;
                score *= health(c);
                if let (Some(max), Some(observed)) =
                    (features.requirements.max_latency_ms, c.ewma_latency_ms)
                    && observed > f64::from(max)
                {
                    score *= 0.1;
                }
                Scored::new(c.id.clone(), if score.is_finite() { score } else { 0.0 })
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        // The host rejects a ranking that names a model twice; keep each id's best place.
        dedup_by_id(&mut ranked, |s| &s.id);

        let reason = match ranked.first().and_then(|best| {
            candidates
                .iter()
                .find(|c| c.id == best.id)
                .map(|c| (best, c))
        }) {
            Some((best, c)) => format!(
                "balanced (cost {:.2}, quality {:.2}, latency {:.2}): {} scored {:.3} \
                 (quality {:.2}, est. ${:.6}, {})",
                weights.cost,
                weights.quality,
                weights.latency,
                best.id,
                best.score,
                c.quality,
                c.estimated_cost_usd,
                c.ewma_latency_ms
                    .map(|l| format!("{l:.0} ms observed"))
                    .unwrap_or_else(|| "no latency observed yet".into()),
            ),
            None => "no candidates".into(),
        };
        Ranking { ranked, reason }
    }
}

/// 1.0 for the best value, falling on a log scale to 0.0 at `span` times the best. Unknown or
/// free values (0, NaN) count as the best: the host has already checked hard limits.
fn ratio_score(value: f64, best: f64, span: f64) -> f64 {
    if !(value.is_finite() && value > 0.0 && best.is_finite() && best > 0.0) {
        return 1.0;
    }
    (1.0 - (value / best).ln() / span.ln()).clamp(0.0, 1.0)
}

/// Success rate, scaled down for half-open circuits (only probes should go there) and for
/// providers close to their rate limit.
fn health(c: &Candidate) -> f64 {
    let success = f64::from(c.success_rate).clamp(0.0, 1.0);
    let circuit = match c.circuit {
        CircuitState::Closed => 1.0,
        CircuitState::HalfOpen => 0.5,
        CircuitState::Open => 0.0,
    };
    let headroom = 0.5 + 0.5 * f64::from(c.rate_limit_headroom).clamp(0.0, 1.0);
    success * circuit * headroom
}
