//! How guest code is executed, and kept from hurting anyone else.
//!
//! - Objects' events run on **guest threads** ([`pool`]), never on the tokio
//!   threads that serve HTTP, sockets and timers: an actor task hands its
//!   object to a guest thread for a run of batches, and gets it back.
//! - Each class may have at most `[execution] max_running_per_class` events
//!   running at once (a fair, first-come semaphore), so one tenant's slow
//!   or sleeping objects cannot take every thread.
//! - The [`watchdog`] enforces each event's CPU and wall-clock limits, in
//!   wasm, in SQL and while waiting, and lowers the priority of events that
//!   compute for long, so a short event's first byte is not held back.
//! - One thread, `podhost-watchdog`, ticks both the watchdog and wasmtime's
//!   epoch (which is how a check reaches code running inside wasm).

mod pool;
pub mod priority;
pub mod watchdog;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::runtime::Handle;
use wasmtime::Engine;

use pool::GuestPool;
pub use pool::JobLost;
pub use watchdog::{Budget, EventWatch, Stop, Verdict, Watchdog, metered};

/// How often the watchdog looks and the epoch advances: the granularity of
/// the CPU and wall-clock limits.
pub const TICK: Duration = Duration::from_millis(10);

pub struct Executor {
    pool: GuestPool,
    watchdog: Arc<Watchdog>,
    /// The runtime whose timers and I/O the guests' futures use.
    runtime: Handle,
}

impl Executor {
    /// Starts the watchdog's thread, which also advances `engine`'s epoch,
    /// for as long as both live. Must run inside the tokio runtime.
    pub fn start(engine: &Engine, max_threads: usize) -> std::io::Result<Self> {
        let watchdog = Arc::new(Watchdog::default());
        start_ticker(engine.weak(), Arc::downgrade(&watchdog))?;
        Ok(Executor {
            pool: GuestPool::new(max_threads),
            watchdog,
            runtime: Handle::current(),
        })
    }

    /// Runs `job` on a guest thread; `job` may block on futures with the
    /// handle it is given.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&Handle) -> R + Send + 'static,
    ) -> Result<R, JobLost> {
        let runtime = self.runtime.clone();
        self.pool.run(move || job(&runtime)).await
    }

    pub fn watchdog(&self) -> &Arc<Watchdog> {
        &self.watchdog
    }

    /// Guest threads alive now.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }
}

fn start_ticker(engine: wasmtime::EngineWeak, watchdog: Weak<Watchdog>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("podhost-watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                let (Some(engine), Some(watchdog)) = (engine.upgrade(), watchdog.upgrade()) else {
                    return;
                };
                // Verdicts first, so the epoch callback that the increment
                // triggers already sees them.
                watchdog.tick();
                engine.increment_epoch();
            }
        })?;
    Ok(())
}
