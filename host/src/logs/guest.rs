//! Guests' stdout and stderr on their way to the host log.
//!
//! A guest's write only appends to its line buffer and, for each complete
//! line, takes tokens from its object's bucket and pushes the bytes into a
//! queue bounded in bytes: it never formats, never writes and never waits.
//! One thread drains the queue into `tracing` records (target
//! `podhost::guest`) in which the guest's text is the escaped field `line`,
//! never a line of its own. What is over the object's rate, over the line
//! length or does not fit in the queue is dropped and counted in
//! `podhost_guest_log_dropped_bytes_total`; the log says so once per object
//! per period.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::escape::strip_terminal_escapes;
use super::queue::{Pop, Queue};
use super::ring::{Level, ObjectRings};
use crate::config::LogSettings;
use crate::metrics::Counter;
use crate::object::ObjectAddr;

/// At most one "dropped" notice per object per period.
const NOTICE_PERIOD: Duration = Duration::from_secs(1);

/// The host's end of guest logging, one per runtime; cheap to clone.
#[derive(Clone)]
pub struct GuestLogs {
    shared: Arc<Shared>,
}

struct Shared {
    settings: LogSettings,
    queue: Arc<Queue<Record>>,
    /// Bytes dropped for any reason, for `/metrics`.
    dropped: Arc<Counter>,
    /// Bytes dropped because the queue was full, since the last notice.
    queue_dropped: AtomicU64,
    /// Objects that dropped output and owe a notice.
    owing: Mutex<Vec<Weak<ObjectLog>>>,
    /// Each object's own log, which its lines go to as well.
    rings: Arc<ObjectRings>,
}

enum Record {
    Line {
        object: Arc<ObjectAddr>,
        stream: &'static str,
        /// The line, its terminal escapes stripped.
        text: String,
        /// Bytes cut off the end of an over-long line.
        cut: usize,
    },
    Dropped {
        object: Arc<ObjectAddr>,
        dropped: Dropped,
    },
}

/// The logging side of one object (shared by its stdout and stderr).
pub struct ObjectLog {
    object: Arc<ObjectAddr>,
    shared: Arc<Shared>,
    bucket: Mutex<Bucket>,
}

/// A token bucket in bytes, and what it refused since the last notice.
struct Bucket {
    tokens: f64,
    refilled: Instant,
    dropped: Dropped,
    /// When the first refusal since the last notice happened.
    owing_since: Option<Instant>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Dropped {
    bytes: u64,
    lines: u64,
}

impl GuestLogs {
    /// Starts the thread that writes guests' lines to the host log.
    /// `dropped` counts the bytes dropped.
    pub fn start(settings: LogSettings, dropped: Arc<Counter>) -> std::io::Result<GuestLogs> {
        let queue = Arc::new(Queue::new(settings.queue_bytes));
        let rings = Arc::new(ObjectRings::new(&settings));
        let shared = Arc::new(Shared {
            rings,
            settings,
            queue: Arc::clone(&queue),
            dropped,
            queue_dropped: AtomicU64::new(0),
            owing: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("podhost-guest-log".into())
            .spawn(move || drain(&queue, &weak))?;
        Ok(GuestLogs { shared })
    }

    /// Each object's own log (guest lines and host events).
    pub fn rings(&self) -> &Arc<ObjectRings> {
        &self.shared.rings
    }

    /// The log of `object`, for its stdout and stderr.
    pub fn object(&self, object: &Arc<ObjectAddr>) -> Arc<ObjectLog> {
        let settings = &self.shared.settings;
        Arc::new(ObjectLog {
            object: Arc::clone(object),
            shared: Arc::clone(&self.shared),
            bucket: Mutex::new(Bucket {
                tokens: settings.burst_bytes as f64,
                refilled: Instant::now(),
                dropped: Dropped::default(),
                owing_since: None,
            }),
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: let the thread drain and stop.
        self.queue.close();
    }
}

impl ObjectLog {
    /// The longest line kept; the rest of a line is cut.
    pub fn max_line_bytes(&self) -> usize {
        self.shared.settings.max_line_bytes
    }

    /// Logs one line of `stream` (without its newline) that had `cut`
    /// more bytes, if the object's rate and the queue allow.
    pub fn line(self: &Arc<Self>, stream: &'static str, bytes: Vec<u8>, cut: usize) {
        self.shared.count_dropped(cut as u64);
        let len = bytes.len();
        if !self.take_tokens(len) {
            return;
        }
        let text = strip_terminal_escapes(&String::from_utf8_lossy(&bytes));
        self.shared.rings.guest(self.object.id(), stream, &text);
        let record = Record::Line {
            object: Arc::clone(&self.object),
            stream,
            text,
            cut,
        };
        if !self.shared.queue.push(record, len) {
            self.shared.count_dropped(len as u64);
            self.shared
                .queue_dropped
                .fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Takes `len` tokens, or records the line as dropped and returns
    /// false.
    fn take_tokens(self: &Arc<Self>, len: usize) -> bool {
        let settings = &self.shared.settings;
        let mut bucket = self.bucket();
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * settings.max_bytes_per_second as f64)
            .min(settings.burst_bytes as f64);
        bucket.refilled = now;
        if bucket.tokens >= len as f64 {
            bucket.tokens -= len as f64;
            return true;
        }
        bucket.dropped.bytes += len as u64;
        bucket.dropped.lines += 1;
        let first = bucket.owing_since.is_none();
        if first {
            bucket.owing_since = Some(now);
        }
        drop(bucket);
        self.shared.count_dropped(len as u64);
        if first {
            self.shared.owing.lock().push(Arc::downgrade(self));
        }
        false
    }

    /// What was dropped since the last notice, if its period is over (or
    /// `now` is `None`: the object is going away).
    fn take_notice(&self, now: Option<Instant>) -> Option<Dropped> {
        let mut bucket = self.bucket();
        let since = bucket.owing_since?;
        if now.is_some_and(|now| now.duration_since(since) < NOTICE_PERIOD) {
            return None;
        }
        bucket.owing_since = None;
        Some(std::mem::take(&mut bucket.dropped))
    }

    fn bucket(&self) -> MutexGuard<'_, Bucket> {
        self.bucket.lock()
    }
}

impl Drop for ObjectLog {
    fn drop(&mut self) {
        // The instance is going: say now what it dropped.
        if let Some(dropped) = self.take_notice(None) {
            let record = Record::Dropped {
                object: Arc::clone(&self.object),
                dropped,
            };
            self.shared.queue.push(record, 0);
        }
    }
}

impl Shared {
    fn count_dropped(&self, bytes: u64) {
        if bytes > 0 {
            self.dropped.inc_by(bytes);
        }
    }

    /// Notices due now: one per object whose period is over, and one for
    /// the queue.
    fn notices(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        self.owing.lock().retain(|weak| {
            let Some(log) = weak.upgrade() else {
                // Its Drop queued its notice.
                return false;
            };
            match log.take_notice(Some(now)) {
                Some(dropped) => {
                    due.push((Arc::clone(&log.object), dropped));
                    false
                }
                None => log.bucket().owing_since.is_some(),
            }
        });
        for (object, dropped) in due {
            notice(&object, dropped, Some(&self.rings));
        }
        let queue_dropped = self.queue_dropped.swap(0, Ordering::Relaxed);
        if queue_dropped > 0 {
            tracing::warn!(
                target: "podhost::guest",
                dropped_bytes = queue_dropped,
                "guests wrote faster than the log could take: output dropped"
            );
        }
    }
}

/// The log thread: writes queued records; every so often, the notices.
fn drain(queue: &Queue<Record>, shared: &Weak<Shared>) {
    let mut last_notices = Instant::now();
    loop {
        match queue.pop(NOTICE_PERIOD / 4) {
            Pop::Item(record) => write(record, shared),
            Pop::Empty => {}
            Pop::Closed => return,
        }
        if last_notices.elapsed() >= NOTICE_PERIOD / 4 {
            last_notices = Instant::now();
            if let Some(shared) = shared.upgrade() {
                shared.notices();
            }
        }
    }
}

fn write(record: Record, shared: &Weak<Shared>) {
    match record {
        Record::Line {
            object,
            stream,
            text,
            cut,
        } => {
            let cut = (cut > 0).then_some(cut);
            // `line` is a `?` field: quoted, with every newline and control
            // character escaped, so it cannot pass for a line of its own.
            // DEBUG: the object's own log holds it for its operator.
            tracing::debug!(
                target: "podhost::guest",
                class = object.class(),
                object = object.name(),
                stream,
                line = ?text,
                cut_bytes = cut,
            );
        }
        Record::Dropped { object, dropped } => {
            let shared = shared.upgrade();
            notice(&object, dropped, shared.as_deref().map(|s| &*s.rings));
        }
    }
}

/// Says what an object dropped, in the host log and in its own.
fn notice(object: &ObjectAddr, dropped: Dropped, rings: Option<&ObjectRings>) {
    if let Some(rings) = rings {
        rings.host(
            object.id(),
            Level::Warn,
            format!(
                "guest output over the object's log rate was dropped: {} bytes in {} lines",
                dropped.bytes, dropped.lines
            ),
        );
    }
    tracing::warn!(
        target: "podhost::guest",
        class = object.class(),
        object = object.name(),
        dropped_bytes = dropped.bytes,
        dropped_lines = dropped.lines,
        "guest output over the object's log rate was dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs(rate: u64, burst: u64) -> (GuestLogs, Arc<Counter>) {
        let dropped = Arc::new(Counter::default());
        let settings = LogSettings {
            max_bytes_per_second: rate,
            burst_bytes: burst,
            ..LogSettings::default()
        };
        let logs = GuestLogs::start(settings, Arc::clone(&dropped)).expect("log thread");
        (logs, dropped)
    }

    #[test]
    fn lines_over_the_burst_are_dropped_counted_and_owed_a_notice() {
        let (logs, dropped) = logs(1, 100);
        let object = Arc::new(ObjectAddr::new("c", "o"));
        let log = logs.object(&object);
        for _ in 0..10 {
            log.line("stdout", vec![b'x'; 40], 0);
        }
        // 2 lines fit in the burst, 8 of 40 bytes are dropped.
        assert_eq!(dropped.get(), 8 * 40);
        assert_eq!(logs.shared.owing.lock().len(), 1, "one notice owed");
        let notice = log.take_notice(None).expect("owed");
        assert_eq!((notice.bytes, notice.lines), (320, 8));
    }

    #[test]
    fn cut_bytes_count_as_dropped() {
        let (logs, dropped) = logs(1 << 20, 1 << 20);
        let log = logs.object(&Arc::new(ObjectAddr::new("c", "o")));
        log.line("stderr", b"kept".to_vec(), 1000);
        assert_eq!(dropped.get(), 1000);
    }
}
