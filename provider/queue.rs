//! The rings the kernel shares with us (`struct rxe_queue_buf`): one type owns
//! the mapping, the index arithmetic and the memory ordering for both ends.
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
//! contents visible. Each ring end is used under its owner's [`SpinLock`].

use crate::abi::sys::{mminfo, rxe_queue_buf};
use crate::cmd::{Errno, Result};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::os::fd::RawFd;

/// The slot after `index`.
#[inline]
pub const fn next_index(index: u32, mask: u32) -> u32 {
    index.wrapping_add(1) & mask
}

/// Whether a ring with these indices has no slot left for the producer.
#[inline]
pub const fn is_full(producer: u32, consumer: u32, mask: u32) -> bool {
    next_index(producer, mask) == consumer
}

/// How many slots hold entries.
#[inline]
pub const fn used(producer: u32, consumer: u32, mask: u32) -> u32 {
    producer.wrapping_sub(consumer) & mask
}

/// How many entries the producer can still add.
#[inline]
pub const fn free_slots(producer: u32, consumer: u32, mask: u32) -> u32 {
    mask - used(producer, consumer, mask)
}

/// A ring mapped from the command fd. Unmapped on drop.
pub struct Ring {
    buf: NonNull<rxe_queue_buf>,
    map_len: usize,
    mask: u32,
    elem_shift: u32,
}

// SAFETY: the mapping is process-wide memory; access is synchronized by the
// owners' locks and the atomics below.
unsafe impl Send for Ring {}
unsafe impl Sync for Ring {}

impl Ring {
    /// Maps the ring the kernel described in `mi`.
    pub fn map(fd: RawFd, mi: &mminfo) -> Result<Ring> {
        let len = mi.size as usize;
        if len < core::mem::size_of::<rxe_queue_buf>() {
            return Err(Errno(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping of the kernel's queue; checked below.
        let p = unsafe {
            libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, mi.offset as libc::off_t)
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let buf = NonNull::new(p.cast::<rxe_queue_buf>()).ok_or(Errno(libc::ENOMEM))?;
        // SAFETY: the kernel initialized the header before returning mminfo.
        let (mask, elem_shift) = unsafe { ((*buf.as_ptr()).index_mask, (*buf.as_ptr()).log2_elem_size) };
        let ring = Ring { buf, map_len: len, mask, elem_shift };
        let needed = core::mem::size_of::<rxe_queue_buf>() as u64 + ((mask as u64 + 1) << elem_shift);
        if elem_shift >= 32 || needed > len as u64 {
            return Err(Errno(libc::EINVAL)); // dropping `ring` unmaps it
        }
        Ok(ring)
    }

    pub fn mask(&self) -> u32 {
        self.mask
    }

    /// Slots the ring holds, one of which always stays empty.
    pub fn slots(&self) -> u32 {
        self.mask + 1
    }

    pub fn elem_size(&self) -> usize {
        1 << self.elem_shift
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: the index lives inside the mapping for the ring's lifetime;
        // AtomicU32 has u32's layout.
        unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*self.buf.as_ptr()).producer_index)) }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for producer().
        unsafe { AtomicU32::from_ptr(core::ptr::addr_of_mut!((*self.buf.as_ptr()).consumer_index)) }
    }

    /// Address of slot `index` (taken modulo the ring size).
    pub fn slot(&self, index: u32) -> *mut u8 {
        let offset = ((index & self.mask) as usize) << self.elem_shift;
        // SAFETY: map() checked that every slot lies inside the mapping.
        unsafe { core::ptr::addr_of_mut!((*self.buf.as_ptr()).data).cast::<u8>().add(offset) }
    }

    // Producer side (send, receive and SRQ rings).

    /// Our own producer index: only we write it, so Relaxed suffices.
    pub fn producer_index(&self) -> u32 {
        self.producer().load(Ordering::Relaxed)
    }

    /// The kernel's consumer index, with what it freed made visible.
    pub fn consumer_index_acquire(&self) -> u32 {
        self.consumer().load(Ordering::Acquire)
    }

    /// Whether a producer at `prod` can add an entry. `cons` caches the
    /// kernel's consumer index; it is re-read only when the cached value says
    /// full, so a batch of posts costs one Acquire load at most per refill.
    pub fn has_room(&self, prod: u32, cons: &mut u32) -> bool {
        if is_full(prod, *cons, self.mask) {
            *cons = self.consumer_index_acquire();
        }
        !is_full(prod, *cons, self.mask)
    }

    /// Publishes every slot written up to `index`.
    pub fn publish(&self, index: u32) {
        self.producer().store(index & self.mask, Ordering::Release);
    }

    // Consumer side (completion rings).

    /// The kernel's producer index, with the entries it wrote made visible.
    pub fn producer_index_acquire(&self) -> u32 {
        self.producer().load(Ordering::Acquire)
    }

    pub fn consumer_index(&self) -> u32 {
        self.consumer().load(Ordering::Relaxed)
    }

    /// Hands slots up to `index` back to the kernel, after we finished reading them.
    pub fn release(&self, index: u32) {
        self.consumer().store(index & self.mask, Ordering::Release);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: we own this mapping; nothing refers to it after drop.
        unsafe { libc::munmap(self.buf.as_ptr().cast(), self.map_len) };
    }
}

/// A spin lock for one ring end, like the C provider's pthread spinlocks.
/// It has explicit lock/unlock because the extended send API locks in
/// `ibv_wr_start` and unlocks in `ibv_wr_complete`, across calls from C.
#[derive(Default)]
pub struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    #[inline(always)]
    pub fn lock(&self) {
        if !self.locked.swap(true, Ordering::Acquire) {
            return;
        }
        self.lock_contended();
    }

    #[cold]
    fn lock_contended(&self) {
        // Uncontended: one atomic swap. Contended: wait on plain loads, so
        // waiters do not bounce the cache line, then retry the swap.
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
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Runs `f` under the lock.
    #[inline(always)]
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Unlock<'a>(&'a SpinLock);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                self.0.unlock();
            }
        }
        self.lock();
        let _unlock = Unlock(self);
        f()
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
        assert_eq!(free_slots(0, 0, mask), 7);
        assert!(!is_full(5, 7, mask)); // 6 used
        assert!(is_full(6, 7, mask)); // 7 used
        assert!(is_full(7, 0, mask));
        assert!(is_full(2, 3, mask));
        assert_eq!(used(7, 0, mask), 7);
        assert_eq!(free_slots(7, 0, mask), 0);
    }

    #[test]
    fn counts_across_wrap_around() {
        let mask = 15;
        assert_eq!(used(3, 14, mask), 5); // 14,15,0,1,2
        assert_eq!(free_slots(3, 14, mask), 10);
        assert_eq!(used(5, 5, mask), 0);
    }

    #[test]
    fn fill_and_drain_a_ring_model() {
        // Producer and consumer walking a ring many times round.
        let mask = 3;
        let (mut p, mut c) = (0u32, 0u32);
        let mut produced = 0;
        let mut consumed = 0;
        for round in 0..100 {
            while !is_full(p, c, mask) {
                p = next_index(p, mask);
                produced += 1;
            }
            assert_eq!(used(p, c, mask), 3);
            let take = 1 + round % 3;
            for _ in 0..take {
                assert!(used(p, c, mask) > 0);
                c = next_index(c, mask);
                consumed += 1;
            }
        }
        assert_eq!(produced - consumed, used(p, c, mask));
    }

    #[test]
    fn spin_lock_excludes() {
        use std::sync::Arc;
        let lock = Arc::new(SpinLock::default());
        let counter = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (lock, counter) = (lock.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        lock.with(|| {
                            // A non-atomic read-modify-write made safe by the lock.
                            let v = counter.load(Ordering::Relaxed);
                            counter.store(v + 1, Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 40_000);
    }
}
