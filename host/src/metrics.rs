//! Counters the host keeps, exposed at `/metrics` in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    /// Events delivered to objects.
    pub events: Counter,
    /// Events that trapped or failed to commit.
    pub failures: Counter,
    /// Transactions committed (a group commit counts once).
    pub commits: Counter,
    /// Instances created.
    pub activations: Counter,
    /// Objects that went idle and were dropped.
    pub hibernations: Counter,
    /// Objects dropped early to make room for others (`max_active`).
    pub evictions: Counter,
}

impl Metrics {
    /// The Prometheus exposition of these counters and of `active` objects.
    pub fn render(&self, active: usize) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "podhost_objects_active",
            "gauge",
            "Objects with a live actor.",
            active as u64,
        );
        metric(
            "podhost_events_total",
            "counter",
            "Events delivered to objects.",
            self.events.get(),
        );
        metric(
            "podhost_event_failures_total",
            "counter",
            "Events that trapped or failed to commit.",
            self.failures.get(),
        );
        metric(
            "podhost_activations_total",
            "counter",
            "Object instances created.",
            self.activations.get(),
        );
        metric(
            "podhost_hibernations_total",
            "counter",
            "Idle objects dropped.",
            self.hibernations.get(),
        );
        metric(
            "podhost_evictions_total",
            "counter",
            "Objects hibernated early to make room (max_active).",
            self.evictions.get(),
        );
        out
    }
}
