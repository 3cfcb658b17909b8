//! Start-up checks of what the kernel and the process limits allow, so that
//! a reader that cannot run says what to change instead of crashing later or
//! quietly running degraded.
//!
//! - io_uring must be usable (kernel support, `kernel.io_uring_disabled`,
//!   seccomp): probed by creating and closing a tiny ring.
//! - `RLIMIT_MEMLOCK`: glommio refuses to start below 512 KiB, and without
//!   `CAP_IPC_LOCK` each executor's io buffers (`--io-memory`, registered
//!   with each of its three rings) count against it, per user. The soft
//!   limit is raised towards the hard one when that is enough.
//! - `RLIMIT_NOFILE`: raised towards the hard limit so the connection cap
//!   can be reached; only a warning when it cannot.

use tracing::{info, warn};

use crate::sys;
use crate::Error;

/// glommio's own floor for `RLIMIT_MEMLOCK`.
pub const GLOMMIO_MIN_MEMLOCK: u64 = 512 << 10;

/// Rings per executor that register the io buffers (main, poll, latency).
const RINGS: u64 = 3;

/// Locked memory of one ring itself, counted by kernels before 5.12.
const RING_OVERHEAD: u64 = 64 << 10;

/// Whether the process has `CAP_IPC_LOCK` (then io_uring accounts no locked memory).
pub fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Locked memory `executors` executors with `io_memory` each need.
pub fn memlock_needed(executors: usize, io_memory: u64, cap_ipc_lock: bool) -> u64 {
    if cap_ipc_lock {
        return GLOMMIO_MIN_MEMLOCK;
    }
    // glommio rounds io memory up to pages and to at least 64 KiB.
    let io = io_memory.max(64 << 10).div_ceil(4096) * 4096;
    let per_executor = RINGS * (io + RING_OVERHEAD);
    (executors as u64)
        .saturating_mul(per_executor)
        .max(GLOMMIO_MIN_MEMLOCK)
}

fn human(bytes: u64) -> String {
    if bytes == u64::MAX {
        "unlimited".into()
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Fails with what to raise when `RLIMIT_MEMLOCK` is too low for the executors;
/// raises the soft limit itself when the hard limit allows it.
pub fn ensure_memlock(executors: usize, io_memory: u64) -> Result<(), Error> {
    let cap = has_cap_ipc_lock();
    let needed = memlock_needed(executors, io_memory, cap);
    let (soft, hard) = sys::memlock_limit()?;
    if soft >= needed {
        return Ok(());
    }
    if hard >= needed {
        sys::set_memlock_soft(needed)?;
        info!(from = soft, to = needed, "raised the soft RLIMIT_MEMLOCK");
        return Ok(());
    }
    let why = if cap {
        "glommio needs at least 512 KiB of lockable memory".to_owned()
    } else {
        format!(
            "{executors} executor(s) with --io-memory {} need about {} (three rings each register the buffers; \
             the limit is shared by every process of this user)",
            human(io_memory),
            human(needed)
        )
    };
    let or_lower = if cap {
        ""
    } else {
        ", grant CAP_IPC_LOCK, or lower --io-memory or --cores"
    };
    Err(Error::Environment(format!(
        "RLIMIT_MEMLOCK is {} (hard {}), too low: {why}. Raise it (ulimit -l {}, LimitMEMLOCK= in a systemd unit, \
         --ulimit memlock=-1 for docker){or_lower}",
        human(soft),
        human(hard),
        needed.div_ceil(1024),
    )))
}

/// Fails with what to change when this process cannot use io_uring.
pub fn check_io_uring() -> Result<(), Error> {
    let Err(e) = sys::probe_io_uring() else {
        return Ok(());
    };
    let advice = match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            "the kernel has no io_uring (glommio needs Linux 5.8 or newer), or a seccomp profile hides it \
             (Docker: allow io_uring_setup, io_uring_enter and io_uring_register, e.g. --security-opt seccomp=unconfined)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is not permitted: set sysctl kernel.io_uring_disabled=0 (or 1 with this process in \
             kernel.io_uring_group), and check the container's seccomp profile"
        }
        Some(libc::ENOMEM) => "creating a ring needs locked memory: raise RLIMIT_MEMLOCK (ulimit -l)",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "no file descriptor left: raise RLIMIT_NOFILE (ulimit -n)",
        _ => "io_uring_setup failed",
    };
    Err(Error::Environment(format!(
        "io_uring is unavailable ({e}): {advice}"
    )))
}

/// Raises the soft open-file limit towards `wanted`; warns when the hard limit is lower.
pub fn raise_nofile(wanted: u64) {
    let Ok((soft, hard)) = sys::nofile_limit() else {
        return;
    };
    if soft >= wanted {
        return;
    }
    let target = wanted.min(hard);
    if target > soft {
        match sys::set_nofile_soft(target) {
            Ok(()) => info!(from = soft, to = target, "raised the soft RLIMIT_NOFILE"),
            Err(e) => warn!(error = %e, "could not raise RLIMIT_NOFILE"),
        }
    }
    if target < wanted {
        warn!(
            limit = target,
            wanted,
            "RLIMIT_NOFILE is below what the connection cap needs; accepts will fail past it \
             (raise ulimit -n or LimitNOFILE=, or lower --max-connections-per-core)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_grow_with_executors_and_io_memory() {
        assert_eq!(memlock_needed(64, 1 << 30, true), GLOMMIO_MIN_MEMLOCK);
        assert_eq!(memlock_needed(1, 0, false), GLOMMIO_MIN_MEMLOCK);
        assert_eq!(memlock_needed(4, 0, false), 4 * 3 * (128 << 10));
        assert_eq!(memlock_needed(2, 512 << 10, false), 2 * 3 * (576 << 10));
        assert!(memlock_needed(1, 1, false) >= GLOMMIO_MIN_MEMLOCK);
    }

    #[test]
    fn io_uring_probe_passes_here() {
        // The test machines run the reader; if this fails, so does every server test.
        check_io_uring().unwrap();
    }

    #[test]
    fn current_limits_suffice_for_one_small_executor() {
        ensure_memlock(1, 64 << 10).unwrap();
    }
}
