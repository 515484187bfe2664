//! Fan-out from one publish to N WebSocket subscribers of one chat room,
//! and the server's memory per idle socket.
//!
//!   usage: fanout <ws-base-url> <server-pid> <publishes> <N>...
//!
//! For each N: opens N subscribers to a fresh room (64 handshakes at a
//! time), waits for the room to go quiet, reads the server's RSS growth
//! per socket, then publishes `publishes` messages 200 ms apart and
//! records, for every subscriber and message, the time from the send to
//! its arrival. Prints one line per N: `N p50_ms p99_ms max_ms
//! rss_per_socket_bytes cpu_us_per_delivery`.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fanout::process::{cpu_micros, rss_bytes};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKES_AT_ONCE: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, pid, publishes, sizes @ ..] = args.as_slice() else {
        bail!("usage: fanout <ws-base-url> <server-pid> <publishes> <N>...");
    };
    let pid: u32 = pid.parse().context("the server's pid")?;
    let publishes: usize = publishes.parse().context("the number of publishes")?;
    let start = Instant::now();
    for size in sizes {
        let n: usize = size.parse().context("a subscriber count")?;
        let room = format!("fanout-{n}-{}", std::process::id());
        let before = rss_bytes(pid)?;
        let subscribers = connect_many(base, &room, n).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let per_socket = rss_bytes(pid)?.saturating_sub(before) / n as u64;

        let (latency_in, mut latencies) = mpsc::unbounded_channel();
        for ws in subscribers {
            tokio::spawn(listen(ws, start, latency_in.clone()));
        }
        drop(latency_in);
        let mut publisher = connect(base, &room, "publisher").await?;
        let cpu_before = cpu_micros(pid)?;
        for _ in 0..publishes {
            let sent = start.elapsed().as_micros().to_string();
            let text = serde_json::json!({ "text": "fan", "client_id": sent }).to_string();
            publisher.send(Message::text(text)).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut samples = Vec::with_capacity(n * publishes);
        while samples.len() < n * publishes {
            match tokio::time::timeout(Duration::from_secs(30), latencies.recv()).await {
                Ok(Some(micros)) => samples.push(micros),
                _ => bail!(
                    "only {} of {} deliveries arrived",
                    samples.len(),
                    n * publishes
                ),
            }
        }
        let cpu_per_delivery =
            cpu_micros(pid)?.saturating_sub(cpu_before) as f64 / (n * publishes) as f64;
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        println!(
            "{n} {:.1} {:.1} {:.1} {per_socket} {cpu_per_delivery:.1}",
            at(0.5),
            at(0.99),
            at(1.0)
        );
        drop(publisher);
        // The listeners end with their sockets when the room closes them
        // at the end of the process; give the server a moment between rounds.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

async fn connect(base: &str, room: &str, name: &str) -> anyhow::Result<Ws> {
    let url = format!("{base}/objects/chat/{room}/ws?name={name}");
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&url, None, true)
        .await
        .with_context(|| format!("connecting {url}"))?;
    // The history comes first: the socket is open in the room.
    ws.next().await.context("no history")??;
    Ok(ws)
}

async fn connect_many(base: &str, room: &str, n: usize) -> anyhow::Result<Vec<Ws>> {
    let mut sockets = Vec::with_capacity(n);
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    for chunk in names.chunks(HANDSHAKES_AT_ONCE) {
        let opened =
            futures_util::future::join_all(chunk.iter().map(|name| connect(base, room, name)))
                .await;
        for ws in opened {
            sockets.push(ws?);
        }
    }
    Ok(sockets)
}

/// Reports, for each broadcast message, microseconds since it was sent.
/// The send time rides in `client_id`; it is found without parsing the
/// JSON, to keep the client's share of the CPU small.
async fn listen(mut ws: Ws, start: Instant, latencies: mpsc::UnboundedSender<u64>) {
    const MARK: &str = "\"client_id\":\"";
    while let Some(Ok(frame)) = ws.next().await {
        let Message::Text(text) = frame else { continue };
        let now = start.elapsed().as_micros() as u64;
        let sent = text
            .find(MARK)
            .map(|at| &text[at + MARK.len()..])
            .and_then(|rest| rest.split('"').next())
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(sent) = sent
            && latencies.send(now.saturating_sub(sent)).is_err()
        {
            return;
        }
    }
}
