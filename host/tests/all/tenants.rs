//! Tenants: tokens shown once, each tenant's token reaching only the
//! objects of its own classes (someone else's read as missing), admin-only
//! routes refused, the object quota, and a tenant kept while it owns a
//! class.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Options, Server, eventually, object_names};

const ADMIN: &str = "tenants-admin-token-of-32-bytes-or-more";

/// Calls `path` with `token`; the status and the JSON body (`null` if none).
async fn call(
    server: &Server,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    server.call(method, path, token, body).await
}

/// `class/name` of each object `token` lists.
async fn listed(server: &Server, token: &str) -> Vec<String> {
    let (status, body) = call(server, Method::GET, "/admin/objects", token, None).await;
    assert_eq!(status, 200, "{body}");
    let mut names = object_names(&body);
    names.sort();
    names
}

async fn new_tenant(server: &Server, body: Value) -> String {
    let (status, created) = call(server, Method::POST, "/admin/tenants", ADMIN, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"].as_str().expect("a token").to_string();
    assert!(token.starts_with("tn_"), "{token}");
    token
}

#[tokio::test]
async fn a_tenant_reaches_only_its_own_classes_within_its_quotas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = Options {
        admin_token: Some(ADMIN),
        tenants: vec![("counter", "acme")],
        ..Options::default()
    };
    let server = Server::start_in(dir.path(), &options).await;

    // Made by the operator only, each token shown once.
    let acme = new_tenant(&server, json!({ "name": "acme", "max_objects": 2 })).await;
    let bolt = new_tenant(&server, json!({ "name": "bolt" })).await;
    assert_ne!(acme, bolt);
    let (status, body) = call(
        &server,
        Method::POST,
        "/admin/tenants",
        ADMIN,
        Some(json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("tenant_exists")),
        "{body}"
    );
    for bad in [
        json!({ "name": "Not Valid" }),
        json!({}),
        json!({ "name": "x", "max_objects": 0 }),
    ] {
        let (status, body) = call(&server, Method::POST, "/admin/tenants", ADMIN, Some(bad)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{body}"
        );
    }
    let (status, listing) = call(&server, Method::GET, "/admin/tenants", ADMIN, None).await;
    assert_eq!(status, 200, "{listing}");
    let text = listing.to_string();
    assert!(
        !text.contains(&acme) && !text.contains(&bolt),
        "tokens are shown once: {text}"
    );
    let tenants = listing["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 2, "{listing}");
    assert_eq!(tenants[0]["name"], "acme");
    assert_eq!(tenants[0]["classes"], json!(["counter"]));
    assert_eq!(tenants[0]["quotas"]["max_objects"], 2);
    assert_eq!(
        tenants[1]["quotas"]["max_classes"], 10,
        "the [tenants] default"
    );

    // Admin-only routes refuse a tenant; a wrong token is 401.
    for (method, path) in [
        (Method::POST, "/admin/tenants"),
        (Method::GET, "/admin/tenants"),
        (Method::DELETE, "/admin/tenants/bolt"),
        (Method::DELETE, "/admin/keys/k_0"),
    ] {
        let body = (method == Method::POST).then(|| json!({ "name": "evil" }));
        let (status, answer) = call(&server, method, path, &acme, body).await;
        assert_eq!(
            (status, &answer["error"]["code"]),
            (403, &json!("forbidden")),
            "{path}: {answer}"
        );
    }
    let (status, _) = call(
        &server,
        Method::GET,
        "/admin/objects",
        "tn_not-a-real-token",
        None,
    )
    .await;
    assert_eq!(status, 401);

    // Objects of acme's class, up to its quota; the operator's class has none.
    for name in ["one", "two"] {
        let (status, body) = server.post(&format!("/objects/counter/{name}"), "").await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = server.post("/objects/counter/three", "").await;
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("quota_exceeded")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("max_objects") && message.contains("acme"),
        "{message}"
    );
    let (status, _) = server.post("/objects/counter/one", "").await;
    assert_eq!(status, 200, "existing objects still answer");
    for name in ["p1", "p2", "p3"] {
        let (status, _) = server
            .post(&format!("/objects/probe/{name}/write"), "x")
            .await;
        assert_eq!(status, 200);
    }

    // A tenant's token is podhost's credential: objects never see it.
    let (status, seen) = call(
        &server,
        Method::GET,
        "/objects/probe/p1/caller",
        &acme,
        None,
    )
    .await;
    assert_eq!(
        (status, &seen["authorization"]),
        (200, &Value::Null),
        "{seen}"
    );

    // Each token lists what is its own; the operator sees everything.
    let all = eventually(Duration::from_secs(10), || async {
        listed(&server, ADMIN).await.len() == 5
    })
    .await;
    assert!(all, "{:?}", listed(&server, ADMIN).await);
    assert_eq!(listed(&server, &acme).await, ["counter/one", "counter/two"]);
    assert!(listed(&server, &bolt).await.is_empty());

    // Another tenant's class (or the operator's) reads as missing: the
    // same answer as for a class that does not exist.
    let (_, missing) = call(
        &server,
        Method::GET,
        "/admin/objects?class=nope",
        &bolt,
        None,
    )
    .await;
    for (method, path) in [
        (Method::GET, "/admin/objects?class=counter"),
        (Method::DELETE, "/admin/objects/counter/one"),
        (Method::GET, "/admin/objects/counter/one/keys"),
        (Method::POST, "/admin/objects/counter/one/keys"),
        (Method::GET, "/admin/objects/counter/one/handles"),
        (Method::GET, "/admin/handles/counter/h"),
        (Method::PUT, "/admin/handles/counter/h"),
        (Method::DELETE, "/admin/handles/counter/h"),
    ] {
        let body = (method == Method::PUT).then(|| json!({ "name": "one" }));
        let (status, answer) = call(&server, method, path, &bolt, body).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "class_not_found", "{path}");
        assert_eq!(
            answer["error"]["message"]
                .as_str()
                .map(|m| m.replace("counter", "nope")),
            missing["error"]["message"].as_str().map(str::to_string),
            "{path}"
        );
    }
    let (status, _) = call(
        &server,
        Method::GET,
        "/admin/objects?class=probe",
        &acme,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &server,
        Method::DELETE,
        "/admin/objects/probe/p1",
        &acme,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/admin/tenants/bolt", &acme, None).await;
    assert_eq!(status, 404);
    let (status, own) = call(&server, Method::GET, "/admin/tenants/acme", &acme, None).await;
    assert_eq!(
        (status, &own["usage"]["objects"]),
        (200, &json!(2)),
        "{own}"
    );

    // Its own objects: keys, handles, delete (which makes room).
    let (status, key) = call(
        &server,
        Method::POST,
        "/admin/objects/counter/one/keys",
        &acme,
        None,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, _) = call(
        &server,
        Method::PUT,
        "/admin/handles/counter/first",
        &acme,
        Some(json!({ "name": "one" })),
    )
    .await;
    assert_eq!(status, 200);
    let (status, handles) = call(
        &server,
        Method::GET,
        "/admin/objects/counter/one/handles",
        &acme,
        None,
    )
    .await;
    assert_eq!((status, &handles["handles"]), (200, &json!(["first"])));
    let (status, deleted) = call(
        &server,
        Method::DELETE,
        "/admin/objects/counter/two",
        &acme,
        None,
    )
    .await;
    assert_eq!(
        (status, &deleted["deleted"]),
        (200, &json!(true)),
        "{deleted}"
    );
    let (status, body) = server.post("/objects/counter/three", "").await;
    assert_eq!(status, 200, "room after a delete: {body}");

    // A tenant that owns a class stays; one that owns none goes.
    let (status, body) = call(&server, Method::DELETE, "/admin/tenants/acme", ADMIN, None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("tenant_owns_classes")),
        "{body}"
    );
    let (status, _) = call(&server, Method::DELETE, "/admin/tenants/bolt", ADMIN, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&server, Method::DELETE, "/admin/tenants/bolt", ADMIN, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/admin/objects", &bolt, None).await;
    assert_eq!(status, 401, "a removed tenant's token is dead");

    // Tenants and their tokens outlive a restart.
    server.stop().await;
    let server = Server::start_in(dir.path(), &options).await;
    let names = eventually(Duration::from_secs(10), || async {
        listed(&server, &acme).await == ["counter/one", "counter/three"]
    })
    .await;
    assert!(names, "{:?}", listed(&server, &acme).await);
    server.stop().await;
}

#[tokio::test]
async fn a_tenants_objects_share_its_storage_quota() {
    let options = Options {
        admin_token: Some(ADMIN),
        idle_timeout: "1s",
        tenants: vec![("probe", "hoard")],
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    new_tenant(
        &server,
        json!({ "name": "hoard", "max_storage_bytes": 512 << 10 }),
    )
    .await;

    // One object fills what the tenant may hold, far below the class's
    // own 1 GiB, and the guest is told why.
    let (status, body) = server.post("/objects/probe/first/fill", "").await;
    assert_eq!(status, 200, "{body}");
    let filled: Value = serde_json::from_str(&body).expect("JSON");
    let inserted = filled["inserted"].as_u64().expect("a count");
    assert!((8..=32).contains(&inserted), "{filled}");
    assert_eq!(filled["code"], "storage-full", "{filled}");
    let message = filled["message"].as_str().unwrap_or("");
    assert!(message.contains("max_storage_bytes"), "{message}");

    // Once measured (at hibernation), the total is the tenant's usage,
    // and a second object gets what is left: next to nothing.
    let measured = eventually(Duration::from_secs(15), || async {
        let (_, body) = call(&server, Method::GET, "/admin/tenants/hoard", ADMIN, None).await;
        body["usage"]["storage_bytes"].as_u64().unwrap_or(0) > 256 << 10
    })
    .await;
    assert!(measured, "the first object's size is counted");
    let (status, body) = server.post("/objects/probe/second/fill", "").await;
    // Refused at creation, or by its first write (the guest's own schema
    // may not fit): either way naming the quota.
    let second: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    match status {
        200 => assert!(second["inserted"].as_u64().unwrap_or(99) <= 2, "{second}"),
        _ => assert!(body.contains("max_storage_bytes"), "{status}: {body}"),
    }
    server.stop().await;
}
