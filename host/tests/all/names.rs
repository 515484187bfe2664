//! Object names and handles are Unicode-normalised (NFC): spellings that a
//! person cannot tell apart reach one object, not two.

use crate::support::{Options, Server};

/// "café" with a precomposed é (NFC) and with e + combining acute (NFD),
/// percent-encoded as a client sends them.
const NFC: &str = "caf%C3%A9";
const NFD: &str = "cafe%CC%81";

#[tokio::test]
async fn nfc_and_nfd_spellings_of_a_name_reach_one_object() {
    let (server, _dir) = Server::start(Options::default()).await;
    assert_eq!(
        server
            .post(&format!("/objects/probe/{NFD}/write"), "first")
            .await
            .0,
        200
    );
    let (status, state) = server
        .get_json(&format!("/objects/probe/{NFC}/state"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(state["notes"], serde_json::json!(["first"]), "{state}");

    let (_, nfc) = server
        .get_json(&format!("/objects/probe/{NFC}/whoami"))
        .await;
    let (_, nfd) = server
        .get_json(&format!("/objects/probe/{NFD}/whoami"))
        .await;
    assert_eq!(nfc, nfd);
    assert_eq!(nfc["name"], "caf\u{e9}", "the object knows its NFC name");
    server.stop().await;
}

#[tokio::test]
async fn handles_are_normalised_like_names() {
    let options = Options {
        admin_token: Some("an-admin-token-long-enough-for-any-minimum-0123"),
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let admin = "Bearer an-admin-token-long-enough-for-any-minimum-0123";
    // The handle is set in NFD and points at the NFD spelling.
    let response = server
        .client
        .put(server.url(&format!("/admin/handles/probe/{NFD}")))
        .header("authorization", admin)
        .body(serde_json::json!({ "name": "cafe\u{301}" }).to_string())
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200);
    // Reached in NFC, it leads to the object named in NFC.
    let (status, who) = server
        .get_json(&format!("/handles/probe/{NFC}/whoami"))
        .await;
    assert_eq!(status, 200, "{who}");
    let (_, direct) = server
        .get_json(&format!("/objects/probe/{NFC}/whoami"))
        .await;
    assert_eq!(who, direct);
    server.stop().await;
}
