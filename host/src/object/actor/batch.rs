//! The output gate: what a batch's events produced, held until the batch
//! commits. Replies, socket messages and closes (which carry the event
//! log's notifications too), and whether the alarm moved: nothing leaves
//! before the writes it may show are kept, and nothing of a lost batch
//! leaves at all.

use tokio::sync::oneshot;

use crate::bindings::Response;
use crate::object::event::{EventError, SocketOutcome};
use crate::sockets::{Hub, Outgoing};

/// A reply waiting for its batch.
pub(super) enum Held {
    Fetch {
        reply: oneshot::Sender<Result<Response, EventError>>,
        result: Result<Response, EventError>,
    },
    Socket {
        reply: oneshot::Sender<Result<SocketOutcome, EventError>>,
        result: Result<SocketOutcome, EventError>,
    },
}

impl Held {
    /// Its writes were lost with the batch's.
    fn fail(&mut self) {
        match self {
            Held::Fetch { result, .. } => *result = Err(EventError::Commit),
            Held::Socket { result, .. } => *result = Err(EventError::Commit),
        }
    }

    fn send(self) {
        // The client may have gone; the event is done either way.
        match self {
            Held::Fetch { reply, result } => drop(reply.send(result)),
            Held::Socket { reply, result } => drop(reply.send(result)),
        }
    }
}

#[derive(Default)]
pub(super) struct Batch {
    held: Vec<Held>,
    /// Socket messages and closes of the events whose writes are kept.
    outbox: Vec<Outgoing>,
    /// An event whose writes are kept set or cancelled the alarm.
    alarm_changed: bool,
}

impl Batch {
    /// Holds an event's reply until the batch ends.
    pub fn hold(&mut self, held: Held) {
        self.held.push(held);
    }

    /// Keeps what an event sent, with its writes.
    pub fn keep(&mut self, outbox: Vec<Outgoing>, alarm_changed: bool) {
        self.outbox.extend(outbox);
        self.alarm_changed |= alarm_changed;
    }

    /// Whether a kept event moved the alarm (and forgets it).
    pub fn take_alarm_change(&mut self) -> bool {
        std::mem::take(&mut self.alarm_changed)
    }

    /// The batch's transaction is gone: every reply held so far says so,
    /// now, and nothing they sent leaves. The batch starts afresh.
    pub fn lose(&mut self) {
        self.outbox.clear();
        self.alarm_changed = false;
        for mut held in self.held.drain(..) {
            held.fail();
            held.send();
        }
    }

    /// The batch committed but cannot be acknowledged: every reply that
    /// would have succeeded fails with `error()` instead, and nothing it
    /// sent leaves.
    pub fn refuse(&mut self, error: impl Fn() -> EventError) {
        self.outbox.clear();
        self.alarm_changed = false;
        for mut held in self.held.drain(..) {
            match &mut held {
                Held::Fetch { result, .. } if result.is_ok() => *result = Err(error()),
                Held::Socket { result, .. } if result.is_ok() => *result = Err(error()),
                _ => {}
            }
            held.send();
        }
    }

    /// The batch committed: its messages go to the hub, then its replies.
    pub fn release(&mut self, sockets: &Hub, object_id: &str) {
        self.release_messages(sockets, object_id);
        self.release_replies();
    }

    /// The committed batch's socket messages and closes.
    pub fn release_messages(&mut self, sockets: &Hub, object_id: &str) {
        if !self.outbox.is_empty() {
            sockets.deliver(object_id, std::mem::take(&mut self.outbox));
        }
    }

    /// The committed batch's replies.
    pub fn release_replies(&mut self) {
        self.held.drain(..).for_each(Held::send);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_lost_batch_answers_every_held_reply_with_a_failure_and_sends_nothing() {
        let mut batch = Batch::default();
        let (reply, mut answer) = oneshot::channel();
        batch.hold(Held::Fetch {
            reply,
            result: Ok(response(200)),
        });
        batch.keep(Vec::new(), true);
        assert!(
            answer.try_recv().is_err(),
            "nothing leaves before the batch ends"
        );
        batch.lose();
        assert!(matches!(answer.try_recv(), Ok(Err(EventError::Commit))));
        assert!(!batch.take_alarm_change(), "a lost batch moved no alarm");
    }

    #[test]
    fn a_committed_batch_releases_its_replies_in_order() {
        let hub = Hub::new(Default::default(), Default::default());
        let mut batch = Batch::default();
        let answers: Vec<_> = (0..3)
            .map(|i| {
                let (reply, answer) = oneshot::channel();
                batch.hold(Held::Fetch {
                    reply,
                    result: Ok(response(200 + i)),
                });
                answer
            })
            .collect();
        batch.keep(Vec::new(), true);
        assert!(batch.take_alarm_change());
        batch.release(&hub, "object");
        for (i, mut answer) in answers.into_iter().enumerate() {
            let sent = answer.try_recv().expect("released");
            assert_eq!(sent.expect("kept").status, 200 + i as u16);
        }
    }
}
