//! Per-event and host-wide resource limits as a guest meets them.
//!
//! - CPU and wall-clock time: the watchdog (`execution::watchdog`) gives a
//!   running event a verdict; the epoch callback here turns it into a trap
//!   the next time the guest runs wasm.
//! - Memory: each instance's linear memory is capped, and all instances
//!   together draw on one [`MemoryBudget`], checked at every growth.
//!
//! A breach traps the event with a [`LimitExceeded`] that the actor
//! recognises and reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, UpdateDeadline};

use crate::execution::{Budget, Stop, Verdict};

/// Most elements a guest table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Which limit an event broke.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the event used more CPU than its limit of {}", humantime::format_duration(*.0))]
    Cpu(Duration),
    #[error("the event ran longer than its wall-clock limit of {}", humantime::format_duration(*.0))]
    Wall(Duration),
    #[error("the object needed more memory than its limit of {0} bytes")]
    Memory(usize),
    #[error(
        "the host's memory for guests ({0} bytes in all) is taken by other objects; retry later"
    )]
    HostMemory(usize),
}

impl LimitExceeded {
    /// The limit a watchdog verdict stands for; `None` for a shutdown.
    pub fn from_verdict(verdict: Verdict) -> Option<Self> {
        match verdict {
            Verdict::Cpu(limit) => Some(LimitExceeded::Cpu(limit)),
            Verdict::Wall(limit) => Some(LimitExceeded::Wall(limit)),
            Verdict::Shutdown => None,
        }
    }
}

/// The trap of an event stopped because the host is shutting down.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the event was cancelled: the server is shutting down")]
pub struct Cancelled;

/// The linear memory all guests together may hold.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes held by guests now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The limits of one object's instance, and what its current event used.
pub struct EventLimits {
    max_memory: usize,
    budget: Arc<MemoryBudget>,
    /// What this instance's memories hold of `budget`.
    reserved: usize,
    /// The running event's stop signal and limits.
    event: Option<(Arc<Stop>, Budget)>,
}

impl EventLimits {
    pub fn new(max_memory: usize, budget: Arc<MemoryBudget>) -> Self {
        EventLimits {
            max_memory,
            budget,
            reserved: 0,
            event: None,
        }
    }

    /// Ties the limits to the event about to run.
    pub fn start_event(&mut self, stop: Arc<Stop>, budget: Budget) {
        self.event = Some((stop, budget));
    }

    /// Called by the store at every epoch tick that finds the guest running.
    pub fn tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        match self
            .event
            .as_ref()
            .and_then(|(stop, budget)| stop.verdict(*budget))
        {
            None => Ok(UpdateDeadline::Continue(1)),
            Some(verdict) => Err(match LimitExceeded::from_verdict(verdict) {
                Some(limit) => wasmtime::Error::new(limit),
                None => wasmtime::Error::new(Cancelled),
            }),
        }
    }
}

impl Drop for EventLimits {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

impl ResourceLimiter for EventLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            return Err(wasmtime::Error::new(LimitExceeded::Memory(self.max_memory)));
        }
        let more = desired.saturating_sub(current);
        if !self.budget.reserve(more) {
            return Err(wasmtime::Error::new(LimitExceeded::HostMemory(
                self.budget.limit(),
            )));
        }
        self.reserved += more;
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

/// Half of the machine's memory: the default budget for guests.
pub fn default_guest_memory() -> usize {
    // SAFETY: sysconf only reads system values.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let total = usize::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(usize::try_from(page).unwrap_or(0));
    if total == 0 { 8 << 30 } else { total / 2 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_memory: usize, budget: &Arc<MemoryBudget>) -> EventLimits {
        EventLimits::new(max_memory, Arc::clone(budget))
    }

    #[test]
    fn a_verdict_traps_at_the_next_tick_with_the_limit_it_names() {
        let budget = Arc::new(MemoryBudget::new(1 << 30));
        let mut limits = limits(1 << 20, &budget);
        assert!(matches!(limits.tick(), Ok(UpdateDeadline::Continue(1))));
        let stop = Arc::new(Stop::starting_now());
        let times = Budget {
            cpu: Duration::from_secs(1),
            wall: Duration::from_secs(2),
        };
        limits.start_event(Arc::clone(&stop), times);
        assert!(limits.tick().is_ok());
        let watchdog = Arc::new(crate::execution::Watchdog::default());
        let watch = watchdog.watch(times);
        watchdog.cancel_all();
        limits.start_event(Arc::clone(watch.stop()), times);
        let Err(error) = limits.tick() else {
            panic!("a cancelled event traps");
        };
        assert!(error.downcast_ref::<Cancelled>().is_some());
    }

    #[test]
    fn memory_beyond_the_instance_or_the_host_budget_is_refused() {
        let budget = Arc::new(MemoryBudget::new(3 << 20));
        let mut first = limits(2 << 20, &budget);
        assert!(
            first
                .memory_growing(0, 2 << 20, None)
                .expect("at the limit")
        );
        let error = first
            .memory_growing(2 << 20, (2 << 20) + 1, None)
            .expect_err("over the instance limit");
        assert!(matches!(
            error.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::Memory(_))
        ));
        let mut second = limits(2 << 20, &budget);
        assert!(second.memory_growing(0, 1 << 20, None).expect("fits"));
        let error = second
            .memory_growing(1 << 20, 2 << 20, None)
            .expect_err("the host budget is spent");
        assert!(matches!(
            error.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::HostMemory(_))
        ));
        drop(first);
        assert_eq!(
            budget.used(),
            1 << 20,
            "a dropped instance gives back its memory"
        );
        assert!(
            second
                .memory_growing(1 << 20, 2 << 20, None)
                .expect("fits now")
        );
    }
}
