//! `ai-gateway plugins build`: a plugin crate to a component, optionally installed atomically
//! into a directory a gateway watches.

use anyhow::{Context, bail};
use serde::Deserialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every component is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A built component.
#[derive(Debug)]
pub struct Built {
    /// The package name: the file stem the component is installed under.
    pub name: String,
    /// The component in the crate's target directory.
    pub wasm: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    target_directory: PathBuf,
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// Cargo as the environment names it (`$CARGO` when run by Cargo), else `cargo` on the PATH.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Builds the plugin crate at `path` (its directory or its Cargo.toml) in release mode for
/// `wasm32-wasip2`. Cargo's progress goes to stderr as usual.
pub fn build(path: &Path) -> anyhow::Result<Built> {
    let manifest = if path.is_dir() {
        path.join("Cargo.toml")
    } else {
        path.to_path_buf()
    };
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("no plugin crate at {}", path.display()))?;
    let output = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .context("cannot run cargo (is Rust installed?)")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed for {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: Metadata =
        serde_json::from_slice(&output.stdout).context("cannot read cargo metadata's output")?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path == manifest)
        .with_context(|| format!("{} declares no package", manifest.display()))?;
    let lib = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        .with_context(|| {
            format!(
                "{} has no `crate-type = [\"cdylib\"]` library: it cannot become a component",
                package.name
            )
        })?;

    let status = Command::new(cargo())
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!(
            "cargo build failed for {} (is the target installed? `rustup target add {TARGET}`)",
            package.name
        );
    }
    let wasm = metadata
        .target_directory
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.name.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "cargo built {} but {} is missing",
            package.name,
            wasm.display()
        );
    }
    Ok(Built {
        name: package.name.clone(),
        wasm,
    })
}

/// Copies the component into `dir` as `<name>.wasm` through a hidden temporary file and a
/// rename, so a gateway watching `dir` never sees a half-written component.
pub fn install(built: &Built, dir: &Path) -> anyhow::Result<PathBuf> {
    let bytes = std::fs::read(&built.wasm)
        .with_context(|| format!("cannot read {}", built.wasm.display()))?;
    let target = dir.join(format!("{}.wasm", built.name));
    crate::fsutil::write_atomically(&target, &bytes)
        .with_context(|| format!("cannot write {}", target.display()))?;
    Ok(target)
}
