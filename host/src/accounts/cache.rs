//! A bounded map for lookups that would otherwise read the catalog on
//! every request: emptied when full, which is rare and cheap to refill.
//!
//! A lookup that missed reads the catalog and then fills the entry; a
//! change (a revoked key, a removed member) made during that read must not
//! be overwritten by the stale value, so every removal starts a new
//! generation and a fill from an older one is dropped.

use std::collections::HashMap;
use std::hash::Hash;

use parking_lot::{Mutex, MutexGuard};

pub struct Cache<K, V> {
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, V>,
    generation: u64,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                generation: 0,
            }),
        }
    }

    /// The cached value, or the generation to fill it in with.
    pub fn get(&self, key: &K) -> Result<V, u64> {
        let entries = self.lock();
        entries.map.get(key).cloned().ok_or(entries.generation)
    }

    /// Fills an entry looked up in `generation`, unless something was
    /// removed since.
    pub fn fill(&self, key: K, value: V, generation: u64) {
        let mut entries = self.lock();
        if entries.generation != generation {
            return;
        }
        if entries.map.len() >= self.capacity {
            entries.map.clear();
        }
        entries.map.insert(key, value);
    }

    /// Forgets the entry for `key`, which no longer holds.
    pub fn remove(&self, key: &K) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.map.remove(key);
    }

    /// Forgets entries that no longer hold: a scan of the whole map, for
    /// changes that touch entries by value.
    pub fn remove_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.map.retain(|key, value| !stale(key, value));
    }

    fn lock(&self) -> MutexGuard<'_, Entries<K, V>> {
        self.entries.lock()
    }
}
