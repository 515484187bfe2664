//! A socket's queue of outgoing messages, from the hub (any thread) to the
//! socket's writer: bounded, in order, and allocating nothing while empty.
//!
//! tokio's `mpsc` allocates its first block of 32 slots (~0.9 KB for a
//! message) and its shared state (~0.3 KB) when made; a socket spends
//! nearly all its life idle, so its queue is a `VecDeque` under a lock
//! instead, which holds memory only while messages wait.
//!
//! A holder other than the sender may interrupt the receiver (a forced
//! close): the receiver then sees [`Interrupted`] before anything queued.
//! It shares the queue's waker, so a writer waiting for messages registers
//! one waker for both, once per wake-up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

/// Capacity a drained queue keeps; one that grew past it gives the rest
/// back, so a burst does not stay resident on an idle socket.
const KEPT_WHEN_EMPTY: usize = 8;

/// Makes a queue of at most `capacity` messages.
pub fn queue<T>(capacity: usize) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity,
            sender_gone: false,
            receiver_gone: false,
        }),
        receiver: AtomicWaker::new(),
        interrupted: AtomicBool::new(false),
    });
    (QueueSender(Arc::clone(&shared)), QueueReceiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    receiver: AtomicWaker,
    interrupted: AtomicBool,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    sender_gone: bool,
    receiver_gone: bool,
}

/// Why a message was not queued; it is handed back.
#[derive(Debug, PartialEq)]
pub enum Refused<T> {
    /// `capacity` messages wait already.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The receiver was interrupted; it stays so.
#[derive(Debug, PartialEq)]
pub struct Interrupted;

/// Interrupts the receiver, without holding the queue open as a sender
/// does.
pub struct Interrupter<T>(Arc<Shared<T>>);

impl<T> Interrupter<T> {
    pub fn interrupt(&self) {
        self.0.interrupted.store(true, Ordering::Release);
        self.0.receiver.wake();
    }
}

/// The hub's end. Dropping it ends the queue: the receiver gets what is
/// left, then `None`.
pub struct QueueSender<T>(Arc<Shared<T>>);

impl<T> QueueSender<T> {
    pub fn interrupter(&self) -> Interrupter<T> {
        Interrupter(Arc::clone(&self.0))
    }

    pub fn try_send(&self, item: T) -> Result<(), Refused<T>> {
        {
            let mut state = self.0.state.lock();
            if state.receiver_gone {
                return Err(Refused::Closed(item));
            }
            if state.items.len() >= state.capacity {
                return Err(Refused::Full(item));
            }
            state.items.push_back(item);
        }
        self.0.receiver.wake();
        Ok(())
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        self.0.state.lock().sender_gone = true;
        self.0.receiver.wake();
    }
}

/// The writer's end. Dropping it refuses further messages and drops the
/// ones waiting.
pub struct QueueReceiver<T>(Arc<Shared<T>>);

impl<T> QueueReceiver<T> {
    /// The next message, or `None` once the sender is gone and the queue
    /// is empty; `Interrupted` first if it was.
    pub async fn recv(&mut self) -> Result<Option<T>, Interrupted> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Resolves once the receiver is interrupted (while something other
    /// than `recv` is awaited).
    pub async fn interrupted(&self) -> Interrupted {
        std::future::poll_fn(|cx| {
            self.0.receiver.register(cx.waker());
            if self.0.interrupted.load(Ordering::Acquire) {
                Poll::Ready(Interrupted)
            } else {
                Poll::Pending
            }
        })
        .await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<T>, Interrupted>> {
        // Registered before looking, so a message queued (or an interrupt
        // made) after the look wakes this task.
        self.0.receiver.register(cx.waker());
        if self.0.interrupted.load(Ordering::Acquire) {
            return Poll::Ready(Err(Interrupted));
        }
        let mut state = self.0.state.lock();
        match state.pop() {
            Some(item) => Poll::Ready(Ok(Some(item))),
            None if state.sender_gone => Poll::Ready(Ok(None)),
            None => Poll::Pending,
        }
    }

    /// The next message if one waits.
    pub fn try_recv(&mut self) -> Option<T> {
        self.0.state.lock().pop()
    }
}

impl<T> State<T> {
    fn pop(&mut self) -> Option<T> {
        let item = self.items.pop_front();
        if self.items.is_empty() && self.items.capacity() > KEPT_WHEN_EMPTY {
            self.items.shrink_to(KEPT_WHEN_EMPTY);
        }
        item
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let waiting = {
            let mut state = self.0.state.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock.
        drop(waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_order_and_free_when_empty() {
        let (sender, mut receiver) = queue(2);
        assert_eq!(
            receiver.0.state.lock().items.capacity(),
            0,
            "nothing allocated"
        );
        sender.try_send(1).expect("room");
        sender.try_send(2).expect("room");
        assert_eq!(sender.try_send(3), Err(Refused::Full(3)));
        assert_eq!(receiver.try_recv(), Some(1));
        sender.try_send(3).expect("room again");
        assert_eq!(receiver.try_recv(), Some(2));
        assert_eq!(receiver.try_recv(), Some(3));
        assert_eq!(receiver.try_recv(), None);
    }

    #[test]
    fn a_drained_burst_gives_its_memory_back() {
        let (sender, mut receiver) = queue(1000);
        for n in 0..500 {
            sender.try_send(n).expect("room");
        }
        while receiver.try_recv().is_some() {}
        assert!(receiver.0.state.lock().items.capacity() <= KEPT_WHEN_EMPTY);
    }

    #[tokio::test]
    async fn the_receiver_gets_what_is_left_then_the_end() {
        let (sender, mut receiver) = queue(4);
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = receiver.recv().await.expect("not interrupted") {
                got.push(item);
            }
            got
        });
        tokio::task::yield_now().await;
        sender.try_send("a").expect("room");
        sender.try_send("b").expect("room");
        drop(sender);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the receiver ends")
            .expect("no panic");
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn an_interrupt_comes_before_what_waits_and_stays() {
        let (sender, mut receiver) = queue(4);
        sender.try_send("waiting").expect("room");
        sender.interrupter().interrupt();
        let mut next = || futures_util::FutureExt::now_or_never(receiver.recv());
        assert_eq!(next(), Some(Err(Interrupted)));
        assert_eq!(next(), Some(Err(Interrupted)), "it stays interrupted");
    }

    /// What `wait` gave once the queue's receiver, waiting in it, was
    /// interrupted.
    async fn after_interrupt<R, F>(wait: impl FnOnce(QueueReceiver<()>) -> F) -> R
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let (sender, receiver) = queue::<()>(4);
        let waiting = tokio::spawn(wait(receiver));
        tokio::task::yield_now().await;
        sender.interrupter().interrupt();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("no panic")
    }

    #[tokio::test]
    async fn an_interrupt_wakes_a_receiver_waiting_for_messages_or_for_it() {
        let on_recv = after_interrupt(|mut receiver| async move { receiver.recv().await }).await;
        assert_eq!(on_recv, Err(Interrupted));
        let on_interrupted =
            after_interrupt(|receiver| async move { receiver.interrupted().await }).await;
        assert_eq!(on_interrupted, Interrupted);
    }

    #[test]
    fn a_gone_receiver_refuses_and_drops_what_waited() {
        let (sender, receiver) = queue(4);
        let item = Arc::new(());
        sender.try_send(Arc::clone(&item)).expect("room");
        drop(receiver);
        assert_eq!(
            Arc::strong_count(&item),
            1,
            "the waiting message was dropped"
        );
        assert!(matches!(
            sender.try_send(Arc::clone(&item)),
            Err(Refused::Closed(_))
        ));
    }
}
