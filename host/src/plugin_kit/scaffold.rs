//! `ai-gateway plugins new`: a plugin crate on the guest SDK that builds to a component with one
//! command.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Which world the new plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    /// A provider adapter (an OpenAI-compatible one to start from).
    Provider,
    /// A routing policy.
    Policy,
}

impl World {
    fn as_str(self) -> &'static str {
        match self {
            World::Provider => "provider",
            World::Policy => "policy",
        }
    }
}

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const POLICY_LIB: &str = include_str!("templates/policy.rs.tmpl");
const PROVIDER_LIB: &str = include_str!("templates/provider.rs.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");
const GITIGNORE: &str = "/target\n";

/// Where the SDK is in the checkout this binary was built from, if it is still there.
pub fn bundled_sdk_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    dir.join("Cargo.toml")
        .is_file()
        .then(|| dir.canonicalize().ok())
        .flatten()
}

/// Writes a new plugin crate `name` into `parent/name` and returns its directory. Refuses to
/// write into an existing directory, so nothing of the user's is overwritten.
pub fn new_plugin(world: World, name: &str, parent: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("the SDK directory {} does not exist", sdk.display()))?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{} is not the SDK's directory (no Cargo.toml); pass --sdk <checkout>/sdk",
            sdk.display()
        );
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk_text = sdk.to_str().context("the SDK's path is not valid UTF-8")?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{type_name}}", &type_name(name))
            .replace("{{file_stem}}", &name.replace('-', "_"))
            .replace("{{world}}", world.as_str())
            .replace(
                "{{dir_setting}}",
                match world {
                    World::Provider => "provider_dir",
                    World::Policy => "policy_dir",
                },
            )
            .replace(
                "{{description}}",
                match world {
                    World::Provider => "AI gateway provider adapter",
                    World::Policy => "AI gateway routing policy",
                },
            )
            // TOML basic strings escape backslashes (Windows paths).
            .replace("{{sdk}}", &sdk_text.replace('\\', "\\\\"))
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let lib = match world {
        World::Provider => PROVIDER_LIB,
        World::Policy => POLICY_LIB,
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(lib)),
        ("README.md", fill(README)),
        (".gitignore", GITIGNORE.to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The gateway's lock file pins the versions the SDK is tested with; Cargo drops what the
    // plugin does not use.
    if let Some(lock) = sdk.parent().map(|checkout| checkout.join("Cargo.lock"))
        && lock.is_file()
    {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(dir)
}

/// A name that is a valid crate name and component file stem: lower-case ASCII letters, digits
/// and `-`, starting with a letter.
fn validate_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "invalid plugin name '{name}': use lower-case letters, digits and '-', starting \
             with a letter (it becomes the crate name and the component's file name)"
        );
    }
    Ok(())
}

/// `team-router` → `TeamRouter`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_type_names() {
        assert_eq!(type_name("team-router"), "TeamRouter");
        assert_eq!(type_name("cost2"), "Cost2");
    }

    #[test]
    fn only_plain_names_are_accepted() {
        for good in ["team-router", "p1", "cheapest"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Team", "1st", "a_b", "a/b", "../x", "x-", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_to_overwrite_and_fills_every_placeholder() {
        let Some(sdk) = bundled_sdk_dir() else {
            panic!("the SDK is part of this checkout");
        };
        let parent = tempfile::tempdir().unwrap();
        let dir = new_plugin(World::Policy, "team-router", parent.path(), &sdk).unwrap();
        for file in ["Cargo.toml", "src/lib.rs", "README.md"] {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(!text.contains("{{"), "{file} has an unfilled placeholder");
        }
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("export_policy!(TeamRouter)"));
        assert!(new_plugin(World::Policy, "team-router", parent.path(), &sdk).is_err());
    }
}
