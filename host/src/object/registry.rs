//! The registry of live actors: at most one per object, found by id.
//!
//! Events are queued into an actor's mailbox while holding the registry's
//! lock, and an idle actor retires (removes itself) under the same lock
//! only if its mailbox is empty. So no event is ever queued to an actor
//! that has decided to stop, and there are never two actors for one object.
//!
//! At most `max_active` actors live at once (each holds an instance and an
//! open database): starting one more asks the least recently used idle
//! ones to hibernate early.

use std::collections::HashMap;

use parking_lot::{Mutex, MutexGuard};
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
    max_active: usize,
    /// A logical clock: each delivery stamps its mailbox with the next
    /// value, so the smallest stamps are the least recently used.
    clock: u64,
    next_generation: u64,
    /// Each actor holds a clone; `None` once the host shuts down.
    alive: Option<mpsc::Sender<()>>,
}

struct Mailbox {
    sender: mpsc::Sender<Event>,
    generation: u64,
    last_used: u64,
    /// Asked to hibernate and not yet answered.
    evicting: bool,
}

/// What a new actor needs to start.
pub(crate) struct Spawn {
    pub mailbox: mpsc::Receiver<Event>,
    pub generation: u64,
    pub alive: mpsc::Sender<()>,
}

impl Objects {
    pub fn new(max_active: usize) -> Self {
        let (alive, finished) = mpsc::channel(1);
        Objects {
            registry: Mutex::new(Registry {
                mailboxes: HashMap::new(),
                max_active: max_active.max(1),
                clock: 0,
                next_generation: 0,
                alive: Some(alive),
            }),
            finished: tokio::sync::Mutex::new(finished),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock leaves the map consistent: every
        // operation on it is a single insert, remove or send.
        self.registry.lock()
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
        registry.clock += 1;
        let now = registry.clock;
        let event = match registry.mailboxes.get_mut(id) {
            Some(mailbox) => match mailbox.sender.try_send(event) {
                Ok(()) => {
                    mailbox.last_used = now;
                    return Ok(());
                }
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
        if registry.mailboxes.len() >= registry.max_active {
            registry.evict_least_recently_used();
        }
        registry.mailboxes.insert(
            id.to_string(),
            Mailbox {
                sender,
                generation,
                last_used: now,
                evicting: false,
            },
        );
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
            if let Some(entry) = registry
                .mailboxes
                .get_mut(id)
                .filter(|m| m.generation == generation)
            {
                entry.evicting = false;
            }
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

    /// Asks object `id`'s actor, if live, to hibernate once it has nothing
    /// waiting (the test harness reads a closed database). Returns whether
    /// the object had a live actor.
    pub fn hibernate(&self, id: &str) -> bool {
        let mut registry = self.lock();
        let Some(mailbox) = registry.mailboxes.get_mut(id) else {
            return false;
        };
        if mailbox.sender.try_send(Event::Hibernate).is_ok() {
            mailbox.evicting = true;
        }
        true
    }

    /// Asks every live actor to hibernate once it has nothing waiting.
    pub fn hibernate_all(&self) {
        let mut registry = self.lock();
        for mailbox in registry.mailboxes.values_mut() {
            if mailbox.sender.try_send(Event::Hibernate).is_ok() {
                mailbox.evicting = true;
            }
        }
    }

    /// Whether object `id` has an actor.
    pub fn is_live(&self, id: &str) -> bool {
        self.lock().mailboxes.contains_key(id)
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

impl Registry {
    /// Asks the least recently used actors that are idle and not already
    /// leaving to hibernate: a few at a time, so the scan is paid rarely.
    fn evict_least_recently_used(&mut self) {
        let batch = 1 + self.max_active / 32;
        let mut idle: Vec<(u64, &String)> = self
            .mailboxes
            .iter()
            .filter(|(_, m)| !m.evicting && m.sender.capacity() == m.sender.max_capacity())
            .map(|(id, m)| (m.last_used, id))
            .collect();
        if idle.len() > batch {
            idle.select_nth_unstable(batch);
            idle.truncate(batch);
        }
        let victims: Vec<String> = idle.into_iter().map(|(_, id)| id.clone()).collect();
        for id in victims {
            if let Some(mailbox) = self.mailboxes.get_mut(&id)
                && mailbox.sender.try_send(Event::Hibernate).is_ok()
            {
                mailbox.evicting = true;
            }
        }
    }
}
