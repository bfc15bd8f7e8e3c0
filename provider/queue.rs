//! The rings the kernel shares with us (`struct rxe_queue_buf`), and the lock
//! that guards each ring end. Raw ring pointers live in [`Ring`] only.
//!
//! Layout (rdma/rdma_user_rxe.h): `log2_elem_size` and `index_mask` (fixed at
//! creation), then the producer and consumer indices on their own cache
//! lines, then `index_mask + 1` slots of `1 << log2_elem_size` bytes. One slot
//! always stays empty so that `producer == consumer` means empty.
//!
//! Who owns which index: for send, receive and SRQ rings we produce and the
//! kernel consumes; for completion rings the kernel produces and we consume.
//! A producer publishes a slot with a Release store of its index after
//! writing it; the other side's Acquire load of that index makes the slot's
//! contents visible.

use crate::abi::sys::{mminfo, rxe_queue_buf};
use crate::cmd::{Errno, Result};
use core::cell::UnsafeCell;
use core::mem::size_of;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::os::fd::RawFd;

/// The slot after `index`.
#[inline]
pub(crate) const fn next_index(index: u32, mask: u32) -> u32 {
    index.wrapping_add(1) & mask
}

/// Whether a ring with these indices has no slot left for the producer.
#[inline]
pub(crate) const fn is_full(producer: u32, consumer: u32, mask: u32) -> bool {
    next_index(producer, mask) == consumer
}

/// How many slots hold entries.
#[cfg(test)]
const fn used(producer: u32, consumer: u32, mask: u32) -> u32 {
    producer.wrapping_sub(consumer) & mask
}

/// What owns the ring's memory.
enum Backing {
    /// Mapped from the command fd; unmapped on drop.
    Mapped { len: usize },
    /// A heap buffer standing in for the kernel's, for host tests.
    #[cfg(test)]
    Heap { layout: std::alloc::Layout },
}

/// One ring: its memory, geometry and indices.
pub(crate) struct Ring {
    buf: NonNull<rxe_queue_buf>,
    mask: u32,
    elem_shift: u32,
    /// `1 << elem_shift`, for paths where an index becomes an offset best
    /// in one multiply with the size read from memory (a shift needs its
    /// count loaded into a register first): the CQ's. The send paths keep
    /// the shift, which the compiler fits better into their registers.
    elem_size: usize,
    backing: Backing,
}

// SAFETY: the ring is plain shared memory; the indices are accessed
// atomically and slots only by whoever owns them under the protocol above
// (producers under their queue's SpinLock).
unsafe impl Send for Ring {}
// SAFETY: as above.
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring the kernel described in `mi` and checks that every slot
    /// it claims lies inside the mapping.
    pub(crate) fn map(fd: RawFd, mi: &mminfo) -> Result<Ring> {
        let len = mi.size as usize;
        if len < size_of::<rxe_queue_buf>() {
            return Err(Errno(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping of the kernel's queue; nothing else
        // refers to the address range we get back.
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, mi.offset as libc::off_t)
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let buf = NonNull::new(p.cast::<rxe_queue_buf>()).ok_or(Errno(libc::ENOMEM))?;
        // SAFETY: the mapping holds at least the header (checked above), which
        // the kernel initialized before answering the command.
        let (mask, elem_shift) = unsafe { ((*buf.as_ptr()).index_mask, (*buf.as_ptr()).log2_elem_size) };
        // elem_size is set once the geometry (elem_shift < 32) is checked.
        let mut ring = Ring { buf, mask, elem_shift, elem_size: 0, backing: Backing::Mapped { len } };
        if !geometry_fits(mask, elem_shift, len) {
            return Err(Errno(libc::EINVAL)); // dropping `ring` unmaps it
        }
        ring.elem_size = 1 << elem_shift;
        Ok(ring)
    }

    /// A ring over a heap buffer, for tests that play the kernel's side.
    #[cfg(test)]
    pub(crate) fn heap(slots: u32, elem_size: usize) -> Ring {
        assert!(slots.is_power_of_two() && elem_size.is_power_of_two());
        let len = size_of::<rxe_queue_buf>() + slots as usize * elem_size;
        let layout = std::alloc::Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let buf = NonNull::new(p.cast::<rxe_queue_buf>()).expect("test allocation");
        // SAFETY: the header lies inside the fresh allocation.
        unsafe {
            (*buf.as_ptr()).index_mask = slots - 1;
            (*buf.as_ptr()).log2_elem_size = elem_size.trailing_zeros();
        }
        Ring { buf, mask: slots - 1, elem_shift: elem_size.trailing_zeros(), elem_size, backing: Backing::Heap { layout } }
    }

    pub(crate) fn mask(&self) -> u32 {
        self.mask
    }

    #[inline(always)]
    pub(crate) fn elem_size(&self) -> usize {
        self.elem_size
    }

    fn index(&self, field: *mut u32) -> &AtomicU32 {
        // SAFETY: `field` points at an index inside the mapping, which lives
        // as long as self; AtomicU32 has u32's size and alignment.
        unsafe { AtomicU32::from_ptr(field) }
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: addr_of_mut! makes no reference; the header is in bounds.
        self.index(unsafe { core::ptr::addr_of_mut!((*self.buf.as_ptr()).producer_index) })
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer().
        self.index(unsafe { core::ptr::addr_of_mut!((*self.buf.as_ptr()).consumer_index) })
    }

    /// Address of slot `index` (taken modulo the ring size).
    fn slot_ptr(&self, index: u32) -> *mut u8 {
        let offset = ((index & self.mask) as usize) << self.elem_shift;
        // SAFETY: map()/heap() checked that every slot lies inside the buffer.
        unsafe { core::ptr::addr_of_mut!((*self.buf.as_ptr()).data).cast::<u8>().add(offset) }
    }

    /// The address of slot 0, for paths that keep it in a register: slot
    /// `i` starts at `base + (i & mask) * elem_size()`, inside the mapping
    /// (geometry_fits). Read the size where it is multiplied: the compiler
    /// then takes it from memory in the multiply itself.
    #[inline(always)]
    pub(crate) fn slot_base(&self) -> *mut u8 {
        // SAFETY: addr_of_mut! makes no reference; the header is in bounds.
        unsafe { core::ptr::addr_of_mut!((*self.buf.as_ptr()).data).cast::<u8>() }
    }

    /// Address of slot `index` (taken modulo the ring size), for the fast
    /// paths that write whole WQEs with fixed-offset stores. Every slot lies
    /// inside the mapping and is 64-byte aligned at least (geometry_fits).
    #[inline(always)]
    pub(crate) fn slot_raw(&self, index: u32) -> *mut u8 {
        self.slot_ptr(index)
    }

    /// Slot `index` as bytes to fill.
    ///
    /// # Safety
    /// The caller owns the slot: it is a producer slot not yet published, and
    /// the caller is the ring's only producer (holds its lock) while the
    /// borrow lasts.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slot_mut(&self, index: u32) -> &mut [u8] {
        // SAFETY: in bounds (slot_ptr); exclusive per the contract.
        unsafe { core::slice::from_raw_parts_mut(self.slot_ptr(index), self.elem_size()) }
    }

    /// Entry `index` of a ring the kernel produces, read as a `T`.
    ///
    /// # Safety
    /// The kernel published the entry (the caller saw the producer index pass
    /// it with Acquire) and has not been handed it back; `T` is a plain C
    /// struct no bigger than a slot whose every bit pattern is valid.
    pub(crate) unsafe fn entry<T>(&self, index: u32) -> &T {
        // The caller's to keep (the CQ checks its ring's slots when mapping).
        debug_assert!(size_of::<T>() <= self.elem_size());
        // SAFETY: in bounds, slots are 64-byte aligned at least, and the
        // kernel does not write a published entry until we release it.
        unsafe { &*self.slot_ptr(index).cast::<T>() }
    }

    /// Our own producer index: only we write it, so Relaxed suffices.
    pub(crate) fn producer_index(&self) -> u32 {
        self.producer().load(Ordering::Relaxed)
    }

    /// The kernel's consumer index, with what it freed made visible.
    pub(crate) fn consumer_index_acquire(&self) -> u32 {
        self.consumer().load(Ordering::Acquire)
    }

    /// Publishes every slot written up to `index`.
    #[inline(always)]
    pub(crate) fn publish(&self, index: u32) {
        self.producer().store(index & self.mask, Ordering::Release);
    }

    /// The kernel's producer index, with the entries it wrote made visible.
    pub(crate) fn producer_index_acquire(&self) -> u32 {
        self.producer().load(Ordering::Acquire)
    }

    /// Our consumer index on a ring the kernel produces.
    pub(crate) fn consumer_index(&self) -> u32 {
        self.consumer().load(Ordering::Relaxed)
    }

    /// Our consumer index on a ring the kernel produces, for a caller that
    /// stores masked indices into it (Release) and keeps the reference in
    /// a register meanwhile.
    #[inline(always)]
    pub(crate) fn consumer_cell(&self) -> &AtomicU32 {
        self.consumer()
    }

    /// Hands entries up to `index` back to the kernel, after we read them.
    pub(crate) fn release(&self, index: u32) {
        self.consumer().store(index & self.mask, Ordering::Release);
    }

    /// The kernel's side of a ring we produce: takes `n` entries.
    #[cfg(test)]
    pub(crate) fn sim_consume(&self, n: u32) {
        let c = self.consumer().load(Ordering::Acquire);
        self.consumer().store(c.wrapping_add(n) & self.mask, Ordering::Release);
    }

    /// The kernel's side of a ring we consume: writes one entry.
    #[cfg(test)]
    pub(crate) fn sim_produce<T: Copy>(&self, entry: T) {
        assert!(size_of::<T>() <= self.elem_size());
        let p = self.producer().load(Ordering::Relaxed);
        assert!(!is_full(p, self.consumer().load(Ordering::Acquire), self.mask), "simulated kernel overflowed the ring");
        // SAFETY: the slot at the producer index is the producer's.
        unsafe { self.slot_ptr(p).cast::<T>().write(entry) };
        self.producer().store(next_index(p, self.mask), Ordering::Release);
    }

    /// Entries published and not yet consumed, as the kernel would see them.
    #[cfg(test)]
    pub(crate) fn sim_pending(&self) -> u32 {
        used(self.producer().load(Ordering::Acquire), self.consumer().load(Ordering::Acquire), self.mask)
    }

    /// The bytes of slot `index`, for tests to inspect what was written.
    #[cfg(test)]
    pub(crate) fn sim_slot(&self, index: u32) -> &[u8] {
        // SAFETY: in bounds; tests read slots only when no producer runs.
        unsafe { core::slice::from_raw_parts(self.slot_ptr(index), self.elem_size()) }
    }
}

/// Whether `mask + 1` slots of `1 << elem_shift` bytes fit a buffer of `len`.
fn geometry_fits(mask: u32, elem_shift: u32, len: usize) -> bool {
    // Slots hold 8-byte-aligned structs of 40 bytes or more: the kernel rounds them to >= 64.
    (6..32).contains(&elem_shift)
        && (size_of::<rxe_queue_buf>() as u64).saturating_add((mask as u64 + 1) << elem_shift) <= len as u64
}

impl Drop for Ring {
    fn drop(&mut self) {
        match self.backing {
            // SAFETY: we own this mapping; nothing refers into it after drop.
            Backing::Mapped { len } => unsafe {
                libc::munmap(self.buf.as_ptr().cast(), len);
            },
            // SAFETY: allocated in heap() with this layout.
            #[cfg(test)]
            Backing::Heap { layout } => unsafe { std::alloc::dealloc(self.buf.as_ptr().cast(), layout) },
        }
    }
}

/// The producer end of a ring, borrowed for one post call or one extended
/// batch: it caches the kernel's consumer index (re-read only when the cache
/// says full) and publishes what was pushed when dropped.
pub(crate) struct Producer<'r> {
    ring: &'r Ring,
    start: u32,
    prod: u32,
    cons: u32,
}

impl<'r> Producer<'r> {
    /// # Safety
    /// The caller is the ring's only producer while the guard lives (it holds
    /// the queue's lock).
    pub(crate) unsafe fn new(ring: &'r Ring) -> Self {
        // SAFETY: forwarded contract; the kernel's index is a valid cache.
        unsafe { Producer::with_cached(ring, ring.consumer_index_acquire()) }
    }

    /// As [`Producer::new`], starting from a consumer index read earlier
    /// (the kernel's index only moves forward and the producer never passes
    /// it, so an old value only makes `reserve` re-read it sooner).
    ///
    /// # Safety
    /// As for [`Producer::new`]; `cons` was read from this ring.
    #[inline(always)]
    pub(crate) unsafe fn with_cached(ring: &'r Ring, cons: u32) -> Self {
        let prod = ring.producer_index();
        Producer { ring, start: prod, prod, cons }
    }

    /// The next free slot, or None when the ring is full. It becomes an entry
    /// only after [`Producer::commit`].
    pub(crate) fn reserve(&mut self) -> Option<&mut [u8]> {
        if is_full(self.prod, self.cons, self.ring.mask) {
            self.cons = self.ring.consumer_index_acquire();
            if is_full(self.prod, self.cons, self.ring.mask) {
                return None;
            }
        }
        // SAFETY: the slot at prod is unpublished and we are the only producer.
        Some(unsafe { self.ring.slot_mut(self.prod) })
    }

    /// As [`Producer::reserve`], as the slot's address (see [`Ring::slot_raw`]).
    #[inline(always)]
    pub(crate) fn reserve_ptr(&mut self) -> Option<*mut u8> {
        if is_full(self.prod, self.cons, self.ring.mask) {
            self.cons = self.ring.consumer_index_acquire();
            if is_full(self.prod, self.cons, self.ring.mask) {
                return None;
            }
        }
        Some(self.ring.slot_raw(self.prod))
    }

    /// Makes the slot last reserved part of what the drop publishes.
    pub(crate) fn commit(&mut self) {
        self.prod = next_index(self.prod, self.ring.mask);
    }

    /// The address of the slot committed last in this guard's life.
    pub(crate) fn last_ptr(&self) -> Option<*mut u8> {
        (self.prod != self.start).then(|| self.ring.slot_raw(self.prod.wrapping_sub(1)))
    }

    /// The slot committed last in this guard's life, to amend it.
    #[cfg(test)]
    pub(crate) fn last_mut(&mut self) -> Option<&mut [u8]> {
        if self.prod == self.start {
            return None;
        }
        // SAFETY: committed by this guard but not yet published; still ours.
        Some(unsafe { self.ring.slot_mut(self.prod.wrapping_sub(1)) })
    }

    /// The ring's index mask (its slot count less one).
    pub(crate) fn ring_mask(&self) -> u32 {
        self.ring.mask
    }

    /// Whether anything was committed.
    pub(crate) fn any(&self) -> bool {
        self.prod != self.start
    }

    /// Stops without publishing, keeping the position for [`Producer::resume`]:
    /// the extended send API builds one batch across several C calls.
    pub(crate) fn park(self) -> ProducerState {
        let state = ProducerState { start: self.start, prod: self.prod, cons: self.cons };
        core::mem::forget(self);
        state
    }

    /// Continues a parked batch.
    ///
    /// # Safety
    /// As for [`Producer::new`], and `state` comes from parking a producer of
    /// this ring with nothing published in between.
    pub(crate) unsafe fn resume(ring: &'r Ring, state: ProducerState) -> Self {
        Producer { ring, start: state.start, prod: state.prod, cons: state.cons }
    }

    /// Forgets what was committed: nothing is published.
    pub(crate) fn discard(&mut self) {
        self.prod = self.start;
    }
}

/// Where a parked [`Producer`] stood.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProducerState {
    /// The producer index when the batch began (nothing published since).
    pub(crate) start: u32,
    /// The next slot to fill.
    pub(crate) prod: u32,
    /// The kernel's consumer index as last read.
    pub(crate) cons: u32,
}

impl ProducerState {
    /// The next free slot's index, or None when the ring is full; the
    /// extended API's builders call this between C calls, without a
    /// [`Producer`] (see [`Producer::reserve`]).
    #[inline(always)]
    pub(crate) fn reserve_index(&mut self, ring: &Ring) -> Option<u32> {
        if is_full(self.prod, self.cons, ring.mask) {
            self.cons = ring.consumer_index_acquire();
            if is_full(self.prod, self.cons, ring.mask) {
                return None;
            }
        }
        Some(self.prod)
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        if self.prod != self.start {
            self.ring.publish(self.prod);
        }
    }
}

/// A spin lock around the state of one ring end, like the C provider's
/// pthread spin locks. Work under the lock goes through [`SpinGuard`]; the
/// extended send and poll APIs, which C drives across calls, park the guard
/// and resume it through the explicitly unsafe [`SpinLock::resume`].
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached only by the thread holding the lock.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(data: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), data: UnsafeCell::new(data) }
    }

    #[inline(always)]
    fn acquire(&self) {
        if crate::valgrind::active() {
            return self.acquire_annotated();
        }
        if self.locked.swap(true, Ordering::Acquire) {
            self.acquire_contended();
        }
    }

    /// Under helgrind: the lock, with what helgrind needs to see it as one.
    // extern "C" (here and in acquire_contended): a function that cannot
    // unwind, so the callers' panic guards need no landing pad, and the
    // hot entries no stack frame, for these cold calls. Nothing in them
    // panics; were it to, the process would abort rather than unwind.
    #[cold]
    extern "C" fn acquire_annotated(&self) {
        let word = self.locked.as_ptr().cast::<u8>();
        crate::valgrind::acquiring(word, core::mem::size_of::<AtomicBool>());
        if self.locked.swap(true, Ordering::Acquire) {
            self.acquire_contended();
        }
        crate::valgrind::acquired(word);
    }

    #[cold]
    extern "C" fn acquire_contended(&self) {
        // Wait on plain loads so waiters do not bounce the cache line, then
        // retry the swap.
        let mut spins = 0u32;
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                spins += 1;
                // Holders may be descheduled (few CPUs, emulation): don't burn a whole slice.
                if spins % 64 == 0 {
                    std::thread::yield_now();
                } else {
                    core::hint::spin_loop();
                }
            }
        }
    }

    #[inline(always)]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        crate::log::enter_queue_lock();
        SpinGuard { lock: self }
    }

    /// The lock without helgrind's annotations, for fast paths whose callers
    /// checked `valgrind::slow_path()` (false under helgrind). Unannotated
    /// is still a correct lock; helgrind just could not see it.
    #[inline(always)]
    pub(crate) fn lock_fast(&self) -> FastGuard<'_, T> {
        if self.locked.swap(true, Ordering::Acquire) {
            self.acquire_contended();
        }
        crate::log::enter_queue_lock();
        FastGuard { lock: self }
    }

    /// [`SpinLock::lock_fast`] when the lock is free, else None at once:
    /// for entries that hand the wait to a cold function, so that their
    /// own path needs no stack frame.
    #[inline(always)]
    pub(crate) fn try_lock_fast(&self) -> Option<FastGuard<'_, T>> {
        if self.locked.swap(true, Ordering::Acquire) {
            return None;
        }
        crate::log::enter_queue_lock();
        Some(FastGuard { lock: self })
    }

    /// Takes the lock if it is free, unannotated (callers checked
    /// `valgrind::active()`), and leaves it held as a parked guard would:
    /// [`SpinLock::resume`] and dropping the resumed guard release it.
    #[inline(always)]
    pub(crate) fn try_lock_parked(&self) -> bool {
        !self.locked.swap(true, Ordering::Acquire)
    }

    /// The data of a lock this thread holds through a parked guard, without
    /// making a guard (the extended send API's builders and setters).
    ///
    /// # Safety
    /// As for [`SpinLock::resume`], and the reference is dropped before the
    /// lock is released.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub(crate) unsafe fn held(&self) -> &mut T {
        debug_assert!(self.locked.load(Ordering::Relaxed));
        // SAFETY: per the contract, this thread holds the lock.
        unsafe { &mut *self.data.get() }
    }

    /// Exclusive access without locking, through `&mut self`.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// A guard for a lock this thread already holds through a parked guard.
    ///
    /// # Safety
    /// This thread parked a guard of this lock with [`SpinGuard::park`], has
    /// not resumed it since, and no other guard of it is live.
    pub(crate) unsafe fn resume(&self) -> SpinGuard<'_, T> {
        debug_assert!(self.locked.load(Ordering::Relaxed));
        crate::log::enter_queue_lock();
        SpinGuard { lock: self }
    }
}

/// The lock held; the data reachable. Unlocks on drop.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock, and &mut self makes this
        // the only reference through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> SpinGuard<'_, T> {
    /// Keeps the lock held past this guard, for APIs that C drives across
    /// calls (wr_start..wr_complete, start_poll..end_poll). Only
    /// [`SpinLock::resume`] and dropping the resumed guard release it.
    pub(crate) fn park(self) {
        // Between C calls nothing of ours runs under it: logging is fine there.
        crate::log::leave_queue_lock();
        core::mem::forget(self);
    }
}

/// A [`SpinLock::lock_fast`] guard: unlocks on drop, unannotated.
pub(crate) struct FastGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for FastGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for FastGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock; &mut self makes this
        // the only reference through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for FastGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        crate::log::leave_queue_lock();
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        if crate::valgrind::active() {
            crate::valgrind::releasing(self.lock.locked.as_ptr().cast());
        }
        self.lock.locked.store(false, Ordering::Release);
        crate::log::leave_queue_lock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_the_mask() {
        assert_eq!(next_index(0, 7), 1);
        assert_eq!(next_index(7, 7), 0);
        assert_eq!(next_index(u32::MAX, 7), 0);
    }

    #[test]
    fn one_slot_stays_empty() {
        let mask = 7; // 8 slots, 7 usable
        assert!(!is_full(0, 0, mask));
        assert!(!is_full(5, 7, mask)); // 6 used
        assert!(is_full(6, 7, mask)); // 7 used
        assert!(is_full(7, 0, mask));
        assert_eq!(used(7, 0, mask), 7);
        assert_eq!(used(3, 14, 15), 5); // 14,15,0,1,2
    }

    #[test]
    fn geometry_must_fit_the_mapping() {
        let header = size_of::<rxe_queue_buf>();
        assert!(geometry_fits(7, 7, header + 8 * 128));
        assert!(!geometry_fits(7, 7, header + 8 * 128 - 1));
        assert!(!geometry_fits(u32::MAX, 31, 1 << 40));
        assert!(!geometry_fits(0, 40, usize::MAX));
        assert!(!geometry_fits(7, 3, header + 64)); // 8-byte slots hold no WQE
    }

    #[test]
    fn producer_publishes_on_drop_and_stops_when_full() {
        let ring = Ring::heap(4, 64);
        {
            // SAFETY: the only producer.
            let mut p = unsafe { Producer::new(&ring) };
            for i in 0..3u8 {
                p.reserve().expect("room").fill(i);
                p.commit();
            }
            assert!(p.reserve().is_none(), "one slot stays empty");
            assert_eq!(ring.sim_pending(), 0, "nothing published before drop");
        }
        assert_eq!(ring.sim_pending(), 3);
        assert_eq!(ring.sim_slot(2)[0], 2);
        ring.sim_consume(2);
        {
            // SAFETY: the only producer.
            let mut p = unsafe { Producer::new(&ring) };
            // The cached consumer index is refreshed when it says full.
            p.reserve().unwrap();
            p.commit();
            p.reserve().unwrap();
            p.commit();
            assert!(p.reserve().is_none());
            p.last_mut().unwrap()[0] = 0xee;
        }
        assert_eq!(ring.sim_pending(), 3);
        assert_eq!(ring.sim_slot(4)[0], 0xee); // index 4 wraps to slot 0
    }

    #[test]
    fn discarded_batches_publish_nothing() {
        let ring = Ring::heap(8, 64);
        {
            // SAFETY: the only producer.
            let mut p = unsafe { Producer::new(&ring) };
            p.reserve().unwrap();
            p.commit();
            p.discard();
            assert!(!p.any());
        }
        assert_eq!(ring.sim_pending(), 0);
    }

    #[test]
    fn spin_lock_excludes() {
        use std::sync::Arc;
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *lock.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*lock.lock(), 40_000);
    }

    #[test]
    fn parked_guards_span_calls() {
        let lock = SpinLock::new(1u32);
        let mut g = lock.lock();
        *g += 1;
        g.park();
        assert!(lock.locked.load(Ordering::Relaxed));
        // SAFETY: parked just above by this thread.
        let mut g = unsafe { lock.resume() };
        *g += 1;
        drop(g);
        assert_eq!(*lock.lock(), 3);
    }
}
