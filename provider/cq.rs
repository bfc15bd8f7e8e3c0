//! Completion queues: the kernel produces `ib_uverbs_wc` entries into a
//! shared ring, we consume them in poll_cq or the extended polling API.

use crate::abi::imports::*;
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::context::Context;
use crate::object::{self, Object};
use crate::queue::{next_index, FastGuard, Ring, SpinGuard, SpinLock};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::mem::{size_of, MaybeUninit};
use core::sync::atomic::Ordering;
use core::ptr;

use ibv_create_cq_wc_flags as wcf;

/// The completion fields the kernel's entries carry; librxe offers the same.
pub(crate) const SUPPORTED_WC_FLAGS: u64 = (wcf::IBV_WC_EX_WITH_BYTE_LEN
    | wcf::IBV_WC_EX_WITH_IMM
    | wcf::IBV_WC_EX_WITH_QP_NUM
    | wcf::IBV_WC_EX_WITH_SRC_QP
    | wcf::IBV_WC_EX_WITH_SLID
    | wcf::IBV_WC_EX_WITH_SL
    | wcf::IBV_WC_EX_WITH_DLID_PATH_BITS) as u64;

// poll_cq copies kernel entries into the application's ibv_wc array whole.
const _: () = assert!(size_of::<ib_uverbs_wc>() == size_of::<ibv_wc>());
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, wr_id) == core::mem::offset_of!(ibv_wc, wr_id));
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, status) == core::mem::offset_of!(ibv_wc, status));
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, byte_len) == core::mem::offset_of!(ibv_wc, byte_len));
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, qp_num) == core::mem::offset_of!(ibv_wc, qp_num));
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, wc_flags) == core::mem::offset_of!(ibv_wc, wc_flags));
const _: () = assert!(core::mem::offset_of!(ib_uverbs_wc, dlid_path_bits) == core::mem::offset_of!(ibv_wc, dlid_path_bits));

/// What the poll lock guards.
struct Polling {
    /// The ring, or why it is gone (a resize whose new ring could not be mapped).
    ring: Result<Ring>,
}

#[repr(C)]
pub(crate) struct Cq {
    vcq: UnsafeCell<verbs_cq>,
    polling: SpinLock<Polling>,
    /// Extended polling: the entry exposed last, for the `ibv_wc_read_*`
    /// functions, which then need no lock or ring lookup. Written under the
    /// poll lock; read by the thread holding it.
    exposed_wc: UnsafeCell<*const ib_uverbs_wc>,
}

object::boxed_object!(Cq, ibv_cq, vcq);

// SAFETY: we write vcq only under the poll lock (the extended status/wr_id)
// or before the CQ is shared; libibverbs synchronizes its own fields.
unsafe impl Sync for Cq {}

impl Cq {
    fn boxed() -> Result<Box<Cq>> {
        object::try_box(Cq {
            // SAFETY: all-zero is a valid verbs_cq; libibverbs and the kernel fill it.
            vcq: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            polling: SpinLock::new(Polling { ring: Err(Errno(libc::ENXIO)) }),
            exposed_wc: UnsafeCell::new(ptr::null()),
        })
    }

    /// A CQ over a heap ring, for host tests.
    #[cfg(test)]
    pub(crate) fn for_tests(ring: Ring) -> Box<Cq> {
        let mut cq = Cq::boxed().unwrap();
        cq.polling.get_mut().ring = Ok(ring);
        cq
    }

    /// The ring, for tests playing the kernel.
    #[cfg(test)]
    pub(crate) fn with_ring<R>(&self, f: impl FnOnce(&Ring) -> R) -> R {
        f(self.polling.lock().ring.as_ref().unwrap())
    }

    fn context(&self) -> &Context {
        // SAFETY: a CQ's context outlives it.
        unsafe { Context::from_raw((*self.raw()).context) }
    }

    /// The extended CQ view, for installing the polling functions before
    /// the CQ is handed out.
    pub(crate) fn ex_mut(&mut self) -> &mut ibv_cq_ex {
        &mut self.vcq.get_mut().cq_ex
    }
}

/// Maps a completion ring, checking its entries can hold a completion.
/// Logs nothing: it may run under the lock.
fn map_ring(ctx: &Context, mi: &mminfo) -> core::result::Result<Ring, (Errno, &'static str)> {
    let ring = Ring::map(ctx.cmd_fd(), mi).map_err(|e| (e, "mapping the completion ring failed"))?;
    if ring.elem_size() < size_of::<ib_uverbs_wc>() {
        return Err((Errno(libc::EINVAL), "completion ring entries are smaller than a completion"));
    }
    Ok(ring)
}

/// Maps the new CQ's ring; on failure destroys the kernel CQ.
fn finish_create(ctx: &Context, mut cq: Box<Cq>, mi: &mminfo) -> Result<Box<Cq>> {
    match map_ring(ctx, mi) {
        Ok(ring) => {
            cq.polling.get_mut().ring = Ok(ring);
            Ok(cq)
        }
        Err((e, why)) => {
            log::error!("{}: create_cq: {why} ({e}); the CQ is destroyed", ctx.name());
            // SAFETY: the kernel CQ exists and nothing uses it yet.
            let _ = unsafe { ibv_cmd_destroy_cq(cq.raw()) };
            Err(e)
        }
    }
}

/// `ibv_create_cq`. The caller hands the result out with [`Boxed::leak`].
pub(crate) fn create(ctx: &Context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int) -> Result<Box<Cq>> {
    let cq = Cq::boxed()?;
    let mut resp = DrvResp::<ib_uverbs_create_cq_resp, rxe_create_cq_resp>::default();
    // SAFETY: cq is heap-pinned (the kernel keeps its address as user_handle)
    // and ours; the channel is the application's, checked by libibverbs.
    cmd::checked(unsafe {
        ibv_cmd_create_cq(ctx.raw(), cqe, channel, comp_vector, cq.raw(), ptr::null_mut(), 0, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    })
    .inspect_err(|e| log::error!("{}: create_cq: {cqe} entries refused with {e}", ctx.name()))?;
    finish_create(ctx, cq, &resp.drv.mi)
}

/// `ibv_create_cq_ex`; the caller installs the polling functions it wants.
///
/// # Safety
/// `attr` must be valid (libibverbs checked it).
pub(crate) unsafe fn create_ex(ctx: &Context, attr: *mut ibv_cq_init_attr_ex) -> Result<Box<Cq>> {
    // SAFETY: per the contract.
    let wc_flags = unsafe { (*attr).wc_flags };
    if wc_flags & !SUPPORTED_WC_FLAGS != 0 {
        log::error!(
            "{}: create_cq_ex: wc_flags {wc_flags:#x} ask for fields rxe completions do not carry ({:#x}); supported: {SUPPORTED_WC_FLAGS:#x}",
            ctx.name(),
            wc_flags & !SUPPORTED_WC_FLAGS
        );
        return Err(Errno(libc::EOPNOTSUPP));
    }
    let cq = Cq::boxed()?;
    let mut resp = DrvResp::<ib_uverbs_ex_create_cq_resp, rxe_create_cq_resp>::default();
    // SAFETY: as in create().
    cmd::checked(unsafe {
        ibv_cmd_create_cq_ex(ctx.raw(), attr, cq.vcq.get(), ptr::null_mut(), 0, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp), 0)
    })
    .inspect_err(|e| log::error!("{}: create_cq_ex: refused with {e}", ctx.name()))?;
    finish_create(ctx, cq, &resp.drv.mi)
}

/// Destroys the kernel CQ, then frees ours (unmapping the ring).
///
/// # Safety
/// `cq` came from create/create_ex via leak; on success nobody uses it again.
pub(crate) unsafe fn destroy(cq: *mut ibv_cq) -> Result<()> {
    // SAFETY: per the contract.
    unsafe { object::destroy::<Cq>(cq, |cq| cmd::checked(ibv_cmd_destroy_cq(cq.raw()))) }
}

impl Cq {
    /// `ibv_resize_cq`: the kernel moves the entries to a new ring we remap.
    pub(crate) fn resize(&self, cqe: c_int) -> Result<()> {
        let res = {
            let mut p = self.polling.lock();
            self.resize_locked(&mut p, cqe)
        };
        if let Err((e, why)) = res {
            log::error!("{}: resize_cq: to {cqe} entries: {why} ({e})", self.context().name());
            return Err(e);
        }
        Ok(())
    }

    fn resize_locked(&self, p: &mut Polling, cqe: c_int) -> core::result::Result<(), (Errno, &'static str)> {
        let mut cmd = LegacyCmd::<ib_uverbs_resize_cq> { hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_resize_cq_resp, rxe_resize_cq_resp>::default();
        // SAFETY: the CQ is live; the buffers are ours.
        cmd::checked(unsafe {
            ibv_cmd_resize_cq(self.raw(), cqe, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        })
        .map_err(|e| (e, "refused by the kernel"))?;
        // The old mapping is dropped (unmapped) when replaced. If the new one
        // cannot be mapped, polling reports this error from now on.
        let new = map_ring(self.context(), &resp.drv.mi);
        let res = new.as_ref().map(|_| ()).map_err(|&(e, _)| (e, "mapping the new ring failed; polling this CQ now fails"));
        p.ring = new.map_err(|(e, _)| e);
        res
    }

    /// `ibv_poll_cq`: moves up to `out.len()` completions into `out`.
    /// Returns how many, or the error that took the ring away.
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) fn poll(&self, out: &mut [MaybeUninit<ibv_wc>]) -> Result<usize> {
        let p = self.polling.lock();
        let ring = p.ring.as_ref().map_err(|&e| e)?;
        let mut cons = ring.consumer_index();
        let mut n = 0;
        // One Acquire load of the kernel's index per entry, as librxe does:
        // it also picks up entries that land while we copy.
        while n < out.len() && cons != ring.producer_index_acquire() {
            // SAFETY: the kernel published this entry (Acquire above); an
            // ib_uverbs_wc has ibv_wc's layout (asserted at build time).
            let wc = unsafe { ring.entry::<ibv_wc>(cons) };
            out[n].write(*wc);
            cons = next_index(cons, ring.mask());
            ring.release(cons);
            n += 1;
        }
        Ok(n)
    }

    /// The consumer and producer indices and the mask of the ring, for
    /// holding completions back (crate::fault_delay); None once the ring
    /// is gone. Not for the hot path: it takes the poll lock.
    pub(crate) fn indices(&self) -> Option<(u32, u32, u32)> {
        let p = self.polling.lock();
        let ring = p.ring.as_ref().ok()?;
        Some((ring.consumer_index(), ring.producer_index_acquire(), ring.mask()))
    }

    /// [`Cq::poll`] when no slow path is wanted (`valgrind::slow_path()`
    /// false): one look at the kernel's index per call, each completion
    /// copied whole, one hand-back at the end. `ne` is the application's
    /// count (none is polled if it is 0 or less, or if `out` is null).
    /// None, at once, when another thread holds the poll lock: the caller
    /// waits in [`Cq::poll_fast_waiting`]. Inlined into its C entry, the
    /// path that finds at most one completion needs no stack frame.
    ///
    /// # Safety
    /// `out` is null or has room for `ne` completions (the verbs API's
    /// contract).
    #[inline(always)]
    pub(crate) unsafe fn try_poll_fast(&self, out: *mut ibv_wc, ne: i32) -> Option<Result<i32>> {
        let p = self.polling.try_lock_fast()?;
        // SAFETY: forwarded contract.
        Some(unsafe { poll_locked(p, out, ne) })
    }

    /// [`Cq::try_poll_fast`], waiting for the lock.
    ///
    /// # Safety
    /// As for try_poll_fast.
    pub(crate) unsafe fn poll_fast_waiting(&self, out: *mut ibv_wc, ne: i32) -> Result<i32> {
        // SAFETY: forwarded contract.
        unsafe { poll_locked(self.polling.lock_fast(), out, ne) }
    }

    /// `ibv_next_poll` on the batch start_poll opened, without a guard.
    ///
    /// The exposed entry is always the one at the ring's consumer index:
    /// each step hands the previous entry back at once, as poll_cq does
    /// (librxe holds them all until end_poll: a CQ sized to the work
    /// outstanding can then overflow while the application re-posts inside
    /// its batch). An empty step hands nothing back and moves nothing, so
    /// the entry last exposed stays held until end_poll, and a next_poll
    /// after ENOENT looks at the same next slot again.
    ///
    /// # Safety
    /// This thread's start_poll on this CQ succeeded and end_poll has not
    /// run since (the verbs API's contract).
    #[inline(always)]
    pub(crate) unsafe fn next_poll(&self) -> core::result::Result<(), Errno> {
        // SAFETY: per the contract, start_poll parked the lock on this thread.
        let p = unsafe { self.polling.held() };
        // SAFETY: start_poll succeeded only with a ring, and a resize, the
        // only thing that takes it, needs the lock we hold.
        let ring = unsafe { p.ring.as_ref().unwrap_unchecked() };
        // In locals, taken before the Acquire load: the compiler would load
        // them again after it.
        let base = ring.slot_base();
        let consumer = ring.consumer_cell();
        // Only we write the consumer index, under the lock we hold; masked,
        // so whatever the shared page holds, the slot is in the mapping.
        // (In usize: as u32 it would be widened again for the offset below.)
        let next = (consumer.load(Ordering::Relaxed) as usize + 1) & ring.mask() as usize;
        if next == ring.producer_index_acquire() as usize {
            return Err(ran_out());
        }
        consumer.store(next as u32, Ordering::Release);
        // SAFETY: the kernel published entry `next` (Acquire above) and gets
        // it back only at the next next_poll or end_poll; `next` is masked,
        // so the slot lies in the mapping, and map_ring checked that it
        // holds an ib_uverbs_wc.
        let wc = unsafe { &*base.add(next * ring.elem_size()).cast::<ib_uverbs_wc>() };
        expose_entry(self, wc);
        Ok(())
    }

    /// `ibv_start_poll`: on success the CQ stays locked until the guard is
    /// ended (dropped), through however many C calls that takes.
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) fn start_poll(&self) -> Result<PollGuard<'_>> {
        let p = self.polling.lock();
        let ring = p.ring.as_ref().map_err(|&e| e)?;
        if ring.consumer_index() == ring.producer_index_acquire() {
            return Err(Errno(libc::ENOENT));
        }
        let guard = PollGuard { cq: self, p };
        guard.expose();
        Ok(guard)
    }
}

/// next_poll's ENOENT, out of the way of the path that finds an entry.
#[cold]
fn ran_out() -> Errno {
    Errno(libc::ENOENT)
}

/// The body of the fast polls, under the lock `p` holds.
///
/// # Safety
/// As for `Cq::try_poll_fast`.
#[inline(always)]
unsafe fn poll_locked(p: FastGuard<'_, Polling>, out: *mut ibv_wc, ne: i32) -> Result<i32> {
    let ring = p.ring.as_ref().map_err(|&e| e)?;
    let base = ring.slot_base();
    let mask = ring.mask();
    let consumer = ring.consumer_cell();
    let cons = consumer.load(Ordering::Relaxed);
    let next = cons.wrapping_add(1) & mask;
    let ready = ring.producer_index_acquire().wrapping_sub(cons) & mask;
    // ready < 2^31 (the mask is a ring size less one), so a signed minimum
    // also covers a count of 0 or less.
    let n = ne.min(ready as i32);
    if n <= 0 || out.is_null() {
        return Ok(0);
    }
    // SAFETY: the kernel published entries cons..cons+ready (Acquire
    // above) and gets them back only below; every slot lies in the
    // mapping and map_ring checked that it holds an ib_uverbs_wc, which
    // has ibv_wc's layout (asserted at build time); `out` has room for
    // `ne` per the contract.
    unsafe { ptr::copy_nonoverlapping(base.add((cons & mask) as usize * ring.elem_size()).cast::<ibv_wc>(), out, 1) };
    if n > 1 {
        // SAFETY: as above.
        return Ok(unsafe { poll_more(p, out, ne) });
    }
    // From locals: the copy into `out` could alias the ring's fields as far
    // as the compiler knows, which would load them again.
    consumer.store(next, Ordering::Release);
    Ok(1)
}

/// The rest of a fast poll that found more than one completion to hand
/// out, the first of them already copied: out of line, so that the usual
/// call, polling one, stays a short path without a stack frame. It works
/// the count out again rather than take it, so that the caller has nothing
/// to keep across the call and can jump to it.
///
/// # Safety
/// As in `poll_locked`, which saw the ring there and at least two entries
/// for `out`, and copied the first.
#[inline(never)]
unsafe fn poll_more(p: FastGuard<'_, Polling>, out: *mut ibv_wc, ne: i32) -> i32 {
    // SAFETY: per the contract the ring is there.
    let ring = unsafe { p.ring.as_ref().unwrap_unchecked() };
    let base = ring.slot_base();
    let mask = ring.mask();
    let cons = ring.consumer_index();
    let ready = ring.producer_index_acquire().wrapping_sub(cons) & mask;
    // At least the two the caller saw: the kernel only adds entries.
    let n = ne.min(ready as i32) as u32;
    for i in 1..n {
        let slot = (cons.wrapping_add(i) & mask) as usize * ring.elem_size();
        // SAFETY: per the contract.
        unsafe { ptr::copy_nonoverlapping(base.add(slot).cast::<ibv_wc>(), out.add(i as usize), 1) };
    }
    ring.release(cons.wrapping_add(n));
    n as i32
}

/// Publishes `wc`, an entry of the CQ's ring (the kernel published it and
/// it is not handed back yet), as the exposed one: its status and wr_id in
/// the extended CQ, where the application reads them, and for the readers.
/// Called with the poll lock held.
#[inline(always)]
fn expose_entry(cq: &Cq, wc: &ib_uverbs_wc) {
    let ex = cq.vcq.get();
    // SAFETY: the caller holds the poll lock, under which alone these fields
    // are written; the pointers come from the UnsafeCells.
    unsafe {
        (*ex).cq_ex.status = wc.status as _;
        (*ex).cq_ex.wr_id = wc.wr_id;
        *cq.exposed_wc.get() = wc;
    }
}

/// The CQ locked between start_poll and end_poll, with one entry exposed.
/// C drives this across calls: [`PollGuard::park`] keeps the lock after
/// each call and [`PollGuard::resume`] picks it up in the next.
pub(crate) struct PollGuard<'a> {
    cq: &'a Cq,
    p: SpinGuard<'a, Polling>,
}

impl<'a> PollGuard<'a> {
    fn ring(&self) -> &Ring {
        // A guard exists only while the ring does (start_poll checked it,
        // and resize needs the lock we hold).
        self.p.ring.as_ref().unwrap_or_else(|_| unreachable!("polling guard without a ring"))
    }

    /// Publishes the exposed entry's status and wr_id in the extended CQ,
    /// where the application reads them.
    fn expose(&self) {
        // SAFETY: the entry was published by the kernel and not yet released.
        expose_entry(self.cq, unsafe { self.ring().entry::<ib_uverbs_wc>(self.ring().consumer_index()) });
    }

    /// `ibv_next_poll` through the guard (tests drive the poll this way).
    #[cfg(test)]
    pub(crate) fn next(&mut self) -> Result<()> {
        // SAFETY: the guard holds the lock on this thread, and no reference
        // into the data through it is live.
        unsafe { self.cq.next_poll() }
    }

    /// The exposed entry, as the ring holds it (tests compare it with
    /// [`PollGuard::exposed`]).
    #[cfg(test)]
    pub(crate) fn current(&self) -> &ib_uverbs_wc {
        // SAFETY: as in expose(); after next() ran out this is the slot at
        // the producer index, which reads as stale but valid integers.
        unsafe { self.ring().entry::<ib_uverbs_wc>(self.ring().consumer_index()) }
    }

    /// The entry exposed last, for the `ibv_wc_read_*` functions, without
    /// resuming the guard.
    ///
    /// # Safety
    /// Between a successful start_poll on `cq` and its end_poll, on the
    /// thread that polls (the verbs API's contract for the readers).
    pub(crate) unsafe fn exposed(cq: &'a Cq) -> &'a ib_uverbs_wc {
        // SAFETY: per the contract, start_poll exposed an entry (the pointer
        // is set) and the ring stays mapped while the poll lock is held.
        // After next_poll ran out it is the last entry, handed back: stale
        // but valid integers, as librxe reads there too.
        unsafe { &**cq.exposed_wc.get() }
    }

    /// Keeps the CQ locked past this call.
    pub(crate) fn park(self) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the lock guard is moved out once.
        let p = unsafe { ptr::read(&this.p) };
        p.park();
    }

    /// The guard a previous call parked.
    ///
    /// # Safety
    /// This thread's start_poll on `cq` succeeded and was parked, and
    /// end_poll has not run since (the verbs API's contract).
    pub(crate) unsafe fn resume(cq: &'a Cq) -> Self {
        // SAFETY: per the contract, the lock is held by a parked guard.
        PollGuard { cq, p: unsafe { cq.polling.resume() } }
    }
}

impl Drop for PollGuard<'_> {
    /// `ibv_end_poll`: hands back the exposed entry and unlocks.
    fn drop(&mut self) {
        let ring = self.ring();
        ring.release(next_index(ring.consumer_index(), ring.mask()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wc(wr_id: u64, status: u32) -> ib_uverbs_wc {
        ib_uverbs_wc { wr_id, status, byte_len: 64, qp_num: 0x11, ..Default::default() }
    }

    fn poll(cq: &Cq, n: usize) -> Vec<u64> {
        let mut out = vec![MaybeUninit::<ibv_wc>::uninit(); n];
        let got = cq.poll(&mut out).unwrap();
        // SAFETY: the first `got` entries were written.
        out[..got].iter().map(|w| unsafe { w.assume_init_ref() }.wr_id).collect()
    }

    #[test]
    fn poll_drains_in_order_across_wrap_around() {
        let cq = Cq::for_tests(Ring::heap(4, 64));
        assert_eq!(poll(&cq, 4), Vec::<u64>::new());
        let mut next = 0;
        for round in 0..10 {
            for _ in 0..3 {
                cq.with_ring(|r| r.sim_produce(wc(next, 0)));
                next += 1;
            }
            let take = 1 + round % 3;
            let got = poll(&cq, take);
            assert_eq!(got.len(), take);
            let rest = poll(&cq, 8);
            assert_eq!(got.len() + rest.len(), 3);
            assert_eq!(*rest.last().unwrap_or(got.last().unwrap()), next - 1);
        }
    }

    /// The fast poll (one in line, the rest in poll_more) against the
    /// general one: the same entries in the same order across wrap-around,
    /// nothing for a count of 0 or less or a null array, and the lock free
    /// after each call.
    #[test]
    fn fast_poll_drains_as_the_general_one_does() {
        let fast = |cq: &Cq, ne: i32, null: bool| -> Vec<u64> {
            let mut out = vec![MaybeUninit::<ibv_wc>::uninit(); ne.max(0) as usize];
            let p = if null { ptr::null_mut() } else { out.as_mut_ptr().cast::<ibv_wc>() };
            // SAFETY: room for ne entries, or null.
            let got = unsafe { cq.try_poll_fast(p, ne) }.expect("the lock is free").unwrap();
            // SAFETY: the first `got` entries were written.
            out[..got as usize].iter().map(|w| unsafe { w.assume_init_ref() }.wr_id).collect()
        };
        let cq = Cq::for_tests(Ring::heap(8, 64));
        let mut next = 0;
        let mut want = 0;
        for round in 0..12 {
            for _ in 0..(1 + round % 7) {
                cq.with_ring(|r| r.sim_produce(wc(next, 0)));
                next += 1;
            }
            assert_eq!(fast(&cq, 0, false), Vec::<u64>::new());
            assert_eq!(fast(&cq, -3, false), Vec::<u64>::new());
            assert_eq!(fast(&cq, 4, true), Vec::<u64>::new());
            for ne in [1, 2, 16] {
                for id in fast(&cq, ne, false) {
                    assert_eq!(id, want);
                    want += 1;
                }
            }
            assert_eq!(want, next, "round {round}: everything polled");
        }
        assert_eq!(cq.with_ring(|r| r.sim_pending()), 0);
        // SAFETY: a null array with no room asked for.
        assert!(unsafe { cq.poll_fast_waiting(ptr::null_mut(), 0) }.is_ok());
    }

    #[test]
    fn extended_polling_walks_entries_then_ends_empty() {
        let cq = Cq::for_tests(Ring::heap(8, 64));
        assert_eq!(cq.start_poll().err(), Some(Errno(libc::ENOENT)));
        for i in 1..=3 {
            cq.with_ring(|r| r.sim_produce(wc(i, if i == 2 { 5 } else { 0 })));
        }
        let g = cq.start_poll().unwrap();
        let ex = || {
            // SAFETY: reading the fields expose() wrote.
            unsafe { ((*cq.vcq.get()).cq_ex.wr_id, (*cq.vcq.get()).cq_ex.status) }
        };
        assert_eq!(ex(), (1, 0));
        assert_eq!(g.current().byte_len, 64);
        // Across "C calls": park and resume.
        g.park();
        // SAFETY: parked just above on this thread.
        let mut g = unsafe { PollGuard::resume(&cq) };
        g.next().unwrap();
        assert_eq!(ex(), (2, 5));
        // The readers' view follows the exposed entry.
        // SAFETY: between start_poll and end_poll on this thread.
        let seen = unsafe { PollGuard::exposed(&cq) };
        assert_eq!((seen.wr_id, seen.status), (2, 5));
        assert!(core::ptr::eq(seen, g.current()));
        g.next().unwrap();
        assert_eq!(g.next(), Err(Errno(libc::ENOENT)));
        drop(g);
        // librxe 44 reports a stale entry here; all were handed back.
        assert_eq!(cq.start_poll().err(), Some(Errno(libc::ENOENT)));
        assert_eq!(cq.with_ring(|r| r.sim_pending()), 0);
    }

    /// An empty next_poll moves nothing: the entry exposed last stays held
    /// until end_poll, and a next_poll after it takes exactly the entry that
    /// lands next, none skipped or seen twice, each handed back as the
    /// following one is exposed.
    #[test]
    fn next_poll_after_enoent_resumes_at_the_next_entry() {
        let cq = Cq::for_tests(Ring::heap(4, 64));
        cq.with_ring(|r| r.sim_produce(wc(1, 0)));
        // The guard holds the poll lock: the ring is reached through it.
        let mut g = cq.start_poll().unwrap();
        for _ in 0..2 {
            assert_eq!(g.next(), Err(Errno(libc::ENOENT)));
            assert_eq!(g.ring().sim_pending(), 1, "the exposed entry is still held");
        }
        // Around the ring more than once, with ENOENT between entries.
        for id in 2..=9 {
            g.ring().sim_produce(wc(id, 0));
            g.next().unwrap();
            assert_eq!(g.current().wr_id, id);
            assert_eq!(g.ring().sim_pending(), 1, "only the exposed entry is held");
            assert_eq!(g.next(), Err(Errno(libc::ENOENT)));
        }
        drop(g);
        assert_eq!(cq.with_ring(|r| r.sim_pending()), 0);
        assert_eq!(cq.start_poll().err(), Some(Errno(libc::ENOENT)));
    }

    #[test]
    fn end_poll_hands_back_the_exposed_entry_only() {
        let cq = Cq::for_tests(Ring::heap(8, 64));
        cq.with_ring(|r| {
            r.sim_produce(wc(1, 0));
            r.sim_produce(wc(2, 0));
        });
        drop(cq.start_poll().unwrap());
        assert_eq!(poll(&cq, 4), vec![2]);
    }

    #[test]
    fn a_lost_ring_is_an_error_not_an_empty_cq() {
        let mut cq = Cq::for_tests(Ring::heap(4, 64));
        cq.polling.get_mut().ring = Err(Errno(libc::ENOMEM));
        let mut out = [MaybeUninit::<ibv_wc>::uninit(); 1];
        assert_eq!(cq.poll(&mut out), Err(Errno(libc::ENOMEM)));
        assert_eq!(cq.start_poll().err(), Some(Errno(libc::ENOMEM)));
    }
}
