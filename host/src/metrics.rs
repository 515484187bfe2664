//! Counters the host keeps, exposed at `/metrics` in Prometheus' text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
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
    /// Alarms whose handler ran and committed.
    pub alarms_fired: Counter,
    /// Milliseconds from each fired alarm's scheduled time to its firing,
    /// summed, and the largest.
    pub alarm_lag_ms_sum: Counter,
    pub alarm_lag_ms_max: Maximum,
    /// Failed alarm attempts scheduled to be tried again.
    pub alarm_retries: Counter,
    /// Alarms given up after their last retry.
    pub alarms_dropped: Counter,
    /// WebSockets objects accepted.
    pub sockets_opened: Counter,
    /// Messages from clients delivered to objects.
    pub socket_messages: Counter,
    /// Messages the host answered with an object's auto-response.
    pub socket_auto_responses: Counter,
    /// Bytes of guests' stdout and stderr dropped: over an object's rate,
    /// over the line length, or with the log's queue full.
    pub guest_log_dropped_bytes: Arc<Counter>,
}

/// The largest value recorded.
#[derive(Debug, Default)]
pub struct Maximum(AtomicU64);

impl Maximum {
    pub fn record(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Metrics {
    /// Records that an alarm scheduled for `scheduled_ms` fired at `fired_ms`.
    pub fn alarm_fired(&self, scheduled_ms: i64, fired_ms: i64) {
        let lag = fired_ms.saturating_sub(scheduled_ms).max(0).unsigned_abs();
        self.alarms_fired.inc();
        self.alarm_lag_ms_sum.0.fetch_add(lag, Ordering::Relaxed);
        self.alarm_lag_ms_max.record(lag);
    }
}

impl Metrics {
    /// The Prometheus exposition of these counters, of `active` objects
    /// and of `sockets` open.
    pub fn render(&self, active: usize, sockets: usize) -> String {
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
            "podhost_commits_total",
            "counter",
            "Transactions committed; events per commit is the group-commit batch size.",
            self.commits.get(),
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
        metric(
            "podhost_alarms_fired_total",
            "counter",
            "Alarms whose handler ran and committed.",
            self.alarms_fired.get(),
        );
        metric(
            "podhost_alarm_lag_ms_sum",
            "counter",
            "Milliseconds from fired alarms' scheduled times to their firing, summed.",
            self.alarm_lag_ms_sum.get(),
        );
        metric(
            "podhost_alarm_lag_ms_max",
            "gauge",
            "The largest lag of a fired alarm, in milliseconds.",
            self.alarm_lag_ms_max.get(),
        );
        metric(
            "podhost_alarm_retries_total",
            "counter",
            "Failed alarm attempts scheduled to be tried again.",
            self.alarm_retries.get(),
        );
        metric(
            "podhost_alarms_dropped_total",
            "counter",
            "Alarms given up after their last retry.",
            self.alarms_dropped.get(),
        );
        metric(
            "podhost_sockets_open",
            "gauge",
            "WebSockets open, those of hibernated objects included.",
            sockets as u64,
        );
        metric(
            "podhost_sockets_opened_total",
            "counter",
            "WebSockets objects accepted.",
            self.sockets_opened.get(),
        );
        metric(
            "podhost_socket_messages_total",
            "counter",
            "Messages from clients delivered to objects.",
            self.socket_messages.get(),
        );
        metric(
            "podhost_socket_auto_responses_total",
            "counter",
            "Messages answered by an auto-response without waking the object.",
            self.socket_auto_responses.get(),
        );
        metric(
            "podhost_guest_log_dropped_bytes_total",
            "counter",
            "Bytes of guests' stdout and stderr dropped (over an object's rate, over the line length, or the log's queue full).",
            self.guest_log_dropped_bytes.get(),
        );
        metric(
            "podhost_log_dropped_records_total",
            "counter",
            "Host log records dropped because stderr was not keeping up.",
            crate::logs::dropped_records(),
        );
        out
    }
}
