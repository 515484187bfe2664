//! Thread priorities: an event that has computed for a while runs on at a
//! low priority (nice 10: about a tenth of a normal thread's share when
//! they compete), so short events of other objects, and the runtime's
//! threads, get the cores first, while a long event still progresses
//! towards its CPU limit on a busy machine. Linux applies `nice` to one
//! thread when given its thread id.

/// The nice value of a thread running a long event.
const DEMOTED_NICE: libc::c_int = 10;

/// This thread's kernel id, for [`demote`].
pub fn current_thread_id() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Lowers thread `tid` of this process to the lowest priority. Raising a
/// nice value needs no privilege.
pub fn demote(tid: libc::pid_t) {
    // SAFETY: setpriority only reads its arguments; a wrong id fails.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, DEMOTED_NICE) };
    if rc != 0 {
        tracing::debug!(tid, error = %std::io::Error::last_os_error(), "cannot lower a guest thread's priority");
    }
}

/// Puts the calling thread back to the normal priority if a long event
/// lowered it. Returns false when it cannot (lowering a nice value needs
/// `CAP_SYS_NICE` or `RLIMIT_NICE`): the thread should then end, and a new
/// one take its place.
pub fn restore() -> bool {
    let tid = current_thread_id();
    // SAFETY: as above. -1 is a valid nice value, so errno is not checked:
    // anything but 0 is restored below, and a failure to read shows there.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if nice == 0 {
        return true;
    }
    // SAFETY: as above.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demoted_thread_is_restored_or_told_to_leave() {
        std::thread::spawn(|| {
            let tid = current_thread_id();
            demote(tid);
            // SAFETY: as above.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            assert_eq!(nice, DEMOTED_NICE);
            let privileged = restore();
            // SAFETY: as above.
            let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
            assert_eq!(privileged, after == 0, "restore says whether it worked");
        })
        .join()
        .expect("the thread ran");
    }
}
