//! Injected asynchronous events (RXE_RS_FAULTS `event=`).
//!
//! libibverbs reads a context's events itself, straight from its
//! `async_fd` (`ibv_get_async_event`), so a provider cannot add one to the
//! kernel's file. While an event rule is armed, a context's `async_fd` is
//! instead one end of a socket pair of ours (SOCK_SEQPACKET: one event per
//! read, as from the kernel's file); a thread relays the kernel's events into
//! the other end, and injections write there too. Applications see one
//! stream, and may poll it or make it non-blocking as they would the
//! kernel's. Without an event rule nothing of this exists.
//!
//! libibverbs hands `async_fd` to the kernel too: the ioctl commands that
//! create a CQ, QP, SRQ or WQ name it as the file the object's events go
//! to, and the kernel refuses anything but its own event file (EBADF). Our
//! creates therefore run with the kernel's file in `async_fd`
//! (Context::with_kernel_async_fd). An application thread that reads
//! `async_fd` just then reads the kernel's file directly: it gets kernel
//! events only, until its read returns.
//!
//! libibverbs counts the events an application acknowledged on each QP and
//! CQ, and their destroy waits until that count equals the kernel's count
//! of events it reported. The kernel never knew of ours, so destroy
//! subtracts them first ([`AckCount::before_destroy`]).

use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::thread::JoinHandle;

/// One context's relay.
pub(crate) struct Relay {
    pub(crate) kernel_fd: RawFd,
    /// The application's end: the context's `async_fd`.
    pub(crate) app_fd: RawFd,
    /// Create commands running with the kernel's file as `async_fd`.
    pub(crate) creating: Mutex<u32>,
    /// The end we write into; the application reads the other.
    ours: RawFd,
    /// Written to stop the thread (an eventfd).
    stop: RawFd,
    thread: Option<JoinHandle<()>>,
}

/// Puts a relay between the kernel's event file and the application.
/// Returns the relay and the fd to give the application as `async_fd`.
pub(crate) fn attach(kernel_fd: RawFd) -> Result<(Box<Relay>, RawFd)> {
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two fds into our array.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, pair.as_mut_ptr()) } != 0 {
        return Err(Errno::last());
    }
    let [app, ours] = pair;
    // SAFETY: no pointers.
    let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if stop < 0 {
        let e = Errno::last();
        close_all(&[app, ours]);
        return Err(e);
    }
    let thread = std::thread::Builder::new().name("rxe_rs-events".into()).spawn(move || relay(kernel_fd, ours, stop));
    match thread {
        Ok(t) => Ok((Box::new(Relay { kernel_fd, app_fd: app, creating: Mutex::new(0), ours, stop, thread: Some(t) }), app)),
        Err(_) => {
            close_all(&[app, ours, stop]);
            Err(Errno(libc::EAGAIN))
        }
    }
}

fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: fds this module opened and nothing else holds.
        unsafe { libc::close(fd) };
    }
}

impl Relay {
    /// Queues one event for the application.
    pub(crate) fn inject(&self, event_type: u32, element: u64) -> Result<()> {
        let desc = ib_uverbs_async_event_desc { element, event_type, reserved: 0 };
        // SAFETY: sends our 16-byte struct; MSG_DONTWAIT: an application that
        // never reads must not block the verb that injects; MSG_NOSIGNAL:
        // after the kernel's file ended our side is shut, and a send there
        // must fail, not raise SIGPIPE in the application.
        let n = unsafe { libc::send(self.ours, (&desc as *const ib_uverbs_async_event_desc).cast(), size_of_val(&desc), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if n != size_of_val(&desc) as isize {
            return Err(Errno::last());
        }
        Ok(())
    }
}

impl Drop for Relay {
    /// Stops the thread, then closes the kernel's file and our end (the
    /// application's end is `async_fd`, which libibverbs closes).
    fn drop(&mut self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes to our eventfd.
        unsafe { libc::write(self.stop, (&one as *const u64).cast(), 8) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        close_all(&[self.kernel_fd, self.ours, self.stop]);
    }
}

/// The thread: each event the kernel reports is passed on, until stopped.
fn relay(kernel_fd: RawFd, ours: RawFd, stop: RawFd) {
    let mut desc = ib_uverbs_async_event_desc::default();
    loop {
        let mut fds = [libc::pollfd { fd: kernel_fd, events: libc::POLLIN, revents: 0 }, libc::pollfd { fd: stop, events: libc::POLLIN, revents: 0 }];
        // SAFETY: our array of two pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            log::error!("asynchronous events: poll failed ({}); the kernel's events are no longer passed on", Errno::last());
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & libc::POLLIN == 0 {
            // Hung up or in error without data: poll would say so at once
            // again, for ever.
            return kernel_file_ended(ours, "it hung up");
        }
        // SAFETY: reads at most the struct's size into it.
        let n = unsafe { libc::read(kernel_fd, (&mut desc as *mut ib_uverbs_async_event_desc).cast(), size_of_val(&desc)) };
        if n < 0 && matches!(Errno::last().0, libc::EINTR | libc::EAGAIN) {
            continue;
        }
        if n <= 0 {
            // The device went away (the kernel answers EIO then) or the
            // file ended: nothing more will come from it.
            let why = if n == 0 { "it ended".to_string() } else { format!("reading it failed ({})", Errno::last()) };
            return kernel_file_ended(ours, &why);
        }
        if n != size_of_val(&desc) as isize {
            continue;
        }
        // Blocking: the kernel's event must not be lost; stop still ends
        // the wait, since the application's end closes only after it.
        loop {
            // SAFETY: sends our struct.
            let sent = unsafe { libc::send(ours, (&desc as *const ib_uverbs_async_event_desc).cast(), size_of_val(&desc), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if sent >= 0 {
                break;
            }
            if !matches!(Errno::last().0, libc::EAGAIN | libc::EINTR) {
                // The application's end is gone (it closed async_fd): poll
                // would report that at once, for ever.
                log::error!("asynchronous events: passing one on failed ({}); none are passed on from now", Errno::last());
                return;
            }
            let mut w = [libc::pollfd { fd: ours, events: libc::POLLOUT, revents: 0 }, libc::pollfd { fd: stop, events: libc::POLLIN, revents: 0 }];
            // SAFETY: our array of two pollfds.
            unsafe { libc::poll(w.as_mut_ptr(), 2, -1) };
            if w[1].revents != 0 {
                return;
            }
        }
    }
}

/// Stops relaying after the kernel's event file can give no more, and
/// tells the application as the kernel's file would: its reads of
/// `async_fd` end (ibv_get_async_event fails) once what is queued is read.
fn kernel_file_ended(ours: RawFd, why: &str) {
    log::error!("asynchronous events: the kernel's event file can give no more ({why}); none are passed on from now");
    // SAFETY: our socket; shutting our side makes the peer's reads end.
    unsafe { libc::shutdown(ours, libc::SHUT_WR) };
}

/// Events injected and not yet subtracted, by QP or CQ address.
static INJECTED: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

/// Counts an event injected on a QP or CQ.
pub(crate) fn count(object: usize) {
    let mut all = INJECTED.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter_mut().find(|(o, _)| *o == object) {
        Some((_, n)) => *n += 1,
        None => all.push((object, 1)),
    }
}

fn take_count(object: usize) -> u32 {
    let mut all = INJECTED.lock().unwrap_or_else(|e| e.into_inner());
    all.iter().position(|(o, _)| *o == object).map_or(0, |i| all.swap_remove(i).1)
}

/// Where libibverbs counts the events an application acknowledged on one
/// object, and the lock it takes to change the count.
pub(crate) struct AckCount {
    object: usize,
    mutex: *mut pthread_mutex_t,
    count: *mut u32,
}

/// A QP's count.
///
/// # Safety
/// `qp` is a live QP of ours, and stays so while the result is used.
pub(crate) unsafe fn qp_acks(qp: *mut ibv_qp) -> AckCount {
    // SAFETY: per the contract; addr_of_mut! makes no reference.
    unsafe { AckCount { object: qp as usize, mutex: core::ptr::addr_of_mut!((*qp).mutex), count: core::ptr::addr_of_mut!((*qp).events_completed) } }
}

/// A CQ's count of asynchronous events.
///
/// # Safety
/// As for [`qp_acks`].
pub(crate) unsafe fn cq_acks(cq: *mut ibv_cq) -> AckCount {
    // SAFETY: per the contract.
    unsafe { AckCount { object: cq as usize, mutex: core::ptr::addr_of_mut!((*cq).mutex), count: core::ptr::addr_of_mut!((*cq).async_events_completed) } }
}

impl AckCount {
    /// Takes the object's injected events out of libibverbs' count of
    /// acknowledged ones, before `ibv_cmd_destroy_*` compares it with the
    /// kernel's count; returns what to hand [`AckCount::destroy_failed`].
    /// With wrapping arithmetic, an injected event not yet acknowledged
    /// keeps destroy waiting for it, as a kernel event would.
    pub(crate) fn before_destroy(&self) -> u32 {
        let n = take_count(self.object);
        if n != 0 {
            // SAFETY: the object is live (qp_acks/cq_acks); the mutex is
            // libibverbs' lock of the count.
            unsafe { adjust(self.mutex, self.count, n.wrapping_neg()) };
        }
        n
    }

    /// Puts the count back when the kernel refused the destroy.
    pub(crate) fn destroy_failed(&self, n: u32) {
        if n != 0 {
            // SAFETY: as above.
            unsafe { adjust(self.mutex, self.count, n) };
            for _ in 0..n {
                count(self.object);
            }
        }
    }
}

/// Adds `delta` (wrapping) to a count libibverbs keeps under `mutex`.
///
/// # Safety
/// Both point into a live object; `mutex` is initialized.
unsafe fn adjust(mutex: *mut pthread_mutex_t, counter: *mut u32, delta: u32) {
    let m = mutex.cast::<libc::pthread_mutex_t>();
    // SAFETY: per the contract; the bindings' pthread_mutex_t is libc's.
    unsafe {
        libc::pthread_mutex_lock(m);
        *counter = (*counter).wrapping_add(delta);
        libc::pthread_mutex_unlock(m);
    }
}

/// A QP's event: (event type, element). libibverbs made each object's
/// address its kernel user handle, which the kernel reports as the element.
pub(crate) fn qp_element(qp: *mut ibv_qp) -> u64 {
    qp as usize as u64
}

pub(crate) fn cq_element(cq: *mut ibv_cq) -> u64 {
    cq as usize as u64
}

/// rxe has one port.
pub(crate) const PORT: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_application_reads_kernel_and_injected_events_one_per_read() {
        // A pipe plays the kernel's event file.
        let mut k = [0; 2];
        // SAFETY: pipe writes two fds.
        assert_eq!(unsafe { libc::pipe(k.as_mut_ptr()) }, 0);
        let (relay, app) = attach(k[0]).unwrap();
        let from_kernel = ib_uverbs_async_event_desc { element: 7, event_type: ibv_event_type::IBV_EVENT_PORT_ACTIVE, reserved: 0 };
        // SAFETY: 16 bytes of our struct.
        assert_eq!(unsafe { libc::write(k[1], (&from_kernel as *const ib_uverbs_async_event_desc).cast(), 16) }, 16);
        let read_one = || {
            let mut d = ib_uverbs_async_event_desc::default();
            let mut buf = [0u8; 64];
            // SAFETY: reads into our buffer; a larger buffer shows one event per read.
            let n = unsafe { libc::read(app, buf.as_mut_ptr().cast(), buf.len()) };
            assert_eq!(n, 16);
            // SAFETY: 16 bytes into our struct.
            unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), (&mut d as *mut ib_uverbs_async_event_desc).cast(), 16) };
            (d.event_type, d.element)
        };
        assert_eq!(read_one(), (ibv_event_type::IBV_EVENT_PORT_ACTIVE, 7));
        relay.inject(ibv_event_type::IBV_EVENT_QP_FATAL, 0x1234).unwrap();
        relay.inject(ibv_event_type::IBV_EVENT_PORT_ERR, PORT).unwrap();
        assert_eq!(read_one(), (ibv_event_type::IBV_EVENT_QP_FATAL, 0x1234));
        assert_eq!(read_one(), (ibv_event_type::IBV_EVENT_PORT_ERR, 1));
        drop(relay);
        close_all(&[app, k[1]]);
    }

    #[test]
    fn a_kernel_file_that_ends_stops_the_relay_and_ends_the_applications_reads() {
        let mut k = [0; 2];
        // SAFETY: pipe writes two fds.
        assert_eq!(unsafe { libc::pipe(k.as_mut_ptr()) }, 0);
        let (relay, app) = attach(k[0]).unwrap();
        // The writer's end closes: the relay's poll reports a hang-up.
        close_all(&[k[1]]);
        let t0 = std::time::Instant::now();
        while !relay.thread.as_ref().unwrap().is_finished() {
            assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the relay kept running on a file that ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut buf = [0u8; 16];
        // SAFETY: reads into our buffer.
        assert_eq!(unsafe { libc::read(app, buf.as_mut_ptr().cast(), buf.len()) }, 0, "the application's read must end");
        drop(relay);
        close_all(&[app]);
    }

    #[test]
    fn injected_counts_are_taken_once() {
        count(0x10);
        count(0x10);
        count(0x20);
        assert_eq!(take_count(0x10), 2);
        assert_eq!(take_count(0x10), 0);
        assert_eq!(take_count(0x20), 1);
    }
}
