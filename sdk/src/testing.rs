//! Helpers for a policy's native unit tests (`cargo test` runs them on the build machine, no
//! WebAssembly involved).

use crate::policy::{Candidate, Policy, Ranking, RequestFeatures};

/// Ranks with policy `P` and checks the contract the host enforces: every candidate exactly
/// once, finite scores that never rise along the ranking. Panics, naming the violation.
pub fn rank_checked<P: Policy>(features: RequestFeatures, candidates: Vec<Candidate>) -> Ranking {
    let mut want: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    want.sort();
    want.dedup();
    let ranking = P::rank(features, candidates);
    let mut got: Vec<String> = ranking.ranked.iter().map(|s| s.id.clone()).collect();
    got.sort();
    assert_eq!(got, want, "every candidate exactly once");
    for s in &ranking.ranked {
        assert!(s.score.is_finite(), "{} scored {}", s.id, s.score);
    }
    for pair in ranking.ranked.windows(2) {
        assert!(
            pair[0].score >= pair[1].score,
            "scores rise from {} ({}) to {} ({})",
            pair[0].id,
            pair[0].score,
            pair[1].id,
            pair[1].score
        );
    }
    ranking
}

/// The ranked ids, best first.
pub fn ids(ranking: &Ranking) -> Vec<&str> {
    ranking.ranked.iter().map(|s| s.id.as_str()).collect()
}

/// Splits a server-sent-events body into events the way the host does: events end at a blank
/// line, `data:` lines join with `\n`, one space after the colon is dropped.
pub fn sse_events(body: &str) -> Vec<crate::provider::StreamEvent> {
    body.replace("\r\n", "\n")
        .split("\n\n")
        .filter(|chunk| !chunk.trim().is_empty())
        .map(|chunk| {
            let mut event = None;
            let mut data = Vec::new();
            for line in chunk.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            crate::provider::StreamEvent {
                event,
                data: data.join("\n"),
            }
        })
        .collect()
}
