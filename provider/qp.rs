//! Queue pairs: send and receive rings shared with the kernel, the doorbell,
//! and both send APIs (ibv_post_send and the ibv_wr_* builders).

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::ah::Ah;
use crate::cmd::{Errno, Result};
use crate::context::Context;
use crate::queue::{is_full, next_index, Ring, SpinLock};
use crate::wqe::{self, SendLimits};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::ptr;

use ibv_qp_create_send_ops_flags as ops;

/// A ring plus what posting to it needs.
pub struct WorkQueue {
    pub ring: Ring,
    pub max_sge: u32,
}

/// Send-side state, touched only under `Qp::sq_lock`.
struct SendState {
    /// Send sequence number the kernel expects in each WQE.
    ssn: u32,
    /// Extended API: next slot to build into, and the first error met.
    cur: u32,
    err: c_int,
}

#[repr(C)]
pub struct Qp {
    pub vqp: verbs_qp,
    /// The send ring; its SGE and inline limits are in `limits`.
    sq: Ring,
    limits: SendLimits,
    sq_lock: SpinLock,
    send: UnsafeCell<SendState>,
    /// None when the QP takes its receives from an SRQ.
    rq: Option<WorkQueue>,
    rq_lock: SpinLock,
}

// SAFETY: mutable state is behind the two locks; rings are Sync.
unsafe impl Sync for Qp {}

pub const SUPPORTED_SEND_OPS_RC: u64 = (ops::IBV_QP_EX_WITH_RDMA_WRITE
    | ops::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM
    | ops::IBV_QP_EX_WITH_SEND
    | ops::IBV_QP_EX_WITH_SEND_WITH_IMM
    | ops::IBV_QP_EX_WITH_RDMA_READ
    | ops::IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP
    | ops::IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD
    | ops::IBV_QP_EX_WITH_LOCAL_INV
    | ops::IBV_QP_EX_WITH_BIND_MW
    | ops::IBV_QP_EX_WITH_SEND_WITH_INV) as u64;
pub const SUPPORTED_SEND_OPS_UC: u64 = (ops::IBV_QP_EX_WITH_RDMA_WRITE
    | ops::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM
    | ops::IBV_QP_EX_WITH_SEND
    | ops::IBV_QP_EX_WITH_SEND_WITH_IMM
    | ops::IBV_QP_EX_WITH_BIND_MW
    | ops::IBV_QP_EX_WITH_SEND_WITH_INV) as u64;
pub const SUPPORTED_SEND_OPS_UD: u64 = (ops::IBV_QP_EX_WITH_SEND | ops::IBV_QP_EX_WITH_SEND_WITH_IMM) as u64;
const SUPPORTED_COMP_MASK: u32 = ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_PD
    | ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_CREATE_FLAGS
    | ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;

impl Qp {
    /// # Safety
    /// `qp` must be the `ibv_qp` (or `ibv_qp_ex`) of a live [`Qp`].
    pub unsafe fn from_ibv<'a, T>(qp: *mut T) -> &'a Qp {
        // SAFETY: ibv_qp and ibv_qp_ex sit at offset 0 of verbs_qp, at offset 0 of Qp.
        unsafe { &*qp.cast::<Qp>() }
    }

    pub fn ibv_qp(&self) -> *mut ibv_qp {
        ptr::addr_of!(self.vqp).cast_mut().cast()
    }

    fn qp_ex(&self) -> *mut ibv_qp_ex {
        ptr::addr_of!(self.vqp.qp_ex).cast_mut()
    }

    fn handle(&self) -> u32 {
        self.vqp.qp_ex.qp_base.handle
    }

    fn context(&self) -> &Context {
        // SAFETY: a QP's context outlives it.
        unsafe { Context::from_ibv(self.vqp.qp_ex.qp_base.context) }
    }

    /// # Safety
    /// Caller holds `sq_lock`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn send_state(&self) -> &mut SendState {
        // SAFETY: exclusive under the lock.
        unsafe { &mut *self.send.get() }
    }
}

/// Maps the rings the kernel made for a new QP.
fn map_rings(ctx: &Context, resp: &rxe_create_qp_resp, cap: &ibv_qp_cap, has_srq: bool) -> Result<(Ring, Option<WorkQueue>)> {
    let rq = if has_srq {
        None
    } else {
        Some(WorkQueue { ring: Ring::map(ctx.cmd_fd(), &resp.rq_mi)?, max_sge: cap.max_recv_sge })
    };
    Ok((Ring::map(ctx.cmd_fd(), &resp.sq_mi)?, rq))
}

/// The kernel keeps our `ibv_qp` address (async events name it) and
/// libibverbs initializes a mutex inside it, so the QP is built in place: a
/// heap slot whose `verbs_qp` the kernel fills first, our fields after.
fn with_new_qp<F>(ctx: &Context, what: &str, create: F) -> Result<*mut ibv_qp>
where
    F: FnOnce(*mut verbs_qp) -> Result<(rxe_create_qp_resp, ibv_qp_cap, bool)>,
{
    let mut slot: Box<core::mem::MaybeUninit<Qp>> = Box::new_uninit();
    let p = slot.as_mut_ptr();
    let vqp = p.cast::<verbs_qp>(); // the first field
    // SAFETY: vqp points into our allocation; all-zero is a valid verbs_qp.
    unsafe { ptr::write_bytes(vqp, 0, 1) };
    let (resp, cap, has_srq) = create(vqp)?;
    let (sq, rq) = match map_rings(ctx, &resp, &cap, has_srq) {
        Ok(rings) => rings,
        Err(e) => {
            log::error!("{}: {what}: mapping the QP's rings failed: {e}", ctx.name());
            // SAFETY: the kernel QP exists and nothing uses it yet.
            unsafe { ibv_cmd_destroy_qp(vqp.cast()) };
            return Err(e);
        }
    };
    // SAFETY: each write initializes one field of our allocation; vqp was
    // initialized above, so after these the whole Qp is.
    unsafe {
        let limits = SendLimits { max_sge: cap.max_send_sge, max_inline: cap.max_inline_data, qp_type: (*vqp).qp_ex.qp_base.qp_type };
        ptr::addr_of_mut!((*p).sq).write(sq);
        ptr::addr_of_mut!((*p).limits).write(limits);
        ptr::addr_of_mut!((*p).sq_lock).write(SpinLock::default());
        ptr::addr_of_mut!((*p).send).write(UnsafeCell::new(SendState { ssn: 0, cur: 0, err: 0 }));
        ptr::addr_of_mut!((*p).rq).write(rq);
        ptr::addr_of_mut!((*p).rq_lock).write(SpinLock::default());
        Ok(Box::into_raw(slot.assume_init()).cast::<ibv_qp>())
    }
}

/// `ibv_create_qp`.
///
/// # Safety
/// `pd` and `attr` are the application's, valid.
pub unsafe fn create(ctx: &mut Context, pd: *mut ibv_pd, attr: *mut ibv_qp_init_attr) -> Result<*mut ibv_qp> {
    let name = ctx.name().to_owned();
    with_new_qp(ctx, "create_qp", |vqp| {
        let mut cmd = LegacyCmd::<ib_uverbs_create_qp> { hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_create_qp_resp, rxe_create_qp_resp>::default();
        // SAFETY: per contract; buffers are ours.
        let ret = unsafe {
            ibv_cmd_create_qp(pd, vqp.cast(), attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        };
        if ret != 0 {
            log::error!("{name}: create_qp: refused with {}{}", Errno(ret), unsafe { cap_hint(&(*attr).cap) });
            return Err(Errno(ret));
        }
        // SAFETY: the helper wrote back the granted capabilities.
        Ok(unsafe { (resp.drv, (*attr).cap, !(*attr).srq.is_null()) })
    })
}

fn cap_hint(cap: &ibv_qp_cap) -> String {
    format!(
        " (asked max_send_wr {} max_recv_wr {} max_send_sge {} max_recv_sge {} max_inline_data {}; ibv_devinfo -v shows the device limits)",
        cap.max_send_wr, cap.max_recv_wr, cap.max_send_sge, cap.max_recv_sge, cap.max_inline_data
    )
}

/// `ibv_create_qp_ex`.
///
/// # Safety
/// `attr` is the application's, valid.
pub unsafe fn create_ex(ctx: &mut Context, attr: *mut ibv_qp_init_attr_ex) -> Result<*mut ibv_qp> {
    // SAFETY: per contract.
    let a = unsafe { &*attr };
    let unsupported = |why: String| {
        log::error!("{}: create_qp_ex: {why}", ctx.name());
        Err(Errno(libc::EOPNOTSUPP))
    };
    if a.comp_mask & !SUPPORTED_COMP_MASK != 0 {
        return unsupported(format!("comp_mask {:#x} has bits rxe does not support ({:#x})", a.comp_mask, a.comp_mask & !SUPPORTED_COMP_MASK));
    }
    if a.comp_mask & ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_CREATE_FLAGS != 0 && a.create_flags != 0 {
        return unsupported(format!("create_flags {:#x} are not supported by rxe", a.create_flags));
    }
    let send_ops = if a.comp_mask & ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS != 0 {
        let allowed = match a.qp_type {
            ibv_qp_type::IBV_QPT_RC => SUPPORTED_SEND_OPS_RC,
            ibv_qp_type::IBV_QPT_UC => SUPPORTED_SEND_OPS_UC,
            ibv_qp_type::IBV_QPT_UD => SUPPORTED_SEND_OPS_UD,
            t => return unsupported(format!("QP type {t} has no send ops on rxe")),
        };
        if a.send_ops_flags & !allowed != 0 {
            return unsupported(format!("send_ops_flags {:#x} include ops this QP type cannot do on rxe ({:#x})", a.send_ops_flags, a.send_ops_flags & !allowed));
        }
        Some(a.send_ops_flags)
    } else {
        None
    };
    let context = ctx.ibv_context();
    let name = ctx.name().to_owned();
    with_new_qp(ctx, "create_qp_ex", |vqp| {
        if let Some(flags) = send_ops {
            // SAFETY: vqp is ours and zeroed.
            crate::ffi::install_send_ops(unsafe { &mut (*vqp).qp_ex }, flags);
        }
        let mut cmd = ExtendedCmd::<ib_uverbs_ex_create_qp> { hdr: Default::default(), ex_hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_ex_create_qp_resp, rxe_create_qp_resp>::default();
        // SAFETY: per contract; buffers are ours.
        let ret = unsafe {
            ibv_cmd_create_qp_ex2(context, vqp, attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        };
        if ret != 0 {
            log::error!("{name}: create_qp_ex: refused with {}{}", Errno(ret), unsafe { cap_hint(&(*attr).cap) });
            return Err(Errno(ret));
        }
        // SAFETY: vqp is ours.
        unsafe { (*vqp).comp_mask |= VERBS_QP_EX };
        // SAFETY: the helper wrote back the granted capabilities.
        Ok(unsafe { (resp.drv, (*attr).cap, !(*attr).srq.is_null()) })
    })
}

/// `ibv_query_qp`.
pub fn query(qp: &Qp, attr: *mut ibv_qp_attr, mask: c_int, init_attr: *mut ibv_qp_init_attr) -> Result<()> {
    let mut cmd = LegacyCmd::<ib_uverbs_query_qp> { hdr: Default::default(), core: Default::default() };
    // SAFETY: the application's buffers; ours for cmd.
    let ret = unsafe { ibv_cmd_query_qp(qp.ibv_qp(), attr, mask, init_attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd)) };
    crate::cmd::helper_result(ret)
}

/// `ibv_modify_qp`.
pub fn modify(qp: &Qp, attr: *mut ibv_qp_attr, mask: c_int) -> Result<()> {
    let mut cmd = LegacyCmd::<ib_uverbs_modify_qp> { hdr: Default::default(), core: Default::default() };
    // SAFETY: as above.
    let ret = unsafe { ibv_cmd_modify_qp(qp.ibv_qp(), attr, mask, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd)) };
    if ret != 0 {
        log::error!("{}: modify_qp: QP {:#x} attr_mask {mask:#x} refused with {}", qp.context().name(), qp.vqp.qp_ex.qp_base.qp_num, Errno(ret));
        return Err(Errno(ret));
    }
    Ok(())
}

/// `ibv_destroy_qp`; frees ours (unmapping the rings) once the kernel let go.
///
/// # Safety
/// `qp` is not used afterwards on success.
pub unsafe fn destroy(qp: *mut ibv_qp) -> Result<()> {
    // SAFETY: forwarded; allocated as a Box<Qp> in with_new_qp.
    unsafe { crate::cmd::destroy_boxed::<Qp, _>(qp, ibv_cmd_destroy_qp) }
}

/// Tells the kernel new send WQEs are waiting: a POST_SEND write with no WRs.
fn doorbell(qp: &Qp) -> Result<()> {
    let ctx = qp.context();
    crate::uverbs_ioctl::doorbell(ctx.cmd_fd(), qp.handle(), &ctx.doorbell_via_ioctl)
}

fn state_name(state: ibv_qp_state::Type) -> &'static str {
    match state {
        ibv_qp_state::IBV_QPS_RESET => "RESET",
        ibv_qp_state::IBV_QPS_INIT => "INIT",
        ibv_qp_state::IBV_QPS_RTR => "RTR",
        ibv_qp_state::IBV_QPS_RTS => "RTS",
        ibv_qp_state::IBV_QPS_SQD => "SQD",
        ibv_qp_state::IBV_QPS_SQE => "SQE",
        ibv_qp_state::IBV_QPS_ERR => "ERR",
        _ => "unknown",
    }
}

fn state_allows_send(state: ibv_qp_state::Type) -> bool {
    !matches!(state, ibv_qp_state::IBV_QPS_RESET | ibv_qp_state::IBV_QPS_INIT | ibv_qp_state::IBV_QPS_RTR)
}

/// `ibv_post_send`: every WR before the first bad one is posted, the bad one
/// and the rest are not; one doorbell for the lot.
///
/// # Safety
/// `wr` is the application's valid WR list.
pub unsafe fn post_send(qp: &Qp, mut wr: *mut ibv_send_wr, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: checked non-null.
    unsafe { *bad_wr = ptr::null_mut() };
    if wr.is_null() {
        return libc::EINVAL;
    }
    let state = qp.vqp.qp_ex.qp_base.state;
    if !state_allows_send(state) {
        if crate::log::enabled(log::Level::Error) {
            log::error!(
                "{}: post_send: QP {:#x} is in state {}; sends need RTS (or SQD, SQE, ERR): nothing was posted",
                qp.context().name(),
                qp.vqp.qp_ex.qp_base.qp_num,
                state_name(state)
            );
        }
        // SAFETY: checked non-null.
        unsafe { *bad_wr = wr };
        return libc::EINVAL;
    }
    let ring = &qp.sq;
    let mask = ring.mask();
    let mut rc = 0;
    let mut posted = false;
    qp.sq_lock.with(|| {
        // SAFETY: we hold sq_lock.
        let st = unsafe { qp.send_state() };
        let mut prod = ring.producer_index();
        let mut cons = ring.consumer_index_acquire();
        while !wr.is_null() {
            // SAFETY: the application's WR.
            let w = unsafe { &*wr };
            // SAFETY: sg_list holds num_sge entries (validated below against max_sge).
            let sges = unsafe { wqe::sges(w.sg_list, w.num_sge) };
            let length = match wqe::validate_send(w, sges, &qp.limits) {
                Ok(len) => len,
                Err((e, why)) => {
                    log::error!("{}: post_send: wr_id {:#x} refused with {}: {why}", qp.context().name(), w.wr_id, e.name());
                    rc = e.0;
                    break;
                }
            };
            let ud = if qp.limits.qp_type == ibv_qp_type::IBV_QPT_UD {
                // SAFETY: UD WRs carry an AH from our create_ah.
                let ud = unsafe { &w.wr.ud };
                if ud.ah.is_null() {
                    log::error!("{}: post_send: UD wr_id {:#x} has no address handle", qp.context().name(), w.wr_id);
                    rc = libc::EINVAL;
                    break;
                }
                // SAFETY: as above.
                Some((ud.remote_qpn, ud.remote_qkey, unsafe { Ah::from_ibv(ud.ah) }.ah_num))
            } else {
                None
            };
            if !ring.has_room(prod, &mut cons) {
                log::warn!("{}: post_send: send queue full ({} slots), wr_id {:#x} not posted", qp.context().name(), mask, w.wr_id);
                rc = libc::ENOMEM;
                break;
            }
            // SAFETY: the slot is ours (not yet published), sized by the kernel for our limits.
            unsafe { wqe::write_send(ring.slot(prod).cast(), w, sges, length, ud, st.ssn) };
            st.ssn = st.ssn.wrapping_add(1);
            prod = next_index(prod, mask);
            posted = true;
            wr = w.next;
        }
        ring.publish(prod);
    });
    if rc != 0 {
        // SAFETY: checked non-null.
        unsafe { *bad_wr = wr };
    }
    if posted {
        if let Err(e) = doorbell(qp) {
            log::error!("{}: post_send: doorbell refused with {e}", qp.context().name());
            return e.0;
        }
    }
    rc
}

/// Posts receive WRs into `wq` (a QP's receive queue or an SRQ).
///
/// # Safety
/// The caller holds the lock guarding `wq`; `wr` is the application's valid
/// WR list; `bad_wr` is non-null.
pub unsafe fn post_recv_locked(ctx: &Context, wq: &WorkQueue, mut wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    let ring = &wq.ring;
    let mask = ring.mask();
    let mut rc = 0;
    let mut prod = ring.producer_index();
    let mut cons = ring.consumer_index_acquire();
    while !wr.is_null() {
        // SAFETY: the application's WR.
        let w = unsafe { &*wr };
        if !ring.has_room(prod, &mut cons) {
            log::warn!("{}: post_recv: receive queue full ({} slots), wr_id {:#x} not posted", ctx.name(), mask, w.wr_id);
            rc = libc::ENOMEM;
            break;
        }
        if w.num_sge < 0 || w.num_sge as u32 > wq.max_sge {
            log::error!("{}: post_recv: wr_id {:#x} refused with EINVAL: num_sge {} exceeds max_recv_sge {}", ctx.name(), w.wr_id, w.num_sge, wq.max_sge);
            rc = libc::EINVAL;
            break;
        }
        // SAFETY: sg_list holds num_sge entries; the slot is ours until published.
        unsafe { wqe::write_recv(ring.slot(prod).cast(), w.wr_id, wqe::sges(w.sg_list, w.num_sge)) };
        prod = next_index(prod, mask);
        wr = w.next;
    }
    ring.publish(prod);
    if rc != 0 {
        // SAFETY: per contract.
        unsafe { *bad_wr = wr };
    }
    rc
}

/// `ibv_post_recv`.
///
/// # Safety
/// As for [`post_recv_locked`], but takes the lock itself.
pub unsafe fn post_recv(qp: &Qp, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: checked non-null.
    unsafe { *bad_wr = ptr::null_mut() };
    let Some(rq) = qp.rq.as_ref() else {
        log::error!("{}: post_recv: this QP receives through an SRQ; use ibv_post_srq_recv", qp.context().name());
        // SAFETY: checked non-null.
        unsafe { *bad_wr = wr };
        return libc::EINVAL;
    };
    if wr.is_null() {
        return libc::EINVAL;
    }
    // See IBA C10-97.2.1: no receives in RESET.
    if qp.vqp.qp_ex.qp_base.state == ibv_qp_state::IBV_QPS_RESET {
        log::error!("{}: post_recv: QP {:#x} is in RESET; move it to INIT first", qp.context().name(), qp.vqp.qp_ex.qp_base.qp_num);
        // SAFETY: checked non-null.
        unsafe { *bad_wr = wr };
        return libc::EINVAL;
    }
    // SAFETY: we hold rq_lock while posting; the rest is forwarded.
    qp.rq_lock.with(|| unsafe { post_recv_locked(qp.context(), rq, wr, bad_wr) })
}

// ---- The extended send API (ibv_wr_*). wr_start locks the send queue,
// builders each take a slot, setters adjust the last one, wr_complete
// publishes and rings once, wr_abort drops everything since wr_start.

pub fn wr_start(qp: &Qp) {
    qp.sq_lock.lock();
    // SAFETY: we now hold sq_lock until wr_complete/wr_abort.
    let st = unsafe { qp.send_state() };
    st.err = 0;
    st.cur = qp.sq.producer_index();
}

pub fn wr_complete(qp: &Qp) -> c_int {
    // SAFETY: wr_start took the lock.
    let st = unsafe { qp.send_state() };
    let ring = &qp.sq;
    if st.err != 0 {
        let err = st.err;
        qp.sq_lock.unlock();
        return err;
    }
    let posted = st.cur != ring.producer_index();
    ring.publish(st.cur);
    qp.sq_lock.unlock();
    if posted {
        if let Err(e) = doorbell(qp) {
            log::error!("{}: wr_complete: doorbell refused with {e}", qp.context().name());
            return e.0;
        }
    }
    0
}

pub fn wr_abort(qp: &Qp) {
    qp.sq_lock.unlock();
}

/// Starts a new WQE at the build cursor; `fill` sets the opcode's fields.
pub fn build(qp: &Qp, opcode: u32, fill: impl FnOnce(&mut rxe_send_wqe)) {
    // SAFETY: between wr_start and wr_complete we hold the lock.
    let st = unsafe { qp.send_state() };
    if st.err != 0 {
        return;
    }
    let ring = &qp.sq;
    if is_full(st.cur, ring.consumer_index_acquire(), ring.mask()) {
        st.err = libc::ENOSPC;
        return;
    }
    let wqe = ring.slot(st.cur).cast::<rxe_send_wqe>();
    // SAFETY: cq_ex fields are the application's per-WR settings; the slot is ours.
    unsafe {
        let ex = &*qp.qp_ex();
        wqe::start_send_wqe(wqe, ex.wr_id, opcode, ex.wr_flags, st.ssn);
        fill(&mut *wqe);
    }
    st.ssn = st.ssn.wrapping_add(1);
    st.cur = next_index(st.cur, ring.mask());
}

/// Runs a setter on the WQE the last builder made. A setter's `Err(errno)`
/// (or a setter with no WQE to set) fails the whole batch at wr_complete.
pub fn with_last(qp: &Qp, set: impl FnOnce(&mut rxe_send_wqe, &SendLimits) -> core::result::Result<(), c_int>) {
    // SAFETY: between wr_start and wr_complete we hold the lock.
    let st = unsafe { qp.send_state() };
    if st.err != 0 {
        return;
    }
    if st.cur == qp.sq.producer_index() {
        st.err = libc::EINVAL; // a setter before any builder
        return;
    }
    // SAFETY: the slot was built since wr_start and is not yet published.
    let wqe = unsafe { &mut *qp.sq.slot(st.cur.wrapping_sub(1)).cast::<rxe_send_wqe>() };
    if let Err(errno) = set(wqe, &qp.limits) {
        st.err = errno;
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_need_rts_or_later() {
        assert!(!state_allows_send(ibv_qp_state::IBV_QPS_RESET));
        assert!(!state_allows_send(ibv_qp_state::IBV_QPS_INIT));
        assert!(!state_allows_send(ibv_qp_state::IBV_QPS_RTR));
        assert!(state_allows_send(ibv_qp_state::IBV_QPS_RTS));
        assert!(state_allows_send(ibv_qp_state::IBV_QPS_ERR));
    }
}
