//! The plugin authoring kit as a plugin author meets it: `ai-gateway plugins new` scaffolds a
//! crate, `plugins build --install` builds it and drops it into a running gateway's policy
//! directory, requests are routed by it within 2 s, and `plugins list` shows what the gateway
//! loaded, through the authenticated admin endpoint.

use crate::support::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-plugin-kit-0123456789abcdef";
const TEAM_A_KEY: &str = "sk-test-team-a-0123456789abcdef";
const TEAM_B_KEY: &str = "sk-test-team-b-0123456789abcdef";

/// Runs the gateway's CLI to completion. Plugin builds use a target directory of their own
/// inside Cargo's (kept between runs, so only the first run compiles the SDK's dependencies).
fn cli(args: &[&str]) -> Output {
    let output = Command::new(GATEWAY)
        .args(args)
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-kit"),
        )
        .output()
        .expect("running ai-gateway");
    assert!(
        output.status.success(),
        "ai-gateway {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

async fn cli_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args)
    })
    .await
    .expect("the CLI thread")
}

/// The three-tier catalog, the openai adapter and the balanced policy, behind API keys.
async fn three_models(keys: &str) -> (ReplayUpstream, TestConfig, GatewayProcess) {
    let (upstream, provider, models) = three_tier_catalog("KIT_UPSTREAM_KEY").await;
    let config = TestConfig::new("", &provider, &models);
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("policies/dist/balanced.wasm", "balanced");
    let gateway = GatewayProcess::start_with_key(
        &config,
        &[("KIT_UPSTREAM_KEY", KEY), ("GATEWAY_API_KEYS", keys)],
        TEAM_A_KEY,
    )
    .await;
    (upstream, config, gateway)
}

/// Sends a chat request with a key and a policy; the status, the policy that ranked and the
/// model that answered.
async fn routed(
    gateway: &GatewayProcess,
    key: &str,
    policy: &str,
    prompt: &str,
) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gateway.base))
        .bearer_auth(key)
        .json(&json!({"model": "auto", "policy": policy, "messages": user_message(prompt)}))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    (
        status,
        header("x-gateway-policy"),
        header("x-gateway-model"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scaffolded_policy_is_built_dropped_in_and_routes_within_two_seconds() {
    let keys = format!("team-a:{TEAM_A_KEY},team-b:{TEAM_B_KEY}");
    let (_upstream, config, gateway) = three_models(&keys).await;
    let workspace = tempfile::tempdir().unwrap();
    let crate_dir = workspace.path().join("team-router");
    let crate_arg = crate_dir.display().to_string();
    let policy_dir = config.policy_dir.display().to_string();

    let created = cli_async(
        [
            "plugins",
            "new",
            "policy",
            "team-router",
            "--dir",
            &workspace.path().display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert!(String::from_utf8_lossy(&created.stdout).contains("team-router"));
    // Unknown until installed.
    let (status, _, _) = routed(&gateway, TEAM_A_KEY, "team-router", "hello there").await;
    assert_eq!(status, 400);

    // Build first (the slow part), then time the drop-in alone.
    let built = cli_async(vec!["plugins".into(), "build".into(), crate_arg.clone()]).await;
    let wasm = String::from_utf8_lossy(&built.stdout).trim().to_string();
    assert!(wasm.ends_with("team_router.wasm"), "{wasm}");
    assert!(Path::new(&wasm).is_file(), "{wasm}");
    let installed = cli_async(
        ["plugins", "build", &crate_arg, "--install", &policy_dir]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let dropped_at = Instant::now();
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout).trim(),
        config
            .policy_dir
            .join("team-router.wasm")
            .display()
            .to_string()
    );
    // The scaffold's example: the cheapest model with a quality of at least 0.8.
    loop {
        let (status, policy, model) =
            routed(&gateway, TEAM_A_KEY, "team-router", "hello there").await;
        if status == 200 && policy == "team-router" {
            assert_eq!(model, "mid");
            break;
        }
        assert!(
            dropped_at.elapsed() < Duration::from_secs(2),
            "not routed by the new policy 2 s after the drop-in (last: {status} {policy}); log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The worked example of docs/plugins.md replaces the body; a rebuild swaps it in live.
    std::fs::copy(
        repo_root().join("examples/team-a-policy/src/lib.rs"),
        crate_dir.join("src/lib.rs"),
    )
    .unwrap();
    cli_async(
        ["plugins", "build", &crate_arg, "--install", &policy_dir]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let code = "Write a Python function that parses JSON";
    let swapped_at = Instant::now();
    while routed(&gateway, TEAM_B_KEY, "team-router", "hello there")
        .await
        .2
        != "cheap"
    {
        assert!(
            swapped_at.elapsed() < Duration::from_secs(2),
            "{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        routed(&gateway, TEAM_A_KEY, "team-router", code).await,
        (200, "team-router".into(), "dear".into())
    );
    for (key, prompt) in [(TEAM_A_KEY, "hello there"), (TEAM_B_KEY, code)] {
        assert_eq!(
            routed(&gateway, key, "team-router", prompt).await,
            (200, "team-router".into(), "cheap".into()),
            "{prompt}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_list_shows_every_component_with_its_counters_and_load_errors() {
    let keys = format!("team-a:{TEAM_A_KEY}");
    let (_upstream, config, gateway) = three_models(&keys).await;
    config.add_policy("policies/dist/thrifty.wasm", "thrifty");
    std::fs::write(config.policy_dir.join("broken.wasm"), b"not a component").unwrap();
    assert!(
        gateway
            .wait_for_log("broken", Duration::from_secs(30))
            .await
    );
    for _ in 0..3 {
        assert_eq!(
            routed(&gateway, TEAM_A_KEY, "balanced", "hello there")
                .await
                .0,
            200
        );
    }
    let admin = format!("{}/admin/plugins", gateway.base);
    let unauthenticated = reqwest::get(&admin).await.unwrap();
    assert_eq!(unauthenticated.status(), 401);

    // The thrifty policy compiles for a few seconds after the drop-in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list: Value = reqwest::Client::new()
            .get(&admin)
            .bearer_auth(TEAM_A_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        if names.contains(&"thrifty") {
            break list;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let row = |name: &str| {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("{name} is missing from {list}"))
            .clone()
    };
    let openai = row("openai");
    assert_eq!(openai["world"], "provider");
    assert_eq!(openai["wit_version"], "0.1.0");
    assert_eq!(openai["sha256"].as_str().unwrap().len(), 64);
    assert!(openai["loaded_at_unix_ms"].as_u64().unwrap() > 1_700_000_000_000);
    // Each request builds a request and parses a response.
    assert!(openai["calls"].as_u64().unwrap() >= 6, "{openai}");
    assert_eq!(openai["faults"], 0);
    let balanced = row("balanced");
    assert_eq!(balanced["world"], "policy");
    // Three requests, plus nothing else: the smoke test runs on a throw-away instance.
    assert!(balanced["calls"].as_u64().unwrap() >= 3, "{balanced}");
    assert_eq!(row("thrifty")["world"], "policy");
    let broken = row("broken");
    assert!(broken["sha256"].is_null());
    assert!(broken["last_error"].as_str().is_some_and(|e| !e.is_empty()));

    let base = gateway.base.clone();
    let shown = cli_async(
        ["plugins", "list", "--url", &base, "--key", TEAM_A_KEY]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let table = String::from_utf8_lossy(&shown.stdout).to_string();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
            .to_string()
    };
    let openai_line = line("openai");
    assert!(openai_line.starts_with("provider"), "{table}");
    assert!(openai_line.contains("0.1.0"), "{table}");
    assert!(
        openai_line.contains(&openai["sha256"].as_str().unwrap()[..12]),
        "{table}"
    );
    assert!(line("balanced").starts_with("policy"), "{table}");
    assert!(line("thrifty").starts_with("policy"), "{table}");
    assert!(line("broken").contains("yes (below)"), "{table}");
    assert!(table.contains("policy broken ("), "{table}");

    // A wrong key is refused, and the CLI says so.
    let refused = Command::new(GATEWAY)
        .args(["plugins", "list", "--url", &base, "--key", "sk-wrong"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}
