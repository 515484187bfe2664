//! A class's vars and secrets (`[classes.X.vars]`, `[classes.X.secrets]`):
//! readable by its objects through `config::get` / `config::secret`, and
//! never in the server's log, `/admin` or `/metrics`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{Options, Server, guest};

const ENV_SECRET: &str = "env-secret-3a8f51c2d9e4";
const FILE_SECRET: &str = "file-secret-b7e2049d6c1f";
const ADMIN_TOKEN: &str = "config-vars-test-admin-token-0123456789abcdef";

const CLASS_CONFIG: &str = "[classes.probe.vars]\n\
     GREETING = \"hello\"\n\
     [classes.probe.secrets]\n\
     ENV_KEY = { env = \"PODHOST_TEST_CONFIG_ENV_SECRET\" }\n\
     FILE_KEY = { file = \"secrets/key.txt\" }\n";

#[tokio::test]
async fn objects_read_vars_and_secrets_that_never_show_up_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    // A trailing line break, as `echo` writes, is not part of the value.
    std::fs::write(
        dir.path().join("secrets/key.txt"),
        format!("{FILE_SECRET}\n"),
    )
    .expect("secret file");
    let options = Options {
        extra_config: CLASS_CONFIG,
        admin_token: Some(ADMIN_TOKEN),
        env: vec![("PODHOST_TEST_CONFIG_ENV_SECRET", ENV_SECRET)],
        ..Options::default()
    };
    let server = Server::start_in(dir.path(), &options).await;

    let read = |key: &'static str| {
        let server = &server;
        async move {
            let (status, body) = server
                .get_json(&format!("/objects/probe/cfg/config/{key}"))
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let greeting = read("GREETING").await;
    assert_eq!(greeting["value"], "hello");
    let env = read("ENV_KEY").await;
    assert_eq!(env["value"], ENV_SECRET);
    assert_eq!(
        env["secret_debug"], "Secret(***)",
        "the SDK's Secret hides it"
    );
    assert_eq!(read("FILE_KEY").await["value"], FILE_SECRET);
    let missing = read("NOT_THERE").await;
    assert!(missing["value"].is_null() && missing["secret_debug"].is_null());
    // Every object of the class reads the same config.
    let (_, other) = server
        .get_json("/objects/probe/other/config/GREETING")
        .await;
    assert_eq!(other["value"], "hello");

    let mut seen = Vec::new();
    for path in [
        "/metrics",
        "/admin/objects",
        "/admin/objects?class=probe",
        "/admin/classes",
        "/admin/classes/probe",
    ] {
        let response = server
            .client
            .get(server.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let body = response.text().await.expect("a body");
        seen.push(format!("{path} ({status}):\n{body}"));
    }
    let log_dir = dir.path().to_path_buf();
    server.stop().await;
    let log = std::fs::read_to_string(log_dir.join("server.log")).expect("the server's log");
    assert!(log.contains("deployed"), "the log is the server's:\n{log}");
    seen.push(format!("server.log:\n{log}"));
    for text in &seen {
        for secret in [ENV_SECRET, FILE_SECRET] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
}

/// Runs `podhost serve` on a config with `class_config` for the probe
/// class and returns whether it served and what it wrote to stderr.
async fn start_with(dir: &Path, class_config: &str) -> (bool, String) {
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n{class_config}\n[classes.probe]\npath = {:?}\n",
        guest("probe").display().to_string()
    );
    let config_path = dir.join("podhost.toml");
    std::fs::write(&config_path, config).expect("config");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env_remove("PODHOST_TEST_SURELY_UNSET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("podhost starts");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    let Ok(status) = status else {
        return (true, String::new());
    };
    let output = child.wait_with_output().await.expect("its output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (status.expect("an exit status").success(), stderr)
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_stops_the_server_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (served, stderr) = start_with(
        dir.path(),
        "[classes.probe.secrets]\nAPI_KEY = { env = \"PODHOST_TEST_SURELY_UNSET\" }\n",
    )
    .await;
    assert!(!served, "the server must not start without its secret");
    for needed in ["probe", "API_KEY", "PODHOST_TEST_SURELY_UNSET", "not set"] {
        assert!(
            stderr.contains(needed),
            "{needed:?} missing from:\n{stderr}"
        );
    }

    let (served, stderr) = start_with(
        dir.path(),
        "[classes.probe.secrets]\nSIGNING = { file = \"no/such/file\" }\n",
    )
    .await;
    assert!(!served);
    let path = dir.path().join("no/such/file");
    for needed in ["probe", "SIGNING", &path.display().to_string()] {
        assert!(
            stderr.contains(needed),
            "{needed:?} missing from:\n{stderr}"
        );
    }

    // A value written where its source belongs is refused too.
    let (served, stderr) = start_with(
        dir.path(),
        "[classes.probe.secrets]\nAPI_KEY = \"written-in-the-file\"\n",
    )
    .await;
    assert!(!served);
    assert!(
        stderr.contains("env") && stderr.contains("file"),
        "{stderr}"
    );
}
