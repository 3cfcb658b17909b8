//! The only `unsafe` code of the bench tools: a few libc calls, and the
//! epoll, `accept4(2)` and timer slack that std does not expose (for
//! `floor` and `openloop`).

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

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

/// An epoll instance (closed on drop).
#[derive(Debug)]
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes a flag and touches no memory of ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches `fd` for `events` (level-triggered), reporting `token`.
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, events, token)
    }

    /// Watches a watched `fd` for other `events`.
    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, events, token)
    }

    /// Stops watching `fd` (before it is closed); an fd not watched is
    /// not an error worth reporting.
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer; no memory of
        // ours is touched.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
    }

    /// Waits for events (retrying on signals); how many were written into `out`.
    pub fn wait(&self, out: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = out.len().min(i32::MAX as usize) as i32;
        loop {
            // SAFETY: `out` is writable for `max` events.
            let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), out.as_mut_ptr(), max, -1) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits for events for at most `timeout` (`epoll_pwait2`, to the
    /// nanosecond; a timer is armed only if it has to sleep); how many
    /// were written into `out`, 0 on a signal.
    pub fn wait_for(&self, out: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let max = out.len().min(i32::MAX as usize) as i32;
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `out` is writable for `max` events and `ts` is a valid
        // timespec for the duration of the call; no signal mask is given.
        let n = unsafe {
            libc::epoll_pwait2(
                self.0.as_raw_fd(),
                out.as_mut_ptr(),
                max,
                &ts,
                std::ptr::null(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        Err(e)
    }
}

/// One connection from a listening socket, non-blocking and close-on-exec.
pub fn accept(listener: RawFd) -> io::Result<TcpStream> {
    // SAFETY: null address pointers ask for no peer address; accept4
    // touches no other memory of ours.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a connected TCP socket just returned to us, owned by nobody else.
    Ok(TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The calling thread's timer slack, set for as long as this lives: the
/// kernel may end a sleep this much later than asked, to wake fewer times
/// (50 µs unless changed). Not `Send`: it is restored on the thread that
/// set it.
pub struct TimerSlack(libc::c_ulong, std::marker::PhantomData<*const ()>);

impl TimerSlack {
    /// Sets the slack to `ns` nanoseconds until the value is dropped.
    pub fn set(ns: libc::c_ulong) -> io::Result<TimerSlack> {
        // SAFETY: PR_GET_TIMERSLACK takes no pointer and returns the slack.
        let old = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK) };
        if old < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: PR_SET_TIMERSLACK takes the slack in nanoseconds.
        if unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TimerSlack(old as libc::c_ulong, std::marker::PhantomData))
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        // SAFETY: as in `set`, on the thread that set it (not `Send`).
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, self.0) };
    }
}
