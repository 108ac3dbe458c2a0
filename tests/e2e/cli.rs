//! The `ai-gateway plugins check` and `config check` commands, as a user runs them.

use crate::support::*;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(GATEWAY).args(args).output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plugins_check_prints_world_version_and_auth_scheme() {
    let openai = component("plugins/dist/openai.wasm");
    let balanced = component("policies/dist/balanced.wasm");
    let (ok, stdout, stderr) = run(&[
        "plugins",
        "check",
        openai.to_str().unwrap(),
        balanced.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let sections: Vec<&str> = stdout.split(": ok\n").collect();
    assert_eq!(sections.len(), 3, "{stdout}");
    let (provider, policy) = (sections[1], sections[2]);
    assert!(provider.contains("world:       provider"), "{stdout}");
    assert!(
        provider.contains("wit:         aigw:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(provider.contains("auth scheme: bearer"), "{stdout}");
    assert!(policy.contains("world:       policy"), "{stdout}");
    assert!(
        policy.contains("wit:         aigw:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(policy.contains("auth scheme: none"), "{stdout}");
}

#[test]
fn plugins_check_rejects_non_components_and_other_wit_versions() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").unwrap();
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1.
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let future = component("tests/guests/dist/future-version.wasm");

    for (file, expected) in [
        (&junk, "is not a WebAssembly file"),
        (&core, "is a core WebAssembly module, not a component"),
        (
            &future,
            "was built against aigw:plugin@0.2.0 but this host speaks aigw:plugin@0.1.0",
        ),
    ] {
        let (ok, _, stderr) = run(&["plugins", "check", file.to_str().unwrap()]);
        assert!(!ok, "{} must be rejected", file.display());
        assert!(stderr.contains("rejected"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn config_check_accepts_the_bundled_config() {
    let bundled = repo_root().join("config");
    let (ok, stdout, stderr) = run(&["config", "check", "--config", bundled.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
}

#[test]
fn config_check_names_file_field_and_problem() {
    let models = r#"
[[models]]
id = "gpt-x"
provider = "nobody"
context_window = 1000
max_output_tokens = 10
input_per_mtok = 1.0
output_per_mtok = 1.0
quality = 3.0
"#;
    let config = TestConfig::new("", OPENAI_PROVIDER, models);
    let (ok, _, stderr) = run(&[
        "config",
        "check",
        "--config",
        config.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "models.toml: models[0] (gpt-x).provider: 'nobody' is not defined in providers.toml"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("models.toml: models[0] (gpt-x).quality: 3 is outside 0.0 to 1.0"),
        "{stderr}"
    );

    // A syntax-level mistake names the file, the line and the unknown field.
    std::fs::write(
        config.path().join("gateway.toml"),
        "[routing]\ndefault_polcy = \"x\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(&[
        "config",
        "check",
        "--config",
        config.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("gateway.toml"), "{stderr}");
    assert!(stderr.contains("default_polcy"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}
