//! Building guest classes from a Cargo workspace, for `podhost dev` and the
//! integration tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::config::{Access, ClassConfig};

/// The target guests are built for.
pub const GUEST_TARGET: &str = "wasm32-wasip2";
/// The Cargo profile guests are built with (see the workspace manifest).
pub const GUEST_PROFILE: &str = "guest";

/// The packages under `workspace/examples/`, by name.
pub fn example_packages(workspace: &Path) -> anyhow::Result<Vec<String>> {
    let examples = workspace.join("examples");
    let entries = std::fs::read_dir(&examples).with_context(|| {
        format!(
            "cannot list {}: run this from the podhost repository, or pass --workspace",
            examples.display()
        )
    })?;
    let mut packages = Vec::new();
    for entry in entries {
        let manifest = entry?.path().join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let parsed: toml::Table = toml::from_str(&text)
            .with_context(|| format!("cannot parse {}", manifest.display()))?;
        let name = parsed
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{} has no package name", manifest.display()))?;
        packages.push(name.to_string());
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

/// `podhost dev` only: the hosts an example asks to reach, from its
/// manifest's `[package.metadata.podhost] outbound = [...]`
/// (`examples/webhooks` asks for 127.0.0.1). A deployment lists them in
/// its config's `[classes.<name>] outbound` instead.
pub fn example_outbound(
    workspace: &Path,
    classes: &mut BTreeMap<String, ClassConfig>,
) -> anyhow::Result<()> {
    for (name, class) in classes.iter_mut() {
        if let Some((manifest, outbound)) = example_metadata(workspace, name, "outbound")? {
            class.outbound = outbound.try_into().with_context(|| {
                format!(
                    "{}: invalid package.metadata.podhost.outbound",
                    manifest.display()
                )
            })?;
        }
    }
    Ok(())
}

/// Sets each example's `access` from its manifest's
/// `[package.metadata.podhost] access = "user"` (public when absent), so
/// `podhost dev` serves `blog` at `/me/blog` and `team` at `/orgs/{org}/team`.
pub fn apply_example_access(
    workspace: &Path,
    classes: &mut BTreeMap<String, ClassConfig>,
) -> anyhow::Result<()> {
    for (name, class) in classes.iter_mut() {
        if let Some(access) = example_access(workspace, name)? {
            class.access = access;
        }
    }
    Ok(())
}

/// The access `examples/{package}/Cargo.toml` declares, if it is there.
fn example_access(workspace: &Path, package: &str) -> anyhow::Result<Option<Access>> {
    let Some((manifest, access)) = example_metadata(workspace, package, "access")? else {
        return Ok(None);
    };
    let access = access.try_into::<Access>().with_context(|| {
        format!(
            "{}: [package.metadata.podhost] access must be one of public, user, org, key, admin",
            manifest.display()
        )
    })?;
    Ok(Some(access))
}

/// `[package.metadata.podhost] <key>` of `examples/{package}/Cargo.toml`,
/// with the manifest's path, if both are there.
fn example_metadata(
    workspace: &Path,
    package: &str,
    key: &str,
) -> anyhow::Result<Option<(PathBuf, toml::Value)>> {
    let manifest = workspace.join("examples").join(package).join("Cargo.toml");
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(None);
    };
    let parsed: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", manifest.display()))?;
    let value = parsed
        .get("package")
        .and_then(|p| p.get("metadata"))
        .and_then(|m| m.get("podhost"))
        .and_then(|p| p.get(key))
        .cloned();
    Ok(value.map(|value| (manifest, value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_declare_their_access_in_their_manifest() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(
            example_access(&workspace, "blog").ok().flatten(),
            Some(Access::User)
        );
        assert_eq!(
            example_access(&workspace, "team").ok().flatten(),
            Some(Access::Org)
        );
        assert_eq!(example_access(&workspace, "counter").ok().flatten(), None);
    }
}
