//! The registry of live actors: at most one per object, found by id.
//!
//! Events are queued into an actor's mailbox while holding the registry's
//! lock, and an idle actor retires (removes itself) under the same lock
//! only if its mailbox is empty. So no event is ever queued to an actor
//! that has decided to stop, and there are never two actors for one object.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::event::{Event, EventError};

/// Events that may wait for one object before new ones are refused.
const MAILBOX_CAPACITY: usize = 4096;

pub(crate) struct Objects {
    registry: Mutex<Registry>,
    finished: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

struct Registry {
    mailboxes: HashMap<String, Mailbox>,
    next_generation: u64,
    /// Each actor holds a clone; `None` once the host shuts down.
    alive: Option<mpsc::Sender<()>>,
}

struct Mailbox {
    sender: mpsc::Sender<Event>,
    generation: u64,
}

/// What a new actor needs to start.
pub(crate) struct Spawn {
    pub mailbox: mpsc::Receiver<Event>,
    pub generation: u64,
    pub alive: mpsc::Sender<()>,
}

impl Objects {
    pub fn new() -> Self {
        let (alive, finished) = mpsc::channel(1);
        Objects {
            registry: Mutex::new(Registry {
                mailboxes: HashMap::new(),
                next_generation: 0,
                alive: Some(alive),
            }),
            finished: tokio::sync::Mutex::new(finished),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves the map consistent: every
        // operation on it is a single insert, remove or send.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `event` for object `id`, calling `spawn` to start its actor
    /// if none is live.
    pub fn deliver(
        &self,
        id: &str,
        event: Event,
        spawn: impl FnOnce(Spawn),
    ) -> Result<(), EventError> {
        let mut registry = self.lock();
        let Some(alive) = registry.alive.clone() else {
            return Err(EventError::ShuttingDown);
        };
        let event = match registry.mailboxes.get(id) {
            Some(mailbox) => match mailbox.sender.try_send(event) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(EventError::Overloaded),
                // The actor died (it panicked): replace it.
                Err(mpsc::error::TrySendError::Closed(event)) => event,
            },
            None => event,
        };
        let (sender, mailbox) = mpsc::channel(MAILBOX_CAPACITY);
        if sender.try_send(event).is_err() {
            unreachable!("a new mailbox has room for one event");
        }
        let generation = registry.next_generation;
        registry.next_generation += 1;
        registry
            .mailboxes
            .insert(id.to_string(), Mailbox { sender, generation });
        drop(registry);
        spawn(Spawn {
            mailbox,
            generation,
            alive,
        });
        Ok(())
    }

    /// Removes the actor `generation` of object `id` if nothing waits in
    /// its mailbox. Returns whether it may stop.
    pub fn retire(&self, id: &str, generation: u64, mailbox: &mpsc::Receiver<Event>) -> bool {
        let mut registry = self.lock();
        if !mailbox.is_empty() {
            return false;
        }
        if registry
            .mailboxes
            .get(id)
            .is_some_and(|m| m.generation == generation)
        {
            registry.mailboxes.remove(id);
        }
        true
    }

    /// How many objects have a live actor.
    pub fn active(&self) -> usize {
        self.lock().mailboxes.len()
    }

    /// Refuses new events, lets every actor finish what it has queued, and
    /// waits until all have stopped (and closed their databases).
    pub async fn shut_down(&self) {
        {
            let mut registry = self.lock();
            registry.alive = None;
            registry.mailboxes.clear();
        }
        let mut finished = self.finished.lock().await;
        while finished.recv().await.is_some() {}
    }
}
