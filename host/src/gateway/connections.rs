//! What the server knows of each client connection: how many each client
//! address has open, and what a connection is doing (reading a request
//! head, busy with a request, or idle between requests), so that the
//! `[server]` timeouts can close the ones that hold a slot for nothing.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive
//! connection waits for its next request, so it cannot give an idle
//! connection longer than a slow head; the gateway keeps its own clock
//! instead and closes the connection from the task that serves it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::ServerSettings;

/// Open connections by client address, capped.
pub struct Addresses {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Addresses {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Addresses {
            limit,
            open: Mutex::default(),
        })
    }

    /// A slot for one more connection from `peer`, unless it has its
    /// limit open already.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<AddressSlot> {
        let key = address_key(peer);
        let mut open = self.lock();
        let count = open.entry(key).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            addresses: Arc::clone(self),
            key,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Each critical section leaves the map consistent.
        self.open.lock()
    }
}

/// What a client address is counted as: an IPv4 address, or an IPv6 /64
/// (one host usually has a whole /64 to pick addresses from).
fn address_key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// One counted connection; the count drops with it (a WebSocket keeps it
/// until its socket closes, since the slot lives in the connection's IO).
pub struct AddressSlot {
    addresses: Arc<Addresses>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.addresses.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The state of one connection, as its IO and its requests report it.
/// Times are milliseconds since `origin`, plus one: 0 means "not set".
pub struct Activity {
    origin: Instant,
    /// Requests whose response has not been sent whole yet.
    busy: AtomicUsize,
    /// When the connection last had no request (its start, at first).
    idle_since: AtomicU64,
    /// Whether a request was served: waiting for the next one is idling.
    served: AtomicBool,
    /// When the first byte of the next request head arrived.
    head_started: AtomicU64,
    /// Since when the client takes nothing of what is written to it.
    write_blocked: AtomicU64,
    /// The server stops once this connection's first request has started.
    stop_after_first: AtomicBool,
    /// Wakes the watchdog when a deadline may have come closer.
    pub changed: Notify,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            served: AtomicBool::new(false),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            stop_after_first: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    fn at(&self, stamp: u64, after: Duration) -> Instant {
        self.origin + Duration::from_millis(stamp.saturating_sub(1)) + after
    }

    /// When the connection must be closed if nothing changes: a head not
    /// read in time, an idle connection, or a client not reading its
    /// response. None while a request runs normally.
    pub fn deadline(&self, settings: &ServerSettings) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            let blocked = self.write_blocked.load(Ordering::Acquire);
            return (blocked != 0).then(|| self.at(blocked, settings.idle_connection_timeout));
        }
        let started = self.head_started.load(Ordering::Acquire);
        if started != 0 {
            return Some(self.at(started, settings.header_read_timeout));
        }
        let idle = self.idle_since.load(Ordering::Acquire);
        let wait = if self.served.load(Ordering::Acquire) {
            settings.idle_connection_timeout
        } else {
            // A new connection that sends nothing is a head not read.
            settings.header_read_timeout
        };
        Some(self.at(idle, wait))
    }

    /// A request head was read whole: its request is running.
    pub fn request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        if self.stop_after_first.load(Ordering::Acquire) {
            self.changed.notify_one();
        }
        Busy(Arc::clone(self))
    }

    /// Whether the connection has yet to start its first request. Its
    /// client may well have sent it already: a stopping server that shut
    /// the connection now would close it under that request unanswered
    /// (HTTP/1.1 gives the client no way to tell it was never read), so
    /// it waits for the request first ([`Activity::stop_after_first`]).
    pub fn awaits_first_request(&self) -> bool {
        !self.served.load(Ordering::Acquire) && self.busy.load(Ordering::Acquire) == 0
    }

    /// Asks to be woken when the first request starts.
    pub fn stop_after_first(&self) {
        self.stop_after_first.store(true, Ordering::Release);
    }

    fn read(&self, bytes: usize) {
        if bytes > 0
            && self.busy.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            self.head_started.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn write_blocked(&self, blocked: bool) {
        let was = self.write_blocked.load(Ordering::Acquire);
        if blocked && was == 0 {
            self.write_blocked.store(self.now(), Ordering::Release);
            self.changed.notify_one();
        } else if !blocked && was != 0 {
            self.write_blocked.store(0, Ordering::Release);
        }
    }
}

/// A request in progress, until its response is sent whole (or dropped).
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.idle_since.store(activity.now(), Ordering::Release);
        activity.served.store(true, Ordering::Release);
        activity.write_blocked.store(0, Ordering::Release);
        activity.busy.fetch_sub(1, Ordering::AcqRel);
        activity.changed.notify_one();
    }
}

/// A connection's IO, reporting reads and stalled writes to its
/// [`Activity`] and holding its address slot for as long as it is open.
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Whether this IO last told `activity` of a stalled write. A write
    /// that completes after one that did too is the common case, and then
    /// `activity` is not touched: on a fan-out to thousands of sockets its
    /// cache line is cold for each (2% of the server's CPU).
    told_blocked: bool,
    _slot: AddressSlot,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>, slot: AddressSlot) -> Self {
        Watched {
            inner,
            activity,
            told_blocked: false,
            _slot: slot,
        }
    }

    fn record_write(&mut self, poll: &Poll<io::Result<usize>>) {
        let blocked = poll.is_pending();
        // A stall is always told (a finished request may have cleared the
        // mark meanwhile); an end of one only if a stall was told.
        if blocked || self.told_blocked {
            self.activity.write_blocked(blocked);
            self.told_blocked = blocked;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            self.activity.read(buf.filled().len() - before);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.record_write(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.record_write(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_cap_and_ipv6_counts_by_64() {
        let addresses = Addresses::new(2);
        let one: IpAddr = "10.0.0.1".parse().expect("ip");
        let a = addresses.admit(one).expect("first");
        let _b = addresses.admit(one).expect("second");
        assert!(addresses.admit(one).is_none(), "third refused");
        assert!(addresses.admit("10.0.0.2".parse().expect("ip")).is_some());
        drop(a);
        assert!(addresses.admit(one).is_some(), "a slot came back");

        let _c = addresses
            .admit("2001:db8::1".parse().expect("ip"))
            .expect("v6");
        let _d = addresses
            .admit("2001:db8::ffff:1".parse().expect("ip"))
            .expect("v6");
        assert!(
            addresses
                .admit("2001:db8::2:3".parse().expect("ip"))
                .is_none(),
            "same /64"
        );
        assert!(
            addresses
                .admit("2001:db8:0:1::1".parse().expect("ip"))
                .is_some()
        );
    }

    #[test]
    fn deadlines_follow_what_the_connection_does() {
        let settings = ServerSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            ..ServerSettings::default()
        };
        let activity = Activity::new();
        // How far from now the deadline is, to the second.
        let left = |a: &Activity| {
            a.deadline(&settings)
                .map(|at| (at - Instant::now()).as_secs_f64().round() as u64)
        };
        assert_eq!(left(&activity), Some(10), "a new connection");
        let busy = activity.request();
        assert_eq!(left(&activity), None, "a request running");
        activity.write_blocked(true);
        assert_eq!(left(&activity), Some(60), "a client not reading");
        activity.write_blocked(false);
        assert_eq!(left(&activity), None, "reading again");
        drop(busy);
        assert_eq!(left(&activity), Some(60), "idle between requests");
        activity.read(0);
        assert_eq!(left(&activity), Some(60), "nothing read");
        activity.read(3);
        assert_eq!(left(&activity), Some(10), "a head begun");
        let _next = activity.request();
        assert_eq!(left(&activity), None, "the next request");
    }
}
