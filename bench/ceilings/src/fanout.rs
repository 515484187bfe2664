//! The floor under fan-out: the CPU time one thread spends writing a small
//! WebSocket frame to each of many loopback TCP connections while a client
//! process reads them all, as podhost does for each subscriber of a
//! publish. On loopback the sender's write also runs the receiving side's
//! TCP processing and wakes its reader, so this is what a delivery costs
//! the sending process before any of podhost's own work.
//!
//! The client is this program again (`fanout-client`): each side of
//! `connections` sockets needs its own open files.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::AsyncReadExt as _;

/// A text frame as a chat message to one subscriber: a 2-byte header and
/// 62 bytes of payload.
const FRAME: [u8; 64] = {
    let mut frame = [b'x'; 64];
    frame[0] = 0x81;
    frame[1] = 62;
    frame
};
/// Between rounds, as `bench/fanout` publishes: the client drains, acks
/// are sent, and the next round finds every socket idle again.
const PAUSE: Duration = Duration::from_millis(200);

/// Server CPU per delivered frame, in µs.
pub fn measure(connections: usize, rounds: usize) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot listen on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    let mut client = Client::start(port, connections)?;
    let mut sockets = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (socket, _) = listener.accept().with_context(|| {
            format!(
                "cannot accept connection {} of {connections} (each side needs that many \
                 open files: raise ulimit -n or lower --connections)",
                sockets.len() + 1
            )
        })?;
        // As podhost's gateway does.
        socket.set_nodelay(true)?;
        sockets.push(socket);
    }
    client.wait_ready()?;
    let mut cpu = Duration::ZERO;
    for _ in 0..rounds {
        let start = thread_cpu()?;
        for socket in &mut sockets {
            socket
                .write_all(&FRAME)
                .context("a loopback write failed")?;
        }
        cpu += thread_cpu()? - start;
        std::thread::sleep(PAUSE);
    }
    drop(sockets);
    let expected = (connections * rounds * FRAME.len()) as u64;
    let received = client.finish()?;
    if received != expected {
        bail!("the client read {received} bytes of the {expected} sent");
    }
    Ok(cpu.as_secs_f64() * 1e6 / (connections * rounds) as f64)
}

/// This thread's CPU time, user and system.
fn thread_cpu() -> anyhow::Result<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot read the thread's CPU time");
    }
    Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

/// The reading side, in its own process.
struct Client {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    fn start(port: u16, connections: usize) -> anyhow::Result<Client> {
        let mut child = Command::new(std::env::current_exe().context("cannot find this program")?)
            .args(["fanout-client", &port.to_string(), &connections.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start the fan-out client")?;
        let stdout = BufReader::new(child.stdout.take().context("the client's output")?);
        Ok(Client { child, stdout })
    }

    fn line(&mut self, what: &str) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        if line.is_empty() {
            let status = self.child.wait()?;
            bail!("the fan-out client ended ({status}) before {what}");
        }
        Ok(line.trim().to_string())
    }

    /// Waits until every connection of the client is being read.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let line = self.line("it was ready")?;
        (line == "ready")
            .then_some(())
            .with_context(|| format!("the fan-out client said {line:?}"))
    }

    /// The bytes the client read, once every connection ended.
    fn finish(mut self) -> anyhow::Result<u64> {
        let line = self.line("it counted what it read")?;
        self.child.wait()?;
        line.parse()
            .with_context(|| format!("the fan-out client said {line:?}"))
    }
}

/// The client: opens `connections` to the port, reads each until it ends
/// (one task per connection on one thread, as `bench/fanout` reads its
/// subscribers), then prints the bytes read.
pub fn client(port: u16, connections: usize) -> anyhow::Result<()> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .with_context(|| format!("cannot open connection {}", streams.len() + 1))?;
        stream.set_nonblocking(true)?;
        streams.push(stream);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the async runtime")?;
    let read = runtime.block_on(async move {
        let mut readers = tokio::task::JoinSet::new();
        for stream in streams {
            let mut stream = tokio::net::TcpStream::from_std(stream)?;
            readers.spawn(async move {
                let mut buffer = [0u8; 4096];
                let mut read = 0u64;
                while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                    read += n as u64;
                }
                read
            });
        }
        // Every reader polls once, so each connection is watched.
        tokio::task::yield_now().await;
        println!("ready");
        std::io::stdout().flush()?;
        let mut read = 0;
        while let Some(count) = readers.join_next().await {
            read += count?;
        }
        anyhow::Ok(read)
    })?;
    println!("{read}");
    Ok(())
}
