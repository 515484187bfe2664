//! Counting login attempts in fixed windows, per account and per client
//! address, so password guessing runs out of tries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept at most; past this, ended windows are swept out, and if that
/// is not enough the oldest half goes.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    max: u32,
    window: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        RateLimiter {
            max,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when `key` has used its tries in this window.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let windows = self.lock();
        match windows.get(key) {
            Some(window) if now < window.started + self.window && window.count >= self.max => {
                Err(window.started + self.window - now)
            }
            _ => Ok(()),
        }
    }

    /// Counts one try of `key`.
    pub fn count(&self, key: &str, now: Instant) {
        let mut windows = self.lock();
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            self.sweep(&mut windows, now);
        }
        let window = windows.entry(key.to_string()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now >= window.started + self.window {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
    }

    /// Forgets `key`'s tries (after a successful login).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn sweep(&self, windows: &mut HashMap<String, Window>, now: Instant) {
        windows.retain(|_, window| now < window.started + self.window);
        if windows.len() >= MAX_KEYS {
            let mut starts: Vec<Instant> = windows.values().map(|w| w.started).collect();
            starts.sort_unstable();
            let median = starts[starts.len() / 2];
            windows.retain(|_, window| window.started > median);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_key_within_its_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        limiter.count("a", start);
        assert_eq!(limiter.check("a", start), Ok(()));
        limiter.count("a", start);
        let later = start + Duration::from_secs(20);
        assert_eq!(limiter.check("a", later), Err(Duration::from_secs(40)));
        assert_eq!(limiter.check("b", later), Ok(()), "keys are apart");
        let next_window = start + Duration::from_secs(60);
        assert_eq!(limiter.check("a", next_window), Ok(()));
        limiter.count("a", next_window);
        assert_eq!(limiter.check("a", next_window), Ok(()));
        limiter.reset("a");
        limiter.count("a", next_window);
        assert_eq!(limiter.check("a", next_window), Ok(()));
    }
}
