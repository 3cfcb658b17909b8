//! The only `unsafe` code of the bench tools: a few libc calls.

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`, 100 on
/// every mainstream Linux build).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes an integer name, touches no memory of ours and
    // returns -1 for an unknown name, handled below.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as u64
    } else {
        100
    }
}

/// Sends SIGTERM to `pid`; false if it no longer exists.
pub fn terminate(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe { libc::kill(pid, libc::SIGTERM) == 0 }
}

/// Makes the child started by `cmd` receive SIGTERM when the thread that
/// started it exits (so a reader started by a bench tool never outlives
/// it, even when the tool is killed).
pub fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl(2), which is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd that fires every `period`: a
/// high-resolution tick the open-loop dispatcher waits on in the runtime's
/// epoll instead of spinning.
pub fn periodic_timerfd(period: std::time::Duration) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    if period.is_zero() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a timer period must be positive",
        ));
    }
    // SAFETY: timerfd_create takes two integer flags and returns a new
    // descriptor or -1.
    let fd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor just created and owned by nothing else.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let ts = libc::timespec {
        tv_sec: period.as_secs() as libc::time_t,
        tv_nsec: period.subsec_nanos() as libc::c_long,
    };
    let spec = libc::itimerspec {
        it_interval: ts,
        it_value: ts,
    };
    // SAFETY: spec is a valid itimerspec on the stack; the old value is not asked for.
    if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(owned)
}

/// [`periodic_timerfd`] registered with the current tokio runtime's reactor.
pub fn async_timerfd(
    period: std::time::Duration,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    let fd = periodic_timerfd(period)?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and
    // keeps returning the same number, until it is dropped with the AsyncFd.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

/// Expirations of a timerfd since the last read; `WouldBlock` when none.
pub fn read_timerfd(fd: &std::os::fd::OwnedFd) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut n = 0u64;
    // SAFETY: reads at most 8 bytes into a u64 on the stack.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    if r == 8 {
        Ok(n)
    } else if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Err(std::io::Error::other("short read from a timerfd"))
    }
}
