//! Readiness of one executor's connections through one epoll instance.
//!
//! glommio's socket reads arm a one-shot io_uring poll for every read that
//! has to wait, and each arrival then completes that poll through the
//! kernel's task work: per request, a poll armed, a wake-up and a completion.
//! Here every connection is registered once, edge-triggered, in the
//! executor's epoll instance, and only the epoll fd is watched through
//! io_uring, by one driver task ([`Poller::drive`]): under load one
//! `epoll_wait` hands over the readiness of many connections at once, and
//! when nothing is pending the driver waits on the ring like any task.
//! Reads and writes are plain non-blocking `recv`/`send` calls.
//!
//! Each connection has a slot with two readiness flags. A flag is cleared
//! before the call that may drain the socket and set again by the driver
//! when epoll reports a new edge, so an edge that arrives after the call is
//! never lost: epoll keeps it until the next `epoll_wait`. A read that
//! returns less than it asked for leaves the flag cleared (a stream socket
//! was drained then, and new data brings a new edge); a full one sets it
//! again, as does any successful write (the next write that cannot go on
//! gets `WouldBlock`, which arms the edge for room). The one exception is
//! the peer's end of file: once epoll reports it (or a hang-up or error),
//! reads never wait again. Data and the FIN that follows it can arrive in
//! one edge, and a short read then takes the data and leaves the end of
//! file for a later read that no new edge would wake.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::RawFd;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tracing::warn;

use crate::sys::{self, ready, Epoll};

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

const READ: u8 = 1;
const WRITE: u8 = 2;
/// Sticky: the peer finished sending, hung up or failed; a read never blocks again.
const DONE: u8 = 4;

#[derive(Debug, Default)]
struct Slot {
    /// Bumped when the slot is freed: events still queued for the closed
    /// connection carry the old value and are dropped.
    generation: u32,
    /// `READ` and `WRITE`: the call may not block; `DONE`: reads never block.
    ready: u8,
    /// The task waiting to read, woken by the next read edge.
    reader: Option<Waker>,
    /// The task waiting for room to write.
    writer: Option<Waker>,
}

/// What epoll reports for a connection: its slot's generation and index.
fn token(generation: u32, index: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// One executor's epoll instance and its connections' readiness.
#[derive(Debug)]
pub struct Poller {
    epoll: Epoll,
    slots: RefCell<Slots>,
}

/// A registered connection: its fd and its slot.
#[derive(Debug)]
pub struct Socket<'a> {
    poller: &'a Poller,
    fd: RawFd,
    index: u32,
}

impl Poller {
    /// A poller with a new epoll instance.
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            epoll: Epoll::new()?,
            slots: RefCell::new(Slots::default()),
        })
    }

    /// Registers the socket `fd`, which must stay open until the returned
    /// [`Socket`] is dropped.
    pub fn register(&self, fd: RawFd) -> io::Result<Socket<'_>> {
        let mut s = self.slots.borrow_mut();
        let index = match s.free.pop() {
            Some(i) => i,
            None => {
                s.slots.push(Slot::default());
                (s.slots.len() - 1) as u32
            }
        };
        let slot = &mut s.slots[index as usize];
        // Both directions are tried first: an accepted connection often has its request already.
        slot.ready = READ | WRITE;
        if let Err(e) = self.epoll.add(fd, token(slot.generation, index)) {
            s.free.push(index);
            return Err(e);
        }
        Ok(Socket {
            poller: self,
            fd,
            index,
        })
    }

    /// Runs forever on the executor: hands epoll's events to the waiting connections.
    pub async fn drive(&self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let n = match self.epoll.poll(&mut events) {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "epoll_wait failed");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            for ev in &events[..n] {
                let (token, bits) = (ev.u64, ev.events);
                self.dispatch(token, bits);
            }
            if n > 0 {
                // Let the woken connections run, then look again before waiting.
                futures_lite::future::yield_now().await;
            } else if let Err(e) = glommio::net::poll_readable(self.epoll.raw()).await {
                warn!(error = %e, "waiting for the epoll instance failed");
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    fn dispatch(&self, token: u64, bits: u32) {
        let (reader, writer) = {
            let mut s = self.slots.borrow_mut();
            let Some(slot) = s.slots.get_mut(token as u32 as usize) else {
                return;
            };
            if u64::from(slot.generation) != token >> 32 {
                return;
            }
            let mut reader = None;
            let mut writer = None;
            if bits & ready::READ != 0 {
                slot.ready |= READ;
                if bits & ready::FINISHED != 0 {
                    slot.ready |= DONE;
                }
                reader = slot.reader.take();
            }
            if bits & ready::WRITE != 0 {
                slot.ready |= WRITE;
                writer = slot.writer.take();
            }
            (reader, writer)
        };
        if let Some(w) = reader {
            w.wake();
        }
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Takes `flag` if set; otherwise keeps `cx`'s waker for it.
    fn take(&self, index: u32, flag: u8, cx: &Context<'_>) -> bool {
        let mut s = self.slots.borrow_mut();
        let slot = &mut s.slots[index as usize];
        if slot.ready & flag != 0 {
            if !(flag == READ && slot.ready & DONE != 0) {
                slot.ready &= !flag;
            }
            return true;
        }
        let waiter = if flag == READ {
            &mut slot.reader
        } else {
            &mut slot.writer
        };
        match waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waiter = Some(cx.waker().clone()),
        }
        false
    }

    fn set(&self, index: u32, flag: u8) {
        self.slots.borrow_mut().slots[index as usize].ready |= flag;
    }

    fn unset(&self, index: u32, flags: u8) {
        self.slots.borrow_mut().slots[index as usize].ready &= !flags;
    }
}

impl Socket<'_> {
    /// Whether the peer has finished sending (see [`sys::peer_finished`]).
    pub fn peer_finished(&self) -> bool {
        sys::peer_finished(self.fd)
    }

    /// Reads what is there, waiting for it if nothing is; `Ok(0)` at end of file.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let p = self.poller;
        while p.take(self.index, READ, cx) {
            match sys::recv(self.fd, buf) {
                Ok(n) => {
                    if n == buf.len() && n > 0 {
                        // The buffer filled up: there may be more.
                        p.set(self.index, READ);
                    }
                    return Poll::Ready(Ok(n));
                }
                // Not expected once the peer finished; should it happen,
                // wait for the next edge rather than try again at once.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => p.unset(self.index, READ | DONE),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Pending
    }

    /// Writes what the socket takes of `buf` (at least one byte), waiting
    /// for room when the socket buffer is full.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    /// Writes all of `buf`, waiting for room when the socket buffer is full.
    #[cfg(test)]
    pub async fn write_all(&self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[n..];
        }
        Ok(())
    }

    fn poll_write(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let p = self.poller;
        while p.take(self.index, WRITE, cx) {
            match sys::send(self.fd, buf) {
                Ok(n) => {
                    // Try again at once: a short write ends in WouldBlock, which arms the edge.
                    p.set(self.index, WRITE);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Pending
    }

    /// Closes the sending side (the peer reads end of file).
    pub fn shutdown_write(&self) {
        sys::shutdown(self.fd, sys::Shut::Write);
    }
}

impl Drop for Socket<'_> {
    fn drop(&mut self) {
        self.poller.epoll.delete(self.fd);
        let mut s = self.poller.slots.borrow_mut();
        let slot = &mut s.slots[self.index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.ready = 0;
        slot.reader = None;
        slot.writer = None;
        s.free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::rc::Rc;
    use std::thread;

    use glommio::{spawn_local, LocalExecutorBuilder, Placement};

    use super::*;

    /// A connected pair of loopback sockets: (ours, the peer's).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        (ours, peer)
    }

    /// Runs `f` with a poller whose driver runs, on a glommio executor; fails after 20 s.
    fn on_executor<F, Fut>(f: F)
    where
        F: FnOnce(Rc<Poller>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let poller = Rc::new(Poller::new().unwrap());
                let p = Rc::clone(&poller);
                spawn_local(async move { p.drive().await }).detach();
                futures_lite::future::or(f(poller), async {
                    glommio::timer::sleep(Duration::from_secs(20)).await;
                    panic!("timed out: a wake-up was lost");
                })
                .await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_read_waits_for_data_then_sees_end_of_file() {
        let (ours, mut peer) = pair();
        let writer = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            peer.write_all(b"hello").unwrap();
            thread::sleep(Duration::from_millis(100));
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            peer
        });
        on_executor(move |p| async move {
            let socket = p.register(ours.as_raw_fd()).unwrap();
            let mut buf = [0u8; 64];
            // Nothing there yet: the first read waits for the driver's edge.
            let n = socket.read(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(socket.read(&mut buf).await.unwrap(), 0);
            drop(socket);
            drop(ours);
        });
        writer.join().unwrap();
    }

    #[test]
    fn a_full_buffer_reads_again_without_waiting() {
        let (ours, mut peer) = pair();
        peer.write_all(&[7u8; 1000]).unwrap();
        on_executor(move |p| async move {
            let socket = p.register(ours.as_raw_fd()).unwrap();
            let mut total = 0;
            let mut buf = [0u8; 100];
            while total < 1000 {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0 && buf[..n].iter().all(|&b| b == 7));
                total += n;
            }
            assert_eq!(total, 1000);
            drop(socket);
            drop((ours, peer));
        });
    }

    #[test]
    fn a_write_larger_than_the_socket_buffers_completes_as_the_peer_reads() {
        let (ours, mut peer) = pair();
        const LEN: usize = 32 << 20;
        let reader = thread::spawn(move || {
            // Start late, so the writer finds the buffers full and has to wait.
            thread::sleep(Duration::from_millis(200));
            let mut got = Vec::with_capacity(LEN);
            peer.read_to_end(&mut got).unwrap();
            got
        });
        let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        on_executor(move |p| async move {
            let socket = p.register(ours.as_raw_fd()).unwrap();
            socket.write_all(&data).await.unwrap();
            socket.shutdown_write();
            drop(socket);
            drop(ours);
        });
        let got = reader.join().unwrap();
        assert_eq!(got.len(), LEN);
        assert!(got == expected, "the bytes arrived changed");
    }

    #[test]
    fn a_shutdown_from_another_task_wakes_a_waiting_read() {
        let (ours, peer) = pair();
        on_executor(move |p| async move {
            let fd = ours.as_raw_fd();
            let socket = p.register(fd).unwrap();
            spawn_local(async move {
                glommio::timer::sleep(Duration::from_millis(50)).await;
                // What the executor's tick does to an expired connection.
                sys::shutdown(fd, sys::Shut::Read);
            })
            .detach();
            let mut buf = [0u8; 16];
            assert_eq!(socket.read(&mut buf).await.unwrap(), 0);
            drop(socket);
            drop((ours, peer));
        });
    }

    #[test]
    fn events_for_a_closed_connection_do_not_reach_its_slot_s_next_owner() {
        let (a, _pa) = pair();
        let (b, _pb) = pair();
        on_executor(move |p| async move {
            let first = p.register(a.as_raw_fd()).unwrap();
            let index = first.index;
            let stale = token(p.slots.borrow().slots[index as usize].generation, index);
            drop(first);
            let second = p.register(b.as_raw_fd()).unwrap();
            assert_eq!(second.index, index, "the slot is reused");
            // The slot's generation moved on: the old token no longer names it.
            let fresh = token(p.slots.borrow().slots[index as usize].generation, index);
            assert_ne!(fresh, stale);
            // Nothing is pending on `b`: take its optimistic flags, as a drained socket would.
            p.slots.borrow_mut().slots[index as usize].ready = 0;
            p.dispatch(stale, (libc::EPOLLIN | libc::EPOLLOUT) as u32);
            assert_eq!(p.slots.borrow().slots[index as usize].ready, 0);
            p.dispatch(fresh, libc::EPOLLIN as u32);
            assert_eq!(p.slots.borrow().slots[index as usize].ready, READ);
            drop(second);
            drop((a, b));
        });
    }
}
