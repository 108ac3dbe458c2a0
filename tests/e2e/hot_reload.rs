//! Replacing a policy component while requests flow changes routing within 2 s without failing
//! a request; a corrupt component keeps the old version serving and says why.

use crate::support::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-reload-0123456789abcdef";
const WORKERS: usize = 4;

#[tokio::test(flavor = "multi_thread")]
async fn swapping_a_policy_under_load_changes_routing_without_failures() {
    let mock = MockOpenAi::start(KEY).await;
    let models = [
        model_entry("cheap-model", "openai", 1.0, 0.7),
        model_entry("pricey-model", "openai", 20.0, 0.95),
    ]
    .concat();
    let config = TestConfig::new(
        "\n[routing]\ndefault_policy = \"router\"\n",
        OPENAI_PROVIDER,
        &models,
    );
    config
        .add_provider("plugins/dist/openai.wasm", "openai")
        .add_policy("tests/guests/dist/cheapest.wasm", "router");
    let gateway = Arc::new(
        GatewayProcess::start(
            &config,
            &[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", &mock.base_url)],
        )
        .await,
    );

    let stop = Arc::new(AtomicBool::new(false));
    // (request started, response received, model that served it)
    let served: Arc<Mutex<Vec<(Instant, Instant, String)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (gateway, stop, served, failures) = (
            gateway.clone(),
            stop.clone(),
            served.clone(),
            failures.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, headers, body) = gateway
                    .chat(json!({"model": "auto", "messages": user_message("route me")}))
                    .await;
                if status == 200 {
                    let model = header(&headers, "x-gateway-model").to_string();
                    served
                        .lock()
                        .unwrap()
                        .push((started, Instant::now(), model));
                } else {
                    failures.lock().unwrap().push(format!("{status}: {body}"));
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        served
            .lock()
            .unwrap()
            .iter()
            .all(|(_, _, m)| m == "cheap-model"),
        "the cheapest-first policy must route to cheap-model"
    );

    // Replace the component the way a deployment would: write beside it, then rename over it.
    let target = config.policy_dir.join("router.wasm");
    let staging = config.policy_dir.join(".router.wasm.new");
    std::fs::copy(component("tests/guests/dist/priciest.wasm"), &staging).unwrap();
    std::fs::rename(&staging, &target).unwrap();
    let swapped_at = Instant::now();

    let switched_after = loop {
        let first_pricey = served
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, done, m)| *done > swapped_at && m == "pricey-model")
            .map(|(_, done, _)| *done - swapped_at)
            .min();
        if let Some(after) = first_pricey {
            break after;
        }
        assert!(
            swapped_at.elapsed() < Duration::from_secs(5),
            "routing did not change within 5 s; log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Now a corrupt component: written in place, as a careless copy would.
    std::fs::write(&target, b"\0asm\x0d\0\x01\0 this is not a component").unwrap();
    let reported = gateway
        .wait_for_log("router.wasm was not loaded", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        switched_after < Duration::from_secs(2),
        "the new policy took {switched_after:?} to take effect"
    );
    eprintln!("policy swap took effect after {switched_after:?}");
    let served = served.lock().unwrap().clone();
    // Requests already in flight at the swap may finish on the old version; every request that
    // started after the new version first answered must be routed by it.
    let after_switch: Vec<&String> = served
        .iter()
        .filter(|(started, _, _)| *started > swapped_at + switched_after)
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        after_switch.len() > 10,
        "too little traffic after the swap to judge"
    );
    assert!(
        after_switch.iter().all(|m| *m == "pricey-model"),
        "once swapped, every request (also after the corrupt write) is routed by the new policy"
    );

    assert!(
        reported,
        "no reason was logged for the corrupt component; log:\n{}",
        gateway.log()
    );
    let ready = gateway.get_text("/ready").await;
    assert!(
        ready.contains("router.wasm") && ready.contains("does not compile"),
        "{ready}"
    );
    let metrics = gateway.get_text("/metrics").await;
    assert!(
        metrics.contains("aigw_reloads_total{kind=\"policy\",result=\"loaded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aigw_reloads_total{kind=\"policy\",result=\"failed\"}"),
        "{metrics}"
    );
}
