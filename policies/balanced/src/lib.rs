//! The `balanced` routing policy: a weighted score over relative cost, quality (with a bonus for
//! the task's specialists), observed latency, and a health multiplier.
//!
//! Every factor is normalised to 0..1 across the candidates of this request, so the weights mean
//! the same thing whatever the absolute prices are. Requirements shift the weights instead of
//! adding ad-hoc bonuses, which keeps scores comparable and finite.

wit_bindgen::generate!({
    world: "policy",
    path: "../../wit",
});

use exports::aigw::plugin::ranker::{
    Candidate, CircuitState, Guest, PolicyInfo, Ranking, RequestFeatures, Scored,
};

struct Balanced;

export!(Balanced);

/// The bonus a candidate gets on quality when the request's task is one of its specialties.
const SPECIALTY_BONUS: f64 = 0.1;
/// Latency score given to a candidate with no observations yet: neither favoured nor punished.
const UNKNOWN_LATENCY_SCORE: f64 = 0.5;

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
        if r.low_cost {
            w.cost += 0.6;
        }
        if r.high_quality {
            w.quality += 0.6;
        }
        if r.low_latency {
            w.latency += 0.6;
        }
        let total = w.cost + w.quality + w.latency;
        Weights {
            cost: w.cost / total,
            quality: w.quality / total,
            latency: w.latency / total,
        }
    }
}

impl Guest for Balanced {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "balanced".into(),
            description: "weighted cost, quality and latency, scaled by health".into(),
        }
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        if candidates.is_empty() {
            return Ranking {
                ranked: Vec::new(),
                reason: "no candidates".into(),
            };
        }
        let weights = Weights::for_request(&features);
        let costs = Normaliser::new(candidates.iter().map(|c| cost_key(c.estimated_cost_usd)));
        let latencies = Normaliser::new(
            candidates
                .iter()
                .filter_map(|c| c.ewma_latency_ms)
                .filter(|l| l.is_finite() && *l >= 0.0),
        );

        let mut ranked: Vec<Scored> = candidates
            .iter()
            .map(|c| {
                // Cheaper and faster are better, so both are inverted.
                let cost = 1.0 - costs.scale(cost_key(c.estimated_cost_usd));
                let latency = match c.ewma_latency_ms.filter(|l| l.is_finite()) {
                    Some(l) => 1.0 - latencies.scale(l),
                    None => UNKNOWN_LATENCY_SCORE,
                };
                let mut quality = f64::from(c.quality).clamp(0.0, 1.0);
                if c.specialties.contains(&features.task) {
                    quality = (quality + SPECIALTY_BONUS).min(1.0);
                }
                let mut score =
                    weights.cost * cost + weights.quality * quality + weights.latency * latency;
                score *= health(c);
                if let (Some(max), Some(observed)) =
                    (features.requirements.max_latency_ms, c.ewma_latency_ms)
                    && observed > f64::from(max)
                {
                    score *= 0.1;
                }
                Scored {
                    id: c.id.clone(),
                    score: if score.is_finite() { score } else { 0.0 },
                }
            })
            .collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));

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

/// Costs span orders of magnitude across models, so they are compared on a log scale.
fn cost_key(cost_usd: f64) -> f64 {
    if cost_usd.is_finite() && cost_usd > 0.0 {
        (cost_usd * 1e9).ln_1p()
    } else {
        0.0
    }
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

/// Min-max scaling to 0..1; every value scales to 0 when all values are equal.
struct Normaliser {
    min: f64,
    max: f64,
}

impl Normaliser {
    fn new(values: impl Iterator<Item = f64>) -> Self {
        let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        Normaliser { min, max }
    }

    fn scale(&self, value: f64) -> f64 {
        let span = self.max - self.min;
        if span.is_finite() && span > 0.0 {
            ((value - self.min) / span).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}
