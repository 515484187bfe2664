//! The shared catalog's own guarantees: a single node's accounts become
//! its cluster's when it first joins one, and a unique value (an email)
//! is taken by one node only, however many try at once.

use reqwest::Method;
use serde_json::json;

use crate::accounts::{ADMIN, PASSWORD, call, login, signup, token};
use crate::cluster_support::{Etcd, PREFIX, node_options};
use crate::support::{Options, Server};

#[tokio::test]
async fn a_single_nodes_accounts_become_the_clusters_when_it_first_joins_one() {
    let (alone, dir) = Server::start(Options {
        extra_config: "[auth]\n",
        ..Options::default()
    })
    .await;
    let first = signup(&alone, "ada@example.com").await;
    alone.stop().await;

    let etcd = Etcd::start().await;
    let a = Server::start_in(dir.path(), &node_options(&etcd, "a", "[auth]\n")).await;
    let (b, _b) = Server::start(node_options(&etcd, "b", "[auth]\n")).await;
    // b never saw the signup: it has the cluster's copy, signing key too.
    let (status, me) = call(&b, Method::GET, "/auth/me", Some(token(&first)), None).await;
    assert_eq!(status, 200, "{me}");
    login(&b, "ada@example.com").await;
    assert!(
        etcd.get(&format!("/{PREFIX}/catalog/id")).await.is_some(),
        "the cluster has a catalog"
    );
    drop(a);
}

#[tokio::test]
async fn an_email_signed_up_through_two_nodes_at_once_is_taken_once() {
    let etcd = Etcd::start().await;
    let (a, _a) = Server::start(node_options(&etcd, "a", "[auth]\n")).await;
    let (b, _b) = Server::start(node_options(&etcd, "b", "[auth]\n")).await;
    for round in 0..5 {
        let email = format!("race{round}@example.com");
        let body = json!({ "email": email, "password": PASSWORD });
        let (through_a, through_b) = tokio::join!(
            call(&a, Method::POST, "/auth/signup", None, Some(body.clone())),
            call(&b, Method::POST, "/auth/signup", None, Some(body.clone())),
        );
        let mut statuses = [through_a.0, through_b.0];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [201, 409],
            "{email}: one signup wins ({}, {})",
            through_a.1,
            through_b.1
        );
        // Whichever node won, both know the account now.
        for server in [&a, &b] {
            login(server, &email).await;
        }
    }
}

#[tokio::test]
async fn disabling_a_user_with_more_sessions_than_one_etcd_transaction_holds_ends_them_all() {
    const AUTH: &str = "[auth]\nmax_logins_per_address = 1000\n";
    let etcd = Etcd::start().await;
    let (a, _a) = Server::start(Options {
        admin_token: Some(ADMIN),
        ..node_options(&etcd, "a", AUTH)
    })
    .await;
    let (b, _b) = Server::start(Options {
        admin_token: Some(ADMIN),
        ..node_options(&etcd, "b", AUTH)
    })
    .await;
    let first = signup(&a, "many@example.com").await;
    let mut tokens = vec![token(&first).to_string()];
    for _ in 0..60 {
        tokens.push(login(&a, "many@example.com").await);
    }
    let id = first["user"]["id"].as_str().expect("a user id");
    let (status, body) = call(
        &b,
        Method::POST,
        &format!("/admin/users/{id}/disable"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // b answered once its copy had every session revoked; a follows.
    for server in [&b, &a] {
        let mut refused = 0;
        for _ in 0..100 {
            refused = 0;
            for token in &tokens {
                let (status, _) = call(server, Method::GET, "/auth/me", Some(token), None).await;
                refused += usize::from(status == 401);
            }
            if refused == tokens.len() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            refused,
            tokens.len(),
            "every session ended on {}",
            server.base
        );
    }
}

#[tokio::test]
async fn an_account_signed_up_through_one_node_logs_in_through_another_at_once() {
    let etcd = Etcd::start().await;
    let (a, _a) = Server::start(node_options(&etcd, "a", "[auth]\n")).await;
    let (b, _b) = Server::start(node_options(&etcd, "b", "[auth]\n")).await;
    // No wait between the two: b's copy may lag a's by the watch's delay,
    // and a login that misses catches up with etcd before it answers.
    for round in 0..10 {
        let email = format!("quick{round}@example.com");
        signup(&a, &email).await;
        login(&b, &email).await;
    }
}
