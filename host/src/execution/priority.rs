//! Thread priorities: an event that has computed for a while goes on under
//! `SCHED_IDLE`, Linux's policy for work that should only use cores nothing
//! else wants. A short event of another object, or a runtime thread, that
//! wakes up takes the core at once instead of waiting for a time slice to
//! end; on an otherwise idle machine the long event still gets all of it.
//! Linux applies a policy to one thread when given its thread id.

use std::cell::Cell;

thread_local! {
    /// This thread's kernel id: `gettid` is a system call, and every event
    /// asks.
    static THREAD_ID: libc::pid_t = {
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    };
    /// An event on this thread was demoted: [`restore`] has work to do.
    static DEMOTED: Cell<bool> = const { Cell::new(false) };
}

/// This thread's kernel id, for [`demote`].
pub fn current_thread_id() -> libc::pid_t {
    THREAD_ID.with(|id| *id)
}

/// Tells this thread that the event it ran was demoted.
pub fn mark_demoted() {
    DEMOTED.with(|demoted| demoted.set(true));
}

/// Moves thread `tid` of this process to `SCHED_IDLE`, which needs no
/// privilege.
pub fn demote(tid: libc::pid_t) {
    if set_policy(tid, libc::SCHED_IDLE).is_err() {
        tracing::debug!(tid, error = %std::io::Error::last_os_error(), "cannot lower a guest thread's priority");
    }
}

/// Puts thread `tid` back to the normal policy, if allowed.
pub fn promote(tid: libc::pid_t) {
    let _ = set_policy(tid, libc::SCHED_OTHER);
}

/// Puts the calling thread back to the normal policy if a long event
/// lowered it. Returns false when it cannot (leaving `SCHED_IDLE` needs
/// `CAP_SYS_NICE` or `RLIMIT_NICE`): the thread should then end, and a new
/// one take its place.
pub fn restore() -> bool {
    if !DEMOTED.with(Cell::take) {
        return true;
    }
    let tid = current_thread_id();
    // SAFETY: sched_getscheduler only reads the thread's policy.
    if unsafe { libc::sched_getscheduler(tid) } != libc::SCHED_IDLE {
        return true;
    }
    set_policy(tid, libc::SCHED_OTHER).is_ok()
}

fn set_policy(tid: libc::pid_t, policy: libc::c_int) -> Result<(), ()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: reads `param`; a wrong id or a refused change fails.
    match unsafe { libc::sched_setscheduler(tid, policy, &param) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_thread_is_restored_or_told_to_leave() {
        std::thread::spawn(|| {
            let tid = current_thread_id();
            demote(tid);
            mark_demoted();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::sched_getscheduler(tid) }, libc::SCHED_IDLE);
            let restored = restore();
            // SAFETY: as above.
            let after = unsafe { libc::sched_getscheduler(tid) };
            assert_eq!(
                restored,
                after == libc::SCHED_OTHER,
                "restore says whether it worked"
            );
        })
        .join()
        .expect("the thread ran");
    }
}
