//! podhost's credentials against hostile clients and hostile objects:
//! cookies however encoded, cookies objects try to set, the bearer scheme
//! in any case, the sandbox on object responses, refresh-token reuse, the
//! admin token's length and throttle, and trusted proxies.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::accounts::{
    ADMIN, PASSWORD, call, call_with_headers, error_code, options, signup, token, user_id,
};
use crate::support::{Options, Server, guest};

const SANDBOX: &str = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads";

/// Sends `GET path` with raw `Cookie` bytes; returns the status and JSON.
async fn get_with_cookie(server: &Server, path: &str, cookie: &[u8]) -> (u16, Value) {
    let response = server
        .client
        .get(server.url(path))
        .header(
            "cookie",
            HeaderValue::from_bytes(cookie).expect("a header value"),
        )
        .send()
        .await
        .expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn cookie_headers_that_are_not_ascii_never_carry_the_session_to_objects() {
    let (server, _dir) = Server::start(options("")).await;
    let session = signup(&server, "a@example.com").await;
    let token = token(&session);
    // Forwarded whole before: the object saw the session token.
    let cookie = format!("theme=café; podhost_session={token}");
    let (status, seen) =
        get_with_cookie(&server, "/objects/probe/x/caller", cookie.as_bytes()).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["cookie"], Value::Null, "the header is dropped whole");
    assert!(!seen.to_string().contains(token));
    // Spellings that a lenient parser would read as podhost's cookies.
    for cookie in [
        format!("theme=dark;podhost_session={token}"),
        format!("theme=dark; PODHOST_SESSION={token}"),
        format!("theme=dark; podhost_session ={token}"),
        format!("theme=dark; =podhost_session={token}"),
        format!("theme=dark; podhost_refresh={token}"),
    ] {
        let (status, seen) =
            get_with_cookie(&server, "/objects/probe/x/caller", cookie.as_bytes()).await;
        assert_eq!(status, 200, "{seen}");
        assert_eq!(seen["cookie"], "theme=dark", "{cookie}");
    }
    // A non-ASCII header does not authenticate either.
    let (status, body) = get_with_cookie(&server, "/me/notes/caller", cookie.as_bytes()).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "unauthenticated"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn objects_cannot_set_podhost_cookies() {
    let (server, _dir) = Server::start(options("")).await;
    let answer = json!({
        "body": "hello",
        "headers": [
            ["set-cookie", "podhost_session=fixed; Path=/"],
            ["set-cookie", "Podhost_Session=fixed; Path=/me"],
            ["set-cookie", " podhost_refresh = fixed; Path=/auth"],
            ["set-cookie", "=podhost_session=fixed"],
            ["set-cookie", "theme=dark; Path=/"],
        ],
    });
    let response = server
        .client
        .post(server.url("/objects/probe/x/canned"))
        .body(answer.to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let set: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(set, ["theme=dark; Path=/"]);
    server.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let (server, _dir) = Server::start(options("")).await;
    let session = signup(&server, "a@example.com").await;
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let authorization = format!("{scheme} {}", token(&session));
        // Honoured...
        let (status, seen, _) = call_with_headers(
            &server,
            Method::GET,
            "/me/notes/caller",
            None,
            None,
            &[("authorization", &authorization)],
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {seen}");
        assert_eq!(seen["caller"]["user"]["id"], user_id(&session));
        assert_eq!(seen["authorization"], Value::Null, "{scheme}");
        // ...and kept from public objects, with the admin token too.
        for credential in [token(&session), ADMIN] {
            let authorization = format!("{scheme} {credential}");
            let (status, seen, _) = call_with_headers(
                &server,
                Method::GET,
                "/objects/probe/x/caller",
                None,
                None,
                &[("authorization", &authorization)],
            )
            .await;
            assert_eq!(status, 200, "{seen}");
            assert_eq!(seen["authorization"], Value::Null, "{authorization}");
        }
        let (status, _) = call(&server, Method::GET, "/admin/objects", None, None).await;
        assert_eq!(status, 401);
        let (status, body, _) = call_with_headers(
            &server,
            Method::GET,
            "/admin/objects",
            None,
            None,
            &[("authorization", &format!("{scheme} {ADMIN}"))],
        )
        .await;
        assert_eq!(status, 200, "{scheme}: {body}");
    }
    // An app's own token still reaches its public object.
    let (_, seen, _) = call_with_headers(
        &server,
        Method::GET,
        "/objects/probe/x/caller",
        None,
        None,
        &[("authorization", "bearer app-token")],
    )
    .await;
    assert_eq!(seen["authorization"], "bearer app-token");
    server.stop().await;
}

#[tokio::test]
async fn object_responses_are_sandboxed_unless_the_class_is_trusted() {
    let (server, _dir) = Server::start(Options {
        extra_classes: vec![("site", guest("probe"))],
        trusted: vec!["site"],
        ..options("")
    })
    .await;
    let page = json!({
        "html": true,
        "body": "<p>hi</p>",
        "headers": [["content-security-policy", "default-src 'self'"]],
    });
    let fetch = |class: &'static str| {
        server
            .client
            .post(server.url(&format!("/objects/{class}/x/canned")))
            .body(page.to_string())
            .send()
    };
    let response = fetch("probe").await.expect("sent");
    let policies: Vec<&str> = response
        .headers()
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(
        policies,
        ["default-src 'self'", SANDBOX],
        "the object's policy stays and the sandbox is added"
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let response = fetch("site").await.expect("sent");
    let policies: Vec<&str> = response
        .headers()
        .get_all("content-security-policy")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(policies, ["default-src 'self'"], "a trusted class");
    // Errors the host answers for objects are JSON and need no sandbox;
    // an object's own error response gets it.
    let (status, _, headers) = call_with_headers(
        &server,
        Method::GET,
        "/objects/probe/x/nope",
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-security-policy"], SANDBOX);
    server.stop().await;
}

/// Headers a browser sends from a page of origin `origin` (`null` for a
/// sandboxed page, none if empty) with `Sec-Fetch-Site: site`.
fn browser(origin: &str, site: &str) -> Vec<(String, String)> {
    let mut headers = vec![
        ("sec-fetch-site".to_string(), site.to_string()),
        ("sec-fetch-mode".to_string(), "cors".to_string()),
    ];
    if !origin.is_empty() {
        headers.push(("origin".to_string(), origin.to_string()));
    }
    headers
}

#[tokio::test]
async fn sandboxed_and_cross_site_pages_cannot_use_the_session_cookies() {
    let (server, _dir) = Server::start(options("")).await;
    let own_origin = server.base.clone();
    let session = signup(&server, "a@example.com").await;
    let cookies = format!(
        "podhost_session={}; podhost_refresh={}",
        token(&session),
        session["refresh_token"].as_str().expect("a refresh token")
    );
    let send = async |method: Method, path: &str, headers: &[(String, String)]| {
        let mut headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        headers.push(("cookie", &cookies));
        call_with_headers(&server, method, path, None, None, &headers).await
    };
    // What a sandboxed page (opaque origin) and another site would send.
    for headers in [
        browser("null", "cross-site"),
        browser("null", "same-origin"),
        browser("https://evil.example", "cross-site"),
        browser("", "cross-site"),
    ] {
        for path in ["/auth/refresh", "/auth/logout"] {
            let (status, body, response_headers) = send(Method::POST, path, &headers).await;
            assert_eq!(
                (status, error_code(&body)),
                (403, "cross_origin"),
                "{path} {headers:?}: {body}"
            );
            assert!(!response_headers.contains_key("set-cookie"));
        }
        let (status, body, _) = send(Method::GET, "/auth/me", &headers).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        // An object's route (a fetch or a WebSocket from such a page):
        // the cookie does not authenticate it.
        let (status, body, _) = send(Method::GET, "/me/notes/caller", &headers).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "unauthenticated"),
            "{headers:?}: {body}"
        );
    }
    // The host's own pages may: a refresh by cookie answers with cookies
    // only, so not even they read a token.
    let own = browser(&own_origin, "same-origin");
    let (status, seen, _) = send(Method::GET, "/me/notes/caller", &own).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["caller"]["user"]["id"], user_id(&session));
    let (status, body, headers) = send(Method::POST, "/auth/refresh", &own).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["id"], user_id(&session));
    assert!(
        body.get("token").is_none() && body.get("refresh_token").is_none(),
        "{body}"
    );
    let set: Vec<&str> = headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("podhost_session=ey")),
        "{set:?}"
    );
    assert!(
        set.iter().any(|c| c.starts_with("podhost_refresh=rt_")),
        "{set:?}"
    );
    // A link followed from elsewhere still reaches the user's object.
    let navigation = [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-dest", "document"),
        (
            "cookie",
            set.iter()
                .find(|c| c.starts_with("podhost_session="))
                .and_then(|c| c.split(';').next())
                .unwrap_or(""),
        ),
    ];
    let (status, seen, _) = call_with_headers(
        &server,
        Method::GET,
        "/me/notes/caller",
        None,
        None,
        &navigation,
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    server.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_ends_the_session() {
    let (server, _dir) = Server::start(options("")).await;
    let first = signup(&server, "a@example.com").await;
    let refresh = |token: &Value| json!({ "refresh_token": token });
    // The owner refreshes; a thief replays the old refresh token.
    let (status, second) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(refresh(&first["refresh_token"])),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(refresh(&first["refresh_token"])),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "session_ended"),
        "{body}"
    );
    // Nobody holds the session now: not the newest refresh token, not the
    // access tokens, not the session's open connections.
    let (status, body) = call(
        &server,
        Method::POST,
        "/auth/refresh",
        None,
        Some(refresh(&second["refresh_token"])),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "session_ended"),
        "{body}"
    );
    for session in [&first, &second] {
        let (status, body) = call(
            &server,
            Method::GET,
            "/me/notes/state",
            Some(token(session)),
            None,
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (401, "session_ended"),
            "{body}"
        );
    }
    // Other sessions of the same user live on.
    let (status, login) = call(
        &server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": "a@example.com", "password": PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let (status, _) = call(
        &server,
        Method::GET,
        "/me/notes/state",
        Some(token(&login)),
        None,
    )
    .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_short_admin_token_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("podhost.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nadmin_token = \"change-me\"\n",
    )
    .expect("config written");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_podhost"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("podhost exits within 60 s")
    .expect("podhost ran");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("admin_token must be at least 32 bytes") && stderr.contains("urandom"),
        "{stderr}"
    );
}

#[tokio::test]
async fn admin_token_guesses_are_throttled_per_address() {
    let (server, _dir) = Server::start(Options {
        top_level_config: "trusted_proxies = [\"127.0.0.1\"]\n",
        ..options("")
    })
    .await;
    let admin = async |token: &str, client: &str| {
        let (status, body, headers) = call_with_headers(
            &server,
            Method::GET,
            "/admin/objects",
            Some(token),
            None,
            &[("x-forwarded-for", client)],
        )
        .await;
        (status, error_code(&body).to_string(), headers)
    };
    const GUESSER: &str = "198.51.100.66";
    const OPERATOR: &str = "203.0.113.10";
    for _ in 0..10 {
        assert_eq!(admin("a-wrong-guess", GUESSER).await.0, 401);
    }
    // Now even the right token is refused from there, for a while...
    let (status, code, headers) = admin(ADMIN, GUESSER).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(headers.contains_key("retry-after"));
    // ...and not taken for the operator's on other routes either.
    let (status, body, _) = call_with_headers(
        &server,
        Method::GET,
        "/objects/ops/x/caller",
        Some(ADMIN),
        None,
        &[("x-forwarded-for", GUESSER)],
    )
    .await;
    assert_eq!(status, 429, "{body}");
    let (status, seen, _) = call_with_headers(
        &server,
        Method::GET,
        "/objects/probe/x/caller",
        Some(ADMIN),
        None,
        &[("x-forwarded-for", GUESSER)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["caller"], Value::Null);
    // The operator, elsewhere, is not locked out.
    assert_eq!(admin(ADMIN, OPERATOR).await.0, 200);
    // Guesses as long as the token count on public classes too (apps'
    // own bearer tokens of other lengths do not).
    let guess = "x".repeat(ADMIN.len());
    for _ in 0..10 {
        call_with_headers(
            &server,
            Method::GET,
            "/objects/probe/x/caller",
            Some(&guess),
            None,
            &[("x-forwarded-for", "192.0.2.5")],
        )
        .await;
    }
    assert_eq!(admin(ADMIN, "192.0.2.5").await.0, 429);
    for _ in 0..20 {
        call_with_headers(
            &server,
            Method::GET,
            "/objects/probe/x/caller",
            Some("an-app-token"),
            None,
            &[("x-forwarded-for", "192.0.2.6")],
        )
        .await;
    }
    assert_eq!(admin(ADMIN, "192.0.2.6").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    // No trusted proxies: a client cannot pick its address.
    let (server, _dir) = Server::start(options("[auth]\nmax_logins_per_address = 3\n")).await;
    let mut statuses = Vec::new();
    for n in 0..4 {
        let client = format!("198.51.100.{n}");
        let (status, _, _) = call_with_headers(
            &server,
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": "a@example.com", "password": PASSWORD })),
            &[("x-forwarded-for", &client)],
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    server.stop().await;

    // Behind a trusted proxy, each client has its own count; a client
    // cannot claim the proxy's or another address by writing the header
    // itself (the proxy appends what it saw).
    let (server, _dir) = Server::start(Options {
        top_level_config: "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]\n",
        ..options("[auth]\nmax_logins_per_address = 3\n")
    })
    .await;
    let login = async |forwarded: &str| {
        call_with_headers(
            &server,
            Method::POST,
            "/auth/login",
            None,
            Some(json!({ "email": "a@example.com", "password": PASSWORD })),
            &[("x-forwarded-for", forwarded)],
        )
        .await
        .0
    };
    for n in 0..4 {
        // Spoofed left parts; the proxy saw 198.51.100.7 each time.
        let forwarded = format!("203.0.113.{n}, 198.51.100.7, 10.0.0.2");
        let expected = if n < 3 { 401 } else { 429 };
        assert_eq!(login(&forwarded).await, expected, "{forwarded}");
    }
    assert_eq!(login("198.51.100.8").await, 401, "another client");
    server.stop().await;
}
