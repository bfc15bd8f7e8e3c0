//! Shared receive queues: one receive ring, shared by several QPs.

use crate::abi::imports::*;
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::context::Context;
use crate::object::{self, Object};
use crate::queue::{Ring, SpinLock};
use crate::recv::RecvQueue;
use crate::wqe::{self, PostError, Refusal};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::mem::MaybeUninit;
use core::ptr;

#[repr(C)]
pub(crate) struct Srq {
    vsrq: UnsafeCell<verbs_srq>,
    /// The ring, or why it is gone (a resize whose new ring could not be mapped).
    rq: SpinLock<core::result::Result<RecvQueue, Errno>>,
}

object::boxed_object!(Srq, ibv_srq, vsrq);

// SAFETY: our mutable state is behind the lock; vsrq is libibverbs' to
// synchronize once the SRQ is handed out.
unsafe impl Sync for Srq {}

impl Srq {
    fn boxed() -> Result<Box<Srq>> {
        object::try_box(Srq {
            // SAFETY: all-zero is a valid verbs_srq.
            vsrq: UnsafeCell::new(unsafe { core::mem::zeroed() }),
            rq: SpinLock::new(Err(Errno(libc::ENXIO))),
        })
    }

    /// An SRQ over a heap ring, for host tests.
    #[cfg(test)]
    pub(crate) fn for_tests(ctx: &Context, ring: Ring, max_sge: u32) -> Box<Srq> {
        let mut srq = Srq::boxed().unwrap();
        srq.vsrq.get_mut().srq.context = ctx.raw();
        *srq.rq.get_mut() = Ok(RecvQueue { ring, max_sge });
        srq
    }

    #[cfg(test)]
    pub(crate) fn with_ring<R>(&self, f: impl FnOnce(&Ring) -> R) -> R {
        f(&self.rq.lock().as_ref().unwrap().ring)
    }

    fn context(&self) -> &Context {
        // SAFETY: an SRQ's context outlives it.
        unsafe { Context::from_raw((*self.raw()).context) }
    }
}

/// Maps a receive ring, checking each slot holds `max_sge` SGEs. Logs
/// nothing: it may run under the lock.
fn map_ring(ctx: &Context, mi: &mminfo, max_sge: u32) -> core::result::Result<RecvQueue, (Errno, &'static str)> {
    let ring = Ring::map(ctx.cmd_fd(), mi).map_err(|e| (e, "mapping the receive ring failed; the SRQ can no longer be posted to"))?;
    if (ring.elem_size() as u64) < wqe::recv_slot_needed(max_sge) {
        return Err((Errno(libc::EINVAL), "receive slots are smaller than the granted max_sge needs"));
    }
    Ok(RecvQueue { ring, max_sge })
}

fn finish(ctx: &Context, mut srq: Box<Srq>, mi: &mminfo, max_sge: u32) -> Result<Box<Srq>> {
    match map_ring(ctx, mi, max_sge) {
        Ok(rq) => {
            *srq.rq.get_mut() = Ok(rq);
            Ok(srq)
        }
        Err((e, why)) => {
            log::error!("{}: create_srq: {why} ({e}); the SRQ is destroyed", ctx.name());
            // SAFETY: the kernel SRQ exists and nothing uses it.
            let _ = unsafe { ibv_cmd_destroy_srq(srq.raw()) };
            Err(e)
        }
    }
}

/// `ibv_create_srq`; the caller hands the result out with [`Boxed::leak`].
///
/// # Safety
/// `pd` and `attr` are the application's, valid.
pub(crate) unsafe fn create(ctx: &Context, pd: *mut ibv_pd, attr: *mut ibv_srq_init_attr) -> Result<Box<Srq>> {
    let srq = Srq::boxed()?;
    let mut cmd = MaybeUninit::<LegacyCmd<ib_uverbs_create_srq>>::zeroed();
    let mut resp = DrvResp::<ib_uverbs_create_srq_resp, rxe_create_srq_resp>::default();
    // SAFETY: per the contract; srq is heap-pinned for the kernel's user_handle.
    cmd::checked(unsafe {
        ibv_cmd_create_srq(pd, srq.raw(), attr, cmd.as_mut_ptr().cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    })
    .inspect_err(|e| {
        // SAFETY: per the contract.
        let a = unsafe { (*attr).attr };
        log::error!("{}: create_srq: max_wr {} max_sge {} refused with {e}", ctx.name(), a.max_wr, a.max_sge)
    })?;
    // SAFETY: per the contract; the helper wrote back the granted limits.
    finish(ctx, srq, &resp.drv.mi, unsafe { (*attr).attr.max_sge })
}

/// `ibv_create_srq_ex` (basic SRQs; rxe has no XRC).
///
/// # Safety
/// `attr` is the application's, valid.
pub(crate) unsafe fn create_ex(ctx: &Context, attr: *mut ibv_srq_init_attr_ex) -> Result<Box<Srq>> {
    let srq = Srq::boxed()?;
    let mut cmd = MaybeUninit::<LegacyCmd<ib_uverbs_create_xsrq>>::zeroed();
    let mut resp = DrvResp::<ib_uverbs_create_srq_resp, rxe_create_srq_resp>::default();
    // SAFETY: as in create().
    cmd::checked(unsafe {
        ibv_cmd_create_srq_ex(ctx.raw(), srq.vsrq.get(), attr, cmd.as_mut_ptr().cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    })
    .inspect_err(|e| log::error!("{}: create_srq_ex: refused with {e}", ctx.name()))?;
    // SAFETY: per the contract.
    finish(ctx, srq, &resp.drv.mi, unsafe { (*attr).attr.max_sge })
}

/// `ibv_destroy_srq`.
///
/// # Safety
/// `srq` came from create/create_ex via leak; on success nobody uses it again.
pub(crate) unsafe fn destroy(srq: *mut ibv_srq) -> Result<()> {
    // SAFETY: per the contract.
    unsafe { object::destroy::<Srq>(srq, |s| cmd::checked(ibv_cmd_destroy_srq(s.raw()))) }
}

impl Srq {
    /// `ibv_modify_srq`: a new max_wr makes the kernel hand us a new ring,
    /// which we map under the lock so no post sees the old one half-gone.
    pub(crate) fn modify(&self, attr: *mut ibv_srq_attr, mask: c_int) -> Result<()> {
        #[repr(C)]
        struct ModifySrq {
            core: LegacyCmd<ib_uverbs_modify_srq>,
            drv: rxe_modify_srq_cmd,
        }
        let command = || -> Result<mminfo> {
            let mut mi = mminfo::default();
            let mut cmd = ModifySrq {
                core: LegacyCmd { hdr: Default::default(), core: Default::default() },
                drv: rxe_modify_srq_cmd { mmap_info_addr: ptr::addr_of_mut!(mi) as u64 },
            };
            // SAFETY: the SRQ is live; the buffers are ours; the kernel writes mi.
            cmd::checked(unsafe { ibv_cmd_modify_srq(self.raw(), attr, mask, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd)) })?;
            Ok(mi)
        };
        let outcome = if mask & ibv_srq_attr_mask::IBV_SRQ_MAX_WR as c_int != 0 {
            let mut rq = self.rq.lock();
            // A resize keeps the SGE limit.
            let max_sge = rq.as_ref().map_or(0, |q| q.max_sge);
            command().map_err(|e| (e, "refused by the kernel")).and_then(|mi| {
                let new = map_ring(self.context(), &mi, max_sge);
                let res = new.as_ref().map(|_| ()).map_err(|&(e, why)| (e, why));
                *rq = new.map_err(|(e, _)| e);
                res
            })
        } else {
            command().map(|_| ()).map_err(|e| (e, "refused by the kernel"))
        };
        outcome.map_err(|(e, why)| {
            log::error!("{}: modify_srq: attr_mask {mask:#x}: {why} ({e})", self.context().name());
            e
        })
    }

    /// `ibv_query_srq`.
    pub(crate) fn query(&self, attr: *mut ibv_srq_attr) -> Result<()> {
        let mut cmd = MaybeUninit::<LegacyCmd<ib_uverbs_query_srq>>::zeroed();
        // SAFETY: the SRQ is live; the application's attr.
        cmd::checked(unsafe { ibv_cmd_query_srq(self.raw(), attr, cmd.as_mut_ptr().cast(), size_of_val(&cmd)) })
    }

    /// `ibv_post_srq_recv`.
    ///
    /// # Safety
    /// `wr` is the application's valid WR list.
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    /// `FAST`: the lock without helgrind's annotations (the caller checked
    /// `valgrind::slow_path()`).
    pub(crate) unsafe fn post_recv<const FAST: bool>(&self, wr: *mut ibv_recv_wr) -> core::result::Result<(), PostError<ibv_recv_wr>> {
        // One WR with one SGE, the usual post, with nothing out of line;
        // anything else, or a refusal, goes through the general path, which
        // checks again.
        // SAFETY: a valid WR when non-null, per the contract.
        if FAST && !wr.is_null() && unsafe { (*wr).next.is_null() } {
            if let Ok(q) = &mut *self.rq.lock_fast() {
                // SAFETY: as above.
                if unsafe { q.post_single(&*wr) } {
                    return Ok(());
                }
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.post_recv_general::<FAST>(wr) }
    }

    /// [`Srq::post_recv`] for lists, refusals and the slow path.
    ///
    /// # Safety
    /// As for [`Srq::post_recv`].
    #[inline(never)]
    unsafe fn post_recv_general<const FAST: bool>(&self, wr: *mut ibv_recv_wr) -> core::result::Result<(), PostError<ibv_recv_wr>> {
        let post = |rq: &mut core::result::Result<RecvQueue, Errno>| match rq {
            // SAFETY: forwarded contract; the guard drops before we log.
            Ok(q) => unsafe { q.post(wr) },
            Err(_) => Err((Refusal::NoRing, wr)),
        };
        let res = if FAST { post(&mut self.rq.lock_fast()) } else { post(&mut self.rq.lock()) };
        res.map_err(|(r, bad)| {
            let wr_id = if bad.is_null() {
                0
            } else {
                // SAFETY: a WR of the application's list.
                unsafe { (*bad).wr_id }
            };
            let level = if matches!(r, Refusal::QueueFull { .. }) { log::Level::Warn } else { log::Level::Error };
            log::log!(target: crate::log::HOT, level, "{}: post_srq_recv: wr_id {wr_id:#x} refused with {}: {r}", self.context().name(), r.errno().name());
            PostError { errno: r.errno(), bad }
        })
    }
}
