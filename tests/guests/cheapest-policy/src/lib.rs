//! Test guest: ranks candidates cheapest first. Used to prove that swapping a policy component
//! changes routing while requests flow.

use aigw_plugin_sdk::policy::*;

struct Cheapest;

aigw_plugin_sdk::export_policy!(Cheapest);

impl Policy for Cheapest {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("cheapest", "test guest: cheapest first")
    }

    fn rank(_features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        Ranking::by_key(candidates, "cheapest first", |c| c.estimated_cost_usd)
    }
}
