//! Test guest: a policy built against `aigw:plugin@0.2.0`, a contract version this host does not
//! speak. Loading it must fail with an error that names both versions.

wit_bindgen::generate!({
    world: "policy",
    path: "wit",
});

use exports::aigw::plugin::ranker::{Guest, PolicyInfo};

struct Future;

export!(Future);

impl Guest for Future {
    fn describe() -> PolicyInfo {
        aigw::plugin::host::log("describing");
        PolicyInfo {
            name: "future".into(),
            description: "built for a future contract".into(),
            revision: 2,
        }
    }

    fn rank(candidate_ids: Vec<String>) -> Vec<String> {
        candidate_ids
    }
}
