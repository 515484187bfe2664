//! `examples/notes` under 1,000 tabs of one user: how long one edit takes
//! to reach every tab, and how many batches a burst of edits becomes.
//!
//!   usage: notes <ws-base-url> <user-token> <tabs> <edits> <burst>
//!
//! Opens `tabs` sockets of one user's notes object (client ids `t0`...),
//! each acknowledging every batch it gets (as the JS client does), plus a
//! writer socket. Then:
//! 1. `edits` single edits, 1 s apart, each a socket `put` from the writer;
//!    for each, the time from the send to each tab's receipt of its batch
//!    (this includes the 150 ms batching window);
//! 2. a burst of `burst` edits sent back to back; for each tab, how many
//!    batches carried them.
//!
//! Prints `key value` lines: delivery p50/p99/max (ms), all-tabs p50/max
//! (ms, per edit: until the last tab had it), the burst's send time (ms)
//! and its batches per tab (max, mean).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKES_AT_ONCE: usize = 64;

/// A batch as a tab saw it: which tab, the titles of its notes, when.
struct Seen {
    tab: usize,
    titles: Vec<String>,
    at: Instant,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, token, tabs, edits, burst] = args.as_slice() else {
        bail!("usage: notes <ws-base-url> <user-token> <tabs> <edits> <burst>");
    };
    let tabs: usize = tabs.parse().context("the number of tabs")?;
    let edits: usize = edits.parse().context("the number of edits")?;
    let burst: usize = burst.parse().context("the burst's size")?;

    let (seen_in, mut seen) = mpsc::unbounded_channel();
    let ids: Vec<usize> = (0..tabs).collect();
    for chunk in ids.chunks(HANDSHAKES_AT_ONCE) {
        let opened = futures_util::future::join_all(
            chunk
                .iter()
                .map(|tab| connect(base, token, format!("t{tab}"))),
        )
        .await;
        for (tab, ws) in chunk.iter().zip(opened) {
            tokio::spawn(listen(ws?, *tab, seen_in.clone()));
        }
    }
    let writer = connect(base, token, "writer".to_string()).await?;
    let (mut writer, writer_in) = writer.split();
    tokio::spawn(listen_in(writer_in, usize::MAX, seen_in));
    // Let the connects' resyncs settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while seen.try_recv().is_ok() {}

    let mut delivery = Vec::with_capacity(tabs * edits);
    let mut everyone = Vec::with_capacity(edits);
    for edit in 0..edits {
        let title = format!("edit-{edit}");
        let sent = Instant::now();
        writer
            .send(put(&title, &format!("e{edit}")))
            .await
            .context("sending an edit")?;
        let mut reached = 0;
        while reached < tabs {
            let batch = next(&mut seen).await?;
            if batch.tab != usize::MAX && batch.titles.contains(&title) {
                delivery.push(batch.at - sent);
                reached += 1;
            }
        }
        everyone.push(sent.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
        while seen.try_recv().is_ok() {}
    }

    let started = Instant::now();
    for i in 0..burst {
        writer
            .send(put(&format!("burst-{i}"), &format!("b{i}")))
            .await
            .context("sending the burst")?;
    }
    let burst_sent = started.elapsed();
    let mut got: HashMap<usize, (usize, usize)> = HashMap::new();
    let mut complete = 0;
    while complete < tabs {
        let batch = next(&mut seen).await?;
        let carried = batch
            .titles
            .iter()
            .filter(|t| t.starts_with("burst-"))
            .count();
        if batch.tab == usize::MAX || carried == 0 {
            continue;
        }
        let (changes, batches) = got.entry(batch.tab).or_default();
        *changes += carried;
        *batches += 1;
        if *changes == burst {
            complete += 1;
        }
    }
    let per_tab: Vec<usize> = got.values().map(|(_, batches)| *batches).collect();

    delivery.sort_unstable();
    everyone.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |v: &[Duration], q: f64| ms(v[((v.len() - 1) as f64 * q) as usize]);
    println!("delivery_p50_ms {:.1}", at(&delivery, 0.5));
    println!("delivery_p99_ms {:.1}", at(&delivery, 0.99));
    println!("delivery_max_ms {:.1}", at(&delivery, 1.0));
    println!("all_tabs_p50_ms {:.1}", at(&everyone, 0.5));
    println!("all_tabs_max_ms {:.1}", at(&everyone, 1.0));
    println!("burst_sent_ms {:.1}", ms(burst_sent));
    println!(
        "burst_batches_max {}",
        per_tab.iter().max().copied().unwrap_or(0)
    );
    println!(
        "burst_batches_mean {:.2}",
        per_tab.iter().sum::<usize>() as f64 / per_tab.len().max(1) as f64
    );
    Ok(())
}

fn put(title: &str, request_id: &str) -> Message {
    Message::text(
        json!({ "type": "put", "title": title, "body": "bench", "request_id": request_id })
            .to_string(),
    )
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> anyhow::Result<Seen> {
    match tokio::time::timeout(Duration::from_secs(30), seen.recv()).await {
        Ok(Some(batch)) => Ok(batch),
        _ => bail!("no batch for 30 s"),
    }
}

async fn connect(base: &str, token: &str, client_id: String) -> anyhow::Result<Ws> {
    let url = format!("{base}/me/notes/ws?client_id={client_id}");
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .with_context(|| format!("connecting {url}"))?;
    Ok(ws)
}

/// Acknowledges every batch of tab `tab` and reports its notes' titles.
async fn listen(ws: Ws, tab: usize, seen: mpsc::UnboundedSender<Seen>) {
    let (mut sink, stream) = ws.split();
    let (acks_in, mut acks) = mpsc::unbounded_channel::<i64>();
    tokio::spawn(async move {
        while let Some(seq) = acks.recv().await {
            let ack = json!({ "type": "ack", "seq": seq }).to_string();
            if sink.send(Message::text(ack)).await.is_err() {
                return;
            }
        }
    });
    read(stream, tab, seen, acks_in).await;
}

/// [`listen`] for the writer, whose sink sends the edits.
async fn listen_in(
    stream: futures_util::stream::SplitStream<Ws>,
    tab: usize,
    seen: mpsc::UnboundedSender<Seen>,
) {
    // The writer does not acknowledge: its resends are a few messages.
    let (acks_in, _acks) = mpsc::unbounded_channel();
    read(stream, tab, seen, acks_in).await;
}

async fn read(
    mut stream: futures_util::stream::SplitStream<Ws>,
    tab: usize,
    seen: mpsc::UnboundedSender<Seen>,
    acks: mpsc::UnboundedSender<i64>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let at = Instant::now();
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(seq) = message["seq"].as_i64() {
            let _ = acks.send(seq);
        }
        if message["type"] != "sync" {
            continue;
        }
        let titles = message["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|change| change["note"]["title"].as_str().map(str::to_string))
            .collect();
        if seen.send(Seen { tab, titles, at }).is_err() {
            return;
        }
    }
}
