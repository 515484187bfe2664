//! Building an example's web UI (an npm package beside its static files,
//! e.g. `examples/notes/web`) before `podhost dev` serves it, the way its
//! guests are built with cargo.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

/// Runs `npm ci` (when the packages are missing or older than the lock
/// file) and `npm run build` in `dir`, if it is an npm package with a
/// `build` script; a directory without `package.json` is served as it is.
pub fn build_web(dir: &Path) -> anyhow::Result<()> {
    let manifest = dir.join("package.json");
    if !manifest.exists() {
        return Ok(());
    }
    let package: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&manifest).with_context(|| format!("reading {}", manifest.display()))?,
    )
    .with_context(|| format!("{} is not JSON", manifest.display()))?;
    if package["scripts"]["build"].is_null() {
        return Ok(());
    }
    install(dir)?;
    run_script(dir, "build")
}

/// `npm run <script>` in `dir`, its output on stderr.
pub fn run_script(dir: &Path, script: &str) -> anyhow::Result<()> {
    npm(dir, &["run", "--silent", script])
}

/// Installs the npm package at `dir` from its lock file (`npm ci`), unless
/// its `node_modules` is at least as new as the lock file.
pub fn install(dir: &Path) -> anyhow::Result<()> {
    if installed(dir) {
        return Ok(());
    }
    npm(dir, &["ci", "--no-audit", "--no-fund"])
}

/// Whether `node_modules` is at least as new as the lock file.
fn installed(dir: &Path) -> bool {
    let marker = dir.join("node_modules").join(".package-lock.json");
    let modified = |path: &Path| path.metadata().and_then(|meta| meta.modified()).ok();
    match (modified(&marker), modified(&dir.join("package-lock.json"))) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    }
}

fn npm(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        // Our stdout says where the server listens; npm talks on stderr.
        .stdout(std::io::stderr())
        .status()
        .with_context(|| {
            format!(
                "cannot run npm in {} (install Node.js 20 and npm)",
                dir.display()
            )
        })?;
    if !status.success() {
        bail!(
            "npm {} failed ({status}) in {}",
            args.join(" "),
            dir.display()
        );
    }
    Ok(())
}
