//! Per-event resource limits. CPU time is measured in epoch ticks: a
//! background thread advances the engine's epoch every `EPOCH_TICK`, and
//! each tick a guest is running costs its event one tick of its budget (and
//! yields to other tasks, so a busy guest cannot starve the runtime).
//! Memory is capped by a resource limiter. A breach traps the event with a
//! `LimitExceeded` that the actor recognises and reports.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, UpdateDeadline};

/// How often the epoch advances: the granularity of the CPU limit.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most elements a guest table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Which limit an event broke.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the event ran longer than the CPU limit of {}", humantime::format_duration(*.0))]
    Cpu(Duration),
    #[error("the object needed more memory than its limit of {0} bytes")]
    Memory(usize),
}

/// The limits of one object's instance, and what its current event used.
pub struct EventLimits {
    max_memory: usize,
    max_cpu: Duration,
    ticks_used: u32,
}

impl EventLimits {
    pub fn new(max_memory: usize, max_cpu: Duration) -> Self {
        EventLimits {
            max_memory,
            max_cpu,
            ticks_used: 0,
        }
    }

    /// Resets the CPU budget for a new event.
    pub fn start_event(&mut self) {
        self.ticks_used = 0;
    }

    /// Called by the store at every epoch tick that finds the guest running.
    pub fn tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        self.ticks_used = self.ticks_used.saturating_add(1);
        if EPOCH_TICK * self.ticks_used >= self.max_cpu {
            return Err(wasmtime::Error::new(LimitExceeded::Cpu(self.max_cpu)));
        }
        Ok(UpdateDeadline::Yield(1))
    }
}

impl ResourceLimiter for EventLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(wasmtime::Error::new(LimitExceeded::Memory(self.max_memory)));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Advances `engine`'s epoch every tick for as long as the engine lives.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("podhost-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_budget_runs_out_after_the_limit_and_resets_per_event() {
        let mut limits = EventLimits::new(1 << 20, EPOCH_TICK * 3);
        assert!(
            matches!(limits.tick(), Ok(UpdateDeadline::Yield(1))),
            "the first tick yields"
        );
        assert!(limits.tick().is_ok());
        let Err(error) = limits.tick() else {
            panic!("the third tick reaches the limit");
        };
        assert!(matches!(
            error.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::Cpu(_))
        ));
        limits.start_event();
        assert!(limits.tick().is_ok());
    }

    #[test]
    fn memory_beyond_the_limit_is_refused_with_a_typed_error() {
        let mut limits = EventLimits::new(1 << 20, Duration::from_secs(1));
        assert!(
            limits
                .memory_growing(0, 1 << 20, None)
                .expect("at the limit")
        );
        let error = limits
            .memory_growing(0, (1 << 20) + 1, None)
            .expect_err("over the limit");
        assert!(matches!(
            error.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::Memory(_))
        ));
    }
}
