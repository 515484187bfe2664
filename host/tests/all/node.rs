//! Tests written in JavaScript (the client library's, the browser tests),
//! run by Node's test runner against the podhost binary under test. The
//! npm packages they need are installed here on first use (`npm ci`), so
//! `cargo test` alone runs them on a fresh machine.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::process::Command;

use crate::support::guest;

/// The repository's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the npm package at `dir` (relative to the workspace) from its
/// lock file, once, unless already installed.
pub fn npm_ci(dir: &str) {
    static INSTALLS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    podhost::dev::web::install(&workspace().join(dir)).expect("installing npm packages");
}

/// Runs `npm run <script>` in the npm package at `dir` (relative to the
/// workspace) once per test run: a build step, such as compiling
/// TypeScript into what the tests import. Never again later in the run,
/// so it cannot rewrite files that another test is reading.
pub fn npm_run(dir: &str, script: &str) {
    static DONE: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());
    let mut done = DONE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let key = (dir.to_string(), script.to_string());
    if done.contains(&key) {
        return;
    }
    if let Err(error) = podhost::dev::web::run_script(&workspace().join(dir), script) {
        panic!("{error:#} (its output is above)");
    }
    done.insert(key);
}

/// Runs `node --test` on `files` in the npm package `dir` (relative to
/// the workspace), giving the tests the podhost binary and the
/// components of `guests`; fails with the tests' output if any fails.
pub async fn run(dir: &str, files: &[&str], guests: &[&str]) {
    run_after(dir, None, files, guests).await;
}

/// [`run`], after `npm run <script>` when `script` is given (see
/// [`npm_run`]).
pub async fn run_after(dir: &str, script: Option<&str>, files: &[&str], guests: &[&str]) {
    npm_ci(dir);
    if let Some(script) = script {
        npm_run(dir, script);
    }
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(files)
        .current_dir(workspace().join(dir))
        .env("PODHOST_BIN", env!("CARGO_BIN_EXE_podhost"))
        .kill_on_drop(true);
    for name in guests {
        let variable = format!("PODHOST_GUEST_{}", name.to_uppercase());
        command.env(variable, guest(name));
    }
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("the JavaScript tests finish within 10 minutes")
        .expect("running node (install Node.js 20)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node --test {files:?} in {dir} failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}

/// Whether the browser tests can run: Debian's chromium is installed.
/// Without it they are skipped, unless `PODHOST_REQUIRE_BROWSER` is set
/// (as CI does), where its absence fails them.
pub fn have_chromium(test: &str) -> bool {
    let found = Path::new("/usr/bin/chromium").is_file();
    if !found {
        assert!(
            std::env::var_os("PODHOST_REQUIRE_BROWSER").is_none(),
            "chromium is not installed (apt-get install chromium)"
        );
        eprintln!("SKIPPED {test}: chromium is not installed (apt-get install chromium)");
    }
    found
}

#[tokio::test]
async fn the_browser_harness_loads_a_page_from_podhost() {
    if !have_chromium("node::the_browser_harness_loads_a_page_from_podhost") {
        return;
    }
    run("tests/browser", &["smoke.test.mjs"], &[]).await;
}
