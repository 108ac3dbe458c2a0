//! Test guest: a policy that answers garbage, to prove the host never routes on it. The kind of
//! garbage depends on the request's task class: code → an id that is not a candidate, math → NaN
//! scores, creative → the same candidate twice, anything else → an empty ranking.

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use exports::aigw::plugin::ranker::{
    Candidate, Guest, PolicyInfo, Ranking, RequestFeatures, Scored, TaskClass,
};

struct Garbage;

export!(Garbage);

impl Guest for Garbage {
    fn describe() -> PolicyInfo {
        PolicyInfo {
            name: "garbage".into(),
            description: "test guest: unusable rankings".into(),
        }
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        let first = candidates.first().map(|c| c.id.clone()).unwrap_or_default();
        let ranked = match features.task {
            TaskClass::Code => vec![Scored {
                id: "no-such-model".into(),
                score: 1.0,
            }],
            TaskClass::Math => candidates
                .iter()
                .map(|c| Scored {
                    id: c.id.clone(),
                    score: f64::NAN,
                })
                .collect(),
            TaskClass::Creative => vec![
                Scored {
                    id: first.clone(),
                    score: 2.0,
                },
                Scored {
                    id: first,
                    score: 1.0,
                },
            ],
            _ => Vec::new(),
        };
        Ranking {
            ranked,
            reason: "garbage".into(),
        }
    }
}
