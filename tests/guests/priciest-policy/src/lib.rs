//! Test guest: ranks candidates priciest first. Used to prove that swapping a policy component
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
            name: "priciest".into(),
            description: "test guest: priciest first".into(),
        }
    }

    fn rank(_features: RequestFeatures, mut candidates: Vec<Candidate>) -> Ranking {
        candidates.sort_by(|a, b| b.estimated_cost_usd.total_cmp(&a.estimated_cost_usd));
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
            reason: "priciest first".into(),
        }
    }
}
