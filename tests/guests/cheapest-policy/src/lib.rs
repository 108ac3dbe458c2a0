//! Test guest: ranks candidates cheapest first. Used to prove that swapping a policy component
//! changes routing while requests flow.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use exports::aigw::plugin::ranker::{
    Candidate, Guest, PolicyInfo, Ranking, RequestFeatures, Scored,
};

struct Policy;

export!(Policy);

impl Guest for Policy {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "cheapest".into(),
            description: "test guest: cheapest first".into(),
        }
    }

    fn rank(_features: RequestFeatures, mut candidates: Vec<Candidate>) -> Ranking {
        candidates.sort_by(|a, b| a.estimated_cost_usd.total_cmp(&b.estimated_cost_usd));
        let count = candidates.len();
        Ranking {
            ranked: candidates
                .into_iter()
                .enumerate()
                .map(|(i, c)| Scored {
                    id: c.id,
                    score: (count - i) as f64,
                })
                .collect(),
            reason: "cheapest first".into(),
        }
    }
}
