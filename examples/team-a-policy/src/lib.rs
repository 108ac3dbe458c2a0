//! A custom routing policy, the worked example of docs/plugins.md: code tasks from the `team-a`
//! key go to the cheapest model with a quality of at least 0.9; everything else goes to the
//! cheapest model.
//!
//! Models below the floor still follow, cheapest first, so that a team-a code request is served
//! (by the cheapest model) when no model reaches 0.9: a policy orders, the host has already
//! removed the models that cannot serve the request.

use aigw_plugin_sdk::policy::*;

struct TeamA;

aigw_plugin_sdk::export_policy!(TeamA);

/// The API key id (the `id:` part of `GATEWAY_API_KEYS`) whose code tasks get the floor.
const TEAM: &str = "team-a";
/// The quality floor for that team's code tasks, on the catalog's 0.0 to 1.0 scale.
const CODE_QUALITY_FLOOR: f64 = 0.9;

impl Policy for TeamA {
    fn describe() -> PolicyInfo {
        PolicyInfo::new(
            "team-a-code",
            "team-a's code tasks to the cheapest model with quality >= 0.9, the rest to the cheapest",
        )
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        // `known_cost` is `None` for an unusable estimate, and `None` sorts after every cost.
        let team_code =
            features.task == TaskClass::Code && features.api_key_id.as_deref() == Some(TEAM);
        if !team_code {
            return Ranking::by_key(candidates, "cheapest", |c| known_cost(c.estimated_cost_usd));
        }
        let floor = quality_points(CODE_QUALITY_FLOOR);
        Ranking::by_key(
            candidates,
            "team-a code: cheapest with quality >= 0.9",
            |c| {
                let below_floor = quality_points(f64::from(c.quality)) < floor;
                (below_floor, known_cost(c.estimated_cost_usd))
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aigw_plugin_sdk::testing::{ids, rank_checked};

    fn models() -> Vec<Candidate> {
        vec![
            Candidate::new("frontier", "a")
                .with_quality(0.95)
                .with_cost(0.02),
            Candidate::new("strong", "b")
                .with_quality(0.91)
                .with_cost(0.008),
            Candidate::new("mini", "c")
                .with_quality(0.8)
                .with_cost(0.0004),
        ]
    }

    #[test]
    fn team_a_code_goes_to_the_cheapest_model_of_quality_0_9() {
        let features = RequestFeatures::new(TaskClass::Code).with_api_key_id("team-a");
        let ranking = rank_checked::<TeamA>(features, models());
        assert_eq!(ids(&ranking), ["strong", "frontier", "mini"]);
        assert_eq!(ranking.reason, "team-a code: cheapest with quality >= 0.9");
    }

    #[test]
    fn everything_else_goes_to_the_cheapest_model() {
        for features in [
            RequestFeatures::new(TaskClass::Chat).with_api_key_id("team-a"),
            RequestFeatures::new(TaskClass::Code).with_api_key_id("team-b"),
            RequestFeatures::new(TaskClass::Code),
        ] {
            let ranking = rank_checked::<TeamA>(features, models());
            assert_eq!(ids(&ranking), ["mini", "strong", "frontier"]);
        }
    }

    #[test]
    fn without_a_model_of_quality_0_9_the_cheapest_serves() {
        let features = RequestFeatures::new(TaskClass::Code).with_api_key_id("team-a");
        let ranking = rank_checked::<TeamA>(
            features,
            vec![
                Candidate::new("mid", "a")
                    .with_quality(0.85)
                    .with_cost(0.002),
                Candidate::new("mini", "b")
                    .with_quality(0.8)
                    .with_cost(0.0004),
            ],
        );
        assert_eq!(ids(&ranking), ["mini", "mid"]);
    }
}
