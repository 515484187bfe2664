//! The host's metrics, exposed at `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes), through `prometheus-client`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
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
    /// Instances dropped, or databases closed, early to make room for
    /// others (`max_active`, `max_open_databases`).
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
    /// Replication: bytes of segments and snapshots waiting for the store,
    /// how long the oldest has waited, uploads done and failed tries.
    pub replication_queued_bytes: Level,
    pub replication_lag_ms: Level,
    pub replication_uploads: Counter,
    pub replication_failures: Counter,
    /// The metrics labelled by class; see [`ClassMetrics`].
    by_class: ClassFamilies,
    /// Each class's handles, made once per class (see [`Metrics::class`]).
    classes: Mutex<HashMap<String, Arc<ClassMetrics>>>,
    /// Set from the runtime at each scrape.
    objects_active: Level,
    objects_open: Level,
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

/// Events per group commit: 1 to 256 (the most a batch may usually hold).
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn batch_histogram() -> Histogram {
    Histogram::new(BATCH_BUCKETS)
}

/// The only label of the metrics by class: never the object, so series
/// are bounded by the classes deployed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    class: String,
}

/// A guest response's status class (`2xx` ... `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    class: String,
    status: &'static str,
}

type Histograms = Family<ClassLabel, Histogram, fn() -> Histogram>;

#[derive(Debug)]
struct ClassFamilies {
    event_duration: Histograms,
    commit_duration: Histograms,
    commit_batch: Histograms,
    activation_duration: Histograms,
    alarm_lag: Histograms,
    outbound_duration: Histograms,
    responses: Family<StatusLabel, Counter>,
    sockets_open: Family<ClassLabel, Gauge>,
}

impl Default for ClassFamilies {
    fn default() -> Self {
        let durations = || Family::new_with_constructor(duration_histogram as fn() -> Histogram);
        ClassFamilies {
            event_duration: durations(),
            commit_duration: durations(),
            commit_batch: Family::new_with_constructor(batch_histogram as fn() -> Histogram),
            activation_duration: durations(),
            alarm_lag: durations(),
            outbound_duration: durations(),
            responses: Family::default(),
            sockets_open: Family::default(),
        }
    }
}

/// One class's metric handles, resolved once per class and kept by its
/// actors: the hot path updates atomics and never builds a label set.
/// Each handle shares its value with the series in the registry.
#[derive(Debug, Clone)]
pub struct ClassMetrics {
    /// Seconds from an event's start (activation included) to its
    /// handler's return.
    pub event_duration: Histogram,
    /// Seconds a transaction's commit took.
    pub commit_duration: Histogram,
    /// Events per committed batch.
    pub commit_batch: Histogram,
    /// Seconds to make an instance (opening the database if closed).
    pub activation_duration: Histogram,
    /// Seconds from a fired alarm's scheduled time to its firing.
    pub alarm_lag: Histogram,
    /// Seconds from an outbound request's start to its response's headers.
    pub outbound_duration: Histogram,
    /// Guest responses by status class: 2xx, 3xx, 4xx, 5xx (1xx and
    /// anything else count as `other`).
    responses: [Counter; 5],
    /// WebSockets open on the class's objects.
    pub sockets_open: Gauge,
}

const STATUS_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "other"];

impl ClassMetrics {
    /// Counts a guest response of status `status`.
    pub fn response(&self, status: u16) {
        let index = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            500..=599 => 3,
            _ => 4,
        };
        self.responses[index].inc();
    }
}

/// Keeps a socket counted in its class's gauge until dropped.
#[derive(Debug)]
pub struct OpenSocket(Gauge);

impl OpenSocket {
    pub fn new(gauge: Gauge) -> Self {
        gauge.inc();
        OpenSocket(gauge)
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
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
            replication_queued_bytes: Level::default(),
            replication_lag_ms: Level::default(),
            replication_uploads: Counter::default(),
            replication_failures: Counter::default(),
            by_class: ClassFamilies::default(),
            classes: Mutex::default(),
            objects_active: Level::default(),
            objects_open: Level::default(),
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
            "Objects with a live instance",
            self.objects_active.clone(),
        );
        r.register(
            "objects_open",
            "Objects whose database is open, with or without an instance (max_open_databases)",
            self.objects_open.clone(),
        );
        r.register("events", "Events delivered to objects", self.events.clone());
        r.register(
            "replication_queued_bytes",
            "Bytes of segments and snapshots waiting for the replication store",
            self.replication_queued_bytes.clone(),
        );
        r.register(
            "replication_lag_ms",
            "How long the oldest upload not yet in the replication store has waited",
            self.replication_lag_ms.clone(),
        );
        r.register(
            "replication_uploads",
            "Segments and snapshots put in the replication store",
            self.replication_uploads.clone(),
        );
        r.register(
            "replication_failures",
            "Failed tries to put a segment or snapshot in the replication store",
            self.replication_failures.clone(),
        );
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
            "Instances dropped or databases closed early to make room (max_active, max_open_databases)",
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
        let f = &self.by_class;
        for (name, help, family) in [
            (
                "event_duration",
                "Time from an event's start (activation included) to its handler's return, by class",
                &f.event_duration,
            ),
            (
                "commit_duration",
                "Time a transaction's commit took (the fsync included), by class",
                &f.commit_duration,
            ),
            (
                "activation_duration",
                "Time to make an object's instance (opening its database if closed), by class",
                &f.activation_duration,
            ),
            (
                "alarm_lag",
                "Time from a fired alarm's scheduled time to its firing, by class",
                &f.alarm_lag,
            ),
            (
                "outbound_duration",
                "Time from an outbound HTTP request's start to its response's headers, by class",
                &f.outbound_duration,
            ),
        ] {
            r.register_with_unit(name, help, Unit::Seconds, family.clone());
        }
        r.register(
            "commit_batch_events",
            "Events per committed batch (group commit), by class",
            f.commit_batch.clone(),
        );
        r.register(
            "responses",
            "Guest responses by class and status class (2xx, 3xx, 4xx, 5xx, other)",
            f.responses.clone(),
        );
        r.register(
            "class_sockets_open",
            "WebSockets open on a class's objects, those of hibernated objects included",
            f.sockets_open.clone(),
        );
    }

    /// The handles of `class`'s metrics, made on first use. Callers keep
    /// them (an actor for its life) rather than look them up per event.
    /// A class removed by a deploy keeps its series until the host
    /// restarts: they stop moving, and are few.
    pub fn class(&self, class: &str) -> Arc<ClassMetrics> {
        let mut classes = self.classes.lock();
        if let Some(metrics) = classes.get(class) {
            return Arc::clone(metrics);
        }
        let f = &self.by_class;
        let label = ClassLabel {
            class: class.to_string(),
        };
        let responses = STATUS_CLASSES.map(|status| {
            f.responses.get_or_create_owned(&StatusLabel {
                class: class.to_string(),
                status,
            })
        });
        let metrics = Arc::new(ClassMetrics {
            event_duration: f.event_duration.get_or_create_owned(&label),
            commit_duration: f.commit_duration.get_or_create_owned(&label),
            commit_batch: f.commit_batch.get_or_create_owned(&label),
            activation_duration: f.activation_duration.get_or_create_owned(&label),
            alarm_lag: f.alarm_lag.get_or_create_owned(&label),
            outbound_duration: f.outbound_duration.get_or_create_owned(&label),
            responses,
            sockets_open: f.sockets_open.get_or_create_owned(&label),
        });
        classes.insert(class.to_string(), Arc::clone(&metrics));
        metrics
    }

    /// Records that an alarm scheduled for `scheduled_ms` fired at `fired_ms`.
    pub fn alarm_fired(&self, scheduled_ms: i64, fired_ms: i64) -> u64 {
        let lag = fired_ms.saturating_sub(scheduled_ms).max(0).unsigned_abs();
        self.alarms_fired.inc();
        self.alarm_lag_ms_sum.inc_by(lag);
        self.alarm_lag_ms_max
            .inner()
            .fetch_max(lag, Ordering::Relaxed);
        lag
    }

    /// The exposition of these metrics, of `active` objects (with an
    /// instance), `open` ones (with an open database) and of `sockets`
    /// open.
    pub fn render(&self, active: usize, open: usize, sockets: usize) -> String {
        self.objects_active.set(active as u64);
        self.objects_open.set(open as u64);
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
        let text = metrics.render(3, 5, 4);
        for (name, expected) in [
            ("podhost_objects_active", "3"),
            ("podhost_objects_open", "5"),
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
    fn histograms_count_observations_in_seconds_by_class() {
        let metrics = Metrics::default();
        let counter = metrics.class("counter");
        counter.event_duration.observe(0.002);
        counter.event_duration.observe(20.0);
        counter.commit_duration.observe(0.0001);
        counter.commit_batch.observe(3.0);
        counter.response(200);
        counter.response(404);
        counter.response(503);
        counter.response(503);
        let _socket = OpenSocket::new(counter.sockets_open.clone());
        // The same handles again: one series per class.
        metrics.class("counter").event_duration.observe(0.5);
        metrics.class("chat").alarm_lag.observe(0.01);
        let text = metrics.render(0, 0, 0);
        assert!(
            text.contains("# TYPE podhost_event_duration_seconds histogram"),
            "{text}"
        );
        for (name, expected) in [
            (
                "podhost_event_duration_seconds_count{class=\"counter\"}",
                "3",
            ),
            (
                "podhost_commit_duration_seconds_count{class=\"counter\"}",
                "1",
            ),
            ("podhost_commit_batch_events_sum{class=\"counter\"}", "3.0"),
            (
                "podhost_activation_duration_seconds_count{class=\"counter\"}",
                "0",
            ),
            ("podhost_alarm_lag_seconds_count{class=\"chat\"}", "1"),
            ("podhost_alarm_lag_seconds_count{class=\"counter\"}", "0"),
            (
                "podhost_responses_total{class=\"counter\",status=\"2xx\"}",
                "1",
            ),
            (
                "podhost_responses_total{class=\"counter\",status=\"4xx\"}",
                "1",
            ),
            (
                "podhost_responses_total{class=\"counter\",status=\"5xx\"}",
                "2",
            ),
            ("podhost_class_sockets_open{class=\"counter\"}", "1"),
            // 20 s is above the last bound: only +Inf holds it.
            (
                "podhost_event_duration_seconds_bucket{le=\"+Inf\",class=\"counter\"}",
                "3",
            ),
            (
                "podhost_event_duration_seconds_bucket{le=\"10.0\",class=\"counter\"}",
                "2",
            ),
        ] {
            assert_eq!(
                value(&text, name).as_deref(),
                Some(expected),
                "{name} in:\n{text}"
            );
        }
        drop(_socket);
        let text = metrics.render(0, 0, 0);
        assert_eq!(
            value(&text, "podhost_class_sockets_open{class=\"counter\"}").as_deref(),
            Some("0")
        );
    }
}
