//! The log of each object, for its operator: guests' stdout and stderr
//! (what passed the object's rate) and the host's events for it
//! (activation, migration, traps with their backtraces, limits, version
//! changes), in a ring per object (`GET /admin/objects/{c}/{n}/logs`).
//!
//! Bounded in memory: each ring keeps its newest `ring_records` records
//! and `ring_bytes` bytes; all rings together keep `rings_total_bytes`,
//! the least recently written ring going first (a hibernated object's
//! ring stays until room is needed), and at most [`MAX_RINGS`] rings.
//! A guest's panic (the standard hook's lines on stderr) is one record.

use std::collections::{BTreeMap, HashMap, VecDeque};

use parking_lot::{Mutex, MutexGuard};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::LogSettings;
use crate::storage::catalog::now_ms;

/// Rings kept at most, whatever their size: each costs a map entry.
pub const MAX_RINGS: usize = 10_000;

/// The longest message kept (a trap's backtrace, a panic); longer ones
/// are cut.
pub const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// What a follower may fall behind by before it misses records.
const FOLLOW_BUFFER: usize = 256;

/// Fixed cost counted per record on top of its message.
const RECORD_OVERHEAD: usize = 64;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRecord {
    /// Grows by one per record of the object (across evictions of its
    /// ring it starts again at 1).
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub level: Level,
    pub source: Source,
    /// `stdout` or `stderr`, for the guest's records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<&'static str>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Guest,
    Host,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    records: usize,
    bytes: usize,
    total_bytes: usize,
}

pub struct ObjectRings {
    limits: Limits,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rings: HashMap<String, Ring>,
    /// Rings by when they were last written, oldest first.
    lru: BTreeMap<u64, String>,
    tick: u64,
    total_bytes: usize,
    /// Followers by object; kept apart from rings so that evicting a
    /// ring does not end them.
    followers: HashMap<String, broadcast::Sender<LogRecord>>,
    /// The server is stopping: no one may follow any more.
    closed: bool,
}

#[derive(Default)]
struct Ring {
    records: VecDeque<LogRecord>,
    bytes: usize,
    touched: u64,
    next_seq: u64,
    /// A panic's lines on stderr, until its last one.
    panic: Option<String>,
}

fn cost(record: &LogRecord) -> usize {
    record.message.len() + RECORD_OVERHEAD
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

impl ObjectRings {
    pub fn new(settings: &LogSettings) -> Self {
        ObjectRings {
            limits: Limits {
                records: settings.ring_records.max(1),
                bytes: settings.ring_bytes.max(RECORD_OVERHEAD),
                total_bytes: settings.rings_total_bytes,
            },
            inner: Mutex::default(),
        }
    }

    /// A host event for `object` (its id).
    pub fn host(&self, object: &str, level: Level, message: impl Into<String>) {
        let mut inner = self.lock();
        inner.end_panic(object, &self.limits);
        inner.push(
            object,
            level,
            Source::Host,
            None,
            message.into(),
            &self.limits,
        );
    }

    /// A line a guest wrote (already rate-limited). The standard panic
    /// hook's lines on stderr, from `... panicked at ...` to its `note:`
    /// line, become one record.
    pub fn guest(&self, object: &str, stream: &'static str, line: &str) {
        let mut inner = self.lock();
        if stream == "stderr" {
            let pending = inner.rings.get_mut(object).and_then(|r| r.panic.as_mut());
            if let Some(panic) = pending {
                if panic.len() < MAX_MESSAGE_BYTES {
                    panic.push('\n');
                    panic.push_str(line);
                }
                if line.starts_with("note: ") {
                    inner.end_panic(object, &self.limits);
                }
                return;
            }
            if line.starts_with("thread '") && line.contains("panicked at") {
                inner.ring(object).panic = Some(line.to_string());
                return;
            }
        } else {
            inner.end_panic(object, &self.limits);
        }
        let level = if stream == "stderr" {
            Level::Warn
        } else {
            Level::Info
        };
        inner.push(
            object,
            level,
            Source::Guest,
            Some(stream),
            line.to_string(),
            &self.limits,
        );
    }

    /// The object's records after `after` (all if `None`), oldest first.
    pub fn records(&self, object: &str, after: Option<u64>) -> Vec<LogRecord> {
        let mut inner = self.lock();
        inner.end_panic(object, &self.limits);
        inner.rings.get(object).map_or_else(Vec::new, |ring| {
            ring.records
                .iter()
                .filter(|r| after.is_none_or(|after| r.seq > after))
                .cloned()
                .collect()
        })
    }

    /// The object's records so far and a receiver of those to come, taken
    /// together: none is missed or seen twice.
    pub fn follow(&self, object: &str) -> (Vec<LogRecord>, broadcast::Receiver<LogRecord>) {
        let mut inner = self.lock();
        inner.end_panic(object, &self.limits);
        let receiver = if inner.closed {
            // Its sender drops at once: the follower ends after the backlog.
            broadcast::channel(1).1
        } else {
            inner
                .followers
                .entry(object.to_string())
                .or_insert_with(|| broadcast::channel(FOLLOW_BUFFER).0)
                .subscribe()
        };
        let records = inner
            .rings
            .get(object)
            .map_or_else(Vec::new, |ring| ring.records.iter().cloned().collect());
        (records, receiver)
    }

    /// Drops an object's ring (it was deleted).
    pub fn forget(&self, object: &str) {
        let mut inner = self.lock();
        inner.remove(object);
        inner.followers.remove(object);
    }

    /// Ends every follower, for shutdown: open streams would hold the
    /// server up.
    pub fn close_followers(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.followers.clear();
    }

    /// Bytes all rings hold.
    pub fn total_bytes(&self) -> usize {
        self.lock().total_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

impl Inner {
    fn ring(&mut self, object: &str) -> &mut Ring {
        if !self.rings.contains_key(object) {
            while self.rings.len() >= MAX_RINGS && self.evict_oldest(object) {}
        }
        self.tick += 1;
        let tick = self.tick;
        let ring = self.rings.entry(object.to_string()).or_default();
        if ring.touched != 0 {
            self.lru.remove(&ring.touched);
        }
        ring.touched = tick;
        self.lru.insert(tick, object.to_string());
        ring
    }

    fn push(
        &mut self,
        object: &str,
        level: Level,
        source: Source,
        stream: Option<&'static str>,
        message: String,
        limits: &Limits,
    ) {
        let ring = self.ring(object);
        ring.next_seq += 1;
        let record = LogRecord {
            seq: ring.next_seq,
            time: now_ms(),
            level,
            source,
            stream,
            message: cut(message, MAX_MESSAGE_BYTES.min(limits.bytes)),
        };
        let added = cost(&record);
        ring.bytes += added;
        ring.records.push_back(record.clone());
        let mut freed = 0;
        while ring.records.len() > limits.records || ring.bytes > limits.bytes {
            let Some(old) = ring.records.pop_front() else {
                break;
            };
            ring.bytes -= cost(&old);
            freed += cost(&old);
        }
        self.total_bytes = self.total_bytes + added - freed;
        while self.total_bytes > limits.total_bytes && self.evict_oldest(object) {}
        if let Some(sender) = self.followers.get(object)
            && sender.send(record).is_err()
        {
            // No one follows any more.
            self.followers.remove(object);
        }
    }

    /// Writes out the object's pending panic as one record.
    fn end_panic(&mut self, object: &str, limits: &Limits) {
        let Some(panic) = self.rings.get_mut(object).and_then(|r| r.panic.take()) else {
            return;
        };
        self.push(
            object,
            Level::Error,
            Source::Guest,
            Some("stderr"),
            panic,
            limits,
        );
    }

    /// Drops the least recently written ring other than `keep`; `false`
    /// if there is none.
    fn evict_oldest(&mut self, keep: &str) -> bool {
        let oldest = self
            .lru
            .values()
            .find(|object| object.as_str() != keep)
            .cloned();
        match oldest {
            Some(object) => {
                self.remove(&object);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, object: &str) {
        if let Some(ring) = self.rings.remove(object) {
            self.lru.remove(&ring.touched);
            self.total_bytes -= ring.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rings(records: usize, bytes: usize, total: usize) -> ObjectRings {
        ObjectRings::new(&LogSettings {
            ring_records: records,
            ring_bytes: bytes,
            rings_total_bytes: total,
            ..LogSettings::default()
        })
    }

    #[test]
    fn each_ring_keeps_its_newest_records() {
        let rings = rings(3, 1 << 20, 1 << 20);
        for i in 0..10 {
            rings.guest("a", "stdout", &format!("line {i}"));
        }
        let records = rings.records("a", None);
        let messages: Vec<_> = records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(messages, ["line 7", "line 8", "line 9"]);
        assert_eq!(records[0].seq, 8);
        assert_eq!(rings.records("a", Some(9)).len(), 1);
        assert!(rings.records("b", None).is_empty());
    }

    #[test]
    fn rings_together_stay_under_the_total_oldest_going_first() {
        let rings = rings(1000, 10_000, 25_000);
        for object in ["a", "b", "c", "d"] {
            for _ in 0..100 {
                rings.guest(object, "stdout", &"x".repeat(200));
            }
        }
        assert!(rings.total_bytes() <= 25_000, "{}", rings.total_bytes());
        assert!(rings.records("a", None).is_empty(), "the oldest ring went");
        assert!(!rings.records("d", None).is_empty());
    }

    #[test]
    fn a_panic_is_one_record() {
        let rings = rings(100, 1 << 20, 1 << 20);
        rings.guest("a", "stdout", "before");
        rings.guest("a", "stderr", "");
        rings.guest(
            "a",
            "stderr",
            "thread '<unnamed>' panicked at src/lib.rs:3:5:",
        );
        rings.guest("a", "stderr", "boom");
        rings.guest(
            "a",
            "stderr",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        rings.host("a", Level::Error, "event trapped: unreachable");
        let records = rings.records("a", None);
        assert_eq!(records.len(), 4, "{records:#?}");
        assert_eq!(records[2].level, Level::Error);
        assert!(records[2].message.contains("panicked at"));
        assert!(records[2].message.contains("boom"));
        assert_eq!(records[3].source, Source::Host);
    }

    #[tokio::test]
    async fn followers_get_what_comes_after_the_backlog() {
        let rings = rings(100, 1 << 20, 1 << 20);
        rings.host("a", Level::Info, "activated");
        let (backlog, mut live) = rings.follow("a");
        assert_eq!(backlog.len(), 1);
        rings.guest("a", "stdout", "hello");
        let next = live.recv().await.expect("a record");
        assert_eq!(next.message, "hello");
        assert_eq!(next.seq, 2);
    }
}
