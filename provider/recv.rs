//! Receive queues: the ring a QP or an SRQ takes receive WRs into.

use crate::abi::sys::ibv_recv_wr;
use crate::queue::{next_index, Producer, Ring};
use crate::wqe::{self, Refusal};

/// A receive ring and its SGE limit. Reached only under its owner's lock.
pub(crate) struct RecvQueue {
    pub ring: Ring,
    pub max_sge: u32,
}

impl RecvQueue {
    /// The usual receive, one WR with one SGE, without the list loop or the
    /// producer's bookkeeping: true when it was posted; false, with nothing
    /// written, when [`RecvQueue::post`] must decide (other SGE counts, a
    /// null list, a queue allowing no SGE, a full queue). The caller checked
    /// that `w` ends its list.
    ///
    /// # Safety
    /// `w` is a valid receive WR (the verbs API's contract).
    #[inline(always)]
    pub(crate) unsafe fn post_single(&mut self, w: &ibv_recv_wr) -> bool {
        if w.num_sge != 1 || w.sg_list.is_null() || self.max_sge == 0 {
            return false;
        }
        let ring = &self.ring;
        let prod = ring.producer_index();
        let next = next_index(prod, ring.mask());
        if next == ring.consumer_index_acquire() {
            return false;
        }
        // SAFETY: a non-null list of one entry, per the contract.
        let sge = unsafe { *w.sg_list };
        // SAFETY: slot `prod` is free (checked above) and ours: &mut self is
        // the lock holder's; every receive ring's slots hold
        // recv_slot_needed(max_sge) bytes with max_sge >= 1 here.
        unsafe { wqe::write_recv_raw(ring.slot_raw(prod), w.wr_id, core::slice::from_ref(&sge)) };
        ring.publish(next);
        true
    }

    /// Posts a WR list: every WR before the first bad one is published, the
    /// bad one and the rest are not. The refusal comes back with the bad WR;
    /// the caller logs it after dropping the lock.
    ///
    /// # Safety
    /// `wr` is a list of valid receive WRs (the verbs API's contract).
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) unsafe fn post(&mut self, mut wr: *mut ibv_recv_wr) -> Result<(), (Refusal, *mut ibv_recv_wr)> {
        let slots = self.ring.mask();
        // SAFETY: &mut self is the lock holder's exclusive access, so we are
        // the ring's only producer.
        let mut producer = unsafe { Producer::new(&self.ring) };
        while !wr.is_null() {
            // SAFETY: a valid WR, per the contract.
            let w = unsafe { &*wr };
            let Some(slot) = producer.reserve_ptr() else {
                return Err((Refusal::QueueFull { slots }, wr));
            };
            // SAFETY: the list holds num_sge entries when non-null.
            let sges = unsafe { wqe::sge_list(w.sg_list, w.num_sge, self.max_sge) }.map_err(|r| (r, wr))?;
            // SAFETY: a reserved slot; every receive ring's slots hold
            // recv_slot_needed(max_sge) bytes (checked where the ring is
            // mapped) and sge_list allowed at most max_sge SGEs.
            unsafe { wqe::write_recv_raw(slot, w.wr_id, sges) };
            producer.commit();
            wr = w.next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::sys::{ibv_sge, rxe_recv_wqe};
    use core::ptr;

    fn recv_wr(wr_id: u64, sg: &mut [ibv_sge], next: *mut ibv_recv_wr) -> ibv_recv_wr {
        ibv_recv_wr { wr_id, next, sg_list: sg.as_mut_ptr(), num_sge: sg.len() as i32 }
    }

    #[test]
    fn posts_until_the_first_bad_wr() {
        let mut q = RecvQueue { ring: Ring::heap(8, 128), max_sge: 2 };
        let mut sg = [ibv_sge { addr: 0x1000, length: 64, lkey: 3 }];
        let mut too_many = [ibv_sge::default(); 3];
        let mut third = recv_wr(3, &mut sg, ptr::null_mut());
        let mut second = recv_wr(2, &mut too_many, &mut third);
        let mut first = recv_wr(1, &mut sg, &mut second);
        // SAFETY: a list of live local WRs.
        let err = unsafe { q.post(&mut first) }.unwrap_err();
        assert_eq!(err.1, &mut second as *mut _);
        assert!(matches!(err.0, Refusal::TooManySges { num_sge: 3, max: 2 }));
        assert_eq!(q.ring.sim_pending(), 1);
        // SAFETY: the slot holds a receive WQE.
        let w = unsafe { &*q.ring.sim_slot(0).as_ptr().cast::<rxe_recv_wqe>() };
        assert_eq!((w.wr_id, w.dma.length, w.dma.num_sge), (1, 64, 1));
    }

    #[test]
    fn full_queue_is_enomem_with_the_wr() {
        let mut q = RecvQueue { ring: Ring::heap(4, 64), max_sge: 1 };
        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
        for i in 0..3 {
            let mut w = recv_wr(i, &mut sg, ptr::null_mut());
            // SAFETY: a live local WR.
            unsafe { q.post(&mut w) }.unwrap();
        }
        let mut w = recv_wr(9, &mut sg, ptr::null_mut());
        // SAFETY: a live local WR.
        let (r, bad) = unsafe { q.post(&mut w) }.unwrap_err();
        assert_eq!((r.errno().0, bad), (libc::ENOMEM, &mut w as *mut _));
        q.ring.sim_consume(1);
        // SAFETY: as above.
        unsafe { q.post(&mut w) }.unwrap();
    }

    #[test]
    fn null_list_with_a_count_is_refused() {
        let mut q = RecvQueue { ring: Ring::heap(4, 64), max_sge: 1 };
        let mut w = ibv_recv_wr { wr_id: 1, next: ptr::null_mut(), sg_list: ptr::null_mut(), num_sge: 1 };
        // SAFETY: a live local WR whose NULL list must be refused, not read.
        let (r, _) = unsafe { q.post(&mut w) }.unwrap_err();
        assert_eq!(r, Refusal::NullSgList { num_sge: 1 });
        assert_eq!(q.ring.sim_pending(), 0);
    }
}
