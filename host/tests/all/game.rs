//! The game example against a real server: a lobby (`game`) creates its
//! matches (`match`) through calls, routes moves to them (rate-limited by
//! `ratelimit`), lists them without waking them and deletes them all.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Options, Server, guest};

const TOKEN: &str = "game-admin-token-of-at-least-32-bytes";

async fn server(idle_timeout: &'static str) -> (Server, tempfile::TempDir) {
    Server::start(Options {
        idle_timeout,
        admin_token: Some(TOKEN),
        extra_classes: vec![("match", guest("game"))],
        ..Options::default()
    })
    .await
}

/// The catalog's objects of `class`, as name -> last active.
async fn catalog(server: &Server, class: &str) -> Vec<(String, i64)> {
    let response = server
        .client
        .get(server.url(&format!("/admin/objects?class={class}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let name = o["name"].as_str().unwrap_or_default().to_string();
            (name, o["last_active_at"].as_i64().unwrap_or_default())
        })
        .collect()
}

async fn make_move(server: &Server, lobby: &str, id: &str) -> (u16, Value) {
    server
        .post_json(
            &format!("/objects/game/{lobby}/matches/{id}/moves"),
            json!({ "player": "ann", "move": { "x": 1, "y": 2 } }),
        )
        .await
}

#[tokio::test]
async fn a_lobby_creates_matches_and_routes_moves_to_them() {
    let (server, _dir) = server("60s").await;
    for n in 1..=3 {
        let (status, body) = server
            .post_json("/objects/game/lobby/matches", json!(null))
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["id"], format!("lobby-{n}"), "{body}");
    }
    let (status, body) = make_move(&server, "lobby", "lobby-2").await;
    assert_eq!((status, &body["moves"]), (200, &json!(1)), "{body}");
    let (status, body) = make_move(&server, "lobby", "2").await;
    assert_eq!(
        (status, &body["moves"]),
        (200, &json!(2)),
        "by number too: {body}"
    );
    let (status, body) = server.get_json("/objects/game/lobby/matches/lobby-2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["moves"][0]["move"],
        json!({ "x": 1, "y": 2 }),
        "{body}"
    );

    let (status, body) = make_move(&server, "lobby", "lobby-9").await;
    assert_eq!(status, 404, "a match the lobby did not create: {body}");
    let (status, body) = server
        .post_json(
            "/objects/match/lobby-1/moves",
            json!({ "player": "x", "move": 1 }),
        )
        .await;
    assert_eq!(status, 403, "a client cannot skip the lobby: {body}");
    server.stop().await;
}

#[tokio::test]
async fn listing_matches_wakes_none_of_them() {
    let (server, _dir) = server("1s").await;
    for _ in 0..3 {
        let (status, body) = server
            .post_json("/objects/game/quiet/matches", json!(null))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Another lobby whose name starts the same is not listed.
    let (status, _) = server.post("/objects/game/quiet-x/matches", "").await;
    assert_eq!(status, 201);
    // Wait until every object hibernated and the catalog says when.
    assert!(
        server
            .metric_becomes("podhost_objects_active", Duration::from_secs(10), |n| n
                == 0)
            .await,
        "everything hibernates"
    );
    let before = catalog(&server, "match").await;
    assert_eq!(before.len(), 4, "{before:?}");

    let (status, body) = server.get_json("/objects/game/quiet/matches").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["matches"],
        json!(["quiet-1", "quiet-2", "quiet-3"]),
        "{body}"
    );
    let (status, body) = server.get_json("/objects/game/quiet/matches?limit=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matches"], json!(["quiet-1", "quiet-2"]), "{body}");
    assert_eq!(body["cursor"], "quiet-2", "{body}");

    // The lobby hibernates again: had a match woken, it would have closed
    // since and moved its last-active time.
    assert!(
        server
            .metric_becomes("podhost_objects_active", Duration::from_secs(10), |n| n
                == 0)
            .await
    );
    assert_eq!(catalog(&server, "match").await, before, "no match woke");
    server.stop().await;
}

#[tokio::test]
async fn moves_are_rate_limited_per_lobby() {
    let (server, _dir) = server("60s").await;
    let (status, _) = server.post("/objects/game/busy/matches", "").await;
    assert_eq!(status, 201);
    let mut accepted = 0;
    let mut limited = None;
    for _ in 0..400 {
        let response = server
            .client
            .post(server.url("/objects/game/busy/matches/1/moves"))
            .json(&json!({ "player": "bob", "move": "e4" }))
            .send()
            .await
            .expect("sent");
        match response.status().as_u16() {
            200 => accepted += 1,
            429 => {
                limited = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or_default().to_string());
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(accepted >= 30, "the lobby's burst of 30: {accepted}");
    assert!(
        limited.is_some_and(|v| !v.is_empty()),
        "a 429 with Retry-After"
    );
    // Another lobby has its own bucket.
    let (status, _) = server.post("/objects/game/calm/matches", "").await;
    assert_eq!(status, 201);
    let (status, body) = make_move(&server, "calm", "1").await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn deleting_a_lobby_deletes_every_match() {
    let (server, _dir) = server("60s").await;
    for _ in 0..3 {
        let (status, _) = server.post("/objects/game/doomed/matches", "").await;
        assert_eq!(status, 201);
    }
    let (status, _) = server.post("/objects/game/kept/matches", "").await;
    assert_eq!(status, 201);
    let (status, body) = server.delete("/objects/game/doomed").await;
    assert_eq!(status, 200, "{body}");

    // Gone by the time the answer came, from the catalog too.
    let names = |list: Vec<(String, i64)>| list.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(catalog(&server, "match").await), ["kept-1"]);
    assert_eq!(names(catalog(&server, "game").await), ["kept"]);
    let (status, body) = server.get_json("/objects/game/doomed/matches").await;
    assert_eq!((status, &body["matches"]), (200, &json!([])), "{body}");
    let (status, body) = server.get_json("/objects/game/kept/matches").await;
    assert_eq!(
        (status, &body["matches"]),
        (200, &json!(["kept-1"])),
        "{body}"
    );
    server.stop().await;
}
