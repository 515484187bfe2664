//! Many live objects on one host: activates objects of `examples/counter`
//! one `GET` each, and reads what they cost the server process.
//!
//!   usage: objects <http-base> <server-pid> <prefix> <checkpoint>...
//!
//! Activates objects `<prefix>-0`, `<prefix>-1`, ... over 16 kept-alive
//! connections, pausing at each checkpoint (a count of objects, ascending)
//! to print `AT n rss_kib mappings open_files objects_active` (the last
//! from the server's `/metrics`). It stops at the first failed request
//! and prints `ERROR n <status> <first line of the answer>`, n being the
//! objects activated before it, then a last `AT` line. It ends with
//! `REACHED n`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use fanout::process::{mappings, open_files, rss_bytes};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

const CONNECTIONS: usize = 16;
/// A request that takes longer than this counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger answers are cut: only their first line is reported.
const MAX_BODY: usize = 64 << 10;

/// One plain HTTP/1.1 connection, kept alive between requests.
struct Connection {
    stream: BufReader<TcpStream>,
}

/// An answer: its status and body.
struct Answer {
    status: u16,
    body: String,
}

impl Connection {
    async fn open(address: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
        })
    }

    async fn get(&mut self, path: &str) -> anyhow::Result<Answer> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path))
            .await
            .with_context(|| format!("no answer to GET {path} within {REQUEST_TIMEOUT:?}"))?
    }

    async fn exchange(&mut self, path: &str) -> anyhow::Result<Answer> {
        let head = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
        self.stream.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("the server closed the connection in a response's head");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        // podhost and the counter answer with known lengths; anything else
        // is reported rather than guessed at.
        let length = length.context("an answer without content-length")?;
        if length > MAX_BODY {
            bail!("an answer of {length} bytes");
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// The walk through object names, shared by the connections.
struct Walk {
    next: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicBool,
    first_error: Mutex<Option<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, pid, prefix, checkpoints @ ..] = args.as_slice() else {
        bail!("usage: objects <http-base> <server-pid> <prefix> <checkpoint>...");
    };
    let address = base
        .strip_prefix("http://")
        .context("the base is http://host:port")?
        .trim_end_matches('/')
        .to_owned();
    let pid: u32 = pid.parse().context("the server's pid")?;
    let checkpoints = checkpoints
        .iter()
        .map(|n| n.parse::<usize>().context("a checkpoint count"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut metrics = Connection::open(&address).await?;
    let walk = Arc::new(Walk {
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
    });
    report(pid, 0, &mut metrics).await?;
    for &until in &checkpoints {
        let mut connections = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let connection = Connection::open(&address).await?;
            connections.push(tokio::spawn(activate(
                connection,
                walk.clone(),
                prefix.clone(),
                until,
            )));
        }
        for connection in connections {
            connection.await?;
        }
        let done = walk.done.load(Ordering::SeqCst);
        if let Some(error) = walk.first_error.lock().await.take() {
            println!("ERROR {done} {error}");
        }
        report(pid, done, &mut metrics).await?;
        if walk.failed.load(Ordering::SeqCst) {
            break;
        }
    }
    println!("REACHED {}", walk.done.load(Ordering::SeqCst));
    Ok(())
}

/// Activates objects until the walk reaches `until` or a request fails.
async fn activate(mut connection: Connection, walk: Arc<Walk>, prefix: String, until: usize) {
    while !walk.failed.load(Ordering::SeqCst) {
        let i = walk.next.fetch_add(1, Ordering::SeqCst);
        if i >= until {
            // Not taken: the next stage starts from here.
            walk.next.fetch_min(until, Ordering::SeqCst);
            return;
        }
        let error = match connection
            .get(&format!("/objects/counter/{prefix}-{i}"))
            .await
        {
            Ok(answer) if answer.status == 200 => {
                walk.done.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Ok(answer) => format!(
                "{} {}",
                answer.status,
                answer.body.lines().next().unwrap_or("")
            ),
            Err(error) => format!("- {error:#}"),
        };
        if !walk.failed.swap(true, Ordering::SeqCst) {
            *walk.first_error.lock().await = Some(error);
        }
        return;
    }
}

async fn report(pid: u32, done: usize, metrics: &mut Connection) -> anyhow::Result<()> {
    let active = match metrics.get("/metrics").await {
        Ok(answer) => answer
            .body
            .lines()
            .find_map(|line| line.strip_prefix("podhost_objects_active "))
            .map_or("-".to_owned(), |value| value.trim().to_owned()),
        Err(_) => "-".to_owned(),
    };
    println!(
        "AT {done} {} {} {} {active}",
        rss_bytes(pid)? / 1024,
        mappings(pid)?,
        open_files(pid)?
    );
    Ok(())
}
