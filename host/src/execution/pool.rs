//! The guest threads: a pool of OS threads that run objects' events, so
//! that guest code and its host calls (SQL above all) never run on the
//! tokio threads that serve HTTP, sockets and timers.
//!
//! Threads are started on demand, up to a maximum, and leave after a while
//! idle. The operating system schedules them: an event that computes for
//! seconds is preempted like any thread, and the watchdog lowers its
//! priority (see `priority`), so a short event on another thread gets a
//! core as soon as it wakes.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};
use tokio::sync::oneshot;

use super::priority;

/// How long a thread with nothing to do waits before it leaves.
const IDLE_KEEP: Duration = Duration::from_secs(30);
/// A guest thread's stack: host code and SQLite's recursion run on it
/// (guest code runs on wasmtime's own stacks).
const STACK_BYTES: usize = 2 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// A job could not finish: the pool is shut, or the job panicked.
#[derive(Debug, thiserror::Error)]
#[error("the guest thread running the job stopped before it finished")]
pub struct JobLost;

pub struct GuestPool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_threads: usize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    next_id: u64,
}

impl GuestPool {
    pub fn new(max_threads: usize) -> Self {
        GuestPool {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                max_threads: max_threads.max(1),
            }),
        }
    }

    /// Runs `job` on a guest thread and waits for what it returns.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, JobLost> {
        let (done, result) = oneshot::channel();
        self.submit(Box::new(move || {
            // The waiter may have gone; the job ran either way.
            let _ = done.send(job());
        }));
        result.await.map_err(|_| JobLost)
    }

    fn submit(&self, job: Job) {
        let mut queue = self.shared.lock();
        queue.jobs.push_back(job);
        if queue.jobs.len() > queue.idle && queue.threads < self.shared.max_threads {
            queue.threads += 1;
            queue.next_id += 1;
            let id = queue.next_id;
            drop(queue);
            if let Err(error) = self.spawn_thread(id) {
                // The queued job waits for a thread that exists; with none
                // at all, it would wait forever: say so loudly.
                let mut queue = self.shared.lock();
                queue.threads -= 1;
                tracing::error!(%error, threads = queue.threads, "cannot start a guest thread");
            }
        } else {
            drop(queue);
            self.shared.ready.notify_one();
        }
    }

    fn spawn_thread(&self, id: u64) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name(format!("podhost-guest-{id}"))
            .stack_size(STACK_BYTES)
            .spawn(move || shared.work())
            .map(drop)
    }

    /// Guest threads alive now.
    pub fn threads(&self) -> usize {
        self.shared.lock().threads
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every change to the queue is a single push, pop or count.
        self.queue.lock()
    }

    /// A guest thread's life: take jobs until idle too long, or until a
    /// job leaves the thread at a priority it cannot raise back.
    fn work(&self) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                drop(queue);
                if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                    tracing::error!("a job panicked on a guest thread");
                }
                let keep = priority::restore();
                queue = self.lock();
                if !keep {
                    break;
                }
                continue;
            }
            queue.idle += 1;
            let timeout = self
                .ready
                .wait_while_for(&mut queue, |q| q.jobs.is_empty(), IDLE_KEEP);
            queue.idle -= 1;
            if timeout.timed_out() && queue.jobs.is_empty() {
                break;
            }
        }
        queue.threads -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn jobs_run_off_the_runtime_and_in_parallel_up_to_the_limit() {
        let pool = Arc::new(GuestPool::new(4));
        let name = pool
            .run(|| std::thread::current().name().map(str::to_string))
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("podhost-guest-")));
        // Four jobs that each wait for all four to have started: they can
        // only finish if they run at once, on four threads.
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (pool, barrier) = (Arc::clone(&pool), Arc::clone(&barrier));
                tokio::spawn(async move { pool.run(move || barrier.wait().is_leader()).await })
            })
            .collect();
        let mut leaders = 0;
        for job in jobs {
            let finished = tokio::time::timeout(Duration::from_secs(10), job)
                .await
                .expect("the four jobs ran at once")
                .expect("joined")
                .expect("ran");
            leaders += usize::from(finished);
        }
        assert_eq!(leaders, 1);
        assert!(pool.threads() <= 4);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_pool_goes_on() {
        let pool = GuestPool::new(1);
        let lost = pool.run(|| panic!("boom")).await;
        assert!(lost.is_err());
        assert_eq!(pool.run(|| 7).await.expect("ran"), 7);
    }
}
