//! The scheduler that wakes objects whose alarm is due.
//!
//! It reads due entries from the catalog's alarm index (see
//! `alarms::index`) and delivers an `alarm` event to each object,
//! activating hibernated ones. The object's actor does the rest: it checks
//! its own database, runs the handler, and moves or removes the entry
//! (later, for a retry; to the next alarm; or away). An object gets at
//! most one alarm event at a time from here.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use super::{DueAlarm, IndexedAlarm};
use crate::cluster::ClusterError;
use crate::object::EventError;
use crate::runtime::Runtime;
use crate::storage::catalog::now_ms;

/// Alarm events delivered and not yet finished, at most.
const MAX_IN_FLIGHT: usize = 256;
/// Alarm events of one class delivered and not yet finished, at most.
const MAX_IN_FLIGHT_PER_CLASS: usize = 32;
/// Due entries read at once.
const BATCH: usize = 1024;
/// How long until an alarm of a class that is not deployed is looked at
/// again.
const UNDEPLOYED_RECHECK_MS: i64 = 3_600_000;
/// The longest the scheduler sleeps without looking at the index again.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The scheduler's handle, kept by the runtime.
#[derive(Default)]
pub struct Alarms {
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Alarms {
    /// Starts the scheduler. It holds the runtime weakly, and stops at
    /// [`stop`](Self::stop) or when the runtime is gone.
    pub fn start(runtime: &Arc<Runtime>) {
        let task = tokio::spawn(schedule(Arc::downgrade(runtime)));
        *runtime.alarms().task_slot() = Some(task);
    }

    /// Asks the scheduler to look at the index now: an entry was added or
    /// moved earlier, or an alarm event finished.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        if let Some(task) = self.task_slot().take() {
            task.abort();
        }
    }

    fn task_slot(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.task.lock()
    }
}

/// Alarm events delivered and not yet finished.
#[derive(Default)]
struct InFlight {
    objects: HashSet<String>,
    per_class: HashMap<String, usize>,
}

impl InFlight {
    /// Classes at their share.
    fn full_classes(&self) -> Vec<String> {
        self.per_class
            .iter()
            .filter(|(_, count)| **count >= MAX_IN_FLIGHT_PER_CLASS)
            .map(|(class, _)| class.clone())
            .collect()
    }

    /// Takes the alarm on, unless its object has one in flight or its class
    /// is at its share.
    fn start(&mut self, alarm: &DueAlarm) -> bool {
        let count = self.per_class.entry(alarm.class.clone()).or_default();
        if *count >= MAX_IN_FLIGHT_PER_CLASS || !self.objects.insert(alarm.id.clone()) {
            return false;
        }
        *count += 1;
        true
    }

    fn finish(&mut self, alarm: &DueAlarm) {
        self.objects.remove(&alarm.id);
        if let Some(count) = self.per_class.get_mut(&alarm.class) {
            *count -= 1;
            if *count == 0 {
                self.per_class.remove(&alarm.class);
            }
        }
    }
}

async fn schedule(runtime: Weak<Runtime>) {
    let in_flight: Arc<Mutex<InFlight>> = Arc::default();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Some(host) = runtime.upgrade() else {
            return;
        };
        let now = now_ms();
        let catalog = Arc::clone(host.catalog());
        let full = in_flight.lock().full_classes();
        let looked = tokio::task::spawn_blocking(move || {
            let skip: Vec<&str> = full.iter().map(String::as_str).collect();
            Ok::<_, rusqlite::Error>((
                catalog.due_alarms(now, BATCH, &skip)?,
                catalog.next_alarm_after(now)?,
            ))
        })
        .await;
        let (due, next) = match looked {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the alarm index");
                (Vec::new(), None)
            }
            Err(error) => {
                tracing::error!(%error, "reading the alarm index panicked");
                (Vec::new(), None)
            }
        };
        for alarm in due {
            if !in_flight.lock().start(&alarm) {
                continue;
            }
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return;
            };
            let (host, in_flight) = (Arc::clone(&host), Arc::clone(&in_flight));
            tokio::spawn(async move {
                deliver(&host, &alarm).await;
                in_flight.lock().finish(&alarm);
                drop(permit);
                host.alarms().wake();
            });
        }
        let until_next = next.map_or(MAX_SLEEP, |at| {
            Duration::from_millis(at.saturating_sub(now).max(1).unsigned_abs())
        });
        // Holding the runtime while asleep is fine: it stops this task
        // before it goes away.
        let woken = host.alarms().wake.notified();
        tokio::select! {
            () = tokio::time::sleep(until_next.min(MAX_SLEEP)) => {}
            () = woken => {}
        }
    }
}

async fn deliver(runtime: &Arc<Runtime>, alarm: &DueAlarm) {
    let result = runtime
        .fire_alarm(&alarm.class, &alarm.name, alarm.retries)
        .await;
    if let Err(EventError::NoSuchClass(_)) = result {
        // Kept for when the class is deployed again, looked at hourly.
        tracing::warn!(
            class = alarm.class,
            object = alarm.name,
            "an alarm's class is not deployed"
        );
        let later = IndexedAlarm {
            at_ms: now_ms().saturating_add(UNDEPLOYED_RECHECK_MS),
            retries: alarm.retries,
        };
        if let Err(error) =
            runtime
                .catalog()
                .index_alarm(&alarm.id, &alarm.class, &alarm.name, later)
        {
            tracing::error!(%error, "cannot update the alarm index");
        }
    } else if let Err(EventError::Cluster(ClusterError::OwnedElsewhere { owner, .. })) = result {
        // It moved to another node, which indexed it when it opened there
        // and fires it; if that node dies, the index in etcd has it.
        tracing::debug!(
            class = alarm.class,
            object = alarm.name,
            owner,
            "an alarm's object runs on another node"
        );
        if let Err(error) = runtime.catalog().unindex_alarm(&alarm.id) {
            tracing::error!(%error, "cannot update the alarm index");
        }
    } else if let Err(error) = result {
        // Left in the index: tried again at the next look.
        tracing::warn!(class = alarm.class, object = alarm.name, %error, "cannot deliver an alarm");
        tokio::time::sleep(MAX_SLEEP).await;
    }
}
