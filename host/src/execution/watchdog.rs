//! The watchdog: every tick it looks at each running event and stops the
//! ones past their CPU or wall-clock limit, wherever they are.
//!
//! - The CPU limit counts the time an event computes or is ready to: wasm,
//!   SQL and every host call, and time its thread waits for a core on a
//!   busy host (so the limit fires at its setting whatever the load, and a
//!   demoted event cannot linger). Time the event waits on a host future
//!   (a guest sleeping, say) does not count: [`metered`] measures it.
//! - Wall-clock time covers waiting too.
//! - Stopping sets the event's [`Stop`], which the epoch callback turns
//!   into a trap inside wasm; interrupts SQLite (`sqlite3_interrupt`), which
//!   ends a statement at its next VM step; and wakes the event's task, which
//!   drops a guest that is waiting on a host future.
//! - An event whose thread has used [`DEMOTE_AFTER`] of CPU time (its own
//!   clock, `CLOCK_THREAD_CPUTIME_ID`) has its thread lowered to
//!   `SCHED_IDLE`, so it takes no core from short events.
//! - At shutdown's deadline, every running event is stopped the same way,
//!   and events that start afterwards are stopped at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use rusqlite::InterruptHandle;
use tokio::sync::Notify;

use super::priority;

/// CPU an event may use at the normal priority.
pub const DEMOTE_AFTER: Duration = Duration::from_millis(20);

/// Why a running event was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Past its CPU limit.
    Cpu(Duration),
    /// Past its wall-clock limit.
    Wall(Duration),
    /// The host is shutting down and its deadline passed.
    Shutdown,
}

/// An event's limits.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub cpu: Duration,
    pub wall: Duration,
}

/// Shared by a running event and the watchdog: how long the event has
/// been active, and the verdict, given once, when it must stop.
pub struct Stop {
    started: Instant,
    /// 0 while running; then 1 CPU, 2 wall, 3 shutdown.
    verdict: AtomicU8,
    woken: Notify,
    /// Nanoseconds since `started` spent waiting on host futures, and
    /// when the current wait began (`NOT_WAITING` if none).
    waited: AtomicU64,
    waiting_since: AtomicU64,
}

const NOT_WAITING: u64 = u64::MAX;

impl Stop {
    pub fn starting_now() -> Self {
        Stop {
            started: Instant::now(),
            verdict: AtomicU8::new(0),
            woken: Notify::new(),
            waited: AtomicU64::new(0),
            waiting_since: AtomicU64::new(NOT_WAITING),
        }
    }

    /// Time since the event started, less the time it waited on host
    /// futures.
    pub fn active(&self) -> Duration {
        let now = nanos(self.started.elapsed());
        let mut waited = self.waited.load(Ordering::Acquire);
        let since = self.waiting_since.load(Ordering::Acquire);
        if since != NOT_WAITING {
            waited = waited.saturating_add(now.saturating_sub(since));
        }
        Duration::from_nanos(now.saturating_sub(waited))
    }

    fn stop_waiting(&self) {
        let since = self.waiting_since.swap(NOT_WAITING, Ordering::AcqRel);
        if since != NOT_WAITING {
            let waited = nanos(self.started.elapsed()).saturating_sub(since);
            self.waited.fetch_add(waited, Ordering::AcqRel);
        }
    }

    fn start_waiting(&self) {
        self.waiting_since
            .store(nanos(self.started.elapsed()), Ordering::Release);
    }

    /// Why the event must stop, if it must.
    pub fn verdict(&self, budget: Budget) -> Option<Verdict> {
        match self.verdict.load(Ordering::Acquire) {
            0 => None,
            1 => Some(Verdict::Cpu(budget.cpu)),
            2 => Some(Verdict::Wall(budget.wall)),
            _ => Some(Verdict::Shutdown),
        }
    }

    /// Whether a verdict was given.
    pub fn is_stopped(&self) -> bool {
        self.verdict.load(Ordering::Acquire) != 0
    }

    /// Resolves once the event must stop.
    pub async fn stopped(&self) {
        while !self.is_stopped() {
            self.woken.notified().await;
        }
    }

    /// Gives the verdict unless one was given; returns whether this did.
    fn give(&self, verdict: Verdict) -> bool {
        let code = match verdict {
            Verdict::Cpu(_) => 1,
            Verdict::Wall(_) => 2,
            Verdict::Shutdown => 3,
        };
        let given = self
            .verdict
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if given {
            // A permit is stored if the event is not waiting yet.
            self.woken.notify_one();
        }
        given
    }
}

/// Runs `future`, counting the time it waits (returns `Pending`) as not
/// active for `stop`.
pub async fn metered<F: Future>(stop: &Stop, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        stop.stop_waiting();
        let poll = future.as_mut().poll(cx);
        if poll.is_pending() {
            stop.start_waiting();
        }
        poll
    })
    .await
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX - 1)
}

struct Watched {
    stop: Arc<Stop>,
    budget: Budget,
    clock: libc::clockid_t,
    /// The thread's CPU time when the watchdog first saw the event (read
    /// then, not at the start, to keep a system call off every event; the
    /// demotion threshold is late by at most a tick).
    cpu_at_start: Option<Duration>,
    tid: libc::pid_t,
    demoted: bool,
    sql: Option<Arc<InterruptHandle>>,
}

#[derive(Default)]
pub struct Watchdog {
    running: Mutex<HashMap<u64, Watched>>,
    next_id: AtomicU64,
    cancelled: AtomicBool,
}

/// A running event, watched until this is dropped.
pub struct EventWatch {
    watchdog: Arc<Watchdog>,
    id: u64,
    stop: Arc<Stop>,
    budget: Budget,
}

impl EventWatch {
    pub fn stop(&self) -> &Arc<Stop> {
        &self.stop
    }

    pub fn budget(&self) -> Budget {
        self.budget
    }

    pub fn verdict(&self) -> Option<Verdict> {
        self.stop.verdict(self.budget)
    }

    /// The event's SQL runs on this database from now on: a verdict
    /// interrupts it. The database must stay open while this lives.
    pub fn watch_sql(&self, sql: Arc<InterruptHandle>) {
        if let Some(watched) = self.watchdog.lock().get_mut(&self.id) {
            watched.sql = Some(sql);
        }
    }
}

impl Drop for EventWatch {
    fn drop(&mut self) {
        // After this, the watchdog no longer touches the event's database.
        let watched = self.watchdog.lock().remove(&self.id);
        if watched.is_some_and(|watched| watched.demoted) {
            priority::mark_demoted();
        }
    }
}

impl Watchdog {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Watched>> {
        // Each use is one insert, remove or scan.
        self.running.lock()
    }

    /// Watches the event about to run on the calling thread.
    pub fn watch(self: &Arc<Self>, budget: Budget) -> EventWatch {
        let watched = Watched {
            stop: Arc::new(Stop::starting_now()),
            budget,
            clock: own_cpu_clock(),
            cpu_at_start: None,
            tid: priority::current_thread_id(),
            demoted: false,
            sql: None,
        };
        let stop = Arc::clone(&watched.stop);
        if self.cancelled.load(Ordering::Acquire) {
            stop.give(Verdict::Shutdown);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, watched);
        EventWatch {
            watchdog: Arc::clone(self),
            id,
            stop,
            budget,
        }
    }

    /// Looks at every running event once; see the module's documentation.
    pub fn tick(&self) {
        for watched in self.lock().values_mut() {
            let now = cpu_time(watched.clock);
            let cpu = now.saturating_sub(*watched.cpu_at_start.get_or_insert(now));
            if !watched.demoted && cpu >= DEMOTE_AFTER {
                watched.demoted = true;
                priority::demote(watched.tid);
            }
            let verdict = if watched.stop.active() >= watched.budget.cpu {
                Some(Verdict::Cpu(watched.budget.cpu))
            } else if watched.stop.started.elapsed() >= watched.budget.wall {
                Some(Verdict::Wall(watched.budget.wall))
            } else {
                None
            };
            if let Some(verdict) = verdict {
                stop_event(watched, verdict);
            }
        }
    }

    /// Stops every running event, and every event that starts from now on.
    pub fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::Release);
        for watched in self.lock().values_mut() {
            stop_event(watched, Verdict::Shutdown);
        }
    }

    /// Whether shutdown's deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Events running now.
    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

fn stop_event(watched: &Watched, verdict: Verdict) {
    if !watched.stop.give(verdict) {
        return;
    }
    if let Some(sql) = &watched.sql {
        // Safe while the event is registered: its database is open.
        sql.interrupt();
    }
    if watched.demoted {
        // So that it unwinds now rather than when the host is idle; this
        // needs `CAP_SYS_NICE`, and without it the thread unwinds later.
        priority::promote(watched.tid);
    }
}

fn own_cpu_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = libc::CLOCK_THREAD_CPUTIME_ID;
    // SAFETY: writes one clockid for the calling thread, which exists.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    if rc != 0 {
        tracing::warn!(rc, "cannot read this thread's CPU clock");
    }
    clock
}

fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec; a clock of a thread that has ended
    // fails and leaves zero.
    unsafe { libc::clock_gettime(clock, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn computing_past_the_cpu_limit_is_stopped_and_waiting_is_not_counted() {
        let watchdog = Arc::new(Watchdog::default());
        let budget = Budget {
            cpu: SHORT,
            wall: Duration::from_secs(60),
        };
        let watch = watchdog.watch(budget);
        metered(watch.stop(), tokio::time::sleep(SHORT * 2)).await;
        watchdog.tick();
        assert_eq!(watch.verdict(), None, "waiting on a future is not active");
        assert!(watch.stop().active() < SHORT, "{:?}", watch.stop().active());
        let started = Instant::now();
        while !watch.stop().is_stopped() && started.elapsed() < Duration::from_secs(10) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            watchdog.tick();
        }
        assert_eq!(watch.verdict(), Some(Verdict::Cpu(SHORT)));
        // Stopped near the limit (this thread is demoted to SCHED_IDLE on
        // the way, so other tests running may hold it back a little).
        assert!(started.elapsed() < SHORT * 10, "{:?}", started.elapsed());
        drop(watch);
        assert_eq!(watchdog.running(), 0);
    }

    #[test]
    fn waiting_past_the_wall_clock_limit_is_stopped() {
        let watchdog = Arc::new(Watchdog::default());
        let budget = Budget {
            cpu: Duration::from_secs(60),
            wall: SHORT,
        };
        let watch = watchdog.watch(budget);
        watchdog.tick();
        assert_eq!(watch.verdict(), None);
        std::thread::sleep(SHORT);
        watchdog.tick();
        assert_eq!(watch.verdict(), Some(Verdict::Wall(SHORT)));
    }

    #[test]
    fn a_long_sqlite_statement_is_interrupted() {
        let conn = rusqlite::Connection::open_in_memory().expect("db");
        let watchdog = Arc::new(Watchdog::default());
        let ticker = {
            let watchdog = Arc::clone(&watchdog);
            std::thread::spawn(move || {
                for _ in 0..500 {
                    std::thread::sleep(Duration::from_millis(10));
                    watchdog.tick();
                }
            })
        };
        let budget = Budget {
            cpu: Duration::from_millis(200),
            wall: Duration::from_secs(60),
        };
        let watch = watchdog.watch(budget);
        watch.watch_sql(Arc::new(conn.get_interrupt_handle()));
        let started = Instant::now();
        let endless = conn.query_row(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
            [],
            |row| row.get::<_, i64>(0),
        );
        assert!(matches!(
            endless.map_err(|e| e.sqlite_error_code()),
            Err(Some(rusqlite::ErrorCode::OperationInterrupted))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(watch.verdict(), Some(Verdict::Cpu(budget.cpu)));
        drop(watch);
        // The connection works again once the event is over.
        let one: i64 = conn
            .query_row("SELECT 1", [], |r| r.get(0))
            .expect("a query");
        assert_eq!(one, 1);
        drop(ticker);
    }

    #[test]
    fn shutdown_stops_running_and_later_events() {
        let watchdog = Arc::new(Watchdog::default());
        let budget = Budget {
            cpu: Duration::from_secs(60),
            wall: Duration::from_secs(60),
        };
        let running = watchdog.watch(budget);
        watchdog.cancel_all();
        assert!(watchdog.is_cancelled());
        assert_eq!(running.verdict(), Some(Verdict::Shutdown));
        let later = watchdog.watch(budget);
        assert_eq!(later.verdict(), Some(Verdict::Shutdown));
    }
}
