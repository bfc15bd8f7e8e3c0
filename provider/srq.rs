//! Shared receive queues: one receive ring, shared by several QPs.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use crate::context::Context;
use crate::qp::{post_recv_locked, WorkQueue};
use crate::queue::{Ring, SpinLock};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::ptr;

#[repr(C)]
pub struct Srq {
    pub vsrq: verbs_srq,
    lock: SpinLock,
    /// Replaced on resize, under `lock`.
    rq: UnsafeCell<Option<WorkQueue>>,
}

// SAFETY: mutable state is behind `lock`.
unsafe impl Sync for Srq {}

impl Srq {
    /// # Safety
    /// `srq` must be the `ibv_srq` of a live [`Srq`].
    pub unsafe fn from_ibv<'a>(srq: *mut ibv_srq) -> &'a Srq {
        // SAFETY: ibv_srq is at offset 0 of verbs_srq, at offset 0 of Srq.
        unsafe { &*srq.cast::<Srq>() }
    }

    fn ibv_srq(&self) -> *mut ibv_srq {
        ptr::addr_of!(self.vsrq).cast_mut().cast()
    }

    fn context(&self) -> &Context {
        // SAFETY: an SRQ's context outlives it.
        unsafe { Context::from_ibv(self.vsrq.srq.context) }
    }
}

fn boxed() -> Box<Srq> {
    Box::new(Srq {
        // SAFETY: all-zero is a valid verbs_srq.
        vsrq: unsafe { core::mem::zeroed() },
        lock: SpinLock::default(),
        rq: UnsafeCell::new(None),
    })
}

fn finish(ctx: &Context, srq: Box<Srq>, mi: &mminfo, max_sge: u32) -> Result<*mut ibv_srq> {
    match Ring::map(ctx.cmd_fd(), mi) {
        Ok(ring) => {
            // SAFETY: not shared yet.
            unsafe { *srq.rq.get() = Some(WorkQueue { ring, max_sge }) };
            Ok(Box::leak(srq).ibv_srq())
        }
        Err(e) => {
            log::error!("{}: create_srq: mapping the receive ring failed: {e}", ctx.name());
            // SAFETY: the kernel SRQ exists, unused.
            unsafe { ibv_cmd_destroy_srq(srq.ibv_srq()) };
            Err(e)
        }
    }
}

/// `ibv_create_srq`.
///
/// # Safety
/// `pd`, `attr` are the application's, valid.
pub unsafe fn create(ctx: &mut Context, pd: *mut ibv_pd, attr: *mut ibv_srq_init_attr) -> Result<*mut ibv_srq> {
    let mut srq = boxed();
    let mut cmd = LegacyCmd::<ib_uverbs_create_srq> { hdr: Default::default(), core: Default::default() };
    let mut resp = DrvResp::<ib_uverbs_create_srq_resp, rxe_create_srq_resp>::default();
    // SAFETY: per contract; srq is heap-pinned for the kernel's user_handle.
    let ret = unsafe {
        ibv_cmd_create_srq(pd, &mut srq.vsrq.srq, attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    };
    if ret != 0 {
        // SAFETY: per contract.
        let a = unsafe { (*attr).attr };
        log::error!("{}: create_srq: max_wr {} max_sge {} refused with {}", ctx.name(), a.max_wr, a.max_sge, Errno(ret));
        return Err(Errno(ret));
    }
    // SAFETY: per contract.
    finish(ctx, srq, &resp.drv.mi, unsafe { (*attr).attr.max_sge })
}

/// `ibv_create_srq_ex` (basic SRQs; rxe has no XRC).
///
/// # Safety
/// `attr` is the application's, valid.
pub unsafe fn create_ex(ctx: &mut Context, attr: *mut ibv_srq_init_attr_ex) -> Result<*mut ibv_srq> {
    let mut srq = boxed();
    let mut cmd = LegacyCmd::<ib_uverbs_create_xsrq> { hdr: Default::default(), core: Default::default() };
    let mut resp = DrvResp::<ib_uverbs_create_srq_resp, rxe_create_srq_resp>::default();
    // SAFETY: as in create().
    let ret = unsafe {
        ibv_cmd_create_srq_ex(ctx.ibv_context(), &mut srq.vsrq, attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    };
    if ret != 0 {
        log::error!("{}: create_srq_ex: refused with {}", ctx.name(), Errno(ret));
        return Err(Errno(ret));
    }
    // SAFETY: per contract.
    finish(ctx, srq, &resp.drv.mi, unsafe { (*attr).attr.max_sge })
}

/// `ibv_modify_srq`: a new max_wr makes the kernel hand us a new ring.
pub fn modify(srq: &Srq, attr: *mut ibv_srq_attr, mask: c_int) -> Result<()> {
    #[repr(C)]
    struct ModifySrq {
        core: LegacyCmd<ib_uverbs_modify_srq>,
        drv: rxe_modify_srq_cmd,
    }
    let resize = mask & ibv_srq_attr_mask::IBV_SRQ_MAX_WR as c_int != 0;
    let run = || {
        let mut mi = mminfo::default();
        let mut cmd = ModifySrq {
            core: LegacyCmd { hdr: Default::default(), core: Default::default() },
            drv: rxe_modify_srq_cmd { mmap_info_addr: ptr::addr_of_mut!(mi) as u64 },
        };
        // SAFETY: srq is live; buffers are ours; the kernel writes mi.
        let ret = unsafe { ibv_cmd_modify_srq(srq.ibv_srq(), attr, mask, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd)) };
        if ret != 0 {
            log::error!("{}: modify_srq: attr_mask {mask:#x} refused with {}", srq.context().name(), Errno(ret));
            return Err(Errno(ret));
        }
        if resize {
            // SAFETY: we hold the lock (resize path); the old ring is unmapped on replace.
            let rq = unsafe { &mut *srq.rq.get() };
            let max_sge = rq.as_ref().map_or(0, |w| w.max_sge);
            match Ring::map(srq.context().cmd_fd(), &mi) {
                Ok(ring) => *rq = Some(WorkQueue { ring, max_sge }),
                Err(e) => {
                    log::error!("{}: modify_srq: mapping the resized ring failed: {e}; the SRQ can no longer be posted to", srq.context().name());
                    *rq = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    if resize {
        srq.lock.with(run)
    } else {
        run()
    }
}

/// `ibv_query_srq`.
pub fn query(srq: &Srq, attr: *mut ibv_srq_attr) -> Result<()> {
    let mut cmd = LegacyCmd::<ib_uverbs_query_srq> { hdr: Default::default(), core: Default::default() };
    // SAFETY: srq is live; the application's attr.
    let ret = unsafe { ibv_cmd_query_srq(srq.ibv_srq(), attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd)) };
    crate::cmd::helper_result(ret)
}

/// `ibv_destroy_srq`.
///
/// # Safety
/// `srq` is not used afterwards on success.
pub unsafe fn destroy(srq: *mut ibv_srq) -> Result<()> {
    // SAFETY: forwarded; leaked from a Box<Srq> in finish().
    unsafe { crate::cmd::destroy_boxed::<Srq, _>(srq, ibv_cmd_destroy_srq) }
}

/// `ibv_post_srq_recv`.
///
/// # Safety
/// `wr` is the application's valid WR list.
pub unsafe fn post_recv(srq: &Srq, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: checked non-null.
    unsafe { *bad_wr = ptr::null_mut() };
    srq.lock.with(|| {
        // SAFETY: we hold the lock, under which alone a resize replaces the ring.
        match unsafe { &*srq.rq.get() } {
            // SAFETY: lock held; the rest is forwarded.
            Some(wq) => unsafe { post_recv_locked(srq.context(), wq, wr, bad_wr) },
            None => {
                // SAFETY: checked non-null.
                unsafe { *bad_wr = wr };
                libc::EINVAL
            }
        }
    })
}
