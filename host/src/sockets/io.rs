//! A connection's bytes as tungstenite reads them: through a buffer each
//! thread shares, so that a socket keeps no read buffer of its own for
//! reading small messages.
//!
//! tungstenite reads at most its configured read size per call, and fills
//! that much of its own buffer with zeros first; the buffer stays for the
//! socket's life. At 2 KiB per read that was 2 KiB resident in every idle
//! socket; at the small read size podhost gives it ([`CODEC_READ_BYTES`])
//! a large message would take a system call per few hundred bytes. So
//! each read from the connection takes up to [`SCRATCH_BYTES`] into the
//! thread's scratch buffer, hands tungstenite what fits, and keeps the
//! rest on the heap only until tungstenite's next reads take it (the same
//! wake, unless a whole message arrived: then after the object handled
//! it, so a socket holds at most `SCRATCH_BYTES` here). A read that finds
//! nothing holds nothing.
//!
//! tungstenite reserves a frame's whole length in its own buffer when the
//! frame's header arrives; the vendored codec gives it back once the
//! message is read (`codec.rs`).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much tungstenite asks for per read, and so what an idle socket's
/// codec keeps: a chat message or a control frame in one call.
pub const CODEC_READ_BYTES: usize = 256;
/// The most one read from the connection takes (a 1 MiB message in 64),
/// and so the most a socket keeps between its codec's reads.
const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

pub struct SharedReads<T> {
    inner: T,
    /// Read from the connection, not yet taken by tungstenite; empty (and
    /// unallocated) between messages.
    kept: Vec<u8>,
    taken: usize,
}

impl<T> SharedReads<T> {
    pub fn new(inner: T) -> Self {
        SharedReads {
            inner,
            kept: Vec::new(),
            taken: 0,
        }
    }

    /// Hands `buf` what fits of the kept bytes; frees them once all taken.
    fn take_kept(&mut self, buf: &mut ReadBuf<'_>) {
        let n = buf.remaining().min(self.kept.len() - self.taken);
        buf.put_slice(&self.kept[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.kept.len() {
            self.kept = Vec::new();
            self.taken = 0;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SharedReads<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.taken < this.kept.len() {
            this.take_kept(buf);
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= SCRATCH_BYTES {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            // Only this function borrows it, and never across an await; a
            // nested read (none is known) would read directly instead.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            };
            let mut read = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let read = read.filled();
            let n = buf.remaining().min(read.len());
            buf.put_slice(&read[..n]);
            this.kept.extend_from_slice(&read[n..]);
            Poll::Ready(Ok(()))
        })
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SharedReads<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_take_one_large_read_in_turn_then_keep_nothing() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let sent: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&sent).await.expect("written");
        let mut reads = SharedReads::new(server);
        let mut got = Vec::new();
        let mut chunk = [0u8; CODEC_READ_BYTES];
        while got.len() < sent.len() {
            let n = reads.read(&mut chunk).await.expect("read");
            assert!(n > 0 && n <= CODEC_READ_BYTES);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, sent);
        assert_eq!(reads.kept.capacity(), 0, "nothing kept once all was taken");
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_caller() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(&[7; 20_000]).await.expect("written");
        let mut reads = SharedReads::new(server);
        let mut big = vec![0u8; SCRATCH_BYTES];
        let n = reads.read(&mut big).await.expect("read");
        assert_eq!(n, SCRATCH_BYTES);
        assert!(reads.kept.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_connection_is_a_read_of_nothing() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"bye").await.expect("written");
        drop(client);
        let mut reads = SharedReads::new(server);
        let mut got = Vec::new();
        reads.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"bye");
    }
}
