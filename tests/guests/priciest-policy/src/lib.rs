//! Test guest: ranks candidates priciest first. Used to prove that swapping a policy component
//! changes routing while requests flow.

use aigw_plugin_sdk::policy::*;

struct Priciest;

aigw_plugin_sdk::export_policy!(Priciest);

impl Policy for Priciest {
    fn describe() -> PolicyInfo {
        PolicyInfo::new("priciest", "test guest: priciest first")
    }

    fn rank(_features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
        Ranking::by_key(candidates, "priciest first", |c| -c.estimated_cost_usd)
    }
}
