//! The reader's only `unsafe` code: thin wrappers over a few Linux calls
//! that neither std nor glommio expose (CPU affinity, rlimits, an io_uring
//! probe, `shutdown(2)` on a socket another task is reading).

use std::io;
use std::os::fd::RawFd;

/// CPUs in this process's affinity mask (what `taskset` or a container's
/// cpuset allows), ascending.
pub fn affinity_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a live, writable cpu_set_t and we pass its exact size;
    // pid 0 means the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET only reads `set`, and `cpu` stays below its bit size.
    Ok((0..max)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Soft and hard `RLIMIT_MEMLOCK`, in bytes (`u64::MAX` for unlimited).
pub fn memlock_limit() -> io::Result<(u64, u64)> {
    get_rlimit(libc::RLIMIT_MEMLOCK)
}

/// Sets the soft `RLIMIT_MEMLOCK` (allowed up to the hard limit).
pub fn set_memlock_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = memlock_limit()?;
    set_rlimit(libc::RLIMIT_MEMLOCK, soft, hard)
}

/// Soft and hard `RLIMIT_NOFILE`.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    get_rlimit(libc::RLIMIT_NOFILE)
}

/// Sets the soft `RLIMIT_NOFILE` (allowed up to the hard limit).
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit()?;
    set_rlimit(libc::RLIMIT_NOFILE, soft, hard)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn get_rlimit(resource: Resource) -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((to_u64(rl.rlim_cur), to_u64(rl.rlim_max)))
}

fn set_rlimit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let rl = libc::rlimit {
        rlim_cur: from_u64(soft),
        rlim_max: from_u64(hard),
    };
    // SAFETY: `rl` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(resource, &rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn to_u64(v: libc::rlim_t) -> u64 {
    if v == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        v
    }
}

fn from_u64(v: u64) -> libc::rlim_t {
    if v == u64::MAX {
        libc::RLIM_INFINITY
    } else {
        v
    }
}

/// Creates and closes a tiny io_uring, to learn whether this process may use
/// io_uring at all (kernel support, `kernel.io_uring_disabled`, seccomp).
pub fn probe_io_uring() -> io::Result<()> {
    // struct io_uring_params is 120 bytes; all zero asks for defaults.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params)
    // (120 bytes) into `params`, which is that large and writable.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us by io_uring_setup and nobody else has it.
    unsafe { libc::close(fd as RawFd) };
    Ok(())
}

/// How much of a socket [`shutdown`] closes.
#[derive(Debug, Clone, Copy)]
pub enum Shut {
    /// Reads return end-of-file (a blocked read wakes up); writes still work.
    Read,
    /// Both directions; pending writes fail.
    Both,
    /// Our sending side: the peer reads end-of-file.
    Write,
}

/// `shutdown(2)` on a connection owned by another task of this executor, so
/// that its pending read (or write) completes. Errors are ignored: the peer
/// may be gone already.
///
/// The caller must only pass the fd of a socket that is still open: the
/// connection registry removes a connection before its socket is dropped.
pub fn shutdown(fd: RawFd, how: Shut) {
    let how = match how {
        Shut::Read => libc::SHUT_RD,
        Shut::Both => libc::SHUT_RDWR,
        Shut::Write => libc::SHUT_WR,
    };
    // SAFETY: shutdown(2) touches no memory of ours; the fd is an open socket
    // owned by this executor (see the function's contract), so no other file
    // can be affected.
    unsafe { libc::shutdown(fd, how) };
}

/// Linux's TCP states (`include/net/tcp_states.h`) in which the peer has
/// finished sending: its FIN came (or a reset closed the connection).
const PEER_FINISHED: [u8; 4] = [
    7,  // TCP_CLOSE
    8,  // TCP_CLOSE_WAIT
    9,  // TCP_LAST_ACK
    11, // TCP_CLOSING
];

/// Whether the peer of the TCP socket `fd` has finished sending, from the
/// connection's state (`TCP_INFO`), which a `shutdown(fd, SHUT_RD)` of ours
/// does not change. False when the state cannot be read.
pub fn peer_finished(fd: RawFd) -> bool {
    // SAFETY: tcp_info is plain integers, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is
    // that large, and stores the length written into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    rc == 0 && len > 0 && PEER_FINISHED.contains(&info.tcpi_state)
}

/// An epoll instance (closed on drop).
#[derive(Debug)]
pub struct Epoll(std::os::fd::OwnedFd);

/// Readiness bits of an epoll event, as [`Epoll::poll`] reports them.
pub mod ready {
    /// Readable, or the peer closed, or an error is pending: a read will not block.
    pub const READ: u32 =
        (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    /// Writable, or closed, or an error is pending: a write will not block.
    pub const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
    /// The peer finished sending, or the connection hung up or failed:
    /// from now on a read returns at once (data, end of file or the error).
    pub const FINISHED: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
}

impl Epoll {
    /// A new epoll instance (close-on-exec).
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned to us and is owned by nobody else.
        Ok(Epoll(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    /// The epoll fd itself (readable while events are pending).
    pub fn raw(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// Watches `fd` for reads and writes, edge-triggered, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        if unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (which must still be open).
    pub fn delete(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; errors (fd not watched) are of no consequence.
        unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Pending events, without waiting: `(token, readiness bits)` into `out`.
    pub fn poll(&self, out: &mut [libc::epoll_event]) -> io::Result<usize> {
        let max = out.len().min(i32::MAX as usize) as i32;
        // SAFETY: `out` is writable for `max` events; timeout 0 never blocks.
        retrying(|| unsafe { libc::epoll_wait(self.raw(), out.as_mut_ptr(), max, 0) } as isize)
    }
}

/// `recv(2)` without blocking; `WouldBlock` when nothing is there.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    retrying(|| unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) })
}

/// `send(2)` without blocking or `SIGPIPE`; `WouldBlock` when the socket buffer is full.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    // SAFETY: `buf` is readable for its length.
    retrying(|| unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), flags) })
}

/// Runs a system call again while a signal interrupts it; its result as a count.
fn retrying(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `struct sched_attr`, first version (48 bytes), as `sched_setattr(2)` takes it.
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Sets the calling thread's time slice under the fair scheduler (EEVDF,
/// Linux 6.12+: `sched_runtime` of a `SCHED_OTHER` thread is its slice,
/// 0.1–100 ms; 0 restores the default). Threads spawned afterwards inherit
/// it. A shorter slice gives the thread an earlier deadline when it wakes,
/// so it runs sooner on a busy CPU. Its policy and nice value are kept; on
/// an older kernel the call is accepted and has no effect, or fails.
pub fn set_time_slice(slice: std::time::Duration) -> io::Result<()> {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: `attr` is a writable sched_attr of `size` bytes; tid 0 is the
    // calling thread; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.policy != libc::SCHED_OTHER as u32 {
        // Real-time or batch/idle policies: not ours to change.
        return Ok(());
    }
    attr.size = size;
    attr.runtime = slice.as_nanos() as u64;
    // SAFETY: `attr` is a valid sched_attr of `size` bytes for tid 0 (us).
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_is_not_empty() {
        let cpus = affinity_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    /// A connected loopback pair: (ours, the peer's).
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (ours, peer)
    }

    /// Polls `peer_finished` for up to a second (the FIN crosses loopback
    /// in the kernel, but take no chances).
    fn becomes_finished(fd: RawFd) -> bool {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while std::time::Instant::now() < end {
            if peer_finished(fd) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn peer_finished_follows_the_peer_and_not_our_shutdown() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (ours, mut peer) = tcp_pair();
        let fd = ours.as_raw_fd();
        assert!(!peer_finished(fd), "a fresh connection");
        peer.write_all(b"GET / HTT").unwrap();
        shutdown(fd, Shut::Read);
        assert!(!peer_finished(fd), "our own SHUT_RD is not the peer's end");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(becomes_finished(fd), "the peer's FIN");

        // A reset (the peer closes with linger 0) counts as finished too.
        let (ours, peer) = tcp_pair();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads `linger`, of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                peer.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        assert!(!peer_finished(ours.as_raw_fd()));
        drop(peer);
        assert!(becomes_finished(ours.as_raw_fd()), "the peer's reset");

        // Not a TCP socket: the state cannot be read, so no claim.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!peer_finished(a.as_raw_fd()));
    }

    #[test]
    fn rlimits_read_back() {
        let (soft, hard) = memlock_limit().unwrap();
        assert!(soft <= hard);
        let (soft, hard) = nofile_limit().unwrap();
        assert!(soft <= hard);
    }

    /// `se.slice` of the calling thread, in ns (None where the kernel does not show it).
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_short_slice_is_set_inherited_and_restored() {
        std::thread::spawn(|| {
            // Kernels before EEVDF custom slices show no se.slice: nothing to check there.
            let Some(default) = slice_ns() else {
                return;
            };
            set_time_slice(std::time::Duration::from_micros(100)).unwrap();
            assert_eq!(slice_ns(), Some(100_000));
            // Threads spawned now inherit it.
            let child = std::thread::spawn(slice_ns).join().unwrap();
            assert_eq!(child, Some(100_000));
            set_time_slice(std::time::Duration::ZERO).unwrap();
            assert_eq!(slice_ns(), Some(default));
        })
        .join()
        .unwrap();
    }
}
