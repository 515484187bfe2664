//! One accepted WebSocket: a reader that turns the client's messages into
//! the object's events (in order, one at a time), and a writer that sends
//! what the hub queues, pings the client and closes the socket when told.

use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

use super::hub::Control;
use super::outbox::close_frame;
use super::{Hub, Interrupted, Outgoing, QueueReceiver, WebSocket};
use crate::bindings::podhost::object::types::Message as SocketMessage;
use crate::cluster::ClusterError;
use crate::object::EventError;
use crate::runtime::Runtime;

/// 1006: the connection ended without a close frame.
const ABNORMAL: u16 = 1006;
/// The close code for a socket whose session, membership or key ended.
const POLICY_VIOLATION: u16 = 1008;
const ACCESS_ENDED: &str = "access ended";
/// 1009: a message over the size limit.
const TOO_BIG: u16 = 1009;
/// How often a message is offered again to an object whose mailbox is
/// full, before the socket gives up (1013).
const OVERLOADED_RETRIES: u32 = 20;

/// A socket registered in the hub whose connection has not started. If it
/// is dropped unstarted (the client left during `socket-open`, or the
/// upgrade failed), it unregisters the socket and tells the object, which
/// may have counted it in (1006).
pub struct Registered {
    runtime: Arc<Runtime>,
    class: String,
    name: String,
    object_id: String,
    socket: u64,
    armed: bool,
}

impl Registered {
    pub fn new(
        runtime: Arc<Runtime>,
        class: String,
        name: String,
        object_id: String,
        socket: u64,
    ) -> Self {
        Registered {
            runtime,
            class,
            name,
            object_id,
            socket,
            armed: true,
        }
    }

    /// Unregisters the socket without telling the object: it refused the
    /// socket, or its `socket-open` did not commit.
    pub fn withdraw(mut self) {
        self.armed = false;
        self.runtime.sockets().remove(&self.object_id, self.socket);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Some(attachment) = self.runtime.sockets().remove(&self.object_id, self.socket) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (runtime, class, name, socket) = (
            Arc::clone(&self.runtime),
            std::mem::take(&mut self.class),
            std::mem::take(&mut self.name),
            self.socket,
        );
        handle.spawn(async move {
            tell_closed(
                &runtime,
                &class,
                &name,
                socket,
                (ABNORMAL, String::new()),
                attachment,
            )
            .await;
        });
    }
}

/// An accepted socket of an object, before its connection starts.
pub struct Accepted {
    pub registered: Registered,
    pub queue: QueueReceiver<Message>,
    pub control: Arc<Control>,
    /// Resolves when the access the socket was opened with ends (a
    /// session, a membership, a key): the socket is then closed.
    pub revoked: BoxFuture<'static, ()>,
}

/// Starts the connection's writer and returns its reader, which runs
/// until either side closes the socket, then tells the object unless the
/// object closed it itself. Not an `async fn`: that reserves room in the
/// future for its arguments as well as for the locals they move into, and
/// this future lives as long as the socket. Until the future first runs,
/// `registered` stays armed: dropped unstarted, it still unregisters the
/// socket (which ends the writer) and tells the object.
pub fn run(ws: WebSocket, accepted: Accepted) -> impl Future<Output = ()> + Send + 'static {
    let Accepted {
        mut registered,
        queue,
        control,
        revoked,
    } = accepted;
    let hub = Arc::clone(registered.runtime.sockets());
    let running = hub.connection();
    let ping_every = registered.runtime.config().sockets.ping_interval;
    let (sink, stream) = ws.split();
    let heard = Arc::new(Liveness::new());
    let mut writer = tokio::spawn(write(
        sink,
        queue,
        Arc::clone(&control),
        ping_every,
        Arc::clone(&heard),
    ));
    async move {
        registered.armed = false;
        let _running = &running;
        let Registered {
            runtime,
            class,
            name,
            object_id,
            socket,
            ..
        } = &registered;
        let socket = *socket;
        let reader = Reader {
            runtime,
            hub: &hub,
            class,
            name,
            object_id,
            socket,
            heard: &heard,
        };
        let closed = tokio::select! {
            closed = reader.read(stream, &control) => closed,
            ended = &mut writer => ended.ok().flatten().unwrap_or((ABNORMAL, String::new())),
            () = revoked => {
                control.force(POLICY_VIOLATION, ACCESS_ENDED);
                (POLICY_VIOLATION, ACCESS_ENDED.to_string())
            }
        };
        let told = hub.remove(object_id, socket);
        // Removing the socket dropped its queue: the writer sends what is
        // left, answers the client's close, and stops. A client that does
        // not read is not waited for long.
        if !writer.is_finished() && tokio::time::timeout(ping_every, &mut writer).await.is_err() {
            writer.abort();
        }
        if let Some(attachment) = told {
            // Boxed for the same reason as `Reader::deliver`'s event.
            Box::pin(tell_closed(
                runtime, class, name, socket, closed, attachment,
            ))
            .await;
        }
    }
}

/// Delivers `socket-close`, offered again while the object is overloaded.
async fn tell_closed(
    runtime: &Arc<Runtime>,
    class: &str,
    name: &str,
    socket: u64,
    (code, reason): (u16, String),
    attachment: Vec<u8>,
) {
    let delivered = offer(|| {
        runtime.socket_close(
            class,
            name,
            socket,
            code,
            reason.clone(),
            attachment.clone(),
        )
    })
    .await;
    if let Err(error) = delivered {
        tracing::warn!(object = name, class, socket, %error, "the object was not told its socket closed");
    }
}

/// Runs `attempt`, again with backoff while the object's mailbox is full.
async fn offer<F, Fut>(mut attempt: F) -> Result<(), EventError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), EventError>>,
{
    let mut delay = Duration::from_millis(5);
    for _ in 1..OVERLOADED_RETRIES {
        match attempt().await {
            Err(EventError::Overloaded) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
    attempt().await
}

/// When the client was last heard from: any frame, a pong included.
struct Liveness {
    start: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    fn new() -> Self {
        Liveness {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Reader<'a> {
    runtime: &'a Arc<Runtime>,
    hub: &'a Hub,
    class: &'a str,
    name: &'a str,
    object_id: &'a str,
    socket: u64,
    heard: &'a Liveness,
}

impl Reader<'_> {
    /// Reads until the client closes; returns its close code and reason.
    async fn read(&self, mut stream: SplitStream<WebSocket>, control: &Control) -> (u16, String) {
        while let Some(frame) = stream.next().await {
            self.heard.touch();
            let message = match frame {
                Ok(Message::Text(text)) => {
                    if let Some(reply) = self.hub.auto_reply(self.object_id, text.as_str()) {
                        self.runtime.metrics().socket_auto_responses.inc();
                        self.hub.deliver(
                            self.object_id,
                            vec![Outgoing::Send {
                                socket: self.socket,
                                message: Message::Text(reply.into()),
                            }],
                        );
                        continue;
                    }
                    SocketMessage::Text(text.as_str().to_string())
                }
                Ok(Message::Binary(bytes)) => SocketMessage::Binary(bytes.to_vec()),
                // tungstenite answers pings itself and hands no raw frames
                // to a reader.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(frame)) => {
                    return frame.map_or((1005, String::new()), |frame| {
                        (frame.code.into(), frame.reason.as_str().to_string())
                    });
                }
                Err(tungstenite::Error::Capacity(_)) => {
                    let reason = "the message is over the size limit";
                    control.force(TOO_BIG, reason);
                    return (TOO_BIG, reason.to_string());
                }
                Err(_) => return (ABNORMAL, String::new()),
            };
            if let Some(closed) = self.deliver(message, control).await {
                return closed;
            }
        }
        (ABNORMAL, String::new())
    }

    /// Hands one message to the object and waits until it is handled, so
    /// a socket's messages run in order and a fast sender slows down
    /// rather than pile up. Returns a close if the socket must go.
    async fn deliver(&self, message: SocketMessage, control: &Control) -> Option<(u16, String)> {
        self.runtime.metrics().socket_messages.inc();
        // Boxed: the event's future is kilobytes, and an idle socket's
        // task would otherwise carry room for it all the time.
        let delivered = Box::pin(offer(|| {
            self.runtime
                .socket_message(self.class, self.name, self.socket, message.clone())
        }))
        .await;
        // Pongs are not read while the object works: that is not silence.
        self.heard.touch();
        match delivered {
            Ok(()) => None,
            Err(EventError::Overloaded) => {
                let reason = "the object is overloaded";
                control.force(1013, reason);
                Some((1013, reason.to_string()))
            }
            Err(EventError::ShuttingDown) => Some((1001, String::new())),
            Err(EventError::Cluster(ClusterError::OwnedElsewhere { .. })) => {
                // Its object moved to another node while the socket was
                // open here: a reconnect reaches it there.
                let reason = "the object moved to another node: reconnect";
                control.force(1012, reason);
                Some((1012, reason.to_string()))
            }
            Err(error) => {
                // The object failed on this message; the socket stays.
                tracing::debug!(object = self.name, class = self.class, socket = self.socket, %error, "socket-message failed");
                None
            }
        }
    }
}

/// Sends the queue's messages and a ping every `ping_every`; stops after a
/// close, when the queue is dropped, when the hub forces a close, or when
/// the client has sent nothing (not even a pong) for two intervals.
/// Returns the close it sent, if the hub forced one.
#[allow(clippy::manual_async_fn)] // not an `async fn`: see `run`
fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: QueueReceiver<Message>,
    control: Arc<Control>,
    ping_every: Duration,
    heard: Arc<Liveness>,
) -> impl Future<Output = Option<(u16, String)>> + Send + 'static {
    async move {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let message = tokio::select! {
                biased;
                // A forced close comes through the queue, before what waits.
                next = queue.recv() => match next {
                    Err(Interrupted) => {
                        let forced = control.forced();
                        if let Some((code, reason)) = &forced {
                            let _ = tokio::time::timeout(ping_every, sink.send(close_frame(*code, reason))).await;
                        }
                        return forced;
                    }
                    Ok(Some(message)) => {
                        control.dequeued(&message);
                        message
                    }
                    Ok(None) => {
                        // Flushes the answer to a client's close, if it sent one.
                        let _ = tokio::time::timeout(ping_every, sink.close()).await;
                        return None;
                    }
                },
                _ = ping.tick() => {
                    if heard.silent_for() >= ping_every * 2 {
                        tracing::debug!("closing a socket whose client stopped answering pings");
                        return None;
                    }
                    Message::Ping(Default::default())
                }
            };
            let closing = matches!(message, Message::Close(_));
            let mut send = pin!(sink.send(message));
            // Almost every send completes at once (the kernel takes the
            // frame): only one that waits needs a deadline, so the common case
            // arms no timer. A client that stopped reading must not keep a
            // forced close (or shutdown) waiting: the connection is dropped.
            let sent = match poll_once(send.as_mut()).await {
                Poll::Ready(sent) => sent.is_ok(),
                Poll::Pending => tokio::select! {
                    sent = tokio::time::timeout(ping_every, send) => matches!(sent, Ok(Ok(()))),
                    Interrupted = queue.interrupted() => return control.forced(),
                },
            };
            if closing || !sent {
                return None;
            }
        }
    }
}

/// Polls `future` once, with the calling task's waker.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}
