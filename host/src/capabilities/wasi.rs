//! The WASI context of an object: Rust guests import WASI even when unused,
//! so it is linked, but it grants nothing: no files, no network, no host
//! environment. A guest's stdout and stderr are cut into lines handed to
//! the object's [`ObjectLog`], which never blocks the guest (see
//! `crate::logs`). The guest's writes are taken in place, on its own
//! thread: wasmtime-wasi's default adapter would pass each one to a task on
//! the async runtime and wait for it, a cross-thread round trip per line
//! that a busy host stretches to milliseconds.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, async_trait};

use crate::logs::{GuestLogs, ObjectLog};
use crate::object::ObjectAddr;

pub fn context(object: &Arc<ObjectAddr>, logs: &GuestLogs) -> WasiCtx {
    let log = logs.object(object);
    WasiCtxBuilder::new()
        .stdout(GuestStream::new(&log, "stdout"))
        .stderr(GuestStream::new(&log, "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

#[derive(Clone)]
struct GuestStream {
    log: Arc<ObjectLog>,
    stream: &'static str,
}

impl GuestStream {
    fn new(log: &Arc<ObjectLog>, stream: &'static str) -> Self {
        GuestStream {
            log: Arc::clone(log),
            stream,
        }
    }
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter::new(self))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter::new(self))
    }
}

/// What a guest may write at once: its writes never wait, so this only
/// bounds one host call's copy.
const WRITE_PERMIT: usize = 64 * 1024;

/// Collects bytes into lines (keeping at most the log's line length) and
/// hands each complete line to the object's log.
struct LineWriter {
    out: GuestStream,
    line: Vec<u8>,
    /// Bytes of the current line past the line length.
    cut: usize,
}

impl LineWriter {
    fn new(out: &GuestStream) -> Self {
        LineWriter {
            out: out.clone(),
            line: Vec::new(),
            cut: 0,
        }
    }

    /// Takes `bytes`, handing each line they complete to the log.
    fn take(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let mut line = &rest[..newline];
            // A CRLF ending is one line ending.
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            self.append(line);
            self.emit();
            rest = &rest[newline + 1..];
        }
        self.append(rest);
    }

    fn emit(&mut self) {
        if self.line.is_empty() && self.cut == 0 {
            return;
        }
        let line = std::mem::take(&mut self.line);
        let cut = std::mem::take(&mut self.cut);
        self.out.log.line(self.out.stream, line, cut);
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = self
            .out
            .log
            .max_line_bytes()
            .saturating_sub(self.line.len());
        let kept = bytes.len().min(room);
        self.line.extend_from_slice(&bytes[..kept]);
        self.cut += bytes.len() - kept;
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.take(buf);
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

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait]
impl Pollable for LineWriter {
    /// Always ready: writes are taken at once.
    async fn ready(&mut self) {}
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
    }
}
