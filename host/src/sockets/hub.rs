//! Every open socket, by object: tags, attachment, the queue its writer
//! drains, and the object's auto-response.
//!
//! One lock finds an object's sockets; each object's sockets have a lock
//! of their own, so a publish to one room does not hold up the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::outbox::close_frame;
use super::queue::{Interrupter, QueueSender, Refused};
use super::{LoggedEvent, Outgoing};
use crate::config::{EventSettings, SocketSettings};
use crate::metrics::OpenSocket;

/// Why a socket could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum SocketRefused {
    #[error("the object has {0} open sockets, its limit")]
    TooMany(usize),
}

pub struct Hub {
    events: EventSettings,
    settings: SocketSettings,
    /// SSE subscribers by object.
    streams: Mutex<HashMap<String, Vec<mpsc::Sender<LoggedEvent>>>>,
    /// Set at shutdown: streams end, and new ones end at once.
    streams_ended: AtomicBool,
    next_socket: AtomicU64,
    /// Connections whose tasks still run (closing ones included).
    connections: AtomicUsize,
    /// WebSocket upgrades in progress (`socket-open` running).
    handshakes: AtomicUsize,
    objects: Mutex<HashMap<String, Arc<Mutex<ObjectSockets>>>>,
    /// By object; kept while the object has no sockets, so it can set it
    /// when it activates.
    auto_responses: Mutex<HashMap<String, Arc<(String, String)>>>,
}

/// An object's sockets, oldest first (ids only grow), and an index by
/// tag, so that publishing to a tag and counting it cost what the tag has.
#[derive(Default)]
pub struct ObjectSockets {
    sockets: BTreeMap<u64, Entry>,
    by_tag: HashMap<String, BTreeSet<u64>>,
}

impl ObjectSockets {
    fn remove(&mut self, socket: u64) -> Option<Entry> {
        let entry = self.sockets.remove(&socket)?;
        self.untag(socket, &entry.tags);
        Some(entry)
    }

    fn set_tags(&mut self, socket: u64, tags: Vec<String>) {
        let Some(entry) = self.sockets.get_mut(&socket) else {
            return;
        };
        let old = std::mem::replace(&mut entry.tags, tags);
        self.untag(socket, &old);
        for tag in &self.sockets[&socket].tags {
            self.by_tag.entry(tag.clone()).or_default().insert(socket);
        }
    }

    fn untag(&mut self, socket: u64, tags: &[String]) {
        for tag in tags {
            if let Some(tagged) = self.by_tag.get_mut(tag) {
                tagged.remove(&socket);
                if tagged.is_empty() {
                    self.by_tag.remove(tag);
                }
            }
        }
    }

    fn tagged(&self, tag: &str) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_tag
            .get(tag)
            .into_iter()
            .flatten()
            .filter_map(|socket| Some((*socket, self.sockets.get(socket)?)))
    }
}

struct Entry {
    tags: Vec<String>,
    attachment: Vec<u8>,
    queue: QueueSender<Message>,
    control: Arc<Control>,
    /// Counts the socket in its class's gauge once accepted, until the
    /// entry goes.
    counted: Option<OpenSocket>,
}

/// How the hub stops a connection that cannot take its queue any more.
pub struct Control {
    forced: Mutex<Option<(u16, String)>>,
    /// Wakes the writer through its queue: no waiter of its own to poll
    /// on each message.
    interrupt: Interrupter<Message>,
    /// Bytes of the messages in the socket's queue.
    queued_bytes: AtomicUsize,
    /// Whether the hub has closed the socket for being too slow.
    too_slow: AtomicBool,
}

impl Control {
    pub fn new(interrupt: Interrupter<Message>) -> Self {
        Control {
            forced: Mutex::default(),
            interrupt,
            queued_bytes: AtomicUsize::default(),
            too_slow: AtomicBool::default(),
        }
    }

    /// Asks the writer to close the socket with `code`, dropping what is
    /// still queued. The writer's queue then answers `Interrupted`.
    pub fn force(&self, code: u16, reason: &str) {
        *self.forced.lock() = Some((code, reason.to_string()));
        self.interrupt.interrupt();
    }

    /// The close asked for, if any.
    pub fn forced(&self) -> Option<(u16, String)> {
        self.forced.lock().take()
    }

    /// The writer took `message` off the queue.
    pub fn dequeued(&self, message: &Message) {
        self.queued_bytes
            .fetch_sub(payload_bytes(message), Ordering::AcqRel);
    }
}

/// What a message weighs in a socket's queue: its payload.
fn payload_bytes(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(frame) => frame.as_ref().map_or(0, |frame| frame.reason.len()),
        Message::Frame(frame) => frame.len(),
    }
}

/// A socket as the object sees it.
pub struct SocketInfo {
    pub socket: u64,
    pub tags: Vec<String>,
    pub attachment: Vec<u8>,
}

impl Hub {
    pub fn new(events: EventSettings, settings: SocketSettings) -> Self {
        Hub {
            events,
            settings,
            streams: Mutex::default(),
            streams_ended: AtomicBool::new(false),
            next_socket: AtomicU64::default(),
            connections: AtomicUsize::default(),
            handshakes: AtomicUsize::default(),
            objects: Mutex::default(),
            auto_responses: Mutex::default(),
        }
    }

    pub fn event_settings(&self) -> &EventSettings {
        &self.events
    }

    pub fn socket_settings(&self) -> &SocketSettings {
        &self.settings
    }

    /// Adds an SSE subscriber of `object`'s events; it is dropped when its
    /// client goes or falls too far behind (it then resumes by id).
    pub fn subscribe(&self, object: &str, subscriber: mpsc::Sender<LoggedEvent>) {
        let mut streams = self.streams.lock();
        if self.streams_ended.load(Ordering::Acquire) {
            return;
        }
        let subscribers = streams.entry(object.to_string()).or_default();
        subscribers.retain(|s| !s.is_closed());
        subscribers.push(subscriber);
    }

    fn stream(&self, object: &str, event: &LoggedEvent) {
        let mut streams = self.streams.lock();
        let Some(subscribers) = streams.get_mut(object) else {
            return;
        };
        subscribers.retain(|subscriber| subscriber.try_send(event.clone()).is_ok());
        if subscribers.is_empty() {
            streams.remove(object);
        }
    }
    /// A new socket number, unique in this server.
    pub fn next_socket(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn object(&self, object: &str) -> Option<Arc<Mutex<ObjectSockets>>> {
        self.objects.lock().get(object).cloned()
    }

    fn with<T>(&self, object: &str, f: impl FnOnce(&mut ObjectSockets) -> T) -> Option<T> {
        let sockets = self.object(object)?;
        let mut sockets = sockets.lock();
        Some(f(&mut sockets))
    }

    /// Registers a socket of `object` (without tags yet) and returns the
    /// connection's control. Refused past `max` sockets.
    pub fn register(
        &self,
        object: &str,
        socket: u64,
        queue: QueueSender<Message>,
        max: usize,
    ) -> Result<Arc<Control>, SocketRefused> {
        // The objects' lock is held until the socket is in, as `remove`
        // holds it: the entry cannot be dropped as empty in between.
        let mut objects = self.objects.lock();
        let mut sockets = objects.entry(object.to_string()).or_default().lock();
        if sockets.sockets.len() >= max {
            return Err(SocketRefused::TooMany(max));
        }
        let control = Arc::new(Control::new(queue.interrupter()));
        sockets.sockets.insert(
            socket,
            Entry {
                tags: Vec::new(),
                attachment: Vec::new(),
                queue,
                control: Arc::clone(&control),
                counted: None,
            },
        );
        Ok(control)
    }

    /// Sets the tags the object accepted the socket with.
    pub fn set_tags(&self, object: &str, socket: u64, tags: Vec<String>) {
        self.with(object, |sockets| {
            sockets.set_tags(socket, tags);
        });
    }

    /// Counts an accepted socket in its class's gauge while it stays.
    pub fn count_open(&self, object: &str, socket: u64, counted: OpenSocket) {
        self.with(object, |sockets| {
            if let Some(entry) = sockets.sockets.get_mut(&socket) {
                entry.counted = Some(counted);
            }
        });
    }

    /// Forgets a socket; returns its attachment if it was registered. The
    /// last socket of an object takes the object's entry with it.
    pub fn remove(&self, object: &str, socket: u64) -> Option<Vec<u8>> {
        let mut objects = self.objects.lock();
        let sockets = objects.get(object)?;
        let mut sockets = sockets.lock();
        let removed = sockets.remove(socket).map(|entry| entry.attachment);
        let empty = sockets.sockets.is_empty();
        drop(sockets);
        if empty {
            objects.remove(object);
        }
        removed
    }

    pub fn contains(&self, object: &str, socket: u64) -> bool {
        self.with(object, |sockets| sockets.sockets.contains_key(&socket))
            .unwrap_or(false)
    }

    /// How many of the object's sockets there are, all or tagged `tag`.
    pub fn count(&self, object: &str, tag: Option<&str>) -> usize {
        self.with(object, |sockets| match tag {
            None => sockets.sockets.len(),
            Some(tag) => sockets.by_tag.get(tag).map_or(0, BTreeSet::len),
        })
        .unwrap_or(0)
    }

    /// The object's sockets, all or those tagged `tag`.
    pub fn list(&self, object: &str, tag: Option<&str>) -> Vec<SocketInfo> {
        let info = |(socket, entry): (u64, &Entry)| SocketInfo {
            socket,
            tags: entry.tags.clone(),
            attachment: entry.attachment.clone(),
        };
        self.with(object, |sockets| match tag {
            None => sockets
                .sockets
                .iter()
                .map(|(&socket, entry)| info((socket, entry)))
                .collect(),
            Some(tag) => sockets.tagged(tag).map(info).collect(),
        })
        .unwrap_or_default()
    }

    /// Replaces a socket's attachment; false if there is no such socket.
    pub fn set_attachment(&self, object: &str, socket: u64, attachment: Vec<u8>) -> bool {
        self.with(object, |sockets| match sockets.sockets.get_mut(&socket) {
            Some(entry) => {
                entry.attachment = attachment;
                true
            }
            None => false,
        })
        .unwrap_or(false)
    }

    pub fn attachment(&self, object: &str, socket: u64) -> Option<Vec<u8>> {
        self.with(object, |sockets| {
            sockets
                .sockets
                .get(&socket)
                .map(|entry| entry.attachment.clone())
        })?
    }

    /// Sets or removes the object's auto-response.
    pub fn set_auto_response(&self, object: &str, pair: Option<(String, String)>) {
        let mut responses = self.auto_responses.lock();
        match pair {
            Some(pair) => responses.insert(object.to_string(), Arc::new(pair)),
            None => responses.remove(object),
        };
    }

    /// The reply the host gives to `text` for the object, if it has one.
    pub fn auto_reply(&self, object: &str, text: &str) -> Option<String> {
        let pair = self.auto_responses.lock().get(object).cloned()?;
        (pair.0 == text).then(|| pair.1.clone())
    }

    /// Hands a committed batch's messages and closes to the sockets'
    /// queues, in order. A socket whose queue is full (in messages or in
    /// bytes) is too slow to keep: it is closed (1013, try again later)
    /// rather than hold up the rest, and its reader tells the object as
    /// for any close.
    pub fn deliver(&self, object: &str, outbox: Vec<Outgoing>) {
        let max_bytes = self.settings.max_queued_bytes;
        let enqueue = |socket, entry: &Entry, message| enqueue(socket, entry, message, max_bytes);
        let sockets = self.object(object);
        let mut sockets = sockets.as_deref().map(Mutex::lock);
        for outgoing in outbox {
            if let Outgoing::Event(event) = &outgoing {
                self.stream(object, event);
                continue;
            }
            let Some(sockets) = sockets.as_deref_mut() else {
                continue;
            };
            match outgoing {
                Outgoing::Send { socket, message } => {
                    if let Some(entry) = sockets.sockets.get(&socket) {
                        enqueue(socket, entry, message);
                    }
                }
                Outgoing::Publish { tag, message } => {
                    for (socket, entry) in sockets.tagged(&tag) {
                        enqueue(socket, entry, message.clone());
                    }
                }
                Outgoing::Close {
                    socket,
                    code,
                    reason,
                } => {
                    if let Some(entry) = sockets.remove(socket) {
                        enqueue(socket, &entry, close_frame(code, &reason));
                    }
                }
                Outgoing::Event(_) => {}
            }
        }
    }

    /// Closes an object's sockets (1001) and drops its event subscribers,
    /// when the object is deleted: what they followed is gone.
    pub fn forget_object(&self, object: &str) {
        self.streams.lock().remove(object);
        self.auto_responses.lock().remove(object);
        let Some(sockets) = self.objects.lock().remove(object) else {
            return;
        };
        for (_, entry) in std::mem::take(&mut sockets.lock().sockets) {
            entry.control.force(1001, "the object was deleted");
        }
    }

    /// Ends every SSE stream (and any opened later), at shutdown: an open
    /// stream would otherwise hold its connection, and so the stopping
    /// server, forever. Their clients resume by id.
    pub fn end_streams(&self) {
        let mut streams = self.streams.lock();
        self.streams_ended.store(true, Ordering::Release);
        streams.clear();
    }

    /// Closes every socket with 1012 (service restart) after the messages
    /// already queued for it, and waits up to `within` for their
    /// connections to end: a cluster node hands its objects over, and
    /// their clients reconnect through any node.
    pub async fn restart_all(&self, within: Duration) {
        let max_bytes = self.settings.max_queued_bytes;
        let objects: Vec<_> = self.objects.lock().drain().map(|(_, s)| s).collect();
        for sockets in objects {
            for (socket, entry) in std::mem::take(&mut sockets.lock().sockets) {
                let close = close_frame(1012, "service restart: reconnect");
                enqueue(socket, &entry, close, max_bytes);
            }
        }
        self.wait_connections(within).await;
    }

    /// Closes every socket (1001, going away) and waits up to `within`
    /// for their connections to send the close and end, for shutdown.
    pub async fn close_all(&self, within: Duration) {
        let objects: Vec<_> = self.objects.lock().drain().map(|(_, s)| s).collect();
        for sockets in objects {
            for (_, entry) in std::mem::take(&mut sockets.lock().sockets) {
                entry.control.force(1001, "the server is shutting down");
            }
        }
        self.wait_connections(within).await;
    }

    /// Waits up to `within` for every socket's connection to end.
    async fn wait_connections(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.connections.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Counts a running connection until the guard drops.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(Arc::clone(self))
    }

    /// Counts a WebSocket upgrade in progress until the guard drops, unless
    /// `max` are in progress already.
    pub fn begin_handshake(self: &Arc<Self>, max: usize) -> Option<HandshakeGuard> {
        let before = self.handshakes.fetch_add(1, Ordering::AcqRel);
        let guard = HandshakeGuard(Arc::clone(self));
        (before < max).then_some(guard)
    }

    /// How many sockets are open.
    pub fn open(&self) -> usize {
        let objects: Vec<_> = self.objects.lock().values().cloned().collect();
        objects.iter().map(|s| s.lock().sockets.len()).sum()
    }
}

pub struct HandshakeGuard(Arc<Hub>);

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct ConnectionGuard(Arc<Hub>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

fn enqueue(socket: u64, entry: &Entry, message: Message, max_bytes: usize) {
    let control = &entry.control;
    if control.too_slow.load(Ordering::Acquire) {
        return;
    }
    let bytes = payload_bytes(&message);
    let queued = &control.queued_bytes;
    let full = if queued.fetch_add(bytes, Ordering::AcqRel) + bytes > max_bytes {
        Some("too slow: too many bytes waiting")
    } else {
        match entry.queue.try_send(message) {
            Ok(()) => return,
            Err(Refused::Full(_)) => Some("too slow: too many messages waiting"),
            // The connection ended; its reader removes it and tells the
            // object.
            Err(Refused::Closed(_)) => None,
        }
    };
    queued.fetch_sub(bytes, Ordering::AcqRel);
    if let Some(reason) = full {
        control.too_slow.store(true, Ordering::Release);
        tracing::warn!(socket, "closing a socket too slow to take its messages");
        control.force(1013, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::queue::{QueueReceiver, queue};

    fn hub() -> Hub {
        Hub::new(EventSettings::default(), SocketSettings::default())
    }

    fn open(hub: &Hub, object: &str, tags: &[&str]) -> (u64, QueueReceiver<Message>) {
        let socket = hub.next_socket();
        let (queue, received) = queue(4);
        hub.register(object, socket, queue, 3).expect("room for it");
        hub.set_tags(object, socket, tags.iter().map(|t| t.to_string()).collect());
        (socket, received)
    }

    #[test]
    fn publishes_reach_the_tagged_sockets_of_the_object_only() {
        let hub = hub();
        let (a, mut a_in) = open(&hub, "room", &["red"]);
        let (_b, mut b_in) = open(&hub, "room", &["blue"]);
        let (_c, mut c_in) = open(&hub, "other", &["red"]);
        assert_eq!(hub.count("room", Some("red")), 1);
        assert_eq!(hub.count("room", None), 2);
        hub.deliver(
            "room",
            vec![Outgoing::Publish {
                tag: "red".into(),
                message: Message::Text("hi".into()),
            }],
        );
        assert_eq!(a_in.try_recv(), Some(Message::Text("hi".into())));
        assert_eq!(b_in.try_recv(), None);
        assert_eq!(c_in.try_recv(), None);
        hub.set_tags("room", a, vec!["blue".into()]);
        assert_eq!(hub.count("room", Some("red")), 0);
        assert_eq!(hub.count("room", Some("blue")), 2);
    }

    #[test]
    fn limits_removal_and_forgetting() {
        let hub = hub();
        let sockets: Vec<_> = (0..3).map(|_| open(&hub, "room", &["t"])).collect();
        let (queue, _) = queue(1);
        assert!(hub.register("room", hub.next_socket(), queue, 3).is_err());
        hub.set_attachment("room", sockets[0].0, b"ada".to_vec());
        assert_eq!(hub.remove("room", sockets[0].0), Some(b"ada".to_vec()));
        assert_eq!(hub.remove("room", sockets[0].0), None, "only once");
        assert_eq!(hub.count("room", Some("t")), 2);
        hub.forget_object("room");
        assert_eq!(hub.open(), 0);
        assert!(hub.objects.lock().is_empty());
    }
}
