//! Slow, idle and numerous clients: the `[server]` timeouts and caps, and
//! accepting when the process is out of files.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Options, Server, eventually};

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

fn address(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address")
}

/// A connection to the server from local address `from` (127.0.0.x).
async fn connect_from(server: &Server, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("binding a loopback address");
    socket.connect(address(server)).await.expect("connect")
}

/// Reads what the server sends until it closes the connection: the bytes,
/// and whether it closed within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&received).into(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), false),
        }
    }
}

/// Sends one request on a kept-alive connection and reads its response
/// (a `/healthz`, whose body is `ok\n`).
async fn healthz_on(stream: &mut TcpStream) -> String {
    stream.write_all(HEALTHZ).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.ends_with(b"ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("a response within 5 s")
            .expect("readable");
        assert!(n > 0, "closed before the response: {received:?}");
        received.extend_from_slice(&buffer[..n]);
    }
    String::from_utf8_lossy(&received).into()
}

#[tokio::test]
async fn a_client_stalling_in_its_headers_is_disconnected_while_others_are_served() {
    let options = Options {
        extra_config: "[server]\nheader_read_timeout = \"1s\"\nidle_connection_timeout = \"30s\"\n",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let started = Instant::now();
    let mut stalled = TcpStream::connect(address(&server)).await.expect("connect");
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ")
        .await
        .expect("half a head");
    let mut silent = TcpStream::connect(address(&server)).await.expect("connect");

    // Others are served meanwhile.
    assert_eq!(server.get("/healthz").await, (200, "ok\n".into()));

    let (reply, closed) = read_until_closed(&mut stalled, Duration::from_secs(6)).await;
    assert!(closed, "a half-sent head is cut off");
    assert!(!reply.contains("200"), "{reply}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(closed, "a connection that sends nothing is cut off too");
    assert_eq!(server.get("/healthz").await, (200, "ok\n".into()));
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_own_timeout() {
    let options = Options {
        extra_config: "[server]\nheader_read_timeout = \"1s\"\nidle_connection_timeout = \"3s\"\n",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let mut kept = TcpStream::connect(address(&server)).await.expect("connect");
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"));
    // Idle longer than the header timeout: a kept-alive connection waiting
    // for its next request is idle, not slow.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(healthz_on(&mut kept).await.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let (_, closed) = read_until_closed(&mut kept, Duration::from_secs(8)).await;
    assert!(closed, "an idle connection is closed");
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(2500) && idle < Duration::from_secs(6),
        "closed after {idle:?}, the idle timeout is 3 s"
    );
    server.stop().await;
}

#[tokio::test]
async fn connections_per_address_are_capped() {
    let options = Options {
        extra_config: "[server]\nmax_connections_per_address = 4\n",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(&server, [127, 0, 0, 1]).await;
        assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let mut extra = connect_from(&server, [127, 0, 0, 1]).await;
    let _ = extra.write_all(HEALTHZ).await;
    let (reply, closed) = read_until_closed(&mut extra, Duration::from_secs(5)).await;
    assert!(closed, "the extra connection is closed");
    // Refused with a 503 saying why, not silently dropped (an empty reply
    // would also pass for a server that crashed).
    assert!(
        reply.starts_with("HTTP/1.1 503") && reply.contains("too_many_connections"),
        "the extra connection is refused: {reply:?}"
    );
    assert!(!reply.contains("ok\n"), "{reply}");

    // Another address is served.
    let mut other = connect_from(&server, [127, 0, 0, 2]).await;
    assert!(healthz_on(&mut other).await.starts_with("HTTP/1.1 200"));

    // A slot that closes comes back.
    drop(held.pop());
    let served_again = eventually(Duration::from_secs(5), || async {
        let mut stream = connect_from(&server, [127, 0, 0, 1]).await;
        let _ = stream.write_all(HEALTHZ).await;
        let (reply, _) = read_until_closed(&mut stream, Duration::from_millis(500)).await;
        reply.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(served_again);
    drop(held);
    server.stop().await;
}

/// 400 idle sockets against a server that may open 200 files: the ones it
/// has no file for are refused at once (not left hanging in the backlog),
/// and once the header timeout has freed the idle ones, `/healthz` answers.
#[tokio::test]
async fn a_server_out_of_files_keeps_accepting_and_recovers() {
    let options = Options {
        file_limit: Some(200),
        max_active: 16,
        extra_config: "[server]\nheader_read_timeout = \"4s\"\nmax_connections_per_address = 100000\n",
        ..Options::default()
    };
    let (server, _dir) = Server::start(options).await;
    let mut idle = Vec::new();
    for _ in 0..400 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(address(&server))).await
        {
            idle.push(stream);
        }
    }
    // Within a second, well before the header timeout, those the server
    // had no file for were accepted and closed.
    let mut refused = vec![false; idle.len()];
    for _ in 0..2 {
        for (stream, refused) in idle.iter_mut().zip(&mut refused) {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(2), stream.read(&mut byte));
            if !*refused && read.await.is_ok() {
                *refused = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let refused = refused.iter().filter(|r| **r).count();
    assert!(
        refused >= 100,
        "only {refused} of 400 connections were refused while the server was out of files; log:\n{}",
        server.log()
    );
    let healthy = eventually(Duration::from_secs(15), || async {
        let Ok(mut stream) = TcpStream::connect(address(&server)).await else {
            return false;
        };
        let _ = stream.write_all(HEALTHZ).await;
        let (reply, _) = read_until_closed(&mut stream, Duration::from_millis(500)).await;
        reply.starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(healthy, "/healthz answers again; log:\n{}", server.log());
    assert!(server.log().contains("out of file descriptors"));
    drop(idle);
    server.stop().await;
}
