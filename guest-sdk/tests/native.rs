//! A class's `cargo test` runs natively, where podhost's imports do not
//! exist: SDK calls there must fail as an ordinary panic that says what to
//! do, not abort the whole test binary.

use podhost_sdk::{kv, sql};

#[test]
#[should_panic(expected = "podhost::testing")]
fn kv_outside_podhost_says_to_use_the_harness() {
    let _ = kv::get::<String>("key");
}

#[test]
#[should_panic(expected = "podhost::testing")]
fn sql_outside_podhost_says_to_use_the_harness() {
    let _ = sql::exec("SELECT 1", ());
}

#[test]
fn a_failed_call_leaves_the_test_binary_running() {
    let caught = std::panic::catch_unwind(podhost_sdk::context::this_object);
    assert!(caught.is_err(), "the call panics");
    // Still here: the panic unwound instead of aborting.
}

#[test]
#[should_panic(expected = "podhost::testing")]
fn fetch_outside_podhost_says_to_use_the_harness() {
    use podhost_sdk::http::{Request, fetch};
    let _ = fetch(Request::get("https://api.example.com/"));
}
