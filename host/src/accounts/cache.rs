//! A bounded cache (`moka`) for lookups that would otherwise read the
//! catalog on every request.
//!
//! A lookup that missed reads the catalog and then fills the entry; a
//! change (a revoked key, a removed member) made during that read must not
//! be overwritten by the stale value, so every removal starts a new
//! generation, and a fill that finds the generation moved on, before or
//! just after its insert, takes its entry back out.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Cache<K, V> {
    entries: moka::sync::Cache<K, V>,
    generation: AtomicU64,
}

impl<K, V> Cache<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(capacity: u64) -> Self {
        Cache {
            entries: moka::sync::Cache::new(capacity),
            generation: AtomicU64::new(0),
        }
    }

    /// The cached value, or the generation to fill it in with.
    pub fn get(&self, key: &K) -> Result<V, u64> {
        // Read first: a value cached now was filled (and kept) in this
        // generation or an earlier one that saw no removal of it.
        let generation = self.generation.load(Ordering::SeqCst);
        self.entries.get(key).ok_or(generation)
    }

    /// Fills an entry looked up in `generation`, unless something was
    /// removed since.
    pub fn fill(&self, key: K, value: V, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        self.entries.insert(key.clone(), value);
        // A removal between the check and the insert has bumped the
        // generation first, so it is seen here: undo. One after this load
        // removes the entry itself.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.entries.invalidate(&key);
        }
    }

    /// Forgets the entry for `key`, which no longer holds.
    pub fn remove(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key);
    }

    /// Forgets entries that no longer hold: a scan of the whole cache, for
    /// changes that touch entries by value. Each match is removed before
    /// this returns.
    pub fn remove_where(&self, mut stale: impl FnMut(&K, &V) -> bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (key, value) in self.entries.iter() {
            if stale(&key, &value) {
                self.entries.invalidate(&*key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_from_a_superseded_generation_are_dropped() {
        let cache: Cache<&str, u32> = Cache::new(16);
        let Err(generation) = cache.get(&"a") else {
            panic!("an empty cache has nothing");
        };
        cache.remove(&"a");
        cache.fill("a", 1, generation);
        assert!(cache.get(&"a").is_err(), "a stale fill is dropped");
        let Err(generation) = cache.get(&"a") else {
            panic!("still empty");
        };
        cache.fill("a", 2, generation);
        cache.fill("b", 3, generation);
        assert_eq!(cache.get(&"a"), Ok(2));
        cache.remove(&"a");
        assert!(cache.get(&"a").is_err(), "removals are exact");
        assert_eq!(cache.get(&"b"), Ok(3), "and touch nothing else");
        cache.remove_where(|_, value| *value == 3);
        assert!(cache.get(&"b").is_err());
    }
}
