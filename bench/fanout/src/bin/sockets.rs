//! Many idle WebSockets on one host: opens sockets to `examples/chat`
//! rooms and reads the server's resident memory per socket.
//!
//!   usage: sockets <ws-base-url> <server-pid> <count> <per-room> <sources>
//!
//! Opens `count` sockets, `per-room` to a room (64 handshakes at a time),
//! each bound to one of `sources` loopback addresses (127.0.0.2, ...):
//! one address has only the ephemeral port range to connect from. Stops
//! at the first socket that fails and prints `ERROR n <why>`, n being the
//! sockets open before it. Then, with the room quiet, prints
//! `OPEN n rss_growth_bytes open_files` (the server's RSS growth since
//! before the first socket, and its open files).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fanout::process::{open_files, rss_bytes};
use futures_util::StreamExt as _;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;

const HANDSHAKES_AT_ONCE: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, pid, count, per_room, sources] = args.as_slice() else {
        bail!("usage: sockets <ws-base-url> <server-pid> <count> <per-room> <sources>");
    };
    let server: SocketAddr = base
        .strip_prefix("ws://")
        .context("the base is ws://127.0.0.1:port")?
        .trim_end_matches('/')
        .parse()
        .context("the base's address")?;
    let pid: u32 = pid.parse().context("the server's pid")?;
    let count: usize = count.parse().context("the socket count")?;
    let per_room: usize = per_room.parse().context("sockets per room")?;
    let sources: u8 = sources.parse().context("the source address count")?;
    if per_room == 0 || sources == 0 || sources > 250 {
        bail!("per-room must be at least 1, sources 1 to 250");
    }
    let before = rss_bytes(pid)?;
    let mut open = Vec::with_capacity(count);
    let run = std::process::id();
    'opening: for chunk in (0..count).collect::<Vec<_>>().chunks(HANDSHAKES_AT_ONCE) {
        let opened = futures_util::future::join_all(chunk.iter().map(|&i| {
            let source = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(sources)) as u8);
            let path = format!("/objects/chat/idle-{run}-{}/ws?name=s{i}", i / per_room);
            connect(server, source, path)
        }))
        .await;
        for ws in opened {
            match ws {
                Ok(ws) => open.push(ws),
                Err(error) => {
                    println!("ERROR {} {error:#}", open.len());
                    break 'opening;
                }
            }
        }
    }
    // Answer the server's pings, as an idle browser tab does.
    let n = open.len();
    for ws in open {
        tokio::spawn(ws.for_each(|_| async {}));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "OPEN {n} {} {}",
        rss_bytes(pid)?.saturating_sub(before),
        open_files(pid)?
    );
    Ok(())
}

async fn connect(
    server: SocketAddr,
    source: Ipv4Addr,
    path: String,
) -> anyhow::Result<WebSocketStream<TcpStream>> {
    let socket = TcpSocket::new_v4().context("a client socket")?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .with_context(|| format!("binding a client socket to {source}"))?;
    let stream = socket
        .connect(server)
        .await
        .with_context(|| format!("connecting from {source}"))?;
    let url = format!("ws://{server}{path}");
    let (mut ws, _) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::client_async(url.as_str(), stream),
    )
    .await
    .with_context(|| format!("no handshake for {url} within {HANDSHAKE_TIMEOUT:?}"))?
    .with_context(|| format!("opening {url}"))?;
    // The history comes first: the socket is open in its room.
    ws.next()
        .await
        .context("the socket closed before the room's history")?
        .context("reading the room's history")?;
    Ok(ws)
}
