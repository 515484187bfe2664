//! Accounts, per-user and per-organization objects, API keys, handles and
//! access policies, over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Options, Server, guest, parse_json};

pub(crate) const PASSWORD: &str = "correct horse battery";
pub(crate) const ADMIN: &str = "admin-secret-of-at-least-32-bytes";

/// A server with the probe deployed under one class of each access kind.
async fn start(extra_config: &'static str) -> (Server, tempfile::TempDir) {
    Server::start(options(extra_config)).await
}

pub(crate) fn options(extra_config: &'static str) -> Options {
    Options {
        admin_token: Some(ADMIN),
        extra_classes: ["notes", "team", "inbox", "ops"]
            .into_iter()
            .map(|class| (class, guest("probe")))
            .collect(),
        access: vec![
            ("notes", "user"),
            ("team", "org"),
            ("inbox", "key"),
            ("ops", "admin"),
        ],
        extra_config,
        ..Options::default()
    }
}

/// Sends a request with an optional bearer token and JSON body; returns
/// the status, the JSON answer (or the text as a JSON string) and the
/// response headers.
pub(crate) async fn call(
    server: &Server,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body, _) = call_with_headers(server, method, path, bearer, body, &[]).await;
    (status, body)
}

pub(crate) async fn call_with_headers(
    server: &Server,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = server.client.request(method, server.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, headers)
}

/// Signs up `email`; returns the answer (user, token, refresh_token).
pub(crate) async fn signup(server: &Server, email: &str) -> Value {
    let (status, body) = call(
        server,
        Method::POST,
        "/auth/signup",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Logs `email` in; returns the new session's access token.
pub(crate) async fn login(server: &Server, email: &str) -> String {
    let (status, body) = call(
        server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": email, "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    token(&body).to_string()
}

pub(crate) fn token(session: &Value) -> &str {
    session["token"].as_str().expect("a token")
}

/// Signs up `email` and returns their access token.
pub(crate) async fn user(server: &Server, email: &str) -> String {
    token(&signup(server, email).await).to_string()
}

pub(crate) fn user_id(session: &Value) -> &str {
    session["user"]["id"].as_str().expect("a user id")
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn users_reach_their_own_object_which_persists() {
    let (server, dir) = start("").await;
    let alice = signup(&server, "Alice@Example.com").await;
    assert_eq!(alice["user"]["email"], "alice@example.com");
    assert!(user_id(&alice).starts_with("u_"));

    let write = server
        .client
        .post(server.url("/me/notes/write"))
        .bearer_auth(token(&alice))
        .body("first")
        .send()
        .await
        .expect("sent");
    assert_eq!(write.status(), 200);

    // The object is the user's, named by their id, and is told who calls;
    // the token itself stays with the host.
    let (status, whoami) = call(
        &server,
        Method::GET,
        "/me/notes/whoami",
        Some(token(&alice)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(whoami["name"], user_id(&alice));
    let (_, seen) = call(
        &server,
        Method::GET,
        "/me/notes/caller",
        Some(token(&alice)),
        None,
    )
    .await;
    assert_eq!(seen["caller"]["kind"], "user");
    assert_eq!(seen["caller"]["user"]["id"], user_id(&alice));
    assert_eq!(seen["caller"]["user"]["email"], "alice@example.com");
    assert_eq!(seen["authorization"], Value::Null);

    // The session cookie works too; the object sees the other cookies only.
    let cookie = format!("theme=dark; podhost_session={}", token(&alice));
    let (status, seen, _) = call_with_headers(
        &server,
        Method::GET,
        "/me/notes/caller",
        None,
        None,
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["caller"]["user"]["id"], user_id(&alice));
    assert_eq!(seen["cookie"], "theme=dark");

    // Logging in again reaches the same object; /auth/me knows the user.
    let (status, login) = call(
        &server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": "alice@example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let (_, state) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&login)),
        None,
    )
    .await;
    assert_eq!(state["notes"], json!(["first"]));
    let (status, me) = call(&server, Method::GET, "/auth/me", Some(token(&login)), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["id"], user_id(&alice));

    // Tokens, accounts and data survive a restart (the signing key is kept).
    server.stop().await;
    let server = Server::start_in(dir.path(), &options("")).await;
    let (status, state) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&alice)),
        None,
    )
    .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["notes"], json!(["first"]));
    server.stop().await;
}

#[tokio::test]
async fn users_cannot_reach_each_others_objects() {
    let (server, _dir) = start("[auth]\ntoken_ttl = \"2s\"\n").await;
    let alice = signup(&server, "alice@example.com").await;
    let bob = signup(&server, "bob@example.com").await;
    let alice_id = user_id(&alice);
    let write = |session: &Value, text: &'static str| {
        server
            .client
            .post(server.url("/me/notes/write"))
            .bearer_auth(token(session).to_string())
            .body(text)
            .send()
    };
    assert_eq!(
        write(&alice, "alice's secret")
            .await
            .expect("sent")
            .status(),
        200
    );

    // By name, with or without a token, with forged identity headers.
    for bearer in [None, Some(token(&bob))] {
        let (status, body, _) = call_with_headers(
            &server,
            Method::GET,
            &format!("/objects/notes/{alice_id}/state"),
            bearer,
            None,
            &[("x-user-id", alice_id), ("x-podhost-user", alice_id)],
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(error_code(&body), "access_denied");
    }
    // Bob's token, and forged headers, lead to Bob's object only.
    let (_, state, _) = call_with_headers(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&bob)),
        None,
        &[("x-user-id", alice_id)],
    )
    .await;
    assert_eq!(state["notes"], json!([]));

    // A token with Alice's id under Bob's signature, and alg=none.
    let parts: Vec<&str> = token(&bob).split('.').collect();
    let claims = parse_json(
        std::str::from_utf8(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64")).expect("utf-8"),
    );
    let mut forged = claims.clone();
    forged["sub"] = json!(alice_id);
    let forged_payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    let none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    for bad in [
        format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        format!("{none}.{forged_payload}."),
        format!("{none}.{forged_payload}.{}", parts[2]),
        "not-a-token".to_string(),
    ] {
        let (status, body) = call(&server, Method::GET, "/me/notes/state", Some(&bad), None).await;
        assert_eq!(status, 401, "{bad}: {body}");
        assert_eq!(error_code(&body), "invalid_token");
    }
    let (status, body) = call(&server, Method::GET, "/me/notes/state", None, None).await;
    assert_eq!((status, error_code(&body)), (401, "unauthenticated"));

    // An expired token is refused; the refresh token gets a new one.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&alice)),
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "token_expired"),
        "{body}"
    );
    let refresh = json!({ "refresh_token": alice["refresh_token"] });
    let (status, renewed) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(refresh.clone()),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (_, state) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&renewed)),
        None,
    )
    .await;
    assert_eq!(state["notes"], json!(["alice's secret"]));
    // A refresh token works once; using it again means it was copied, and
    // ends the whole session: the newest token and refresh token too.
    let (status, body) = call(&server, Method::POST, "/auth/refresh", None, Some(refresh)).await;
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    let (status, body) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&renewed)),
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    let newest = json!({ "refresh_token": renewed["refresh_token"] });
    let (status, body) = call(&server, Method::POST, "/auth/refresh", None, Some(newest)).await;
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(json!({ "refresh_token": "rt_never-issued" })),
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "invalid_token"));

    // Logging out ends the session at once: its token and refresh token.
    let (status, renewed) = call(
        &server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": "alice@example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/logout",
        Some(token(&renewed)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["logged_out"], true);
    let (status, body) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&renewed)),
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    let refresh = json!({ "refresh_token": renewed["refresh_token"] });
    let (status, body) = call(&server, Method::POST, "/auth/refresh", None, Some(refresh)).await;
    assert_eq!((status, error_code(&body)), (401, "session_ended"));
    server.stop().await;
}

#[tokio::test]
async fn bad_account_input_gets_clear_errors() {
    let (server, _dir) = start("").await;
    let post =
        |path: &'static str, body: Value| call(&server, Method::POST, path, None, Some(body));
    let cases = [
        (
            json!({ "password": PASSWORD }),
            400,
            "bad_request",
            "`email` is required",
        ),
        (
            json!({ "email": "a@example.com" }),
            400,
            "bad_request",
            "`password` is required",
        ),
        (
            json!({ "email": "nope", "password": PASSWORD }),
            400,
            "bad_request",
            "email",
        ),
        (
            json!({ "email": "a@example.com", "password": "short" }),
            400,
            "weak_password",
            "at least 10",
        ),
        (
            json!({ "email": "a@example.com", "password": "x".repeat(300) }),
            400,
            "weak_password",
            "at most",
        ),
        (
            json!({ "email": "a@example.com", "password": "password123" }),
            400,
            "weak_password",
            "common",
        ),
    ];
    for (body, status, code, words) in cases {
        let (got, answer) = post("/auth/signup", body.clone()).await;
        assert_eq!(
            (got, error_code(&answer)),
            (status, code),
            "{body}: {answer}"
        );
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(words), "{message}");
    }
    let (status, body) = server.post("/auth/signup", "{not json").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.post("/auth/signup", vec![b'x'; 64 << 10]).await;
    assert_eq!(status, 413);

    signup(&server, "a@example.com").await;
    let (status, body) = post(
        "/auth/signup",
        json!({ "email": "A@example.com", "password": PASSWORD }),
    )
    .await;
    assert_eq!((status, error_code(&body)), (409, "email_taken"));
    for (email, password) in [
        ("a@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let (status, body) = post(
            "/auth/login",
            json!({ "email": email, "password": password }),
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "bad_credentials"),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_and_address_and_per_address() {
    // The test client is a trusted proxy, so each request may say which
    // client it carries (X-Forwarded-For).
    let (server, _dir) = Server::start(Options {
        top_level_config: "trusted_proxies = [\"127.0.0.1\"]\n",
        ..options("[auth]\nmax_failed_logins_per_account = 3\nmax_logins_per_address = 8\n")
    })
    .await;
    signup(&server, "a@example.com").await;
    signup(&server, "b@example.com").await;
    let login = async |email: &str, password: &str, client: &str| {
        call_with_headers(
            &server,
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": email, "password": password })),
            &[("x-forwarded-for", client)],
        )
        .await
    };
    const ATTACKER: &str = "198.51.100.66";
    const OWNER: &str = "203.0.113.10";
    for _ in 0..3 {
        assert_eq!(
            login("a@example.com", "wrong password!", ATTACKER).await.0,
            401
        );
    }
    // Even the right password is turned away from there now, with when
    // to come back.
    let (status, body, headers) = login("a@example.com", PASSWORD, ATTACKER).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert!(headers.contains_key("retry-after"));
    // The owner, elsewhere, is not locked out.
    let (status, body, _) = login("a@example.com", PASSWORD, OWNER).await;
    assert_eq!(status, 200, "{body}");
    // Another account is not locked (4 logins from the attacker so far).
    for _ in 0..4 {
        assert_eq!(login("b@example.com", PASSWORD, ATTACKER).await.0, 200);
    }
    // But the attacker's address has used its 8 attempts, whatever account.
    let (status, body, _) = login("b@example.com", PASSWORD, ATTACKER).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert_eq!(login("b@example.com", PASSWORD, OWNER).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn organizations_admit_members_only_with_their_role() {
    let (server, _dir) = start("").await;
    let alice = signup(&server, "alice@example.com").await;
    let bob = signup(&server, "bob@example.com").await;
    signup(&server, "carol@example.com").await;
    let (alice, bob) = (token(&alice).to_string(), token(&bob).to_string());

    let (status, created) = call(
        &server,
        Method::POST,
        "/auth/orgs",
        Some(&alice),
        Some(json!({ "name": "Acme" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let org = created["org"]["id"].as_str().expect("org id").to_string();
    assert_eq!(created["org"]["role"], "owner");
    let team = |path: &str| format!("/orgs/{org}/team{path}");

    let (status, seen) = call(&server, Method::GET, &team("/caller"), Some(&alice), None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["caller"]["kind"], "member");
    assert_eq!(seen["caller"]["org"], org.as_str());
    assert_eq!(seen["caller"]["role"], "owner");
    let (_, whoami) = call(&server, Method::GET, &team("/whoami"), Some(&alice), None).await;
    assert_eq!(whoami["name"], org.as_str());

    // Bob is not a member: the organization does not exist for him.
    let (status, body) = call(&server, Method::GET, &team("/state"), Some(&bob), None).await;
    assert_eq!((status, error_code(&body)), (404, "org_not_found"));
    let (status, _) = call(
        &server,
        Method::GET,
        &format!("/auth/orgs/{org}/members"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Alice adds him as a member; he shares the organization's object.
    let add = async |who: &str, email: &str, role: &str| {
        call(
            &server,
            Method::PUT,
            &format!("/auth/orgs/{org}/members"),
            Some(who),
            Some(json!({ "email": email, "role": role })),
        )
        .await
    };
    let (status, members) = add(&alice, "bob@example.com", "member").await;
    assert_eq!(status, 200, "{members}");
    assert_eq!(members["members"].as_array().map(Vec::len), Some(2));
    let written = server
        .client
        .post(server.url(&team("/write")))
        .bearer_auth(&bob)
        .body("from bob")
        .send()
        .await
        .expect("sent");
    assert_eq!(written.status(), 200);
    let (_, state) = call(&server, Method::GET, &team("/state"), Some(&alice), None).await;
    assert_eq!(state["notes"], json!(["from bob"]));
    let (_, seen) = call(&server, Method::GET, &team("/caller"), Some(&bob), None).await;
    assert_eq!(seen["caller"]["role"], "member");

    // A member cannot add members; an unknown email or role is refused.
    let (status, body) = add(&bob, "carol@example.com", "member").await;
    assert_eq!((status, error_code(&body)), (403, "role_too_low"));
    let (status, body) = add(&alice, "nobody@example.com", "member").await;
    assert_eq!((status, error_code(&body)), (404, "user_not_found"));
    let (status, _) = add(&alice, "carol@example.com", "emperor").await;
    assert_eq!(status, 400);

    // Orgs list; the last owner cannot leave; removing Bob shuts him out.
    let (_, orgs) = call(&server, Method::GET, "/auth/orgs", Some(&bob), None).await;
    assert_eq!(orgs["orgs"][0]["id"], org.as_str());
    let (_, me) = call(&server, Method::GET, "/auth/me", Some(&alice), None).await;
    let alice_id = me["user"]["id"].as_str().expect("id").to_string();
    let remove = async |who: &str, user: &str| {
        call(
            &server,
            Method::DELETE,
            &format!("/auth/orgs/{org}/members/{user}"),
            Some(who),
            None,
        )
        .await
    };
    let (status, body) = remove(&alice, &alice_id).await;
    assert_eq!((status, error_code(&body)), (409, "last_owner"));
    let (_, me) = call(&server, Method::GET, "/auth/me", Some(&bob), None).await;
    let bob_id = me["user"]["id"].as_str().expect("id").to_string();
    let (status, body) = remove(&bob, &alice_id).await;
    assert_eq!((status, error_code(&body)), (403, "role_too_low"));
    assert_eq!(remove(&alice, &bob_id).await.0, 200);
    let (status, _) = call(&server, Method::GET, &team("/state"), Some(&bob), None).await;
    assert_eq!(status, 404, "removal takes effect at once");

    // An org class is not per-user, and the reverse.
    let (status, body) = call(&server, Method::GET, "/me/team/state", Some(&alice), None).await;
    assert_eq!((status, error_code(&body)), (404, "wrong_route"));
    let (status, body) = call(
        &server,
        Method::GET,
        &format!("/orgs/{org}/notes/state"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "wrong_route"));
    server.stop().await;
}

#[tokio::test]
async fn api_keys_and_handles_route_to_their_object() {
    let (server, _dir) = start("").await;
    let (status, created) = call(
        &server,
        Method::POST,
        "/admin/objects/inbox/alice/keys",
        Some(ADMIN),
        Some(json!({ "label": "laptop" })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"]["key"].as_str().expect("the key").to_string();
    let key_id = created["key"]["id"].as_str().expect("its id").to_string();
    assert!(key.starts_with("pk_"));
    let (status, _) = call(
        &server,
        Method::POST,
        "/admin/objects/inbox/alice/keys",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401, "keys are made by the operator");

    let (status, seen) = call(&server, Method::GET, "/key/caller", Some(&key), None).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["caller"], json!({ "kind": "key", "key": key_id }));
    assert_eq!(seen["authorization"], Value::Null);
    let (_, whoami) = call(&server, Method::GET, "/key/whoami", Some(&key), None).await;
    assert_eq!(whoami["name"], "alice");

    // Only the key (or the operator) reaches a key class's object.
    let (status, body) = call(
        &server,
        Method::GET,
        "/objects/inbox/alice/state",
        None,
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "access_denied"));
    let (status, seen) = call(
        &server,
        Method::GET,
        "/objects/inbox/alice/caller",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["caller"]["kind"], "admin");
    let wrong = format!("pk_{}", "A".repeat(43));
    for bad in [Some(wrong.as_str()), Some("abc"), None] {
        let (status, body) = call(&server, Method::GET, "/key/state", bad, None).await;
        assert_eq!((status, error_code(&body)), (401, "invalid_key"), "{bad:?}");
    }

    // The list hides secrets; a revoked key stops working at once.
    let (_, listed) = call(
        &server,
        Method::GET,
        "/admin/objects/inbox/alice/keys",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(listed["keys"][0]["id"], key_id.as_str());
    assert_eq!(listed["keys"][0]["label"], "laptop");
    assert!(!listed.to_string().contains(&key));
    let (_, revoked) = call(
        &server,
        Method::DELETE,
        &format!("/admin/keys/{key_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(revoked["revoked"], true);
    let (status, _) = call(&server, Method::GET, "/key/state", Some(&key), None).await;
    assert_eq!(status, 401);

    // Handles: an alias for a name, compared without case, with the
    // class's access rules (public for `probe`, operator-only for `inbox`).
    let set = async |class: &str, handle: &str, name: &str| {
        call(
            &server,
            Method::PUT,
            &format!("/admin/handles/{class}/{handle}"),
            Some(ADMIN),
            Some(json!({ "name": name })),
        )
        .await
    };
    let (status, body) = set("probe", "Alice@Example.com", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["handle"], "alice@example.com");
    let (status, whoami) = call(
        &server,
        Method::GET,
        "/handles/probe/alice@example.com/whoami",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(whoami["name"], "alice");
    set("inbox", "alice@example.com", "alice").await;
    let (status, _) = call(
        &server,
        Method::GET,
        "/handles/inbox/alice@example.com/state",
        None,
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        Method::GET,
        "/handles/inbox/alice@example.com/state",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Repointing and removing take effect at once.
    set("probe", "alice@example.com", "bob").await;
    let (_, whoami) = call(
        &server,
        Method::GET,
        "/handles/probe/ALICE@example.com/whoami",
        None,
        None,
    )
    .await;
    assert_eq!(whoami["name"], "bob");
    call(
        &server,
        Method::DELETE,
        "/admin/handles/probe/alice@example.com",
        Some(ADMIN),
        None,
    )
    .await;
    let (status, body) = call(
        &server,
        Method::GET,
        "/handles/probe/alice@example.com/whoami",
        None,
        None,
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "handle_not_found"));

    // Deleting an object drops its keys and handles.
    let (_, created) = call(
        &server,
        Method::POST,
        "/admin/objects/inbox/alice/keys",
        Some(ADMIN),
        None,
    )
    .await;
    let key = created["key"]["key"].as_str().expect("a key").to_string();
    assert_eq!(
        call(&server, Method::GET, "/key/state", Some(&key), None)
            .await
            .0,
        200
    );
    call(
        &server,
        Method::DELETE,
        "/admin/objects/inbox/alice",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        call(&server, Method::GET, "/key/state", Some(&key), None)
            .await
            .0,
        401
    );
    let (status, _) = call(
        &server,
        Method::GET,
        "/handles/inbox/alice@example.com/state",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn each_access_policy_is_enforced() {
    let (server, _dir) = start("").await;
    let user = signup(&server, "u@example.com").await;
    let user = token(&user).to_string();
    // By name: public for anyone; every other kind for the operator only.
    for (class, public) in [
        ("probe", true),
        ("notes", false),
        ("team", false),
        ("inbox", false),
        ("ops", false),
    ] {
        let path = format!("/objects/{class}/x/caller");
        for bearer in [None, Some(user.as_str())] {
            let (status, body) = call(&server, Method::GET, &path, bearer, None).await;
            if public {
                assert_eq!(status, 200, "{class}: {body}");
                assert_eq!(body["caller"], Value::Null);
            } else {
                assert_eq!(
                    (status, error_code(&body)),
                    (403, "access_denied"),
                    "{class}"
                );
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty())
                );
            }
        }
        let (status, body) = call(&server, Method::GET, &path, Some(ADMIN), None).await;
        assert_eq!(status, 200, "{class} with the admin token: {body}");
        assert_eq!(body["caller"], json!({ "kind": "admin" }), "{class}");
        assert_eq!(
            body["authorization"],
            Value::Null,
            "the admin token stays with the host"
        );
    }
    // /me only for per-user classes.
    for class in ["probe", "team", "inbox", "ops"] {
        let (status, body) = call(
            &server,
            Method::GET,
            &format!("/me/{class}/state"),
            Some(&user),
            None,
        )
        .await;
        assert_eq!((status, error_code(&body)), (404, "wrong_route"), "{class}");
    }
    let (status, body) = call(&server, Method::GET, "/me/missing/state", Some(&user), None).await;
    assert_eq!((status, error_code(&body)), (404, "class_not_found"));
    // The admin API wants its token.
    let (status, _) = call(&server, Method::GET, "/admin/objects", Some(&user), None).await;
    assert_eq!(status, 401);
    server.stop().await;

    // Without per-user or org classes (and no [auth]), accounts are off.
    let (server, _dir) = Server::start(Options::default()).await;
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/signup",
        None,
        Some(json!({ "email": "u@example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "accounts_disabled"));
    server.stop().await;
}

#[tokio::test]
async fn podhost_credentials_never_reach_objects() {
    let (server, _dir) = start("").await;
    let session = signup(&server, "a@example.com").await;
    let cookie = format!("podhost_session={}; theme=dark", token(&session));
    // A public object: the session's token and cookie stay with the host,
    // an app's own token goes through.
    for (bearer, forwarded) in [
        (token(&session), Value::Null),
        ("app-token", json!("Bearer app-token")),
    ] {
        let (status, seen, _) = call_with_headers(
            &server,
            Method::GET,
            "/objects/probe/x/caller",
            Some(bearer),
            None,
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(seen["caller"], Value::Null);
        assert_eq!(seen["authorization"], forwarded);
        assert_eq!(seen["cookie"], "theme=dark");
    }
    // Browsers on other sites may not log in or sign up here.
    let (status, body, _) = call_with_headers(
        &server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": "a@example.com", "password": PASSWORD })),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "cross_origin"));
    server.stop().await;
}

#[tokio::test]
async fn ending_access_closes_open_connections() {
    let (server, _dir) = start("").await;
    let session = signup(&server, "a@example.com").await;
    // A WebSocket opened through /me closes (1008) when the session ends.
    let url = format!(
        "{}/me/notes/socket",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("a request");
    let bearer = format!("Bearer {}", token(&session));
    request
        .headers_mut()
        .insert("authorization", bearer.parse().expect("a header value"));
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the socket opens");
    let (status, _) = call(
        &server,
        Method::POST,
        "/auth/logout",
        Some(token(&session)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(1008));

    // An event stream opened with an API key ends when the key is revoked.
    let (_, created) = call(
        &server,
        Method::POST,
        "/admin/objects/inbox/a/keys",
        Some(ADMIN),
        None,
    )
    .await;
    let key = created["key"]["key"].as_str().expect("a key").to_string();
    let key_id = created["key"]["id"].as_str().expect("an id").to_string();
    let mut stream = server
        .client
        .get(server.url("/key/_events"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("subscribed");
    assert_eq!(stream.status(), 200);
    call(
        &server,
        Method::DELETE,
        &format!("/admin/keys/{key_id}"),
        Some(ADMIN),
        None,
    )
    .await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends within 10 s");
    server.stop().await;
}
