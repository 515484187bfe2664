//! Guests' stdout and stderr in the host log: rate-limited per object with
//! a notice of what was dropped, counted in `/metrics`, escaped so that a
//! guest cannot forge a host line, and written off the serving threads so
//! a slow log reader stalls nobody.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{Options, Server, eventually, guest};

#[tokio::test]
async fn a_flood_of_guest_output_is_dropped_counted_and_noticed() {
    let (server, _dir) = Server::start(Options::default()).await;
    // 8 MB in 8,000 lines, in one event: far over the default 64 KiB burst.
    let line = format!("{}\n", "x".repeat(999));
    let started = Instant::now();
    let (status, body) = server
        .post("/objects/probe/flood/print?repeat=8000", line.clone())
        .await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(10), "the flood took {took:?}");

    let dropped = server.metric("podhost_guest_log_dropped_bytes_total").await;
    assert!(
        (7_000_000..=8_000_000).contains(&dropped),
        "most of the 8 MB is dropped and counted: {dropped}"
    );
    let noticed = eventually(Duration::from_secs(5), || async {
        server.log().lines().any(|l| {
            l.contains("guest output over the object's log rate was dropped")
                && l.contains("object=\"flood\"")
        })
    })
    .await;
    assert!(noticed, "a drop notice; log:\n{}", tail(&server.log()));
    let log = server.log();
    let kept = log
        .lines()
        .filter(|l| l.contains("podhost::guest") && l.contains("xxxx"))
        .count();
    // The 64 KiB burst, plus what 16 KiB/s refills while the flood runs
    // (a second or more on a busy machine): about 65 lines, 17 a second.
    let allowed = (65_536 + 16_384 * (took.as_secs() + 1)) / 1_000;
    assert!(
        (1..=allowed as usize).contains(&kept),
        "only the burst's worth of lines is logged: {kept} of at most {allowed}"
    );
    let notices = log
        .lines()
        .filter(|l| l.contains("log rate was dropped") && l.contains("object=\"flood\""))
        .count();
    // A notice at most once a second (the notice period) while the flood
    // lasts, and one after it: not one per dropped line.
    let most_notices = took.as_secs() as usize + 2;
    assert!(
        notices <= most_notices,
        "one notice per period, not per line: {notices} in {took:?}"
    );
    // Another object still has its own allowance.
    assert_eq!(
        server
            .post("/objects/probe/quiet/print", "a quiet line\n")
            .await
            .0,
        200
    );
    let logged = eventually(Duration::from_secs(5), || async {
        server.log().contains("line=\"a quiet line\"")
    })
    .await;
    assert!(logged, "log:\n{}", tail(&server.log()));
    server.stop().await;
}

#[tokio::test]
async fn a_guest_cannot_forge_a_host_log_line() {
    let (server, _dir) = Server::start(Options::default()).await;
    let forged = "ok\n1999-12-31T23:59:59.000000Z ERROR podhost::gateway: forged-one\r\n\
                  \r1999-12-31T23:59:59.000000Z ERROR podhost: forged-two\u{1b}[2K\u{1b}[1G\
                  \u{2028}1999-12-31T23:59:59.000000Z ERROR podhost: forged-three\n";
    for stream in ["stdout", "stderr"] {
        let (status, _) = server
            .post(
                &format!("/objects/probe/forger/print?stream={stream}"),
                forged,
            )
            .await;
        assert_eq!(status, 200);
    }
    // Both streams' records, each holding two forged lines: four in all
    // (the stderr records may land after the stdout ones).
    let logged = eventually(Duration::from_secs(5), || async {
        let log = server.log();
        let forged = log.lines().filter(|l| l.contains("forged-"));
        forged.filter(|l| l.contains("stream=\"stderr\"")).count() == 2
    })
    .await;
    let log = server.log();
    assert!(logged, "log:\n{}", tail(&log));
    assert!(
        !log.contains(['\r', '\u{1b}', '\u{2028}']),
        "no raw carriage return, escape or line separator reaches the log"
    );
    let forged_lines: Vec<&str> = log.lines().filter(|l| l.contains("forged-")).collect();
    assert_eq!(forged_lines.len(), 4, "{forged_lines:#?}");
    for line in forged_lines {
        assert!(
            !line.starts_with("1999-12-31"),
            "a line starts with the guest's timestamp: {line}"
        );
        let (head, text) = line.split_once(" line=\"").expect("a `line` field");
        assert!(
            head.contains(" DEBUG podhost::guest: ") && !head.contains("ERROR"),
            "the record is the host's, at the guest's level: {line}"
        );
        assert!(text.ends_with('"'), "the text is one quoted field: {line}");
    }
    server.stop().await;
}

/// The server's stderr is a pipe nobody reads, so its log writer is stuck
/// once the pipe is full; requests must not notice.
#[tokio::test]
async fn a_stuck_log_reader_stalls_no_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
         [logs]\nmax_bytes_per_second = 100000000\nburst_bytes = 100000000\n\
         [classes.probe]\npath = {:?}\n[classes.counter]\npath = {:?}\n",
        guest("probe").display().to_string(),
        guest("counter").display().to_string(),
    );
    let config_path = dir.path().join("podhost.toml");
    std::fs::write(&config_path, config).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podhost"))
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info,podhost=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting podhost");
    // Held, never read: once its buffer is full, writes to it block.
    let _stderr = child.stderr.take().expect("piped stderr");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("podhost starts")
    .expect("stdout readable")
    .expect("a line");
    let base = line
        .strip_prefix("podhost listening on ")
        .expect("the listening line")
        .to_string();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // 16 MB of lines: fills the pipe, then the writer's queue.
    let text = format!("{}\n", "y".repeat(999));
    for round in 0..4 {
        let response = client
            .post(format!(
                "{base}/objects/probe/loud-{round}/print?repeat=4000"
            ))
            .body(text.clone())
            .send()
            .await
            .expect("print sent");
        assert_eq!(response.status(), 200);
    }
    let metric = async |name: &str| -> u64 {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    // The log really is stuck: records are being dropped.
    let mut stuck = false;
    for _ in 0..100 {
        if metric("podhost_log_dropped_records_total").await > 0 {
            stuck = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stuck, "the log writer should be stuck on the full pipe");

    // Everyone else answers at once, new objects included, while a guest
    // keeps printing.
    let printer = {
        let client = client.clone();
        let url = format!("{base}/objects/probe/still-loud/print?repeat=4000");
        let text = text.clone();
        tokio::spawn(async move { client.post(url).body(text).send().await })
    };
    for n in 1..=20u32 {
        let started = Instant::now();
        let health = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        let counted = client
            .post(format!("{base}/objects/counter/bystander-{}", n % 4))
            .send()
            .await
            .expect("counter");
        assert_eq!(counted.status(), 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "round {n} took {took:?} with the log stuck"
        );
    }
    let printed = printer.await.expect("printer task").expect("printed");
    assert_eq!(printed.status(), 200);
}

/// The last lines of a log, for failure messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
