//! A FIFO bounded in bytes, shared by threads: producers never wait (a
//! push that does not fit is refused), one consumer thread waits for items.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

pub struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<(T, usize)>,
    bytes: usize,
    closed: bool,
}

/// What [`Queue::pop`] got.
pub enum Pop<T> {
    Item(T),
    /// Nothing came within the timeout.
    Empty,
    /// Closed and drained: the consumer may stop.
    Closed,
}

impl<T> Queue<T> {
    /// A queue holding at most `capacity` bytes of items.
    pub fn new(capacity: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    /// Adds `item`, which weighs `bytes`, unless it would not fit or the
    /// queue is closed; says whether it was added. Never blocks on the
    /// consumer (the lock is held only to move the item in).
    pub fn push(&self, item: T, bytes: usize) -> bool {
        let mut state = self.lock();
        if state.closed || state.bytes.saturating_add(bytes) > self.capacity {
            return false;
        }
        state.bytes += bytes;
        state.items.push_back((item, bytes));
        drop(state);
        self.ready.notify_one();
        true
    }

    /// The oldest item, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Pop<T> {
        let mut state = self.lock();
        if state.items.is_empty() && !state.closed {
            self.ready.wait_for(&mut state, timeout);
        }
        match state.items.pop_front() {
            Some((item, bytes)) => {
                state.bytes -= bytes;
                Pop::Item(item)
            }
            None if state.closed => Pop::Closed,
            None => Pop::Empty,
        }
    }

    /// Refuses further pushes; the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit_and_drains_after_close() {
        let queue = Queue::new(10);
        assert!(queue.push("a", 6));
        assert!(!queue.push("b", 5), "6 + 5 > 10");
        assert!(queue.push("c", 4));
        queue.close();
        assert!(!queue.push("d", 0), "closed");
        assert!(matches!(queue.pop(Duration::ZERO), Pop::Item("a")));
        assert!(matches!(queue.pop(Duration::ZERO), Pop::Item("c")));
        assert!(matches!(queue.pop(Duration::ZERO), Pop::Closed));
    }

    #[test]
    fn pop_times_out_when_empty() {
        let queue: Queue<()> = Queue::new(1);
        assert!(matches!(queue.pop(Duration::from_millis(1)), Pop::Empty));
    }
}
