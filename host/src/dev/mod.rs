//! Building guest classes from a Cargo workspace, for `podhost dev` and the
//! integration tests; [`reload`] keeps a dev server's classes in step with
//! their sources; [`web`] builds an example's web UI.

pub mod reload;
pub mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::config::ClassConfig;

/// The target guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";
/// The Cargo profile guests are built with (see the workspace manifest).
pub const GUEST_PROFILE: &str = "guest";

/// The packages under `workspace/examples/`, by name.
pub fn example_packages(workspace: &Path) -> anyhow::Result<Vec<String>> {
    Ok(example_crates(workspace)?
        .into_iter()
        .map(|(name, _)| name)
        .collect())
}

/// The packages under `workspace/examples/` with their directories, by
/// name.
pub fn example_crates(workspace: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let examples = workspace.join("examples");
    let entries = std::fs::read_dir(&examples).with_context(|| {
        format!(
            "cannot list {}: run this from the podhost repository, or pass --workspace",
            examples.display()
        )
    })?;
    let mut packages = Vec::new();
    for entry in entries {
        let dir = entry?.path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        packages.push((package_name(&manifest)?, dir));
    }
    packages.sort();
    Ok(packages)
}

/// Builds `packages` of `workspace` as components into `target_dir` and
/// returns each package's `.wasm`.
///
/// `target_dir` should differ from the one of any cargo running this, so
/// the two never wait on each other's lock.
pub fn build_guests(
    workspace: &Path,
    packages: &[String],
    target_dir: &Path,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    build_guests_with_features(workspace, packages, &[], target_dir)
}

/// [`build_guests`], with Cargo features enabled.
pub fn build_guests_with_features(
    workspace: &Path,
    packages: &[String],
    features: &[&str],
    target_dir: &Path,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--target",
            GUEST_TARGET,
            "--profile",
            GUEST_PROFILE,
            "--target-dir",
        ])
        .arg(target_dir)
        // Flags meant for the host build must not leak into the guests'.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for package in packages {
        command.args(["--package", package]);
    }
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command
        .status()
        .context("cannot run cargo to build the guests")?;
    if !status.success() {
        bail!(
            "building the guests failed ({status}); is the target installed? run: rustup target add {GUEST_TARGET}"
        );
    }
    let out = target_dir.join(GUEST_TARGET).join(GUEST_PROFILE);
    packages
        .iter()
        .map(|package| {
            let wasm = out.join(format!("{}.wasm", package.replace('-', "_")));
            if !wasm.exists() {
                bail!(
                    "cargo built {package} but {} is missing: is it a cdylib?",
                    wasm.display()
                );
            }
            Ok((package.clone(), wasm))
        })
        .collect()
}

/// Builds an author's own guest crate (`podhost dev --class PATH`) for
/// wasm32-wasip2 in release, where cargo puts it; returns its component.
/// Compile errors are printed as cargo renders them.
pub fn build_crate(manifest: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--target", GUEST_TARGET])
        .args(["--message-format", "json-diagnostic-rendered-ansi"])
        .arg("--manifest-path")
        .arg(manifest)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo to build the guest")?;
    let mut wasm = None;
    let manifest = manifest
        .canonicalize()
        .unwrap_or_else(|_| manifest.to_path_buf());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-message") => {
                if let Some(rendered) = message["message"]["rendered"].as_str() {
                    eprint!("{rendered}");
                }
            }
            Some("compiler-artifact")
                if message["manifest_path"].as_str().map(Path::new) == Some(&manifest) =>
            {
                let files = message["filenames"].as_array().cloned().unwrap_or_default();
                wasm = files
                    .iter()
                    .filter_map(|file| file.as_str())
                    .find(|file| file.ends_with(".wasm"))
                    .map(PathBuf::from)
                    .or(wasm);
            }
            _ => {}
        }
    }
    if !output.status.success() {
        bail!(
            "cargo failed ({}) building {}",
            output.status,
            manifest.display()
        );
    }
    wasm.with_context(|| {
        format!(
            "cargo built {} but no .wasm: is it a cdylib? (is the target installed? rustup target add {GUEST_TARGET})",
            manifest.display()
        )
    })
}

/// The manifests of `workspace`'s members (none if it is not a Cargo
/// workspace), canonical.
pub fn workspace_members(workspace: &Path) -> Vec<PathBuf> {
    if !workspace.join("Cargo.toml").exists() {
        return Vec::new();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .stderr(std::process::Stdio::null())
        .output();
    let Some(output) = output.ok().filter(|output| output.status.success()) else {
        return Vec::new();
    };
    let Ok(metadata) = serde_json::from_slice::<serde_json::Value>(&output.stdout) else {
        return Vec::new();
    };
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|package| package["manifest_path"].as_str())
        .filter_map(|manifest| Path::new(manifest).canonicalize().ok())
        .collect()
}

/// The package name in a crate's manifest.
pub fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let parsed: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", manifest.display()))?;
    parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no package name", manifest.display()))
}

/// Classes for built guests: each under its package name, with the
/// server's settings.
pub fn classes(built: BTreeMap<String, PathBuf>) -> BTreeMap<String, ClassConfig> {
    built
        .into_iter()
        .map(|(name, path)| {
            (
                name,
                ClassConfig {
                    path,
                    ..ClassConfig::default()
                },
            )
        })
        .collect()
}

/// How `podhost dev` serves an example, from its manifest's
/// `[package.metadata.podhost]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleManifest {
    /// `classes = ["game", "match"]`: the classes its component serves
    /// (one component may serve several); its package name if absent.
    pub classes: Vec<String>,
    /// Every other key, as a class's table of `podhost.toml` (without
    /// `path`): `access = "user"`, `outbound = ["127.0.0.1:*"]`, `vars`...
    /// A deployment writes these in its own config instead.
    pub table: serde_json::Value,
}

/// A random admin token for `podhost dev` when none is given: 32 bytes
/// as 64 hex digits (more than `admin_token`'s minimum).
pub fn random_admin_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the system's random source failed: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Reads the `[package.metadata.podhost]` of the example in `dir`.
pub fn example_manifest(dir: &Path, package: &str) -> anyhow::Result<ExampleManifest> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let parsed: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let mut metadata = parsed
        .get("package")
        .and_then(|package| package.get("metadata"))
        .and_then(|metadata| metadata.get("podhost"))
        .and_then(|podhost| podhost.as_table())
        .cloned()
        .unwrap_or_default();
    let classes = match metadata.remove("classes") {
        None => vec![package.to_string()],
        Some(classes) => classes.try_into().with_context(|| {
            format!(
                "{}: [package.metadata.podhost] classes must be a list of class names",
                path.display()
            )
        })?,
    };
    let table = serde_json::to_value(metadata)
        .with_context(|| format!("{}: [package.metadata.podhost]", path.display()))?;
    Ok(ExampleManifest { classes, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> ExampleManifest {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name);
        example_manifest(&dir, name).expect("the example's manifest")
    }

    #[test]
    fn an_examples_manifest_says_how_it_is_served() {
        let webhooks = example("webhooks");
        assert_eq!(webhooks.classes, ["webhooks"]);
        assert_eq!(
            webhooks.table,
            serde_json::json!({ "outbound": ["127.0.0.1:*", "localhost:*"] })
        );
        let counter = example("counter");
        assert_eq!(counter.classes, ["counter"]);
        assert_eq!(counter.table, serde_json::json!({}));
        let game = example("game");
        assert_eq!(
            game.classes,
            ["game", "match"],
            "one component, two classes"
        );
        let inbox = example("inbox");
        assert_eq!(inbox.classes, ["inbox", "inboxes", "stats"]);
        assert_eq!(
            inbox.table["vars"]["INGRESS_TOKEN"], "dev-ingress-token",
            "dev mode's ingress token"
        );
    }
}
