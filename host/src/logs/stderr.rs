//! The host log's writer: every formatted record goes into a bounded queue
//! that one thread writes to stderr. A slow reader of stderr (a full pipe)
//! then stalls only that thread, never a thread serving requests or running
//! guests; when the queue is full, records are dropped and counted.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::queue::{Pop, Queue};

/// Bytes of formatted records that may wait for stderr.
pub const QUEUE_BYTES: usize = 8 << 20;

/// How long the guard waits at exit for queued records to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Records dropped because stderr was not keeping up, since the start.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log records the host dropped because stderr was not keeping up.
pub fn dropped_records() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A `MakeWriter` for `tracing_subscriber::fmt` that never blocks.
#[derive(Clone)]
pub struct NonBlockingStderr {
    queue: Arc<Queue<Vec<u8>>>,
}

/// Keep it alive while logging: dropping it writes out what is queued
/// (waiting at most a couple of seconds) and stops the writer thread.
pub struct FlushGuard {
    queue: Arc<Queue<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl NonBlockingStderr {
    /// Starts the writer thread.
    pub fn start() -> io::Result<(NonBlockingStderr, FlushGuard)> {
        let queue: Arc<Queue<Vec<u8>>> = Arc::new(Queue::new(QUEUE_BYTES));
        let (done_tx, done) = mpsc::channel();
        let drained = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("podhost-log".into())
            .spawn(move || {
                let mut stderr = io::stderr().lock();
                loop {
                    match drained.pop(Duration::from_secs(3600)) {
                        // Nothing to do about a failing stderr but go on.
                        Pop::Item(record) => drop(stderr.write_all(&record)),
                        Pop::Empty => {}
                        Pop::Closed => break,
                    }
                }
                let _ = stderr.flush();
                let _ = done_tx.send(());
            })?;
        let writer = NonBlockingStderr {
            queue: Arc::clone(&queue),
        };
        Ok((writer, FlushGuard { queue, done }))
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.queue.close();
        let _ = self.done.recv_timeout(FLUSH_TIMEOUT);
    }
}

impl<'a> MakeWriter<'a> for NonBlockingStderr {
    type Writer = RecordWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RecordWriter {
            queue: &self.queue,
            record: Vec::new(),
        }
    }
}

/// Collects one formatted record and queues it whole when dropped, so
/// records never interleave.
pub struct RecordWriter<'a> {
    queue: &'a Queue<Vec<u8>>,
    record: Vec<u8>,
}

impl Write for RecordWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.record.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for RecordWriter<'_> {
    fn drop(&mut self) {
        if self.record.is_empty() {
            return;
        }
        let record = std::mem::take(&mut self.record);
        let bytes = record.len();
        if !self.queue.push(record, bytes) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
