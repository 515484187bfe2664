//! The WASI context of an object: Rust guests import WASI even when unused,
//! so it is linked, but it grants nothing: no files, no network, no host
//! environment. A guest's stdout and stderr go to the host log, tagged with
//! the object, one line at a time.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::object::ObjectAddr;

/// The longest line kept from a guest; the rest is cut.
const MAX_LINE: usize = 4096;

pub fn context(object: &Arc<ObjectAddr>) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(GuestLog::new(object, "stdout"))
        .stderr(GuestLog::new(object, "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

#[derive(Clone)]
struct GuestLog {
    object: Arc<ObjectAddr>,
    stream: &'static str,
}

impl GuestLog {
    fn new(object: &Arc<ObjectAddr>, stream: &'static str) -> Self {
        GuestLog {
            object: Arc::clone(object),
            stream,
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
        })
    }
}

/// Collects bytes into lines and logs each complete line.
struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        tracing::info!(
            target: "podhost::guest",
            class = self.log.object.class(),
            object = self.log.object.name(),
            stream = self.log.stream,
            "{}",
            text.trim_end()
        );
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}
