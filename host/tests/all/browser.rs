//! The shared-origin hole, in a real browser: a tenant's object serves a
//! hostile page to a signed-in visitor (headless Chromium, driven over the
//! DevTools protocol). In the sandbox the page must get no token and none
//! of its requests on the visitor's behalf may work; served by a class
//! marked `trusted`, the same page does reach the session (so the test
//! can tell).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{PASSWORD, options};
use crate::support::{Options, Server, Ws, guest};

/// What the hostile page tries; it writes what it got into `#result`.
const HOSTILE_PAGE: &str = r#"<!doctype html>
<title>hostile</title>
<pre id="result"></pre>
<script>
(async () => {
  const out = {};
  const attempt = async (name, run) => {
    try { out[name] = await run(); } catch (e) { out[name] = 'error: ' + e; }
  };
  const call = async (method, path) => {
    const response = await fetch(path, { method, credentials: 'include' });
    return { status: response.status, body: await response.text() };
  };
  await attempt('cookie', async () => document.cookie);
  await attempt('refresh', () => call('POST', '/auth/refresh'));
  await attempt('auth_me', () => call('GET', '/auth/me'));
  await attempt('me', () => call('GET', '/me/notes/caller'));
  await attempt('socket', () => new Promise((resolve) => {
    const ws = new WebSocket('ws://' + location.host + '/me/notes/socket');
    ws.onopen = () => { resolve('open'); ws.close(); };
    ws.onerror = () => resolve('error');
    setTimeout(() => resolve('timeout'), 5000);
  }));
  document.getElementById('result').textContent = JSON.stringify(out);
})();
</script>
"#;

#[tokio::test]
async fn a_tenants_page_cannot_reach_a_visitors_session() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (server, dir) = Server::start(Options {
        extra_classes: vec![
            ("notes", guest("probe")),
            ("site", guest("probe")),
            ("trusted-site", guest("probe")),
        ],
        trusted: vec!["trusted-site"],
        ..options("")
    })
    .await;
    for class in ["site", "trusted-site"] {
        let page = json!({ "html": true, "body": HOSTILE_PAGE });
        let response = server
            .client
            .put(server.url(&format!("/objects/{class}/x/canned")))
            .body(page.to_string())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), 200);
    }

    let mut browser = Browser::launch(&chromium, dir.path().join("chromium")).await;
    // The visitor signs up on the host's own origin (as its login page
    // would): the session arrives as cookies.
    browser.open(&server.url("/healthz")).await;
    let signed_up = browser
        .eval(&format!(
            "fetch('/auth/signup', {{ method: 'POST', body: JSON.stringify({}) }}).then(r => r.status)",
            json!({ "email": "visitor@example.com", "password": PASSWORD })
        ))
        .await;
    assert_eq!(signed_up, 201);

    // The sandboxed page gets nothing.
    let got = browser
        .run_page(&server.url("/objects/site/x/canned"))
        .await;
    let text = got.to_string();
    for secret in ["eyJ", "rt_", "podhost_", "visitor@example.com"] {
        assert!(!text.contains(secret), "{secret} leaked: {got}");
    }
    for attack in ["refresh", "auth_me", "me"] {
        assert!(
            got[attack].as_str().is_some_and(|e| e.starts_with("error"))
                || got[attack]["status"].as_u64().is_some_and(|s| s >= 400),
            "{attack} worked from the sandbox: {got}"
        );
    }
    assert!(
        got["cookie"]
            .as_str()
            .is_some_and(|c| c.starts_with("error")),
        "document.cookie is off limits in the sandbox: {got}"
    );
    assert_ne!(got["socket"], "open", "{got}");

    // The same page served by a trusted class runs on the host's origin
    // and rides the visitor's session (which the sandboxed page left
    // alone): the attacks are real, and only the sandbox stops them. Even
    // then no token is readable: a refresh by cookie answers without one.
    let got = browser
        .run_page(&server.url("/objects/trusted-site/x/canned"))
        .await;
    assert_eq!(got["refresh"]["status"], 200, "{got}");
    assert_eq!(got["auth_me"]["status"], 200, "{got}");
    assert_eq!(got["me"]["status"], 200, "{got}");
    assert!(
        got["me"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("visitor@example.com")),
        "{got}"
    );
    assert_eq!(got["socket"], "open", "{got}");
    let refreshed = got["refresh"]["body"].as_str().unwrap_or("");
    assert!(
        !refreshed.contains("eyJ") && !refreshed.contains("rt_"),
        "{refreshed}"
    );
    assert_eq!(got["cookie"], "", "the session cookies are HttpOnly");

    browser.close().await;
    server.stop().await;
}

/// The Chromium binary, or `None` with a message saying the test is
/// skipped (a failure instead when `PODHOST_REQUIRE_BROWSER` is set, as
/// in CI).
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("PODHOST_REQUIRE_BROWSER").is_none(),
            "chromium is not installed (apt-get install chromium)"
        );
        eprintln!(
            "SKIPPED browser::a_tenants_page_cannot_reach_a_visitors_session: \
             chromium is not installed (apt-get install chromium)"
        );
    }
    found
}

/// A headless Chromium and one page of it, over the DevTools protocol.
struct Browser {
    child: Child,
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Browser {
    async fn launch(chromium: &PathBuf, profile: PathBuf) -> Browser {
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                // The tests may run as root, where Chromium's own sandbox
                // cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("starting chromium");
        let stderr = child.stderr.take().expect("piped stderr");
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let url = url.trim().to_string();
                    // Keep draining its stderr so it never blocks.
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Some(url);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("chromium says where DevTools listens within 30 s");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connected to DevTools");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = browser
            .send("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target = target["targetId"].as_str().expect("a target").to_string();
        let attached = browser
            .send(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser
    }

    /// Sends a command (to the page once attached) and waits for its
    /// result, skipping events.
    async fn send(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            command["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(command.to_string()))
            .await
            .expect("command sent");
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(message) = self.ws.next().await {
                let Ok(Message::Text(text)) = message else {
                    continue;
                };
                let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if reply["id"] == id {
                    assert!(reply["error"].is_null(), "{method}: {reply}");
                    return reply["result"].clone();
                }
            }
            panic!("DevTools closed the connection");
        })
        .await
        .unwrap_or_else(|_| panic!("{method} answered within 20 s"))
    }

    /// Evaluates `expression` in the page, awaiting a promise.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .send(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Navigates to `url` and waits until it has loaded.
    async fn open(&mut self, url: &str) {
        self.send("Page.navigate", json!({ "url": url })).await;
        for _ in 0..200 {
            let state = self.eval("location.href + ' ' + document.readyState").await;
            if state.as_str() == Some(&format!("{url} complete")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{url} did not load within 10 s");
    }

    /// Opens the hostile page at `url` and returns what its script wrote.
    async fn run_page(&mut self, url: &str) -> Value {
        self.open(url).await;
        for _ in 0..300 {
            let text = self
                .eval("(document.getElementById('result') || {}).textContent || ''")
                .await;
            if let Some(text) = text.as_str().filter(|t| !t.is_empty()) {
                return serde_json::from_str(text).expect("the page writes JSON");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page at {url} wrote nothing within 15 s");
    }

    async fn close(mut self) {
        let close = json!({ "id": 0, "method": "Browser.close", "params": {} });
        let _ = self.ws.send(Message::text(close.to_string())).await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.kill();
        }
    }

    /// Kills the browser's process group (its renderers too).
    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the process group of our own child.
            unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}
