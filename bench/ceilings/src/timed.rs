//! Runs one operation on several threads at once for a fixed time and
//! sums it up: operations per second and latency percentiles.

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;

pub struct Settings {
    pub threads: usize,
    pub duration: Duration,
}

pub struct Summary {
    operations: usize,
    elapsed: Duration,
    /// Every operation's latency, sorted.
    latencies: Vec<Duration>,
}

impl Summary {
    pub fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, fraction: f64) -> Duration {
        let rank = (fraction * self.latencies.len() as f64).ceil() as usize;
        self.latencies
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }

    /// `RESULT <ops/s> <p50 ms> <p99 ms>`: the shape of `bench/load.lua`'s
    /// line without its error count (an error ends the measurement).
    pub fn print(&self) {
        let ms = |latency: Duration| latency.as_secs_f64() * 1000.0;
        println!(
            "RESULT {:.1} {:.3} {:.3}",
            self.per_second(),
            ms(self.percentile(0.50)),
            ms(self.percentile(0.99)),
        );
    }
}

/// Calls `operation(thread, n)` (`n` counts that thread's calls) on each
/// thread, back to back, until `settings.duration` has passed. The first
/// error stops every thread and is returned.
pub fn run<F>(settings: Settings, operation: F) -> anyhow::Result<Summary>
where
    F: Fn(usize, u64) -> anyhow::Result<()> + Sync,
{
    // Threads start together, so none measures alone while others spawn.
    let start_line = Barrier::new(settings.threads + 1);
    let failed = AtomicBool::new(false);
    let (start, outcomes) = thread::scope(|scope| {
        let workers: Vec<_> = (0..settings.threads)
            .map(|thread| {
                let (start_line, failed, operation) = (&start_line, &failed, &operation);
                scope.spawn(move || {
                    start_line.wait();
                    let deadline = Instant::now() + settings.duration;
                    let mut latencies = Vec::new();
                    for n in 0.. {
                        let began = Instant::now();
                        if let Err(error) = operation(thread, n) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(error);
                        }
                        let now = Instant::now();
                        latencies.push(now - began);
                        if now >= deadline || failed.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Ok((latencies, Instant::now()))
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        let outcomes: Vec<_> = workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("a measuring thread panicked")))
            })
            .collect();
        (start, outcomes)
    });
    let mut latencies = Vec::new();
    let mut finished = start;
    for outcome in outcomes {
        let (mine, ended) = outcome?;
        latencies.extend(mine);
        finished = finished.max(ended);
    }
    latencies.sort_unstable();
    Ok(Summary {
        operations: latencies.len(),
        elapsed: finished - start,
        latencies,
    })
}
