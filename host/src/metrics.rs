//! The host's metrics, exposed at `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes), through `prometheus-client`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// A value that only grows but is exposed as a gauge: a counter's name
/// must end in `_total`, and these names predate the library.
pub type Level = Gauge<u64, AtomicU64>;

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric is registered with this prefix (and counters end in
/// `_total`, which the library appends).
const PREFIX: &str = "podhost";

#[derive(Debug)]
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
    pub alarm_lag_ms_sum: Level,
    pub alarm_lag_ms_max: Level,
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
    /// Outbound HTTP requests objects sent, and those refused (a host not
    /// in `outbound`, too many in flight).
    pub outbound_requests: Counter,
    pub outbound_refused: Counter,
    /// Seconds from an event's start (activation included) to its
    /// handler's return.
    pub event_duration: Histogram,
    /// Seconds a transaction's commit took.
    pub commit_duration: Histogram,
    /// Seconds to make an instance (opening the database if closed).
    pub activation_duration: Histogram,
    /// Set from the runtime at each scrape.
    objects_active: Level,
    sockets_open: Level,
    registry: Registry,
}

/// Upper bounds in seconds, 50 µs to 10 s in steps of 2 to 2.5 (round
/// numbers a reader can compare): a probe event on a warm object up to
/// the longest a handler may usually run.
const DURATION_BUCKETS: [f64; 17] = [
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            events: Counter::default(),
            failures: Counter::default(),
            commits: Counter::default(),
            activations: Counter::default(),
            hibernations: Counter::default(),
            evictions: Counter::default(),
            alarms_fired: Counter::default(),
            alarm_lag_ms_sum: Level::default(),
            alarm_lag_ms_max: Level::default(),
            alarm_retries: Counter::default(),
            alarms_dropped: Counter::default(),
            sockets_opened: Counter::default(),
            socket_messages: Counter::default(),
            socket_auto_responses: Counter::default(),
            guest_log_dropped_bytes: Arc::default(),
            outbound_requests: Counter::default(),
            outbound_refused: Counter::default(),
            event_duration: duration_histogram(),
            commit_duration: duration_histogram(),
            activation_duration: duration_histogram(),
            objects_active: Level::default(),
            sockets_open: Level::default(),
            registry: Registry::with_prefix(PREFIX),
        };
        metrics.register();
        metrics
    }
}

impl Metrics {
    /// Puts every metric in the registry; each shares its value with the
    /// field the host updates. Help texts end without a period: the
    /// encoder appends one.
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "objects_active",
            "Objects with a live actor",
            self.objects_active.clone(),
        );
        r.register("events", "Events delivered to objects", self.events.clone());
        r.register(
            "commits",
            "Transactions committed; events per commit is the group-commit batch size",
            self.commits.clone(),
        );
        r.register(
            "event_failures",
            "Events that trapped or failed to commit",
            self.failures.clone(),
        );
        r.register(
            "activations",
            "Object instances created",
            self.activations.clone(),
        );
        r.register(
            "hibernations",
            "Idle objects dropped",
            self.hibernations.clone(),
        );
        r.register(
            "evictions",
            "Objects hibernated early to make room (max_active)",
            self.evictions.clone(),
        );
        r.register(
            "alarms_fired",
            "Alarms whose handler ran and committed",
            self.alarms_fired.clone(),
        );
        r.register(
            "alarm_lag_ms_sum",
            "Milliseconds from fired alarms' scheduled times to their firing, summed (only grows)",
            self.alarm_lag_ms_sum.clone(),
        );
        r.register(
            "alarm_lag_ms_max",
            "The largest lag of a fired alarm, in milliseconds",
            self.alarm_lag_ms_max.clone(),
        );
        r.register(
            "alarm_retries",
            "Failed alarm attempts scheduled to be tried again",
            self.alarm_retries.clone(),
        );
        r.register(
            "alarms_dropped",
            "Alarms given up after their last retry",
            self.alarms_dropped.clone(),
        );
        r.register(
            "sockets_open",
            "WebSockets open, those of hibernated objects included",
            self.sockets_open.clone(),
        );
        r.register(
            "sockets_opened",
            "WebSockets objects accepted",
            self.sockets_opened.clone(),
        );
        r.register(
            "socket_messages",
            "Messages from clients delivered to objects",
            self.socket_messages.clone(),
        );
        r.register(
            "socket_auto_responses",
            "Messages answered by an auto-response without waking the object",
            self.socket_auto_responses.clone(),
        );
        r.register(
            "guest_log_dropped_bytes",
            "Bytes of guests' stdout and stderr dropped (over an object's rate, over the line length, or the log's queue full)",
            (*self.guest_log_dropped_bytes).clone(),
        );
        r.register(
            "outbound_requests",
            "Outbound HTTP requests objects sent",
            self.outbound_requests.clone(),
        );
        r.register(
            "outbound_refused",
            "Outbound HTTP requests refused: a host not in the class's outbound list, or too many in flight",
            self.outbound_refused.clone(),
        );
        r.register_collector(Box::new(HostLogDrops));
        r.register_with_unit(
            "event_duration",
            "Time from an event's start (activation included) to its handler's return",
            Unit::Seconds,
            self.event_duration.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Time a transaction's commit took (the fsync included)",
            Unit::Seconds,
            self.commit_duration.clone(),
        );
        r.register_with_unit(
            "activation_duration",
            "Time to make an object's instance (opening its database if closed)",
            Unit::Seconds,
            self.activation_duration.clone(),
        );
    }

    /// Records that an alarm scheduled for `scheduled_ms` fired at `fired_ms`.
    pub fn alarm_fired(&self, scheduled_ms: i64, fired_ms: i64) {
        let lag = fired_ms.saturating_sub(scheduled_ms).max(0).unsigned_abs();
        self.alarms_fired.inc();
        self.alarm_lag_ms_sum.inc_by(lag);
        self.alarm_lag_ms_max
            .inner()
            .fetch_max(lag, Ordering::Relaxed);
    }

    /// The exposition of these metrics, of `active` objects and of
    /// `sockets` open.
    pub fn render(&self, active: usize, sockets: usize) -> String {
        self.objects_active.set(active as u64);
        self.sockets_open.set(sockets as u64);
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a String does not fail; a metric's encoder might.
            tracing::error!(%error, "cannot encode the metrics");
        }
        out
    }
}

/// Records the time since `started` in `histogram`, in seconds.
pub fn observe_since(histogram: &Histogram, started: Instant) {
    histogram.observe(started.elapsed().as_secs_f64());
}

/// `podhost_log_dropped_records_total`, read from the log at each scrape.
#[derive(Debug)]
struct HostLogDrops;

impl Collector for HostLogDrops {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let counter = ConstCounter::new(crate::logs::dropped_records());
        let metric = encoder.encode_descriptor(
            "log_dropped_records",
            "Host log records dropped because stderr was not keeping up",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, name: &str) -> Option<String> {
        text.lines()
            .find_map(|line| Some(line.strip_prefix(name)?.strip_prefix(' ')?.to_string()))
    }

    #[test]
    fn keeps_the_names_and_values_scrapers_read() {
        let metrics = Metrics::default();
        metrics.events.inc();
        metrics.events.inc();
        metrics.commits.inc();
        metrics.guest_log_dropped_bytes.inc_by(7);
        metrics.alarm_fired(1_000, 1_250);
        metrics.alarm_fired(1_000, 1_100);
        let text = metrics.render(3, 4);
        for (name, expected) in [
            ("podhost_objects_active", "3"),
            ("podhost_events_total", "2"),
            ("podhost_commits_total", "1"),
            ("podhost_event_failures_total", "0"),
            ("podhost_activations_total", "0"),
            ("podhost_hibernations_total", "0"),
            ("podhost_evictions_total", "0"),
            ("podhost_alarms_fired_total", "2"),
            ("podhost_alarm_lag_ms_sum", "350"),
            ("podhost_alarm_lag_ms_max", "250"),
            ("podhost_alarm_retries_total", "0"),
            ("podhost_alarms_dropped_total", "0"),
            ("podhost_sockets_open", "4"),
            ("podhost_sockets_opened_total", "0"),
            ("podhost_socket_messages_total", "0"),
            ("podhost_socket_auto_responses_total", "0"),
            ("podhost_guest_log_dropped_bytes_total", "7"),
            ("podhost_outbound_requests_total", "0"),
            ("podhost_outbound_refused_total", "0"),
        ] {
            assert_eq!(
                value(&text, name).as_deref(),
                Some(expected),
                "{name} in:\n{text}"
            );
        }
        assert!(
            value(&text, "podhost_log_dropped_records_total").is_some(),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn histograms_count_observations_in_seconds() {
        let metrics = Metrics::default();
        metrics.event_duration.observe(0.002);
        metrics.event_duration.observe(20.0);
        metrics.commit_duration.observe(0.0001);
        let text = metrics.render(0, 0);
        assert!(
            text.contains("# TYPE podhost_event_duration_seconds histogram"),
            "{text}"
        );
        assert_eq!(
            value(&text, "podhost_event_duration_seconds_count").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "podhost_commit_duration_seconds_count").as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&text, "podhost_activation_duration_seconds_count").as_deref(),
            Some("0")
        );
        // 20 s is above the last bound: only +Inf holds it.
        assert_eq!(
            value(&text, "podhost_event_duration_seconds_bucket{le=\"+Inf\"}").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&text, "podhost_event_duration_seconds_bucket{le=\"10.0\"}").as_deref(),
            Some("1"),
            "{text}"
        );
    }
}
