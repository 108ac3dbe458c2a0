//! Test guest: a policy that answers garbage, to prove the host never routes on it. The kind of
//! garbage depends on the request's task class: code → an id that is not a candidate, math → NaN
//! scores, creative → the same candidate twice, anything else → an empty ranking.

use aigw_plugin_sdk::policy::*;

struct Garbage;

aigw_plugin_sdk::export_policy!(Garbage);

impl Policy for Garbage {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("garbage", "test guest: unusable rankings")
    }

    fn rank(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        let first = candidates.first().map(|c| c.id.clone()).unwrap_or_default();
        let ranked = match features.task {
            TaskClass::Code => vec![Scored::new("no-such-model", 1.0)],
            TaskClass::Math => candidates
                .iter()
                .map(|c| Scored::new(c.id.clone(), f64::NAN))
                .collect(),
            TaskClass::Creative => vec![Scored::new(first.clone(), 2.0), Scored::new(first, 1.0)],
            _ => Vec::new(),
        };
        Ranking {
            ranked,
            reason: "garbage".into(),
        }
    }
}
