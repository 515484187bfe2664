//! The registry of live actors: at most one per object, found by id.
//!
//! Events are queued into an actor's mailbox while holding the registry's
//! lock, and an idle actor retires (removes itself) under the same lock
//! only if its mailbox is empty. So no event is ever queued to an actor
//! that has decided to stop, and there are never two actors for one object.
//!
//! Two bounds, both kept by asking the least recently used idle actors to
//! make room: at most `max_active` actors hold an instance (an event for
//! one without asks others to drop theirs, keeping their database open),
//! and at most `max_open` actors exist, each holding an open database
//! (starting one more asks others to hibernate). Opening a database costs
//! far more than making an instance around an open one, so objects pushed
//! out by `max_active` come back cheaply while their database stays open.
//!
//! Both are found in order of use without a scan: the mailboxes, and the
//! actors holding an instance, are each kept in a list that every delivery
//! moves the object to the back of, so the least recently used are at the
//! front (a scan of every mailbox, under this lock, cost more the more
//! objects were open).

use hashlink::LinkedHashMap;
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
    /// Least recently used first.
    mailboxes: LinkedHashMap<String, Mailbox>,
    /// The actors whose last report says they hold an instance, least
    /// recently used first.
    holders: LinkedHashMap<String, ()>,
    /// Most actors with an instance.
    max_active: usize,
    /// Most actors (each holds an open database).
    max_open: usize,
    /// Of the holders, the ones asked to drop their instance that have not
    /// answered.
    shedding: usize,
    /// Actors asked to hibernate that have not answered (they close their
    /// database, which takes a checkpoint and a sync).
    leaving: usize,
    next_generation: u64,
    /// Each actor holds a clone; `None` once the host shuts down.
    alive: Option<mpsc::Sender<()>>,
}

struct Mailbox {
    sender: mpsc::Sender<Event>,
    generation: u64,
    /// Asked to hibernate and not yet answered.
    evicting: bool,
    /// Holds an instance, as the actor last reported.
    has_instance: bool,
    /// Asked to drop its instance and not yet answered.
    shedding: bool,
}

impl Mailbox {
    /// Nothing waits for the actor (it may still be running an event).
    fn is_idle(&self) -> bool {
        self.sender.capacity() == self.sender.max_capacity()
    }
}

/// What a new actor needs to start.
pub(crate) struct Spawn {
    pub mailbox: mpsc::Receiver<Event>,
    pub generation: u64,
    pub alive: mpsc::Sender<()>,
}

impl Objects {
    pub fn new(max_active: usize, max_open: usize) -> Self {
        let (alive, finished) = mpsc::channel(1);
        let max_active = max_active.max(1);
        Objects {
            registry: Mutex::new(Registry {
                mailboxes: LinkedHashMap::new(),
                holders: LinkedHashMap::new(),
                max_active,
                max_open: max_open.max(max_active),
                shedding: 0,
                leaving: 0,
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
        let event = match registry.mailboxes.to_back(id) {
            Some(mailbox) => match mailbox.sender.try_send(event) {
                Ok(()) => {
                    if mailbox.has_instance {
                        registry.holders.to_back(id);
                    } else {
                        registry.make_room_for_instances(1);
                    }
                    return Ok(());
                }
                Err(mpsc::error::TrySendError::Full(_)) => return Err(EventError::Overloaded),
                // The actor died (it panicked): replace it.
                Err(mpsc::error::TrySendError::Closed(event)) => {
                    if let Some(dead) = registry.mailboxes.remove(id) {
                        registry.forget(id, &dead);
                    }
                    event
                }
            },
            None => event,
        };
        let (sender, mailbox) = mpsc::channel(MAILBOX_CAPACITY);
        if sender.try_send(event).is_err() {
            unreachable!("a new mailbox has room for one event");
        }
        let generation = registry.next_generation;
        registry.next_generation += 1;
        // Those already leaving make room too: asking more for each new
        // object while they close would close far more than needed.
        if registry.mailboxes.len() - registry.leaving >= registry.max_open {
            registry.evict_least_recently_used();
        }
        registry.make_room_for_instances(1);
        registry.mailboxes.insert(
            id.to_string(),
            Mailbox {
                sender,
                generation,
                evicting: false,
                has_instance: false,
                shedding: false,
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
                && std::mem::take(&mut entry.evicting)
            {
                registry.leaving -= 1;
            }
            return false;
        }
        registry.remove(id, generation);
        true
    }

    /// Forgets the actor `generation` of object `id`, lost with its guest
    /// thread (a panic there): it stops counting toward `max_active` and
    /// `max_open_databases` now, not when the next event replaces it.
    pub fn lost(&self, id: &str, generation: u64) {
        self.lock().remove(id, generation);
    }

    /// Records whether the actor `generation` of object `id` now holds an
    /// instance (it reports each change, and answers to a request to drop
    /// its instance).
    pub fn holds_instance(&self, id: &str, generation: u64, holds: bool) {
        let mut registry = self.lock();
        let Some(mailbox) = registry
            .mailboxes
            .get_mut(id)
            .filter(|m| m.generation == generation)
        else {
            return;
        };
        // A request to drop the instance is answered only by losing it.
        let answered = mailbox.shedding && !holds;
        let had = mailbox.has_instance;
        mailbox.shedding &= holds;
        mailbox.has_instance = holds;
        registry.shedding -= usize::from(answered);
        match (had, holds) {
            (false, true) => {
                registry.holders.insert(id.to_string(), ());
            }
            (true, false) => {
                registry.holders.remove(id);
            }
            _ => {}
        }
        // Events that were delivered while there was room may all make
        // instances at once (a class's share of sleepers, say).
        if holds {
            registry.make_room_for_instances(0);
        }
    }

    /// Asks object `id`'s actor, if live, to hibernate once it has nothing
    /// waiting (the test harness reads a closed database). Returns whether
    /// the object had a live actor.
    pub fn hibernate(&self, id: &str) -> bool {
        let mut registry = self.lock();
        let Some(mailbox) = registry.mailboxes.get_mut(id) else {
            return false;
        };
        let asked = ask_to_hibernate(mailbox);
        registry.leaving += usize::from(asked);
        true
    }

    /// Asks every live actor to hibernate once it has nothing waiting.
    pub fn hibernate_all(&self) {
        let mut registry = self.lock();
        let asked = registry
            .mailboxes
            .values_mut()
            .map(ask_to_hibernate)
            .filter(|&asked| asked)
            .count();
        registry.leaving += asked;
    }

    /// Whether object `id` has an actor (its database may be open).
    pub fn is_live(&self, id: &str) -> bool {
        self.lock().mailboxes.contains_key(id)
    }

    /// How many objects hold an instance.
    pub fn active(&self) -> usize {
        self.lock().holders.len()
    }

    /// How many objects have an actor, each holding its database open.
    pub fn open(&self) -> usize {
        self.lock().mailboxes.len()
    }

    /// Refuses new events, lets every actor finish what it has queued, and
    /// waits until all have stopped (and closed their databases).
    pub async fn shut_down(&self) {
        {
            let mut registry = self.lock();
            registry.alive = None;
            registry.mailboxes.clear();
            registry.holders.clear();
            registry.shedding = 0;
            registry.leaving = 0;
        }
        let mut finished = self.finished.lock().await;
        while finished.recv().await.is_some() {}
    }
}

impl Registry {
    /// Asks the least recently used actors that are idle and not already
    /// leaving to hibernate: a few at a time, so the scan is paid rarely.
    fn evict_least_recently_used(&mut self) {
        let batch = 1 + self.max_open / 32;
        let idle: Vec<String> = self
            .mailboxes
            .iter()
            .filter(|(_, m)| m.is_idle() && !m.evicting)
            .take(batch)
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            if let Some(mailbox) = self.mailboxes.get_mut(&id)
                && ask_to_hibernate(mailbox)
            {
                self.leaving += 1;
            }
        }
    }

    /// When the actors holding an instance, less those already asked to
    /// drop it, plus `incoming` about to make one, pass `max_active`, asks
    /// the least recently used idle ones to drop theirs, a few at a time.
    fn make_room_for_instances(&mut self, incoming: usize) {
        if self.holders.len() - self.shedding + incoming <= self.max_active {
            return;
        }
        let batch = 1 + self.max_active / 32;
        let idle: Vec<String> = self
            .holders
            .keys()
            .filter(|id| {
                self.mailboxes
                    .get(*id)
                    .is_some_and(|m| m.is_idle() && !m.shedding && !m.evicting)
            })
            .take(batch)
            .cloned()
            .collect();
        for id in idle {
            if let Some(mailbox) = self.mailboxes.get_mut(&id)
                && mailbox.sender.try_send(Event::DropInstance).is_ok()
            {
                mailbox.shedding = true;
                self.shedding += 1;
            }
        }
    }

    /// Removes the actor `generation` of object `id`, if it is still the
    /// object's.
    fn remove(&mut self, id: &str, generation: u64) {
        if self
            .mailboxes
            .get(id)
            .is_some_and(|m| m.generation == generation)
            && let Some(gone) = self.mailboxes.remove(id)
        {
            self.forget(id, &gone);
        }
    }

    /// Forgets what `mailbox` of object `id`, gone, was counted in.
    fn forget(&mut self, id: &str, mailbox: &Mailbox) {
        if mailbox.has_instance {
            self.holders.remove(id);
        }
        self.shedding -= usize::from(mailbox.shedding);
        self.leaving -= usize::from(mailbox.evicting);
    }
}

/// Sends `mailbox` a request to hibernate; returns whether it is newly
/// leaving (it was not asked already).
fn ask_to_hibernate(mailbox: &mut Mailbox) -> bool {
    mailbox.sender.try_send(Event::Hibernate).is_ok()
        && !std::mem::replace(&mut mailbox.evicting, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts an actor for `id` and takes the event that started it, so
    /// its mailbox is idle.
    fn start(objects: &Objects, id: &str) -> (mpsc::Receiver<Event>, u64) {
        let mut started = None;
        objects
            .deliver(id, Event::Hibernate, |spawn| started = Some(spawn))
            .expect("delivered");
        let mut spawn = started.expect("a new actor");
        assert!(matches!(spawn.mailbox.try_recv(), Ok(Event::Hibernate)));
        (spawn.mailbox, spawn.generation)
    }

    #[test]
    fn past_max_active_the_least_recently_used_drops_its_instance_and_keeps_its_database() {
        let objects = Objects::new(2, 4);
        let (mut a, a_generation) = start(&objects, "a");
        objects.holds_instance("a", a_generation, true);
        let (mut b, b_generation) = start(&objects, "b");
        objects.holds_instance("b", b_generation, true);
        assert_eq!((objects.active(), objects.open()), (2, 2));

        let (_c, _) = start(&objects, "c");
        assert!(matches!(a.try_recv(), Ok(Event::DropInstance)));
        assert!(b.try_recv().is_err(), "only the least recently used");
        // Asked once: another event for an object without an instance
        // does not ask more while that answer is pending.
        let (_d, _) = start(&objects, "d");
        assert!(b.try_recv().is_err());

        objects.holds_instance("a", a_generation, false);
        assert_eq!(objects.active(), 1);
        assert_eq!(objects.open(), 4, "no database was closed");
        assert!(objects.is_live("a"));
    }

    #[test]
    fn a_delivery_makes_its_object_the_most_recently_used() {
        let objects = Objects::new(2, 3);
        let (mut a, a_generation) = start(&objects, "a");
        objects.holds_instance("a", a_generation, true);
        let (mut b, b_generation) = start(&objects, "b");
        objects.holds_instance("b", b_generation, true);
        objects
            .deliver("a", Event::Hibernate, |_| unreachable!("a is live"))
            .expect("delivered");
        assert!(matches!(a.try_recv(), Ok(Event::Hibernate)));

        // `b` is now the least recently used, of the holders and of all.
        let (_c, _) = start(&objects, "c");
        assert!(matches!(b.try_recv(), Ok(Event::DropInstance)));
        assert!(a.try_recv().is_err());
        let (_d, _) = start(&objects, "d");
        assert!(matches!(b.try_recv(), Ok(Event::Hibernate)));
        assert!(a.try_recv().is_err());
    }

    #[test]
    fn past_max_open_the_least_recently_used_hibernates() {
        let objects = Objects::new(1, 2);
        let (mut a, a_generation) = start(&objects, "a");
        let (mut b, _) = start(&objects, "b");
        let (_c, _) = start(&objects, "c");
        assert!(matches!(a.try_recv(), Ok(Event::Hibernate)));
        assert!(b.try_recv().is_err());
        assert!(objects.retire("a", a_generation, &a));
        assert_eq!(objects.open(), 2);
        assert!(!objects.is_live("a"));
    }

    #[test]
    fn actors_already_leaving_make_room_so_no_more_are_asked() {
        let objects = Objects::new(1, 64);
        let mut mailboxes: Vec<_> = (0..64).map(|n| start(&objects, &n.to_string())).collect();
        let asked = |mailboxes: &mut Vec<(mpsc::Receiver<Event>, u64)>| {
            mailboxes
                .iter_mut()
                .map(|(mailbox, _)| matches!(mailbox.try_recv(), Ok(Event::Hibernate)))
                .filter(|&asked| asked)
                .count()
        };
        mailboxes.push(start(&objects, "64"));
        assert_eq!(asked(&mut mailboxes), 3, "a batch of 1 + 64/32");
        // Three are closing: the next two new objects fit without asking more.
        mailboxes.push(start(&objects, "65"));
        mailboxes.push(start(&objects, "66"));
        assert_eq!(asked(&mut mailboxes), 0);
        // One of the three leaves; one that found an event waiting stays
        // and no longer counts as leaving.
        let (first, first_generation) = &mailboxes[0];
        assert!(objects.retire("0", *first_generation, first));
        objects
            .deliver("1", Event::DropInstance, |_| unreachable!("1 is live"))
            .expect("delivered");
        let (second, second_generation) = &mailboxes[1];
        assert!(!objects.retire("1", *second_generation, second));
        assert_eq!(objects.open(), 66);
        mailboxes.push(start(&objects, "67"));
        assert_eq!(
            asked(&mut mailboxes),
            3,
            "66 open, one leaving: room is asked for"
        );
    }

    #[test]
    fn an_actor_that_leaves_is_no_longer_counted() {
        let objects = Objects::new(1, 4);
        let (mut a, a_generation) = start(&objects, "a");
        objects.holds_instance("a", a_generation, true);
        let (_b, _) = start(&objects, "b");
        assert_eq!(objects.active(), 1);
        assert!(matches!(a.try_recv(), Ok(Event::DropInstance)));
        assert!(objects.retire("a", a_generation, &a));
        assert_eq!((objects.active(), objects.open()), (0, 1));
        // A report from an actor that has left changes nothing.
        objects.holds_instance("a", a_generation, true);
        assert_eq!(objects.active(), 0);
    }

    #[test]
    fn a_lost_actor_is_forgotten_at_once_and_only_that_generation() {
        let objects = Objects::new(4, 4);
        let (a, a_generation) = start(&objects, "a");
        objects.holds_instance("a", a_generation, true);
        assert_eq!((objects.active(), objects.open()), (1, 1));
        // Its thread panicked: the mailbox went with it.
        drop(a);
        objects.lost("a", a_generation);
        assert_eq!((objects.active(), objects.open()), (0, 0));
        // The next event starts a new actor, which an old report of loss
        // does not remove.
        let (_a, new_generation) = start(&objects, "a");
        objects.holds_instance("a", new_generation, true);
        objects.lost("a", a_generation);
        assert_eq!((objects.active(), objects.open()), (1, 1));
    }
}
