//! Building guest classes from a Cargo workspace, for `podhost dev` and the
//! integration tests.

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
    let mut packages: Vec<String> = example_manifests(workspace)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    packages.sort();
    Ok(packages)
}

/// Classes for the built examples: each under its package name, or under
/// every name its `[package.metadata.podhost] classes` lists (one
/// component serving several classes, as `examples/game` serves `game`
/// and `match`).
pub fn example_classes(
    workspace: &Path,
    built: BTreeMap<String, PathBuf>,
) -> anyhow::Result<BTreeMap<String, ClassConfig>> {
    let named: BTreeMap<String, Vec<String>> = example_manifests(workspace)?
        .into_iter()
        .filter_map(|(package, manifest)| {
            let classes = manifest
                .get("package")?
                .get("metadata")?
                .get("podhost")?
                .get("classes")?
                .as_array()?
                .iter()
                .filter_map(|class| class.as_str().map(str::to_string))
                .collect();
            Some((package, classes))
        })
        .collect();
    let mut classes = BTreeMap::new();
    for (package, path) in built {
        let names = named
            .get(&package)
            .cloned()
            .unwrap_or_else(|| vec![package.clone()]);
        for name in names {
            classes.insert(name, class_at(path.clone()));
        }
    }
    Ok(classes)
}

/// Each example's package name and parsed manifest.
fn example_manifests(workspace: &Path) -> anyhow::Result<Vec<(String, toml::Table)>> {
    let examples = workspace.join("examples");
    let entries = std::fs::read_dir(&examples).with_context(|| {
        format!(
            "cannot list {}: run this from the podhost repository, or pass --workspace",
            examples.display()
        )
    })?;
    let mut manifests = Vec::new();
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
            .with_context(|| format!("{} has no package name", manifest.display()))?
            .to_string();
        manifests.push((name, parsed));
    }
    Ok(manifests)
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
        .map(|(name, path)| (name, class_at(path)))
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
        let manifest = workspace.join("examples").join(name).join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let parsed: toml::Table = toml::from_str(&text)
            .with_context(|| format!("cannot parse {}", manifest.display()))?;
        let outbound = parsed
            .get("package")
            .and_then(|p| p.get("metadata"))
            .and_then(|m| m.get("podhost"))
            .and_then(|p| p.get("outbound"));
        if let Some(outbound) = outbound {
            class.outbound = outbound.clone().try_into().with_context(|| {
                format!(
                    "{}: invalid package.metadata.podhost.outbound",
                    manifest.display()
                )
            })?;
        }
    }
    Ok(())
}

fn class_at(path: PathBuf) -> ClassConfig {
    ClassConfig {
        path,
        ..ClassConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_example_can_serve_several_classes() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let built = BTreeMap::from([
            ("counter".to_string(), PathBuf::from("counter.wasm")),
            ("game".to_string(), PathBuf::from("game.wasm")),
        ]);
        let classes = example_classes(&workspace, built).expect("the examples' manifests");
        let paths: Vec<(&str, &Path)> = classes
            .iter()
            .map(|(name, class)| (name.as_str(), class.path.as_path()))
            .collect();
        assert_eq!(
            paths,
            [
                ("counter", Path::new("counter.wasm")),
                ("game", Path::new("game.wasm")),
                ("match", Path::new("game.wasm")),
            ]
        );
    }
}
