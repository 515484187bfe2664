//! Counting login attempts in fixed windows, per account and client
//! address and per client address, so password guessing runs out of
//! tries; and failed admin-token guesses per address.
//!
//! Hand-written rather than `governor`: its GCRA refills one try every
//! `window / max` after a burst of `max`, so it lets through up to about
//! twice `max` in the first window and answers `Retry-After` with a
//! fraction of the window; it can neither look without counting (`check`)
//! nor forget one key (`reset` after a successful login). The documented
//! rule is `max` per fixed window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// Past this many keys, ended windows are swept out. Live ones are kept
/// whatever their number: dropping them would hand fresh tries to whoever
/// filled the map.
const SWEEP_AT: usize = 100_000;

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

    /// Counts one try of `key`, or `Err(wait)` if it has used its tries in
    /// this window (checked and counted at once, so parallel tries cannot
    /// all pass).
    pub fn take(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self.lock();
        if windows.len() >= SWEEP_AT && !windows.contains_key(key) {
            windows.retain(|_, window| now < window.started + self.window);
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
        if window.count >= self.max {
            return Err(window.started + self.window - now);
        }
        window.count += 1;
        Ok(())
    }

    /// `Err(wait)` if `key` has used its tries in this window; counts
    /// nothing.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        match self.lock().get(key) {
            Some(window) if now < window.started + self.window && window.count >= self.max => {
                Err(window.started + self.window - now)
            }
            _ => Ok(()),
        }
    }

    /// Forgets `key`'s tries (after a successful login).
    pub fn reset(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock()
    }
}

/// Failed guesses of a secret (the admin token) per client address: past
/// `max` in a window, the address is refused until the window ends.
pub struct FailureThrottle {
    limiter: RateLimiter,
}

impl FailureThrottle {
    pub fn new(max: u32, window: Duration) -> Self {
        FailureThrottle {
            limiter: RateLimiter::new(max, window),
        }
    }

    /// `Err(wait)` if `address` has used up its failures.
    pub fn check(&self, address: Option<IpAddr>) -> Result<(), Duration> {
        self.limiter.check(&throttle_key(address), Instant::now())
    }

    /// Counts a failure of `address`.
    pub fn failed(&self, address: Option<IpAddr>) {
        // Over the limit already is fine: `check` refuses it next time.
        let _ = self.limiter.take(&throttle_key(address), Instant::now());
    }
}

/// Clients of unknown address (only in-process servers) share one count.
fn throttle_key(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_string(), address_key)
}

/// The key of a client address: IPv6 clients are counted by their /64,
/// which one client usually has whole.
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_each_key_within_its_window() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(limiter.take("a", start), Ok(()));
        assert_eq!(limiter.take("a", start), Ok(()));
        let later = start + Duration::from_secs(20);
        assert_eq!(limiter.take("a", later), Err(Duration::from_secs(40)));
        assert_eq!(limiter.take("b", later), Ok(()), "keys are apart");
        let next_window = start + Duration::from_secs(60);
        assert_eq!(limiter.take("a", next_window), Ok(()));
        limiter.reset("a");
        assert_eq!(limiter.take("a", next_window), Ok(()));
        assert_eq!(limiter.take("a", next_window), Ok(()));
        assert!(limiter.take("a", next_window).is_err());
    }

    #[test]
    fn throttles_failures_per_address() {
        let throttle = FailureThrottle::new(2, Duration::from_secs(60));
        let a = Some("10.0.0.1".parse().expect("an address"));
        let b = Some("10.0.0.2".parse().expect("an address"));
        assert!(throttle.check(a).is_ok());
        throttle.failed(a);
        throttle.failed(a);
        assert!(throttle.check(a).is_err());
        throttle.failed(a);
        assert!(throttle.check(a).is_err());
        assert!(throttle.check(b).is_ok(), "addresses are apart");
    }

    #[test]
    fn counts_ipv6_clients_by_their_prefix() {
        let key = |text: &str| address_key(text.parse().expect("an address"));
        assert_eq!(key("2001:db8:1:2::5"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::5"), key("2001:db8:1:3::5"));
        assert_eq!(key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(key("10.0.0.1"), "10.0.0.1");
    }
}
