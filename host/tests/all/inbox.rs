//! `examples/inbox`: self-service signup, mail in by handle with the
//! ingress token, the owner's API by key, totals in `stats/global`, and a
//! schema upgrade on an inbox's next request, over a real server.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use crate::accounts::call;
use crate::support::{Options, Server, guest_variant, parse_json};

const ADMIN: &str = "inbox-admin-token-0123456789abcdefghij";
const INGRESS: &str = "ingress-secret";

fn component() -> PathBuf {
    guest_variant("inbox", None)
}

/// The three classes of the component; `inbox` built from `inbox`.
fn options_with(inbox: PathBuf) -> Options {
    let full = component();
    Options {
        admin_token: Some(ADMIN),
        without_classes: true,
        extra_classes: vec![("inbox", inbox), ("inboxes", full.clone()), ("stats", full)],
        class_keys: vec![(
            "inbox",
            "secrets = { INGRESS_TOKEN = { env = \"INBOX_INGRESS_TOKEN\" } }",
        )],
        env: vec![("INBOX_INGRESS_TOKEN", INGRESS)],
        ..Options::default()
    }
}

fn options() -> Options {
    options_with(component())
}

/// Signs `handle` up; returns its API key.
async fn signup(server: &Server, handle: &str) -> String {
    let (status, body) = call(
        server,
        Method::POST,
        "/objects/inboxes/signup",
        None,
        Some(json!({ "handle": handle })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["handle"], handle);
    let key = body["api_key"].as_str().expect("an api key").to_string();
    assert!(key.starts_with("pk_"), "{body}");
    key
}

fn message(from: &str, to: &str, subject: &str, text: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@mail.test>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
    )
}

/// Posts a raw message to `handle`'s inbox with `bearer`.
async fn deliver(server: &Server, handle: &str, bearer: Option<&str>, raw: String) -> (u16, Value) {
    let mut request = server
        .client
        .post(server.url(&format!("/handles/inbox/{handle}/incoming")))
        .header("content-type", "message/rfc822")
        .body(raw);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, parse_json(&text))
}

async fn mail(server: &Server, handle: &str, subject: &str) -> i64 {
    let raw = message(
        "ann@example.com",
        &format!("{handle}@mail.test"),
        subject,
        "hi",
    );
    let (status, body) = deliver(server, handle, Some(INGRESS), raw).await;
    assert_eq!(status, 201, "{body}");
    body["message"]["id"].as_i64().expect("an id")
}

async fn subjects(server: &Server, key: &str, query: &str) -> Vec<String> {
    let (status, body) = call(
        server,
        Method::GET,
        &format!("/key/messages{query}"),
        Some(key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_newcomer_signs_up_for_an_inbox_and_a_taken_handle_is_refused() {
    let (server, _dir) = Server::start(options()).await;
    let key = signup(&server, "alice").await;
    let (status, body) = call(&server, Method::GET, "/key/settings", Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["settings"]["handle"], "alice");

    for handle in ["alice", "ALICE"] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/objects/inboxes/signup",
            None,
            Some(json!({ "handle": handle })),
        )
        .await;
        assert_eq!(status, 409, "{handle}: {body}");
    }
    let (status, body) = call(
        &server,
        Method::POST,
        "/objects/inboxes/elsewhere",
        None,
        Some(json!({ "handle": "mallory" })),
    )
    .await;
    assert_eq!(
        status, 404,
        "signup is at /objects/inboxes/signup only: {body}"
    );
    for bad in [
        json!({}),
        json!({ "handle": 7 }),
        json!({ "handle": "a b" }),
    ] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/objects/inboxes/signup",
            None,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().contains("handle"), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn mail_arrives_with_the_ingress_token_and_is_refused_without_it() {
    let (server, _dir) = Server::start(options()).await;
    let key = signup(&server, "bob").await;
    let raw = || {
        message(
            "Ann <ann@example.com>",
            "bob@mail.test, cy@mail.test",
            "Hello",
            "Hi Bob",
        )
    };

    let (status, body) = deliver(&server, "bob", Some(INGRESS), raw()).await;
    assert_eq!(status, 201, "{body}");
    let stored = &body["message"];
    assert_eq!(stored["from"], "ann@example.com");
    assert_eq!(stored["to"], json!(["bob@mail.test", "cy@mail.test"]));
    assert_eq!(stored["subject"], "Hello");
    assert_eq!(stored["text"], "Hi Bob\r\n");
    assert_eq!(stored["read"], false);
    assert!(stored["received_at"].as_i64().unwrap_or(0) > 0, "{stored}");

    let (status, _) = deliver(&server, "bob", None, raw()).await;
    assert_eq!(status, 401, "no token");
    let (status, _) = deliver(&server, "bob", Some("ingress-secreT"), raw()).await;
    assert_eq!(status, 401, "a wrong token");
    let (status, body) = deliver(&server, "bob", Some(ADMIN), raw()).await;
    assert_eq!(status, 201, "the admin token too: {body}");
    let (status, _) = deliver(&server, "nobody", Some(INGRESS), raw()).await;
    assert_eq!(status, 404, "an unknown handle");
    let (status, _) = deliver(&server, "bob", Some(INGRESS), String::new()).await;
    assert_eq!(status, 400, "not a message");

    // The ingress token delivers and does nothing else.
    for path in ["/handles/inbox/bob/messages", "/handles/inbox/bob/settings"] {
        let (status, body) = call(&server, Method::GET, path, Some(INGRESS), None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    let (status, _) = call(&server, Method::GET, "/key/messages", Some(INGRESS), None).await;
    assert_eq!(status, 401);
    let (status, _) = call(
        &server,
        Method::GET,
        "/objects/stats/global",
        Some(INGRESS),
        None,
    )
    .await;
    assert_eq!(status, 401);

    assert_eq!(subjects(&server, &key, "").await, ["Hello", "Hello"]);
    server.stop().await;
}

#[tokio::test]
async fn the_owner_reads_marks_and_deletes_mail_with_the_inbox_key() {
    let (server, _dir) = Server::start(options()).await;
    let key = signup(&server, "carol").await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(mail(&server, "carol", &format!("m{n}")).await);
    }
    assert_eq!(
        subjects(&server, &key, "").await,
        ["m5", "m4", "m3", "m2", "m1"]
    );
    let (_, page) = call(
        &server,
        Method::GET,
        "/key/messages?limit=2",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(2), "{page}");
    let next = page["next"].as_i64().expect("a next page");
    assert_eq!(
        subjects(&server, &key, &format!("?limit=2&before={next}")).await,
        ["m3", "m2"]
    );

    let path = |id: i64| format!("/key/messages/{id}");
    let (status, body) = call(&server, Method::GET, &path(ids[0]), Some(&key), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["text"], "hi\r\n");
    let (status, body) = call(
        &server,
        Method::PATCH,
        &path(ids[0]),
        Some(&key),
        Some(json!({ "read": true })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"]["read"], true);
    assert_eq!(
        subjects(&server, &key, "?unread=true").await,
        ["m5", "m4", "m3", "m2"]
    );
    let (status, _) = call(
        &server,
        Method::PATCH,
        &path(ids[0]),
        Some(&key),
        Some(json!({ "read": "yes" })),
    )
    .await;
    assert_eq!(status, 400);

    let (status, _) = call(&server, Method::DELETE, &path(ids[1]), Some(&key), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Method::DELETE, &path(ids[1]), Some(&key), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, &path(ids[1]), Some(&key), None).await;
    assert_eq!(status, 404);

    let settings = json!({ "display_name": "Carol", "signature": "-- C" });
    let (status, body) = call(
        &server,
        Method::PUT,
        "/key/settings",
        Some(&key),
        Some(settings),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = call(&server, Method::GET, "/key/settings", Some(&key), None).await;
    assert_eq!(body["settings"]["display_name"], "Carol");
    assert_eq!(body["settings"]["handle"], "carol");
    let (status, _) = call(
        &server,
        Method::PUT,
        "/key/settings",
        Some(&key),
        Some(json!([1])),
    )
    .await;
    assert_eq!(status, 400);

    // Without the key: nothing.
    let (status, _) = call(
        &server,
        Method::GET,
        "/handles/inbox/carol/messages",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test]
async fn one_inboxs_key_sees_nothing_of_another() {
    let (server, _dir) = Server::start(options()).await;
    let dan = signup(&server, "dan").await;
    let eve = signup(&server, "eve").await;
    let mut dans = Vec::new();
    for n in 1..=3 {
        dans.push(mail(&server, "dan", &format!("for dan {n}")).await);
    }
    mail(&server, "eve", "for eve").await;
    assert_eq!(
        subjects(&server, &dan, "").await,
        ["for dan 3", "for dan 2", "for dan 1"]
    );
    assert_eq!(subjects(&server, &eve, "").await, ["for eve"]);
    // Eve's key reaches her inbox only: dan's later ids are not there.
    let path = format!("/key/messages/{}", dans[2]);
    let (status, body) = call(&server, Method::GET, &path, Some(&eve), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = call(&server, Method::DELETE, &path, Some(&eve), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        Method::PATCH,
        &path,
        Some(&eve),
        Some(json!({ "read": true })),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        subjects(&server, &dan, "?unread=true").await,
        ["for dan 3", "for dan 2", "for dan 1"],
        "dan's mail is untouched"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_stats_stay_exact_under_50_concurrent_deliveries_to_10_inboxes() {
    let (server, _dir) = Server::start(options()).await;
    let handles: Vec<String> = (0..10).map(|n| format!("user{n}")).collect();
    for handle in &handles {
        signup(&server, handle).await;
    }
    let raw = message("a@example.com", "x@mail.test", "load", "0123456789");
    let deliveries = (0..50).map(|n| {
        let (server, handle, raw) = (&server, &handles[n % 10], raw.clone());
        async move { deliver(server, handle, Some(INGRESS), raw).await }
    });
    for (status, body) in futures_util::future::join_all(deliveries).await {
        assert_eq!(status, 201, "{body}");
    }
    let (status, totals) = call(
        &server,
        Method::GET,
        "/objects/stats/global",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{totals}");
    assert_eq!(totals["inboxes"], 10, "{totals}");
    assert_eq!(totals["messages"], 50, "{totals}");
    assert_eq!(totals["bytes"], 50 * raw.len(), "{totals}");
    let (status, _) = call(&server, Method::GET, "/objects/stats/global", None, None).await;
    assert_eq!(status, 401, "the totals are the operator's");
    server.stop().await;
}

#[tokio::test]
async fn inboxes_and_their_mail_survive_a_restart() {
    let (server, dir) = Server::start(options()).await;
    let key = signup(&server, "frank").await;
    mail(&server, "frank", "kept").await;
    server.stop().await;

    let server = Server::start_in(dir.path(), &options()).await;
    assert_eq!(subjects(&server, &key, "").await, ["kept"]);
    mail(&server, "frank", "after").await;
    assert_eq!(subjects(&server, &key, "").await, ["after", "kept"]);
    let (status, _) = call(
        &server,
        Method::POST,
        "/objects/inboxes/signup",
        None,
        Some(json!({ "handle": "frank" })),
    )
    .await;
    assert_eq!(status, 409, "the handle is still taken");
    server.stop().await;
}

#[tokio::test]
async fn an_inbox_upgrades_to_the_third_migration_on_its_next_request_and_keeps_its_mail() {
    let two = guest_variant("inbox", Some("two-migrations"));
    let (server, _dir) = Server::start(options_with(two)).await;
    let key = signup(&server, "gina").await;
    for n in 1..=3 {
        mail(&server, "gina", &format!("old{n}")).await;
    }
    let (_, first) = call(&server, Method::GET, "/key/messages/1", Some(&key), None).await;
    assert!(first["message"].get("message_id").is_none(), "{first}");

    let bytes = std::fs::read(component()).expect("component");
    let response = server
        .client
        .put(server.url("/admin/classes/inbox"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/wasm")
        // A deploy carries the class's whole config: the secret's source again.
        .header(
            "podhost-class-config",
            json!({ "secrets": { "INGRESS_TOKEN": { "env": "INBOX_INGRESS_TOKEN" } } }).to_string(),
        )
        .body(bytes)
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(status, 201, "{body}");

    // Its next request runs the third migration, keeping every message.
    assert_eq!(subjects(&server, &key, "").await, ["old3", "old2", "old1"]);
    let (_, first) = call(&server, Method::GET, "/key/messages/1", Some(&key), None).await;
    assert_eq!(first["message"]["message_id"], Value::Null, "{first}");
    let id = mail(&server, "gina", "new").await;
    let (_, new) = call(
        &server,
        Method::GET,
        &format!("/key/messages/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(new["message"]["message_id"], "new@mail.test", "{new}");
    server.stop().await;
}

#[tokio::test]
async fn a_registry_cannot_make_keys_or_handles_for_another_tenants_class() {
    let (server, _dir) = Server::start(Options {
        tenants: vec![("inboxes", "acme"), ("inbox", "bolt"), ("stats", "bolt")],
        ..options()
    })
    .await;
    for name in ["acme", "bolt"] {
        let (status, body) = call(
            &server,
            Method::POST,
            "/admin/tenants",
            Some(ADMIN),
            Some(json!({ "name": name })),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = call(
        &server,
        Method::POST,
        "/objects/inboxes/signup",
        None,
        Some(json!({ "handle": "zed" })),
    )
    .await;
    assert_eq!(
        status, 500,
        "routing refuses another tenant's class: {body}"
    );
    assert!(body.to_string().contains("may not"), "{body}");
    let (status, body) = call(
        &server,
        Method::GET,
        "/admin/handles/inbox/zed",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404, "no handle was made: {body}");
    server.stop().await;
}

/// Starts `podhost dev` on the workspace with `args`; returns its base URL
/// and the lines it printed before it listened.
async fn dev(dir: &std::path::Path, args: &[&str]) -> (tokio::process::Child, String, Vec<String>) {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
        .arg("dev")
        .arg("--workspace")
        .arg(&workspace)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("podhost dev starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut before = Vec::new();
    // The examples may still need building.
    let base = tokio::time::timeout(std::time::Duration::from_secs(600), async {
        loop {
            let line = lines.next_line().await.expect("stdout").expect("a line");
            if let Some(base) = line.strip_prefix("podhost listening on ") {
                return base.to_string();
            }
            before.push(line);
        }
    })
    .await
    .expect("the dev server starts");
    (child, base, before)
}

#[tokio::test]
async fn a_newcomer_makes_keys_and_handles_from_the_shell_in_dev_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, _) = dev(dir.path(), &["--admin-token", ADMIN]).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let send = |method: Method, path: &str, token: Option<&str>, body: Option<String>| {
        let mut request = client.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        async move {
            let response = request.send().await.expect("sent");
            let status = response.status().as_u16();
            (status, parse_json(&response.text().await.expect("body")))
        }
    };

    // The inbox example, served with its own access rules.
    let (status, body) = send(
        Method::POST,
        "/objects/inboxes/signup",
        None,
        Some(json!({ "handle": "newcomer" }).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let raw = message("a@example.com", "newcomer@mail.test", "welcome", "hi");
    let (status, body) = send(
        Method::POST,
        "/handles/inbox/newcomer/incoming",
        Some(ADMIN),
        Some(raw),
    )
    .await;
    assert_eq!(status, 201, "the admin token delivers: {body}");

    // Keys and handles from the shell, with the admin token.
    let (status, body) = send(
        Method::POST,
        "/admin/objects/counter/mine/keys",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        Method::PUT,
        "/admin/handles/counter/me",
        Some(ADMIN),
        Some(json!({ "name": "mine" }).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Accounts are on.
    let (status, body) = send(
        Method::POST,
        "/auth/signup",
        None,
        Some(
            json!({ "email": "new@example.com", "password": "a long enough passphrase" })
                .to_string(),
        ),
    )
    .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    child.kill().await.expect("stopped");

    // Without --admin-token, a random one is printed and works.
    let other = tempfile::tempdir().expect("temp dir");
    let (mut child, base, printed) = dev(other.path(), &[]).await;
    let token = printed
        .iter()
        .find_map(|line| line.strip_prefix("dev: admin token "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the token is printed")
        .to_string();
    assert!(token.len() >= 32, "{token}");
    let response = client
        .get(format!("{base}/admin/classes"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    child.kill().await.expect("stopped");
}
