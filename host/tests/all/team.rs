//! `examples/team`: an organization's projects and tasks at
//! `/orgs/{org}/team`, over real HTTP, SSE and WebSockets.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::accounts::{call, error_code, token, user};
use crate::support::{Options, Server, Ws, parse_json};

fn options() -> Options {
    Options {
        access: vec![("team", "org")],
        ..Options::default()
    }
}

/// A new organization owned by `owner`; returns its id.
async fn org(server: &Server, owner: &str, name: &str) -> String {
    let (status, created) = call(
        server,
        Method::POST,
        "/auth/orgs",
        Some(owner),
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["org"]["id"]
        .as_str()
        .expect("an org id")
        .to_string()
}

async fn add_member(server: &Server, owner: &str, org: &str, email: &str, role: &str) {
    let (status, body) = call(
        server,
        Method::PUT,
        &format!("/auth/orgs/{org}/members"),
        Some(owner),
        Some(json!({ "email": email, "role": role })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// Sends `body` to `/orgs/{org}/team{path}`.
async fn team(
    server: &Server,
    who: &str,
    method: Method,
    org: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(
        server,
        method,
        &format!("/orgs/{org}/team{path}"),
        Some(who),
        body,
    )
    .await
}

async fn project(server: &Server, who: &str, org: &str, name: &str) -> Value {
    let (status, body) = team(
        server,
        who,
        Method::POST,
        org,
        "/projects",
        Some(json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["project"].clone()
}

async fn task(server: &Server, who: &str, org: &str, project: &Value, title: &str) -> Value {
    let (status, body) = team(
        server,
        who,
        Method::POST,
        org,
        "/tasks",
        Some(json!({ "project_id": project["id"], "title": title })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["task"].clone()
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a readable message");
        if let Message::Text(text) = message {
            return parse_json(&text);
        }
    }
}

#[tokio::test]
async fn members_plan_projects_and_tick_off_tasks_together() {
    let (server, _dir) = Server::start(options()).await;
    let owner = user(&server, "owner@example.com").await;
    let _ = user(&server, "bob@example.com").await;
    let bob = user_again(&server, "bob@example.com").await;
    let acme = org(&server, &owner, "Acme").await;
    add_member(&server, &owner, &acme, "bob@example.com", "member").await;

    let launch = project(&server, &bob, &acme, "Launch").await;
    assert_eq!(launch["name"], "Launch");
    let docs = project(&server, &owner, &acme, "Docs").await;
    let write = task(&server, &bob, &acme, &launch, "Write the post").await;
    assert_eq!(write["done"], false, "{write}");
    assert_eq!(write["project_id"], launch["id"]);
    let _ship = task(&server, &owner, &acme, &launch, "Ship").await;
    let _readme = task(&server, &owner, &acme, &docs, "README").await;

    let (_, projects) = team(&server, &bob, Method::GET, &acme, "/projects", None).await;
    let names: Vec<&str> = projects["projects"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["Docs", "Launch"], "newest first");

    let path = format!("/tasks/{}", write["id"]);
    let (status, done) = team(
        &server,
        &bob,
        Method::PUT,
        &acme,
        &path,
        Some(json!({ "done": true })),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(
        done["task"]["done"], true,
        "stored as 1, read back as a bool"
    );
    let (_, read) = team(&server, &owner, Method::GET, &acme, &path, None).await;
    assert_eq!(read["task"]["done"], true);

    let (_, launch_tasks) = team(
        &server,
        &bob,
        Method::GET,
        &acme,
        &format!("/tasks?project_id={}", launch["id"]),
        None,
    )
    .await;
    assert_eq!(launch_tasks["tasks"].as_array().map(Vec::len), Some(2));
    let (_, with_tasks) = team(
        &server,
        &bob,
        Method::GET,
        &acme,
        &format!("/projects/{}", launch["id"]),
        None,
    )
    .await;
    assert_eq!(with_tasks["project"]["name"], "Launch");
    assert_eq!(with_tasks["tasks"].as_array().map(Vec::len), Some(2));
    let (_, all) = team(&server, &bob, Method::GET, &acme, "/tasks", None).await;
    assert_eq!(all["tasks"].as_array().map(Vec::len), Some(3));

    let (status, renamed) = team(
        &server,
        &bob,
        Method::PUT,
        &acme,
        &format!("/projects/{}", docs["id"]),
        Some(json!({ "name": "Manual" })),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["project"]["name"], "Manual");

    // Members may delete tasks.
    let (status, _) = team(&server, &bob, Method::DELETE, &acme, &path, None).await;
    assert_eq!(status, 200);
    let (status, _) = team(&server, &bob, Method::GET, &acme, &path, None).await;
    assert_eq!(status, 404);
}

/// Logs `email` in again (a second session of the same user).
async fn user_again(server: &Server, email: &str) -> String {
    let (status, body) = call(
        server,
        Method::POST,
        "/auth/login",
        None,
        Some(json!({ "email": email, "password": crate::accounts::PASSWORD })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    token(&body).to_string()
}

#[tokio::test]
async fn only_owners_and_admins_delete_a_project_and_its_tasks_go_with_it() {
    let (server, _dir) = Server::start(options()).await;
    let owner = user(&server, "owner@example.com").await;
    let member = user(&server, "member@example.com").await;
    let admin = user(&server, "admin@example.com").await;
    let acme = org(&server, &owner, "Acme").await;
    add_member(&server, &owner, &acme, "member@example.com", "member").await;
    add_member(&server, &owner, &acme, "admin@example.com", "admin").await;

    let doomed = project(&server, &member, &acme, "Doomed").await;
    let kept = project(&server, &member, &acme, "Kept").await;
    let tasks = [
        task(&server, &member, &acme, &doomed, "one").await,
        task(&server, &member, &acme, &doomed, "two").await,
    ];
    let survivor = task(&server, &member, &acme, &kept, "stays").await;
    let doomed_path = format!("/projects/{}", doomed["id"]);

    let (status, body) = team(&server, &member, Method::DELETE, &acme, &doomed_path, None).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = team(&server, &member, Method::GET, &acme, &doomed_path, None).await;
    assert_eq!(status, 200, "a refused delete deletes nothing");

    let (status, body) = team(&server, &admin, Method::DELETE, &acme, &doomed_path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tasks_deleted"], 2);
    let (status, _) = team(&server, &member, Method::GET, &acme, &doomed_path, None).await;
    assert_eq!(status, 404);
    for task in &tasks {
        let path = format!("/tasks/{}", task["id"]);
        let (status, _) = team(&server, &member, Method::GET, &acme, &path, None).await;
        assert_eq!(status, 404, "the project's tasks went with it");
    }
    let (_, left) = team(&server, &member, Method::GET, &acme, "/tasks", None).await;
    assert_eq!(left["tasks"], json!([survivor]));

    let (status, _) = team(
        &server,
        &owner,
        Method::DELETE,
        &acme,
        &format!("/projects/{}", kept["id"]),
        None,
    )
    .await;
    assert_eq!(status, 200, "owners may too");
}

#[tokio::test]
async fn a_task_must_name_an_existing_project_and_fields_are_checked() {
    let (server, _dir) = Server::start(options()).await;
    let owner = user(&server, "owner@example.com").await;
    let acme = org(&server, &owner, "Acme").await;
    let here = project(&server, &owner, &acme, "Here").await;

    for (body, field) in [
        (json!({ "project_id": 999, "title": "lost" }), "project_id"),
        (
            json!({ "project_id": "abc", "title": "not an id" }),
            "project_id",
        ),
        (json!({ "title": "no project" }), "project_id"),
        (json!({ "project_id": here["id"] }), "title"),
        (json!({ "project_id": here["id"], "title": 3 }), "title"),
        (
            json!({ "project_id": here["id"], "title": "t", "done": "yes" }),
            "done",
        ),
    ] {
        let (status, answer) = team(
            &server,
            &owner,
            Method::POST,
            &acme,
            "/tasks",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(field), "{body} -> {message}");
    }
    let (status, answer) = team(
        &server,
        &owner,
        Method::POST,
        &acme,
        "/projects",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("name")
    );
    let (_, tasks) = team(&server, &owner, Method::GET, &acme, "/tasks", None).await;
    assert_eq!(tasks["tasks"], json!([]));
}

#[tokio::test]
async fn outsiders_get_404_and_one_orgs_rows_never_reach_another() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let acme = org(&server, &ann, "Acme").await;
    let globex = org(&server, &bob, "Globex").await;
    let secret = project(&server, &ann, &acme, "Secret").await;
    task(&server, &ann, &acme, &secret, "hidden").await;

    // Bob is not in Acme: every route is a 404, as if it did not exist.
    for (method, path) in [
        (Method::GET, "/projects".to_string()),
        (Method::GET, format!("/projects/{}", secret["id"])),
        (Method::POST, "/projects".to_string()),
        (Method::DELETE, format!("/projects/{}", secret["id"])),
        (Method::GET, "/tasks".to_string()),
    ] {
        let (status, body) = team(
            &server,
            &bob,
            method.clone(),
            &acme,
            &path,
            Some(json!({ "name": "x" })),
        )
        .await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "org_not_found");
    }
    let (status, _) = team(
        &server,
        &bob,
        Method::GET,
        "o_nonexistent",
        "/projects",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Ann joins Globex too: there she sees Globex's rows only.
    add_member(&server, &bob, &globex, "ann@example.com", "member").await;
    let (_, projects) = team(&server, &ann, Method::GET, &globex, "/projects", None).await;
    assert_eq!(projects["projects"], json!([]));
    let (status, _) = team(
        &server,
        &ann,
        Method::GET,
        &globex,
        &format!("/projects/{}", secret["id"]),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&server, Method::GET, "/orgs/x/team/projects", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = server.get(&format!("/objects/team/{acme}/projects")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn team_changes_reach_the_orgs_members_live_and_no_one_else() {
    let (server, _dir) = Server::start(options()).await;
    let ann = user(&server, "ann@example.com").await;
    let bob = user(&server, "bob@example.com").await;
    let acme = org(&server, &ann, "Acme").await;
    let globex = org(&server, &bob, "Globex").await;
    let mut acme_events = server
        .events_as(&format!("/orgs/{acme}/team/_events"), &ann)
        .await;
    let mut globex_events = server
        .events_as(&format!("/orgs/{globex}/team/_events"), &bob)
        .await;
    let mut acme_ws = server
        .ws_as(&format!("/orgs/{acme}/team/ws"), &ann)
        .await
        .expect("a member's socket");
    assert!(
        server
            .ws_as(&format!("/orgs/{acme}/team/ws"), &bob)
            .await
            .is_err(),
        "an outsider gets no socket"
    );

    let launch = project(&server, &ann, &acme, "Launch").await;
    let write = task(&server, &ann, &acme, &launch, "Write").await;
    for (table, op, row) in [("projects", "create", &launch), ("tasks", "create", &write)] {
        let event = acme_events.next().await;
        assert_eq!(event.event, format!("table:{table}"));
        let change = parse_json(&event.data);
        assert_eq!(change, json!({ "table": table, "op": op, "row": row }));
        assert_eq!(next_json(&mut acme_ws).await, change);
    }

    let own = project(&server, &bob, &globex, "Globex's").await;
    let event = globex_events.next().await;
    assert_eq!(
        parse_json(&event.data)["row"],
        own,
        "Globex saw nothing of Acme"
    );
}

#[tokio::test]
async fn projects_and_tasks_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = options();
    let server = Server::start_in(dir.path(), &options).await;
    let ann = user(&server, "ann@example.com").await;
    let acme = org(&server, &ann, "Acme").await;
    let launch = project(&server, &ann, &acme, "Launch").await;
    let write = task(&server, &ann, &acme, &launch, "Write").await;
    server.stop().await;

    let server = Server::start_in(dir.path(), &options).await;
    let (status, projects) = team(&server, &ann, Method::GET, &acme, "/projects", None).await;
    assert_eq!(status, 200, "{projects}");
    assert_eq!(projects["projects"], json!([launch]));
    let (_, tasks) = team(&server, &ann, Method::GET, &acme, "/tasks", None).await;
    assert_eq!(tasks["tasks"], json!([write]));
    server.stop().await;
}
