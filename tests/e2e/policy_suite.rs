//! One test suite for every routing policy component in `policies/dist`, whatever language it
//! was written in (the Rust policies and the JavaScript `thrifty` alike): the contract the host
//! relies on, checked by calling each component the way the router does, and routing through
//! the running gateway with each policy selected.

use crate::support::*;
use ai_gateway::plugins::bindings::ranker::{
    Candidate, CircuitState, Ranking, RequestFeatures, Requirements, TaskClass,
};
use ai_gateway::plugins::{CallLimits, ComponentKind, LoadedComponent, PluginRuntime, component};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

const KEY: &str = "sk-test-policy-suite-0123456789abcdef";

/// Policies that must be among the built ones: a missing build fails the suite rather than
/// shrinking it.
const EXPECTED: &[&str] = &["balanced", "cost", "latency", "quality", "thrifty"];

const TASKS: [TaskClass; 8] = [
    TaskClass::Code,
    TaskClass::Math,
    TaskClass::Reasoning,
    TaskClass::Creative,
    TaskClass::Summarization,
    TaskClass::Translation,
    TaskClass::Extraction,
    TaskClass::Chat,
];

/// Every `policies/dist/*.wasm`, by name.
fn built_policies() -> Vec<(String, PathBuf)> {
    let dir = repo_root().join("policies/dist");
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run .ci/setup", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_string();
            (path.extension()? == "wasm" && !name.starts_with('.')).then_some((name, path))
        })
        .collect();
    found.sort();
    for name in EXPECTED {
        assert!(
            found.iter().any(|(n, _)| n == name),
            "policies/dist/{name}.wasm is missing: run .ci/setup"
        );
    }
    found
}

fn requirements() -> Requirements {
    Requirements {
        low_cost: false,
        high_quality: false,
        low_latency: false,
        max_cost_usd: None,
        max_latency_ms: None,
    }
}

fn features(task: TaskClass, requirements: Requirements) -> RequestFeatures {
    RequestFeatures {
        task,
        task_confidence: 0.9,
        estimated_input_tokens: 1200,
        max_output_tokens: None,
        requirements,
        needs_tools: false,
        needs_vision: false,
        needs_json: false,
        api_key_id: Some("team-a".into()),
        requested_model: None,
    }
}

fn candidate(id: &str, quality: f32, cost: f64, latency_ms: Option<f64>) -> Candidate {
    Candidate {
        id: id.into(),
        provider: format!("{id}-provider"),
        input_price_per_mtok: cost * 250.0,
        cached_input_price_per_mtok: cost * 25.0,
        output_price_per_mtok: cost * 1000.0,
        estimated_cost_usd: cost,
        quality,
        specialties: Vec::new(),
        context_window: 128_000,
        ewma_latency_ms: latency_ms,
        ewma_ttft_ms: latency_ms.map(|ms| ms / 3.0),
        success_rate: 1.0,
        circuit: CircuitState::Closed,
        rate_limit_headroom: 1.0,
    }
}

/// A catalog like the bundled one: prices over three orders of magnitude, some specialists,
/// some models never observed.
fn catalog() -> Vec<Candidate> {
    vec![
        candidate("frontier", 0.95, 0.02, Some(2400.0)),
        Candidate {
            specialties: vec![TaskClass::Code, TaskClass::Math],
            ..candidate("coder", 0.9, 0.006, Some(900.0))
        },
        candidate("mid", 0.85, 0.002, None),
        Candidate {
            specialties: vec![TaskClass::Summarization],
            ..candidate("mini", 0.75, 0.0004, Some(300.0))
        },
        candidate("local", 0.6, 0.0, None),
    ]
}

fn ids(ranking: &Ranking) -> Vec<&str> {
    ranking.ranked.iter().map(|s| s.id.as_str()).collect()
}

/// A loaded policy component and the limits the router calls it with.
struct UnderTest {
    name: String,
    runtime: PluginRuntime,
    policy: LoadedComponent,
    limits: CallLimits,
    _compiled: tempfile::TempDir,
}

impl UnderTest {
    fn load(name: &str, path: &std::path::Path) -> Self {
        let compiled = tempfile::tempdir().unwrap();
        let runtime = PluginRuntime::new(compiled.path().to_path_buf()).unwrap();
        // The gateway's defaults (gateway.toml: call_timeout_ms = 250, memory_limit_mib = 64).
        let limits = CallLimits {
            timeout: Duration::from_millis(250),
            memory_bytes: 64 << 20,
        };
        let policy = component::load(&runtime, path, Some(ComponentKind::Policy), limits)
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        UnderTest {
            name: name.to_string(),
            runtime,
            policy,
            limits,
            _compiled: compiled,
        }
    }

    fn rank(&self, features: &RequestFeatures, candidates: &[Candidate]) -> Ranking {
        self.policy
            .call_policy(&self.runtime, self.limits, |guest, store| {
                guest.call_rank(store, features, candidates)
            })
            .unwrap_or_else(|fault| panic!("{}: {fault}", self.name))
    }

    /// Ranks and checks what the router checks (only candidates, each once, finite scores),
    /// plus what every bundled policy promises: every candidate ranked, scores never rising.
    fn rank_valid(
        &self,
        what: &str,
        features: &RequestFeatures,
        candidates: &[Candidate],
    ) -> Ranking {
        let ranking = self.rank(features, candidates);
        let name = &self.name;
        let offered: HashSet<&str> = candidates.iter().map(|c| c.id.as_str()).collect();
        let mut seen = HashSet::new();
        for s in &ranking.ranked {
            assert!(
                offered.contains(s.id.as_str()),
                "{name}, {what}: invented '{}'",
                s.id
            );
            assert!(
                seen.insert(s.id.as_str()),
                "{name}, {what}: '{}' twice",
                s.id
            );
            assert!(
                s.score.is_finite(),
                "{name}, {what}: '{}' scored {}",
                s.id,
                s.score
            );
        }
        assert_eq!(seen, offered, "{name}, {what}: every candidate is ranked");
        for pair in ranking.ranked.windows(2) {
            assert!(
                pair[0].score >= pair[1].score,
                "{name}, {what}: scores rise from {:?} to {:?}",
                pair[0],
                pair[1]
            );
        }
        assert!(!ranking.reason.is_empty(), "{name}, {what}: no reason");
        ranking
    }
}

#[test]
fn every_policy_honours_the_ranking_contract() {
    for (name, path) in built_policies() {
        let policy = UnderTest::load(&name, &path);
        let info = policy.policy.policy_info().expect("a policy");
        assert_eq!(
            info.name, name,
            "describe() names the policy as its file does"
        );
        assert!(!info.description.is_empty(), "{name}: no description");

        // Every task class under every single requirement.
        let flags: [fn(&mut Requirements); 4] = [
            |_| {},
            |r| r.low_cost = true,
            |r| r.high_quality = true,
            |r| r.low_latency = true,
        ];
        for task in TASKS {
            for flag in flags {
                let mut r = requirements();
                flag(&mut r);
                let what = format!("{task:?} with {r:?}");
                policy.rank_valid(&what, &features(task, r), &catalog());
            }
        }

        // Nothing to rank.
        let empty = policy.rank(&features(TaskClass::Chat, requirements()), &[]);
        assert!(
            empty.ranked.is_empty(),
            "{name}: ranked nothing into {empty:?}"
        );

        // Numbers no catalog should hold, and one id twice.
        let mut nan = candidate("nan", f32::NAN, f64::NAN, Some(f64::NAN));
        nan.success_rate = f32::NAN;
        nan.rate_limit_headroom = f32::NAN;
        nan.ewma_ttft_ms = Some(f64::INFINITY);
        let strange = vec![
            nan,
            candidate("negative", -1.0, -0.5, Some(-3.0)),
            candidate("huge", 7.0, f64::INFINITY, Some(f64::MAX)),
            candidate("tiny", f32::MIN_POSITIVE, f64::MIN_POSITIVE, Some(0.0)),
            candidate("twin", 0.8, 0.001, None),
            candidate("twin", 0.9, 0.002, Some(100.0)),
        ];
        policy.rank_valid(
            "strange numbers",
            &features(TaskClass::Math, requirements()),
            &strange,
        );

        // The same question twice gets the same answer.
        let f = features(TaskClass::Code, requirements());
        let first = policy.rank(&f, &catalog());
        let second = policy.rank(&f, &catalog());
        let scored = |r: &Ranking| -> Vec<(String, f64)> {
            r.ranked.iter().map(|s| (s.id.clone(), s.score)).collect()
        };
        assert_eq!(scored(&first), scored(&second), "{name}: not deterministic");
    }
}

#[test]
fn every_policy_prefers_the_healthy_and_the_dominant() {
    for (name, path) in built_policies() {
        let policy = UnderTest::load(&name, &path);
        for task in TASKS {
            let f = features(task, requirements());
            // Identical but for the circuit: the half-open one is only for probes.
            let probe = Candidate {
                circuit: CircuitState::HalfOpen,
                ..candidate("probe", 0.9, 0.001, Some(500.0))
            };
            let ranking = policy.rank_valid(
                "half-open twin",
                &f,
                &[probe, candidate("steady", 0.9, 0.001, Some(500.0))],
            );
            assert_eq!(ids(&ranking), ["steady", "probe"], "{name}, {task:?}");

            // Cheaper, better and faster: first, whatever the policy weighs.
            let ranking = policy.rank_valid(
                "a dominated candidate",
                &f,
                &[
                    candidate("worse", 0.8, 0.01, Some(2000.0)),
                    candidate("better", 0.95, 0.001, Some(200.0)),
                ],
            );
            assert_eq!(ids(&ranking), ["better", "worse"], "{name}, {task:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_policy_routes_requests_through_the_gateway() {
    let (_upstream, provider, models) = three_tier_catalog("SUITE_KEY").await;
    let config = TestConfig::new("", &provider, &models);
    config.add_provider("plugins/dist/openai.wasm", "openai");
    let policies = built_policies();
    for (name, _) in &policies {
        config.add_policy(&format!("policies/dist/{name}.wasm"), name);
    }
    let gateway = GatewayProcess::start(&config, &[("SUITE_KEY", KEY)]).await;

    let prompts = [
        "hello there",
        "Write a Python function that parses JSON",
        "Summarize this paragraph in one sentence: the cat sat on the mat.",
    ];
    for (name, _) in &policies {
        for prompt in prompts {
            for requirements in [
                json!({}),
                json!({"low_cost": true}),
                json!({"high_quality": true}),
            ] {
                let (status, headers, body) = gateway
                    .chat(json!({
                        "model": "auto",
                        "policy": name,
                        "requirements": requirements,
                        "messages": user_message(prompt),
                    }))
                    .await;
                assert_eq!(status, 200, "{name}, {prompt}: {body}");
                assert_eq!(header(&headers, "x-gateway-policy"), name, "{prompt}");
                assert!(
                    ["cheap", "mid", "dear"].contains(&header(&headers, "x-gateway-model")),
                    "{name}: {headers:?}"
                );
            }
        }
        let (status, headers, events) = gateway
            .chat_stream(json!({"model": "auto", "policy": name, "stream": true,
                                "messages": user_message("hello there")}))
            .await;
        assert_eq!(status, 200, "{name}: {events:?}");
        assert_eq!(header(&headers, "x-gateway-policy"), name);
    }
    let metrics = gateway.get_text("/metrics").await;
    assert!(
        !metrics.contains("aigw_policy_fallbacks_total{"),
        "a policy's answer was refused:\n{metrics}"
    );
}
