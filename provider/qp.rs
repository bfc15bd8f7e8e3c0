//! Queue pairs: send and receive rings shared with the kernel, the doorbell,
//! and both send APIs (ibv_post_send and the ibv_wr_* batch).

use crate::abi::imports::*;
use crate::abi::private::*;
use crate::abi::releases::{ibv_qp_ex_45, verbs_qp_45};
use crate::abi::sys::*;
use crate::ah::Ah;
use crate::cmd::{self, Errno, Result};
use crate::abi::newer_kernels;
use crate::context::{Context, Features, MissingInKernel, ATOMIC_WRITE_SINCE, FLUSH_SINCE};
use crate::mr::{next_rkey, Mw};
use crate::object::{self, Object};
use crate::queue::{next_index, Producer, ProducerState, Ring, SpinLock};
use crate::uverbs_ioctl::PreparedDoorbell;
use std::os::fd::RawFd;
use crate::recv::RecvQueue;
use crate::wqe::{self, MwBind, PostError, Refusal, SendLimits, UdAddress};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::fmt;
use core::mem::{size_of, MaybeUninit};
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use ibv_qp_create_send_ops_flags as ops;
use ibv_wr_opcode as op;

pub(crate) const SUPPORTED_SEND_OPS_RC: u64 = (ops::IBV_QP_EX_WITH_RDMA_WRITE
    | ops::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM
    | ops::IBV_QP_EX_WITH_SEND
    | ops::IBV_QP_EX_WITH_SEND_WITH_IMM
    | ops::IBV_QP_EX_WITH_RDMA_READ
    | ops::IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP
    | ops::IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD
    | ops::IBV_QP_EX_WITH_LOCAL_INV
    | ops::IBV_QP_EX_WITH_BIND_MW
    | ops::IBV_QP_EX_WITH_SEND_WITH_INV) as u64;
pub(crate) const SUPPORTED_SEND_OPS_UC: u64 = (ops::IBV_QP_EX_WITH_RDMA_WRITE
    | ops::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM
    | ops::IBV_QP_EX_WITH_SEND
    | ops::IBV_QP_EX_WITH_SEND_WITH_IMM
    | ops::IBV_QP_EX_WITH_BIND_MW
    | ops::IBV_QP_EX_WITH_SEND_WITH_INV) as u64;
pub(crate) const SUPPORTED_SEND_OPS_UD: u64 = (ops::IBV_QP_EX_WITH_SEND | ops::IBV_QP_EX_WITH_SEND_WITH_IMM) as u64;
/// RC send ops that need a kernel newer than 6.1 (and, for FLUSH, a
/// libibverbs with `ibv_wr_flush`): allowed when both have them.
const NEWER_SEND_OPS_RC: u64 = newer_kernels::QP_EX_WITH_ATOMIC_WRITE | newer_kernels::QP_EX_WITH_FLUSH;

/// Why a QP cannot have the newer send ops it asks for, if it cannot.
enum NewerOpMissing {
    Kernel(MissingInKernel),
    /// rdma-core 44's `ibv_qp_ex` has no `wr_flush` to install.
    FlushInLibibverbs,
}

impl fmt::Display for NewerOpMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewerOpMissing::Kernel(m) => m.fmt(f),
            NewerOpMissing::FlushInLibibverbs => write!(f, "this libibverbs (before rdma-core 45) has no ibv_wr_flush"),
        }
    }
}

fn newer_send_ops_missing(flags: u64, features: Features, has_wr_flush: bool) -> Option<NewerOpMissing> {
    if flags & newer_kernels::QP_EX_WITH_ATOMIC_WRITE != 0 && !features.atomic_write() {
        return Some(NewerOpMissing::Kernel(ATOMIC_WRITE_SINCE));
    }
    if flags & newer_kernels::QP_EX_WITH_FLUSH != 0 {
        if !has_wr_flush {
            return Some(NewerOpMissing::FlushInLibibverbs);
        }
        if !features.flush() {
            return Some(NewerOpMissing::Kernel(FLUSH_SINCE));
        }
    }
    None
}

const SUPPORTED_COMP_MASK: u32 = ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_PD
    | ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_CREATE_FLAGS
    | ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS;

/// Send-side state, under the send lock.
struct SendQueue {
    ring: Ring,
    /// Send sequence number the kernel expects in each WQE.
    ssn: u32,
    /// The ibv_wr_* batch between wr_start and wr_complete.
    batch: Batch,
}

#[derive(Default)]
struct Batch {
    producer: ProducerState,
    /// The errno of the first error a builder or setter met, 0 while none
    /// did (a plain word, read with one load); wr_complete returns it.
    err: c_int,
    /// The slot of the WQE the last builder wrote, which the setters fill;
    /// None before the batch's first builder (a setter then fails it).
    /// Kept so that each setter loads it rather than working it out again.
    last: Option<NonNull<u8>>,
}

// SAFETY: `last` points into the send ring, which may move between threads
// (Ring is Send); it is used only under the send lock.
unsafe impl Send for Batch {}

#[repr(C)]
pub(crate) struct Qp {
    /// libibverbs' `verbs_qp`, with room for the v45+ layout (whose
    /// `ibv_qp_ex` ends with `wr_flush`); rdma-core 44's is its prefix.
    vqp: UnsafeCell<verbs_qp_45>,
    limits: SendLimits,
    /// What ibv_post_send's fast path takes, from the limits and the ring.
    fast: FastSend,
    /// The send doorbell's request, built at creation.
    doorbell: PreparedDoorbell,
    /// The context's command fd, where the doorbell rings.
    cmd_fd: RawFd,
    sq: SpinLock<SendQueue>,
    /// None when the QP takes its receives from an SRQ.
    rq: Option<SpinLock<RecvQueue>>,
}

object::boxed_object!(Qp, ibv_qp, vqp);

// SAFETY: our mutable state is behind the two locks; of vqp we only read
// (the state atomically) what libibverbs writes, and write it before the QP
// is handed out.
unsafe impl Sync for Qp {}

/// The WRs ibv_post_send writes without the general checks: exactly those
/// for which every check of `wqe::check_send` is then known to pass (one
/// SGE, an opcode with no operands to check, lengths within the limits).
/// Fixed at creation, from the limits and the send ring's slot size.
#[derive(Clone, Copy, Debug)]
struct FastSend {
    /// Bit n set: opcode n takes the fast path (sends and RDMA the
    /// transport allows; none when a slot cannot hold one SGE).
    ops: u32,
    /// Inline bytes the fast path copies: max_inline_data, within the slot.
    max_inline: u32,
    /// The port's max_msg_sz, u32::MAX when unknown (no limit).
    max_msg: u32,
    ud: bool,
}

/// Opcodes whose union arm is the rdma one (remote address and rkey).
const RDMA_OPS: u32 = (1 << op::IBV_WR_RDMA_WRITE) | (1 << op::IBV_WR_RDMA_WRITE_WITH_IMM) | (1 << op::IBV_WR_RDMA_READ);
/// Opcodes the fast path can take at all.
const FAST_OPS: u32 = RDMA_OPS | (1 << op::IBV_WR_SEND) | (1 << op::IBV_WR_SEND_WITH_IMM);

impl FastSend {
    fn new(l: &SendLimits, slot_size: usize) -> FastSend {
        let room = slot_size.saturating_sub(wqe::SEND_HEADER);
        let ops = if l.max_sge >= 1 && room >= size_of::<ibv_sge>() {
            (0..32).filter(|&o| FAST_OPS & (1 << o) != 0 && wqe::opcode_allowed(o, l.qp_type)).fold(0, |m, o| m | 1 << o)
        } else {
            0
        };
        FastSend {
            ops,
            max_inline: l.max_inline.min(u32::try_from(room).unwrap_or(u32::MAX)),
            max_msg: if l.max_msg == 0 { u32::MAX } else { l.max_msg },
            ud: l.qp_type == ibv_qp_type::IBV_QPT_UD,
        }
    }
}

/// The requested capabilities, for refusal messages.
struct CapHint(ibv_qp_cap);

impl fmt::Display for CapHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0;
        write!(
            f,
            " (asked max_send_wr {} max_recv_wr {} max_send_sge {} max_recv_sge {} max_inline_data {}; ibv_devinfo -v shows the device limits)",
            c.max_send_wr, c.max_recv_wr, c.max_send_sge, c.max_recv_sge, c.max_inline_data
        )
    }
}

impl Qp {
    fn base(&self) -> *mut ibv_qp {
        self.raw()
    }

    fn context(&self) -> &Context {
        // SAFETY: a QP's context outlives it and is set before the QP is handed out.
        unsafe { Context::from_raw((*self.base()).context) }
    }

    /// The state libibverbs records on modify_qp, read without tearing.
    fn state(&self) -> u32 {
        // SAFETY: an aligned u32 inside our object that libibverbs updates
        // while other threads may post; read it atomically.
        unsafe { AtomicU32::from_ptr(ptr::addr_of_mut!((*self.base()).state)) }.load(Ordering::Relaxed)
    }

    fn qp_num(&self) -> u32 {
        // SAFETY: set at creation, never changed.
        unsafe { (*self.base()).qp_num }
    }

    /// The extended QP in rdma-core 45+'s layout (44's is its prefix), to
    /// install the send functions before the QP is handed out.
    pub(crate) fn ex45_mut(&mut self) -> &mut ibv_qp_ex_45 {
        &mut self.vqp.get_mut().qp_ex
    }

    /// A QP in RTS over heap rings, for host tests.
    #[cfg(test)]
    pub(crate) fn for_tests(ctx: &Context, sq: Ring, rq: Option<Ring>, limits: SendLimits, max_recv_sge: u32) -> Box<Qp> {
        // SAFETY: all-zero is a valid verbs_qp_45.
        let mut vqp: verbs_qp_45 = unsafe { core::mem::zeroed() };
        // What map_rings checks of the kernel's rings.
        assert!(sq.elem_size() as u64 >= wqe::send_slot_needed(limits.max_sge.max(1), limits.max_inline));
        vqp.qp_ex.v44.qp_base.context = ctx.raw();
        vqp.qp_ex.v44.qp_base.state = ibv_qp_state::IBV_QPS_RTS;
        vqp.qp_ex.v44.qp_base.qp_type = limits.qp_type;
        object::try_box(Qp {
            vqp: UnsafeCell::new(vqp),
            limits,
            fast: FastSend::new(&limits, sq.elem_size()),
            doorbell: PreparedDoorbell::new(0),
            cmd_fd: ctx.cmd_fd(),
            sq: SpinLock::new(SendQueue { ring: sq, ssn: 0, batch: Batch::default() }),
            rq: rq.map(|ring| SpinLock::new(RecvQueue { ring, max_sge: max_recv_sge })),
        })
        .unwrap()
    }

    /// The extended QP, where tests set wr_id as applications do.
    #[cfg(test)]
    pub(crate) fn ex_raw(&self) -> *mut ibv_qp_ex {
        // SAFETY: in bounds of our verbs_qp.
        unsafe { ptr::addr_of_mut!((*self.vqp.get()).qp_ex.v44) }
    }

    #[cfg(test)]
    pub(crate) fn set_state_for_tests(&self, state: u32) {
        // SAFETY: as in state().
        unsafe { AtomicU32::from_ptr(ptr::addr_of_mut!((*self.base()).state)) }.store(state, Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn with_rings<R>(&self, f: impl FnOnce(&Ring, Option<&Ring>) -> R) -> R {
        let sq = self.sq.lock();
        let rq = self.rq.as_ref().map(|l| l.lock());
        f(&sq.ring, rq.as_ref().map(|g| &g.ring))
    }
}

/// What the kernel granted and mapped for a new QP.
struct Granted {
    resp: rxe_create_qp_resp,
    cap: ibv_qp_cap,
    has_srq: bool,
}

/// Maps a new QP's rings and checks each slot holds what the kernel granted.
fn map_rings(ctx: &Context, g: &Granted) -> core::result::Result<(Ring, Option<Ring>), (Errno, &'static str)> {
    let sq = Ring::map(ctx.cmd_fd(), &g.resp.sq_mi).map_err(|e| (e, "mapping the send ring failed"))?;
    // At least one SGE's room: the ibv_wr_set_sge setter writes one whatever
    // max_send_sge is (the kernel's power-of-two slots always have it).
    if (sq.elem_size() as u64) < wqe::send_slot_needed(g.cap.max_send_sge.max(1), g.cap.max_inline_data) {
        return Err((Errno(libc::EINVAL), "send slots are smaller than the granted max_send_sge / max_inline_data need"));
    }
    let rq = if g.has_srq {
        None
    } else {
        let rq = Ring::map(ctx.cmd_fd(), &g.resp.rq_mi).map_err(|e| (e, "mapping the receive ring failed"))?;
        if (rq.elem_size() as u64) < wqe::recv_slot_needed(g.cap.max_recv_sge) {
            return Err((Errno(libc::EINVAL), "receive slots are smaller than the granted max_recv_sge needs"));
        }
        Some(rq)
    };
    Ok((sq, rq))
}

/// The kernel keeps our `ibv_qp` address (async events name it) and
/// libibverbs initializes a mutex inside it, so the QP is built in place: a
/// heap slot whose `verbs_qp` the kernel helper fills first, our fields after.
fn with_new_qp(ctx: &Context, what: &str, create: impl FnOnce(*mut verbs_qp_45) -> Result<Granted>) -> Result<Box<Qp>> {
    let mut slot = object::try_box_uninit::<Qp>()?;
    let p: *mut Qp = slot.as_mut_ptr();
    // The first field; UnsafeCell<verbs_qp_45> has verbs_qp_45's layout.
    let vqp = p.cast::<verbs_qp_45>();
    // SAFETY: vqp points into our allocation; all-zero is a valid verbs_qp_45.
    unsafe { ptr::write_bytes(vqp, 0, 1) };
    let g = create(vqp)?;
    let (sq, rq) = match map_rings(ctx, &g) {
        Ok(rings) => rings,
        Err((e, why)) => {
            log::error!("{}: {what}: {why}: {e}; the QP is destroyed", ctx.name());
            // SAFETY: the kernel QP exists and nothing uses it yet.
            let _ = unsafe { ibv_cmd_destroy_qp(vqp.cast()) };
            return Err(e);
        }
    };
    // SAFETY: vqp was initialized above; the type was filled in by the helper.
    let qp_type = unsafe { (*vqp).qp_ex.v44.qp_base.qp_type };
    let limits = SendLimits { max_sge: g.cap.max_send_sge, max_inline: g.cap.max_inline_data, qp_type, max_msg: ctx.features().max_msg_sz };
    // SAFETY: each write initializes one field of our allocation; with vqp
    // initialized above, the whole Qp is.
    unsafe {
        ptr::addr_of_mut!((*p).limits).write(limits);
        ptr::addr_of_mut!((*p).fast).write(FastSend::new(&limits, sq.elem_size()));
        ptr::addr_of_mut!((*p).doorbell).write(PreparedDoorbell::new((*vqp).qp_ex.v44.qp_base.handle));
        ptr::addr_of_mut!((*p).cmd_fd).write(ctx.cmd_fd());
        ptr::addr_of_mut!((*p).sq).write(SpinLock::new(SendQueue { ring: sq, ssn: 0, batch: Batch::default() }));
        ptr::addr_of_mut!((*p).rq).write(rq.map(|ring| SpinLock::new(RecvQueue { ring, max_sge: g.cap.max_recv_sge })));
    }
    // SAFETY: fully initialized above; MaybeUninit<Qp> has Qp's layout.
    Ok(unsafe { Box::from_raw(Box::into_raw(slot).cast::<Qp>()) })
}

/// `ibv_create_qp`; the caller hands the result out with [`Boxed::leak`].
///
/// # Safety
/// `pd` and `attr` are the application's, valid.
pub(crate) unsafe fn create(ctx: &Context, pd: *mut ibv_pd, attr: *mut ibv_qp_init_attr) -> Result<Box<Qp>> {
    with_new_qp(ctx, "create_qp", |vqp| {
        let mut cmd = LegacyCmd::<ib_uverbs_create_qp> { hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_create_qp_resp, rxe_create_qp_resp>::default();
        // SAFETY: per the contract; the buffers are ours.
        cmd::checked(unsafe {
            ibv_cmd_create_qp(pd, vqp.cast(), attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        })
        // SAFETY: per the contract.
        .inspect_err(|e| log::error!("{}: create_qp: refused with {e}{}", ctx.name(), CapHint(unsafe { (*attr).cap })))?;
        // SAFETY: the helper wrote back the granted capabilities.
        Ok(unsafe { Granted { resp: resp.drv, cap: (*attr).cap, has_srq: !(*attr).srq.is_null() } })
    })
}

/// `ibv_create_qp_ex`; the caller installs the send functions it asked for.
///
/// # Safety
/// `attr` is the application's, valid.
pub(crate) unsafe fn create_ex(ctx: &Context, attr: *mut ibv_qp_init_attr_ex) -> Result<Box<Qp>> {
    // SAFETY: per the contract.
    let a = unsafe { &*attr };
    let refuse = |why: fmt::Arguments<'_>| {
        log::error!("{}: create_qp_ex: {why}", ctx.name());
        Err(Errno(libc::EOPNOTSUPP))
    };
    if a.comp_mask & !SUPPORTED_COMP_MASK != 0 {
        return refuse(format_args!("comp_mask {:#x} has bits rxe does not support ({:#x})", a.comp_mask, a.comp_mask & !SUPPORTED_COMP_MASK));
    }
    if a.comp_mask & ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_CREATE_FLAGS != 0 && a.create_flags != 0 {
        return refuse(format_args!("create_flags {:#x} are not supported by rxe", a.create_flags));
    }
    if a.comp_mask & ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS != 0 {
        let allowed = match a.qp_type {
            ibv_qp_type::IBV_QPT_RC => SUPPORTED_SEND_OPS_RC | NEWER_SEND_OPS_RC,
            ibv_qp_type::IBV_QPT_UC => SUPPORTED_SEND_OPS_UC,
            ibv_qp_type::IBV_QPT_UD => SUPPORTED_SEND_OPS_UD,
            t => return refuse(format_args!("QP type {t} has no send ops on rxe")),
        };
        if a.send_ops_flags & !allowed != 0 {
            return refuse(format_args!(
                "send_ops_flags {:#x} include ops this QP type cannot do on rxe ({:#x})",
                a.send_ops_flags,
                a.send_ops_flags & !allowed
            ));
        }
        if let Some(why) = newer_send_ops_missing(a.send_ops_flags, ctx.features(), crate::abi::imports::flavor().qp_has_wr_flush) {
            return refuse(format_args!("send_ops_flags {:#x}: {why}", a.send_ops_flags));
        }
    }
    with_new_qp(ctx, "create_qp_ex", |vqp| {
        let mut cmd = ExtendedCmd::<ib_uverbs_ex_create_qp> { hdr: Default::default(), ex_hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_ex_create_qp_resp, rxe_create_qp_resp>::default();
        // SAFETY: per the contract; the buffers are ours.
        cmd::checked(unsafe {
            ibv_cmd_create_qp_ex2(ctx.raw(), vqp.cast(), attr, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        })
        // SAFETY: per the contract.
        .inspect_err(|e| log::error!("{}: create_qp_ex: refused with {e}{}", ctx.name(), CapHint(unsafe { (*attr).cap })))?;
        // SAFETY: vqp is ours; the helper wrote back the granted capabilities.
        unsafe {
            // libibverbs' comp_mask moved in v45 (wr_flush); its release's place.
            let comp_mask = vqp.cast::<u8>().add(crate::abi::imports::flavor().qp_comp_mask_offset()).cast::<u32>();
            *comp_mask |= VERBS_QP_EX;
            Ok(Granted { resp: resp.drv, cap: (*attr).cap, has_srq: !(*attr).srq.is_null() })
        }
    })
}

/// `ibv_destroy_qp`; frees ours (unmapping the rings) once the kernel let go.
///
/// # Safety
/// `qp` came from create/create_ex via leak; on success nobody uses it again.
pub(crate) unsafe fn destroy(qp: *mut ibv_qp) -> Result<()> {
    // SAFETY: per the contract.
    unsafe { object::destroy::<Qp>(qp, |q| cmd::checked(ibv_cmd_destroy_qp(q.raw()))) }
}

/// Whether a post was cut short by a full send queue. The doorbell rings
/// then even when nothing was posted, as librxe rings after every
/// post_send: the kernel works through the queue from this thread's system
/// call, where posters spinning on a full queue without one would leave it
/// to the kernel's own threads, which they crowd out on a busy machine.
#[inline(always)]
fn queue_full<W>(refused: &Option<(Refusal, *mut W)>) -> bool {
    matches!(refused, Some((Refusal::QueueFull { .. }, _)))
}

fn state_allows_send(state: u32) -> bool {
    !matches!(state, ibv_qp_state::IBV_QPS_RESET | ibv_qp_state::IBV_QPS_INIT | ibv_qp_state::IBV_QPS_RTR)
}

/// An opcode of the extended send API, with its operands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SendOp {
    Send,
    SendImm(u32),
    SendInv(u32),
    RdmaWrite { rkey: u32, addr: u64 },
    RdmaWriteImm { rkey: u32, addr: u64, imm: u32 },
    RdmaRead { rkey: u32, addr: u64 },
    CmpSwp { rkey: u32, addr: u64, compare: u64, swap: u64 },
    FetchAdd { rkey: u32, addr: u64, add: u64 },
    LocalInv(u32),
    BindMw { mw: *mut ibv_mw, rkey: u32, info: *const ibv_mw_bind_info },
    /// 8 bytes at `data` written to the remote address as one unit.
    AtomicWrite { rkey: u32, addr: u64, data: *const u8 },
    Flush { rkey: u32, addr: u64, len: usize, ptype: u8, level: u8 },
}

impl SendOp {
    fn opcode(&self) -> u32 {
        match self {
            SendOp::Send => op::IBV_WR_SEND,
            SendOp::SendImm(_) => op::IBV_WR_SEND_WITH_IMM,
            SendOp::SendInv(_) => op::IBV_WR_SEND_WITH_INV,
            SendOp::RdmaWrite { .. } => op::IBV_WR_RDMA_WRITE,
            SendOp::RdmaWriteImm { .. } => op::IBV_WR_RDMA_WRITE_WITH_IMM,
            SendOp::RdmaRead { .. } => op::IBV_WR_RDMA_READ,
            SendOp::CmpSwp { .. } => op::IBV_WR_ATOMIC_CMP_AND_SWP,
            SendOp::FetchAdd { .. } => op::IBV_WR_ATOMIC_FETCH_AND_ADD,
            SendOp::LocalInv(_) => op::IBV_WR_LOCAL_INV,
            SendOp::BindMw { .. } => op::IBV_WR_BIND_MW,
            SendOp::AtomicWrite { .. } => newer_kernels::WR_ATOMIC_WRITE,
            SendOp::Flush { .. } => newer_kernels::WR_FLUSH,
        }
    }
}

impl SendOp {
    /// Writes the operands the opcode carries in the WQE (immediate, rkey to
    /// invalidate, remote address, atomic operands), for every builder path.
    /// FLUSH's length is not among them: its caller reads it and writes it.
    #[inline(always)]
    fn write_operands(self, w: &mut rxe_send_wqe) {
        match self {
            SendOp::Send | SendOp::BindMw { .. } | SendOp::Flush { .. } => {}
            SendOp::SendImm(imm) => w.wr.ex.imm_data = imm,
            SendOp::SendInv(rkey) | SendOp::LocalInv(rkey) => w.wr.ex.invalidate_rkey = rkey,
            SendOp::RdmaWrite { rkey, addr } | SendOp::RdmaRead { rkey, addr } | SendOp::AtomicWrite { rkey, addr, .. } => {
                wqe::set_rdma(w, rkey, addr)
            }
            SendOp::RdmaWriteImm { rkey, addr, imm } => {
                wqe::set_rdma(w, rkey, addr);
                w.wr.ex.imm_data = imm;
            }
            SendOp::CmpSwp { rkey, addr, compare, swap } => wqe::set_atomic(w, rkey, addr, compare, swap),
            SendOp::FetchAdd { rkey, addr, add } => wqe::set_atomic(w, rkey, addr, add, 0),
        }
    }
}

/// A WR the fast path takes: its one SGE, and its address on a UD QP.
#[derive(Clone, Copy)]
struct FastOne {
    sge: ibv_sge,
    inline: bool,
    arm: [u64; 4],
    iova: u64,
}

/// The WR as the fast path writes it, or None when it needs the general
/// checks: exactly when all of them would pass (see [`FastSend`]).
///
/// # Safety
/// The WR's pointers follow the verbs API's contract.
#[inline(always)]
unsafe fn fast_one(fast: &FastSend, w: &ibv_send_wr) -> Option<FastOne> {
    let opcode = w.opcode;
    if w.num_sge != 1 || w.sg_list.is_null() || opcode >= 32 || fast.ops & (1 << opcode) == 0 {
        return None;
    }
    // SAFETY: one entry at a non-null sg_list, per the contract.
    let sge = unsafe { *w.sg_list };
    let inline = w.send_flags & ibv_send_flags::IBV_SEND_INLINE != 0;
    if sge.length > fast.max_msg || (inline && sge.length > fast.max_inline) {
        return None;
    }
    let (arm, iova) = if fast.ud {
        // SAFETY: a UD send's union holds its address (only sends are fast on UD).
        let ud = unsafe { w.wr.ud };
        if ud.ah.is_null() {
            return None;
        }
        // SAFETY: an AH from our create_ah, per the contract.
        let ah_num = unsafe { Ah::from_raw(ud.ah) }.ah_num();
        (wqe::Header::ud_arm(UdAddress { remote_qpn: ud.remote_qpn, remote_qkey: ud.remote_qkey, ah_num }), 0)
    } else if RDMA_OPS & (1 << opcode) != 0 {
        // SAFETY: the rdma arm of the union the opcode selects (plain integers).
        let r = unsafe { w.wr.rdma };
        (wqe::Header::rdma_arm(r.rkey, r.remote_addr), r.remote_addr)
    } else {
        ([0; 4], 0)
    };
    Some(FastOne { sge, inline, arm, iova })
}

/// The longest inline data [`Qp::try_post_one`] copies itself; longer goes
/// through the general path's memcpy.
const INLINE_IN_LINE: u32 = 64;

/// Copies `len` (at most [`INLINE_IN_LINE`]) bytes with a few overlapping
/// loads and stores instead of a call to memcpy, whose call would make the
/// one-WR post keep a stack frame.
///
/// # Safety
/// `len` bytes are readable at `src` and writable at `dst`; the two do not
/// overlap.
#[inline(always)]
unsafe fn copy_short(dst: *mut u8, src: *const u8, len: usize) {
    debug_assert!(len <= INLINE_IN_LINE as usize);
    // SAFETY: every access below lies within [0, len) of both buffers:
    // each range starts at 0 or ends at len, and len is at least its size.
    unsafe {
        /// # Safety
        /// `at..at + size_of::<T>()` lies within both buffers.
        unsafe fn mv<T: Copy>(dst: *mut u8, src: *const u8, at: usize) {
            // SAFETY: per the contract.
            unsafe { dst.add(at).cast::<T>().write_unaligned(src.add(at).cast::<T>().read_unaligned()) }
        }
        if len >= 16 {
            mv::<u128>(dst, src, 0);
            if len > 32 {
                mv::<u128>(dst, src, 16);
                mv::<u128>(dst, src, len - 32);
            }
            mv::<u128>(dst, src, len - 16);
        } else if len >= 8 {
            mv::<u64>(dst, src, 0);
            mv::<u64>(dst, src, len - 8);
        } else if len >= 4 {
            mv::<u32>(dst, src, 0);
            mv::<u32>(dst, src, len - 4);
        } else if len > 0 {
            mv::<u8>(dst, src, 0);
            mv::<u8>(dst, src, len / 2);
            mv::<u8>(dst, src, len - 1);
        }
    }
}

/// Writes a fast-path WR into a send slot; inline data with [`copy_short`]
/// if `SHORT` (the caller checked the length), else with memcpy.
///
/// # Safety
/// `slot` is a reserved send slot with room for the header and one SGE, or
/// for `one.sge.length` inline bytes, which are readable at its address.
#[inline(always)]
unsafe fn write_fast<const SHORT: bool>(slot: *mut u8, w: &ibv_send_wr, one: FastOne, ssn: u32) {
    let h = wqe::Header {
        wr_id: w.wr_id,
        opcode: w.opcode,
        send_flags: w.send_flags,
        // SAFETY: imm_data and invalidate_rkey share plain u32 bits; librxe
        // copies them for every opcode too (the kernel reads them by opcode).
        ex: unsafe { w.__bindgen_anon_1.imm_data },
        arm: one.arm,
        iova: one.iova,
        ssn,
        length: one.sge.length,
        num_sge: 1,
    };
    // SAFETY: per the contract.
    unsafe {
        wqe::write_header(slot, &h);
        if one.inline {
            let src = one.sge.addr as usize as *const u8;
            if SHORT {
                copy_short(slot.add(wqe::SEND_HEADER), src, one.sge.length as usize);
            } else if one.sge.length != 0 {
                ptr::copy_nonoverlapping(src, slot.add(wqe::SEND_HEADER), one.sge.length as usize);
            }
        } else {
            wqe::write_first_sge(slot, one.sge);
        }
    }
}

impl SendOp {
    /// The header words of the opcodes built without checks: the `ex`
    /// word, the union arm and iova (as `write_operands` sets them).
    #[inline(always)]
    fn header_parts(self) -> (u32, [u64; 4], u64) {
        use wqe::Header as H;
        match self {
            SendOp::Send => (0, [0; 4], 0),
            SendOp::SendImm(imm) => (imm, [0; 4], 0),
            SendOp::SendInv(rkey) | SendOp::LocalInv(rkey) => (rkey, [0; 4], 0),
            SendOp::RdmaWrite { rkey, addr } | SendOp::RdmaRead { rkey, addr } => (0, H::rdma_arm(rkey, addr), addr),
            SendOp::RdmaWriteImm { rkey, addr, imm } => (imm, H::rdma_arm(rkey, addr), addr),
            SendOp::CmpSwp { rkey, addr, compare, swap } => (0, H::atomic_arm(rkey, addr, compare, swap), addr),
            SendOp::FetchAdd { rkey, addr, add } => (0, H::atomic_arm(rkey, addr, add, 0), addr),
            // wr_build sends these to wr_build_checked.
            SendOp::BindMw { .. } | SendOp::AtomicWrite { .. } | SendOp::Flush { .. } => unreachable!("checked builder"),
        }
    }
}

/// What a builder read from its C arguments beyond the opcode's operands.
#[derive(Clone, Copy)]
enum Extra {
    None,
    AtomicWrite([u8; newer_kernels::ATOMIC_WRITE_LEN]),
    FlushLength(u32),
}

/// A setter of the extended send API, applied to the last WQE built.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload {
    UdAddr { ah: *mut ibv_ah, remote_qpn: u32, remote_qkey: u32 },
    Sge { lkey: u32, addr: u64, length: u32 },
    SgeList { list: *const ibv_sge, count: usize },
    Inline { bufs: *const ibv_data_buf, count: usize },
}

impl Payload {
    /// # Safety
    /// The pointers follow the verbs API's contract (lists of `count`
    /// entries when non-null, an AH from our create_ah).
    #[inline(always)]
    unsafe fn apply(self, slot: &mut [u8], lim: &SendLimits) -> Result<()> {
        match self {
            Payload::UdAddr { ah, remote_qpn, remote_qkey } => {
                if ah.is_null() {
                    return Err(Errno(libc::EINVAL));
                }
                // SAFETY: an AH from our create_ah, per the contract.
                let ah_num = unsafe { Ah::from_raw(ah) }.ah_num();
                wqe::set_ud(wqe::send_wqe(slot), UdAddress { remote_qpn, remote_qkey, ah_num });
                Ok(())
            }
            Payload::Sge { lkey, addr, length } => {
                wqe::check_message_length(length, lim).map_err(Refusal::errno)?;
                wqe::set_sge(slot, lkey, addr, length);
                Ok(())
            }
            Payload::SgeList { list, count } => {
                if count > lim.max_sge as usize {
                    return Err(Errno(libc::ENOSPC));
                }
                let sges = match (count, list.is_null()) {
                    (0, _) => &[][..],
                    (_, true) => return Err(Errno(libc::EINVAL)),
                    // SAFETY: count entries, per the contract.
                    _ => unsafe { core::slice::from_raw_parts(list, count) },
                };
                wqe::set_sge_list(slot, sges, lim)
            }
            Payload::Inline { bufs, count } => {
                let bufs = match (count, bufs.is_null()) {
                    (0, _) => &[][..],
                    (_, true) => return Err(Errno(libc::EINVAL)),
                    // SAFETY: count entries, per the contract.
                    _ => unsafe { core::slice::from_raw_parts(bufs, count) },
                };
                // SAFETY: buffers readable per the contract.
                unsafe { wqe::set_inline(slot, bufs, lim) }
            }
        }
    }
}

impl Qp {
    /// Logs a refused post; called with no queue lock held.
    fn log_refusal(&self, verb: &str, wr_id: Option<u64>, r: Refusal) {
        let level = if matches!(r, Refusal::QueueFull { .. }) { log::Level::Warn } else { log::Level::Error };
        match wr_id {
            Some(id) => log::log!(target: crate::log::HOT, level, "{}: {verb}: QP {:#x} wr_id {id:#x} refused with {}: {r}", self.context().name(), self.qp_num(), r.errno().name()),
            None => log::log!(target: crate::log::HOT, level, "{}: {verb}: QP {:#x} refused with {}: {r}", self.context().name(), self.qp_num(), r.errno().name()),
        }
    }

    /// Tells the kernel new send WQEs are waiting: a POST_SEND with no WRs.
    #[inline(always)]
    pub(crate) fn doorbell(&self) -> Result<()> {
        match self.doorbell.ring(self.cmd_fd, &self.context().doorbell_via_ioctl) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.doorbell_refused(e)),
        }
    }

    #[cold]
    #[inline(never)]
    fn doorbell_refused(&self, e: Errno) -> Errno {
        log::error!(target: crate::log::HOT, "{}: send doorbell of QP {:#x} refused with {e}", self.context().name(), self.qp_num());
        e
    }

    /// `ibv_post_send`: every WR before the first bad one is posted, the bad
    /// one and the rest are not; one doorbell for the lot.
    ///
    /// # Safety
    /// `wr` is the application's valid WR list (the verbs API's contract).
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) unsafe fn post_send(&self, wr: *mut ibv_send_wr) -> core::result::Result<(), PostError<ibv_send_wr>> {
        if wr.is_null() {
            return Err(PostError { errno: Errno(libc::EINVAL), bad: ptr::null_mut() });
        }
        let state = self.state();
        if !state_allows_send(state) {
            // SAFETY: a valid WR per the contract.
            self.log_refusal("post_send", Some(unsafe { (*wr).wr_id }), Refusal::QpState(state));
            return Err(PostError { errno: Errno(libc::EINVAL), bad: wr });
        }
        let (refused, posted) = {
            let mut sq = self.sq.lock();
            let SendQueue { ring, ssn, .. } = &mut *sq;
            let slots = ring.mask();
            // SAFETY: the send lock makes us the ring's only producer.
            let mut producer = unsafe { Producer::new(ring) };
            // SAFETY: forwarded contract.
            let refused = unsafe { self.fill(&mut producer, slots, ssn, wr) };
            (refused, producer.any())
            // The producer publishes, then the lock drops.
        };
        if let Some((r, bad)) = refused {
            // SAFETY: bad is a WR of the application's list.
            self.log_refusal("post_send", Some(unsafe { (*bad).wr_id }), r);
        }
        if posted || queue_full(&refused) {
            self.doorbell().map_err(|errno| PostError { errno, bad: ptr::null_mut() })?;
        }
        match refused {
            Some((r, bad)) => Err(PostError { errno: r.errno(), bad }),
            None => Ok(()),
        }
    }

    /// `ibv_post_send` when no slow path is wanted (`valgrind::slow_path()`
    /// false): WRs the QP's [`FastSend`] takes are written with fixed-offset
    /// stores; from the first other one on, the list goes through the
    /// general checks ([`Qp::fill`]) under the same lock hold. Refusals,
    /// their logging and the doorbell are as in [`Qp::post_send`].
    ///
    /// # Safety
    /// As for [`Qp::post_send`].
    #[inline(always)]
    pub(crate) unsafe fn post_send_fast(&self, wr: *mut ibv_send_wr) -> core::result::Result<(), PostError<ibv_send_wr>> {
        if wr.is_null() || !state_allows_send(self.state()) {
            // SAFETY: forwarded contract; refuses without posting.
            return unsafe { self.post_send_cold(wr) };
        }
        let (refused, posted) = {
            let mut sq = self.sq.lock_fast();
            let q = &mut *sq;
            let ring = &q.ring;
            let mask = ring.mask();
            // The ring position in locals (registers), not in a Producer:
            // one is made only if a WR needs the general path.
            let start = ring.producer_index();
            let mut prod = start;
            let mut cons = ring.consumer_index_acquire();
            let mut ssn = q.ssn;
            let fast = &self.fast;
            let mut wr = wr;
            let refused = loop {
                // SAFETY: a valid WR per the contract.
                let w = unsafe { &*wr };
                // SAFETY: the WR's pointers follow the contract.
                let Some(one) = (unsafe { fast_one(fast, w) }) else {
                    // SAFETY: the lock makes us the only producer, and the
                    // position is ours, unpublished.
                    let mut p = unsafe { Producer::resume(ring, ProducerState { start, prod, cons }) };
                    // SAFETY: forwarded contract.
                    let r = unsafe { self.fill_general(&mut p, &mut ssn, wr) };
                    prod = p.park().prod;
                    break r;
                };
                let next = next_index(prod, mask);
                if next == cons {
                    cons = ring.consumer_index_acquire();
                    if next == cons {
                        break Some((Refusal::QueueFull { slots: mask }, wr));
                    }
                }
                // SAFETY: slot `prod` is free (checked just above) and ours
                // under the lock; FastSend::new measured the ring's slots:
                // each holds the header and one SGE or max_inline bytes. An
                // inline source is readable per the contract.
                unsafe { write_fast::<false>(ring.slot_raw(prod), w, one, ssn) };
                prod = next;
                ssn = ssn.wrapping_add(1);
                wr = w.next;
                if wr.is_null() {
                    break None;
                }
            };
            q.ssn = ssn;
            if prod != start {
                ring.publish(prod);
            }
            (refused, prod != start)
            // The lock drops here, after the publication.
        };
        if posted || queue_full(&refused) {
            self.doorbell().map_err(|errno| PostError { errno, bad: ptr::null_mut() })?;
        }
        match refused {
            None => Ok(()),
            Some((r, bad)) => Err(self.post_send_refused(r, bad)),
        }
    }

    /// The usual `ibv_post_send`, one WR the fast path takes, written and
    /// published with no call and no stack frame: true when it was, and the
    /// caller then rings the doorbell; false, having done nothing, for
    /// everything else (a list, a WR needing the general checks, inline
    /// data longer than [`INLINE_IN_LINE`], a busy lock, a full queue, a
    /// refusing state), which [`Qp::post_send_fast`] then takes whole.
    ///
    /// # Safety
    /// As for [`Qp::post_send`].
    #[inline(always)]
    pub(crate) unsafe fn try_post_one(&self, wr: *mut ibv_send_wr) -> bool {
        if wr.is_null() || !state_allows_send(self.state()) {
            return false;
        }
        // SAFETY: a valid WR per the contract.
        let w = unsafe { &*wr };
        if !w.next.is_null() {
            return false;
        }
        // The lock and the free slot first: the WR is then read and written
        // in one go, with few values held in registers at once.
        let Some(mut sq) = self.sq.try_lock_fast() else {
            return false;
        };
        let q = &mut *sq;
        let prod = q.ring.producer_index();
        let next = next_index(prod, q.ring.mask());
        if next == q.ring.consumer_index_acquire() {
            return false;
        }
        // SAFETY: the WR's pointers follow the contract.
        let Some(one) = (unsafe { fast_one(&self.fast, w) }) else {
            return false;
        };
        if one.inline && one.sge.length > INLINE_IN_LINE {
            return false;
        }
        // SAFETY: slot `prod` is free (checked above) and ours under the
        // lock; FastSend::new measured the ring's slots: each holds the
        // header and one SGE or max_inline bytes (at least the length, as
        // fast_one checked, and at most INLINE_IN_LINE, checked above). An
        // inline source is readable per the contract.
        unsafe { write_fast::<true>(q.ring.slot_raw(prod), w, one, q.ssn) };
        q.ssn = q.ssn.wrapping_add(1);
        q.ring.publish(next);
        true
        // The lock drops here, after the publication.
    }

    /// Rings the send doorbell after [`Qp::try_post_one`] published, the
    /// usual way only: false if that did not take, and then
    /// [`Qp::doorbell`] rings with the fallback and says why.
    #[inline(always)]
    pub(crate) fn try_send_doorbell(&self) -> bool {
        self.doorbell.try_write(self.cmd_fd, &self.context().doorbell_via_ioctl)
    }

    /// post_send's refusals before the lock: a null list, or a state that
    /// allows no sends.
    ///
    /// # Safety
    /// As for [`Qp::post_send`].
    #[cold]
    #[inline(never)]
    unsafe fn post_send_cold(&self, wr: *mut ibv_send_wr) -> core::result::Result<(), PostError<ibv_send_wr>> {
        // SAFETY: forwarded contract; with a null list or a refusing state
        // it returns before the lock.
        unsafe { self.post_send(wr) }
    }

    /// Logs a refused WR of post_send (the lock is dropped) and makes the error.
    #[cold]
    #[inline(never)]
    fn post_send_refused(&self, r: Refusal, bad: *mut ibv_send_wr) -> PostError<ibv_send_wr> {
        // SAFETY: bad is a WR of the application's list.
        self.log_refusal("post_send", Some(unsafe { (*bad).wr_id }), r);
        PostError { errno: r.errno(), bad }
    }

    /// [`Qp::fill`] out of line, for the fast path's rare WRs.
    ///
    /// # Safety
    /// As for [`Qp::fill`].
    #[inline(never)]
    unsafe fn fill_general(&self, producer: &mut Producer<'_>, ssn: &mut u32, wr: *mut ibv_send_wr) -> Option<(Refusal, *mut ibv_send_wr)> {
        let slots = self.fast_slots(producer);
        // SAFETY: forwarded contract.
        unsafe { self.fill(producer, slots, ssn, wr) }
    }

    fn fast_slots(&self, p: &Producer<'_>) -> u32 {
        p.ring_mask()
    }

    /// Checks and writes WRs until the list ends or one is refused.
    ///
    /// # Safety
    /// As for [`Qp::post_send`].
    #[inline(always)]
    unsafe fn fill(&self, producer: &mut Producer<'_>, slots: u32, ssn: &mut u32, mut wr: *mut ibv_send_wr) -> Option<(Refusal, *mut ibv_send_wr)> {
        while !wr.is_null() {
            // SAFETY: a valid WR per the contract.
            let w = unsafe { &*wr };
            // SAFETY: the WR's pointers follow the contract.
            let checked = match unsafe { wqe::check_send(w, &self.limits) } {
                Ok(c) => c,
                Err(r) => return Some((r, wr)),
            };
            let ud = if self.limits.qp_type == ibv_qp_type::IBV_QPT_UD {
                // SAFETY: a UD send's union holds its address (check_send allowed only sends).
                let ud = unsafe { w.wr.ud };
                if ud.ah.is_null() {
                    return Some((Refusal::UdWithoutAh, wr));
                }
                // SAFETY: an AH from our create_ah, per the contract.
                let ah_num = unsafe { Ah::from_raw(ud.ah) }.ah_num();
                Some(UdAddress { remote_qpn: ud.remote_qpn, remote_qkey: ud.remote_qkey, ah_num })
            } else {
                None
            };
            let Some(slot) = producer.reserve() else {
                return Some((Refusal::QueueFull { slots }, wr));
            };
            // SAFETY: inline addresses readable per the contract.
            unsafe { wqe::write_send(slot, w, &checked, ud, *ssn) };
            producer.commit();
            *ssn = ssn.wrapping_add(1);
            wr = w.next;
        }
        None
    }

    /// `ibv_post_recv`.
    ///
    /// # Safety
    /// `wr` is the application's valid WR list.
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    /// `FAST`: the lock without helgrind's annotations (the caller checked
    /// `valgrind::slow_path()`).
    pub(crate) unsafe fn post_recv<const FAST: bool>(&self, wr: *mut ibv_recv_wr) -> core::result::Result<(), PostError<ibv_recv_wr>> {
        if FAST {
            // One WR with one SGE, the usual post, with nothing out of line:
            // the entry then needs no stack frame. Anything else, or a
            // refusal, goes through the general path, which checks again.
            if let Some(rq) = self.rq.as_ref() {
                // SAFETY: a valid WR when non-null, per the contract.
                if !wr.is_null() && unsafe { (*wr).next.is_null() } && self.state() != ibv_qp_state::IBV_QPS_RESET {
                    // SAFETY: as above.
                    if unsafe { rq.lock_fast().post_single(&*wr) } {
                        return Ok(());
                    }
                }
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.post_recv_general::<FAST>(wr) }
    }

    /// [`Qp::post_recv`] for lists, refusals and the slow path.
    ///
    /// # Safety
    /// As for [`Qp::post_recv`].
    #[inline(never)]
    unsafe fn post_recv_general<const FAST: bool>(&self, wr: *mut ibv_recv_wr) -> core::result::Result<(), PostError<ibv_recv_wr>> {
        let Some(rq) = self.rq.as_ref() else {
            self.log_refusal("post_recv", None, Refusal::RecvThroughSrq);
            return Err(PostError { errno: Errno(libc::EINVAL), bad: wr });
        };
        if wr.is_null() {
            return Err(PostError { errno: Errno(libc::EINVAL), bad: ptr::null_mut() });
        }
        // IBA C10-97.2.1: no receives in RESET.
        if self.state() == ibv_qp_state::IBV_QPS_RESET {
            self.log_refusal("post_recv", None, Refusal::RecvInReset);
            return Err(PostError { errno: Errno(libc::EINVAL), bad: wr });
        }
        // SAFETY: forwarded contract; the guard drops before we log.
        let res = unsafe { if FAST { rq.lock_fast().post(wr) } else { rq.lock().post(wr) } };
        res.map_err(|(r, bad)| {
            // SAFETY: bad is a WR of the application's list.
            self.log_refusal("post_recv", Some(unsafe { (*bad).wr_id }), r);
            PostError { errno: r.errno(), bad }
        })
    }

    /// `ibv_bind_mw` (type 1): a BIND_MW work request through post_send; on
    /// success the window takes the new rkey, as in librxe.
    ///
    /// # Safety
    /// `mw` is a window from our alloc_mw; the bind's MR, when non-null, is live.
    pub(crate) unsafe fn bind_mw(&self, mw: *mut ibv_mw, bind: &ibv_mw_bind) -> Result<()> {
        if bind.bind_info.mw_access_flags & ibv_access_flags::IBV_ACCESS_ZERO_BASED != 0 {
            log::error!("{}: bind_mw: zero-based memory windows are not supported by rxe", self.context().name());
            return Err(Errno(libc::EINVAL));
        }
        // SAFETY: per the contract.
        let window = unsafe { Mw::from_raw(mw) };
        let rkey = next_rkey(window.rkey());
        // SAFETY: all-zero is a valid ibv_send_wr (null pointers, zero counts).
        let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
        wr.opcode = op::IBV_WR_BIND_MW;
        wr.wr_id = bind.wr_id;
        wr.send_flags = bind.send_flags;
        wr.__bindgen_anon_2.bind_mw = ibv_send_wr__bindgen_ty_4__bindgen_ty_1 { mw, rkey, bind_info: bind.bind_info };
        // SAFETY: a one-WR list on our stack; its pointers are the caller's.
        unsafe { self.post_send(&mut wr) }.map_err(|e| e.errno)?;
        // If the bind fails in the completion, the application undoes this.
        window.set_rkey(rkey);
        Ok(())
    }

    /// `ibv_query_qp`.
    pub(crate) fn query(&self, attr: *mut ibv_qp_attr, mask: c_int, init_attr: *mut ibv_qp_init_attr) -> Result<()> {
        let mut cmd = MaybeUninit::<LegacyCmd<ib_uverbs_query_qp>>::zeroed();
        // SAFETY: the application's buffers (libibverbs checked them); ours for cmd.
        cmd::checked(unsafe { ibv_cmd_query_qp(self.raw(), attr, mask, init_attr, cmd.as_mut_ptr().cast(), size_of_val(&cmd)) })
    }

    /// `ibv_modify_qp`.
    pub(crate) fn modify(&self, attr: *mut ibv_qp_attr, mask: c_int) -> Result<()> {
        let mut cmd = MaybeUninit::<LegacyCmd<ib_uverbs_modify_qp>>::zeroed();
        // SAFETY: as above.
        cmd::checked(unsafe { ibv_cmd_modify_qp(self.raw(), attr, mask, cmd.as_mut_ptr().cast(), size_of_val(&cmd)) }).inspect_err(|e| {
            log::error!("{}: modify_qp: QP {:#x} attr_mask {mask:#x} refused with {e}", self.context().name(), self.qp_num())
        })
    }
}

/// The extended send API (ibv_wr_*). C drives one batch across several
/// calls: wr_start locks the send queue and parks the lock, each builder or
/// setter resumes it, wr_complete publishes and rings once, wr_abort drops
/// the batch. Hence these are unsafe: the pairing is the caller's to keep.
impl Qp {
    /// `ibv_wr_start`.
    ///
    /// # Safety
    /// This thread must end the batch with [`Qp::wr_complete`] or
    /// [`Qp::wr_abort`] before it posts to this QP's send queue otherwise.
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) unsafe fn wr_start(&self) {
        if crate::valgrind::active() || !self.sq.try_lock_parked() {
            return self.wr_start_waiting();
        }
        // SAFETY: the lock was just taken and parked on this thread.
        Self::open_batch(unsafe { self.sq.held() });
    }

    /// wr_start when the lock is contended or helgrind watches: out of
    /// line and unable to unwind, so that the entry needs no frame.
    #[cold]
    #[inline(never)]
    extern "C" fn wr_start_waiting(&self) {
        let mut sq = self.sq.lock();
        Self::open_batch(&mut sq);
        sq.park();
    }

    #[inline(always)]
    fn open_batch(q: &mut SendQueue) {
        let prod = q.ring.producer_index();
        // Read afresh: post_send may have moved the producer since.
        let cons = q.ring.consumer_index_acquire();
        q.batch = Batch { producer: ProducerState { start: prod, prod, cons }, err: 0, last: None };
    }

    /// Runs `f` on the open batch.
    ///
    /// # Safety
    /// Between [`Qp::wr_start`] and the batch's end, on the same thread.
    #[inline(always)]
    unsafe fn in_batch<R>(&self, f: impl FnOnce(&mut Producer<'_>, &mut u32, &mut Batch) -> R) -> R {
        // SAFETY: per the contract, wr_start parked the lock on this thread.
        let mut sq = unsafe { self.sq.resume() };
        let SendQueue { ring, ssn, batch } = &mut *sq;
        // SAFETY: we hold the lock; the position is this batch's.
        let mut producer = unsafe { Producer::resume(ring, batch.producer) };
        let r = f(&mut producer, ssn, batch);
        batch.producer = producer.park();
        sq.park();
        r
    }

    /// The `ibv_wr_<opcode>` builders: a new WQE from the QP's wr_id and wr_flags.
    ///
    /// # Safety
    /// As for `in_batch`; a BindMw's pointers follow the verbs contract.
    // Inlined into each builder: its opcode's matches fold away, and the
    // opcodes with operands to read and check go out of line.
    #[inline(always)]
    pub(crate) unsafe fn wr_build(&self, send_op: SendOp) {
        if matches!(send_op, SendOp::BindMw { .. } | SendOp::AtomicWrite { .. } | SendOp::Flush { .. }) {
            // SAFETY: forwarded contract.
            return unsafe { self.wr_build_checked(send_op) };
        }
        // SAFETY: the application sets these fields before each builder; we read them.
        let (wr_id, flags) = unsafe { ((*self.vqp.get()).qp_ex.v44.wr_id, (*self.vqp.get()).qp_ex.v44.wr_flags) };
        // No guard is made: the builder is a few loads and stores on the
        // batch wr_start opened.
        // SAFETY: per the contract, wr_start parked the lock on this thread;
        // the reference ends with this call.
        let q = unsafe { self.sq.held() };
        if q.batch.err != 0 {
            return;
        }
        let Some(index) = q.batch.producer.reserve_index(&q.ring) else {
            q.batch.err = libc::ENOSPC;
            return;
        };
        let (ex, arm, iova) = send_op.header_parts();
        let h = wqe::Header { wr_id, opcode: send_op.opcode(), send_flags: flags, ex, arm, iova, ssn: q.ssn, length: 0, num_sge: 0 };
        let slot = q.ring.slot_raw(index);
        // SAFETY: slot `index` is free (reserve_index) and ours under the
        // lock; every slot holds a header (map_rings).
        unsafe { wqe::write_header(slot, &h) };
        q.batch.last = NonNull::new(slot);
        q.batch.producer.prod = next_index(index, q.ring.mask());
        q.ssn = q.ssn.wrapping_add(1);
    }

    /// The builders whose operands come by pointer or need checks (BIND_MW,
    /// ATOMIC WRITE, FLUSH); any opcode is built right here too.
    ///
    /// # Safety
    /// As for [`Qp::wr_build`].
    #[inline(never)]
    unsafe fn wr_build_checked(&self, send_op: SendOp) {
        // SAFETY: the application sets these fields before each builder; we read them.
        let (wr_id, flags) = unsafe { ((*self.vqp.get()).qp_ex.v44.wr_id, (*self.vqp.get()).qp_ex.v44.wr_flags) };
        let bind = match send_op {
            SendOp::BindMw { mw, rkey, info } if !info.is_null() => {
                // SAFETY: per the contract.
                unsafe { MwBind::from_verbs(mw, rkey, &*info) }.map(Some)
            }
            SendOp::BindMw { .. } => Err(Refusal::BindMwNoWindow),
            _ => Ok(None),
        };
        // The operands C hands over by pointer or as size_t, read and checked
        // before the batch is touched.
        let extra = match send_op {
            SendOp::AtomicWrite { data, .. } if data.is_null() => Err(Errno(libc::EINVAL)),
            SendOp::AtomicWrite { data, .. } => {
                let mut bytes = [0u8; newer_kernels::ATOMIC_WRITE_LEN];
                // SAFETY: the verbs contract: 8 readable bytes at data.
                unsafe { ptr::copy_nonoverlapping(data, bytes.as_mut_ptr(), bytes.len()) };
                Ok(Extra::AtomicWrite(bytes))
            }
            SendOp::Flush { len, .. } => u32::try_from(len).map(Extra::FlushLength).map_err(|_| Errno(libc::EINVAL)),
            _ => Ok(Extra::None),
        };
        // SAFETY: per the contract.
        unsafe {
            self.in_batch(|p, ssn, b| {
                if b.err != 0 {
                    return;
                }
                let bind = match bind {
                    Ok(b) => b,
                    Err(r) => {
                        b.err = r.errno().0;
                        return;
                    }
                };
                let extra = match extra {
                    Ok(x) => x,
                    Err(e) => {
                        b.err = e.0;
                        return;
                    }
                };
                let Some(slot) = p.reserve() else {
                    b.err = libc::ENOSPC;
                    return;
                };
                let w = wqe::start_send(slot, wr_id, send_op.opcode(), flags, *ssn);
                send_op.write_operands(w);
                if let SendOp::Flush { rkey, addr, ptype, level, .. } = send_op {
                    let length = match extra {
                        Extra::FlushLength(l) => l,
                        _ => 0,
                    };
                    wqe::set_flush(w, rkey, addr, length, ptype, level);
                }
                if let Some(b) = &bind {
                    wqe::set_bind(w, b);
                }
                if let Extra::AtomicWrite(bytes) = extra {
                    if wqe::set_atomic_write_data(slot, bytes).is_err() {
                        b.err = libc::EINVAL;
                        return;
                    }
                }
                p.commit();
                b.last = p.last_ptr().and_then(NonNull::new);
                *ssn = ssn.wrapping_add(1);
            })
        }
    }

    /// The `ibv_wr_set_*` setters, on the WQE the last builder made; an
    /// error (or a setter with no WQE) fails the whole batch at wr_complete.
    ///
    /// # Safety
    /// As for `in_batch`; the payload's pointers follow the verbs contract.
    // Inlined into each setter, so that its payload's match folds away; the
    // batch written out in place, as in wr_build.
    #[inline(always)]
    pub(crate) unsafe fn wr_set(&self, payload: Payload) {
        // SAFETY: per the contract, wr_start parked the lock on this thread;
        // the reference ends with this call.
        let q = unsafe { self.sq.held() };
        let b = &mut q.batch;
        if b.err != 0 {
            return;
        }
        let Some(slot) = b.last else {
            b.err = libc::EINVAL;
            return;
        };
        let slot = slot.as_ptr();
        // SAFETY: the slot the last builder wrote, unpublished and ours
        // under the lock; FastSend::new measured it (header plus one SGE or
        // max_inline bytes); the payload's pointers follow the contract.
        let r = unsafe { self.set_payload(slot, payload) };
        if let Err(e) = r {
            b.err = e.0;
        }
    }

    /// The setters' work on the last WQE built: the common payloads with
    /// fixed-offset stores, the lists through `Payload::apply`.
    ///
    /// # Safety
    /// As described in [`Qp::wr_set`].
    #[inline(always)]
    unsafe fn set_payload(&self, slot: *mut u8, payload: Payload) -> Result<()> {
        match payload {
            Payload::Sge { lkey, addr, length } => {
                if length > self.fast.max_msg {
                    return Err(Refusal::MessageTooLong { length, max: self.limits.max_msg }.errno());
                }
                // A zero length means no data, as in librxe.
                if length != 0 {
                    // SAFETY: per the contract; map_rings made sure every
                    // send slot has room for one SGE.
                    unsafe {
                        wqe::write_first_sge(slot, ibv_sge { addr, length, lkey });
                        wqe::write_length(slot, length, 1);
                    }
                }
                Ok(())
            }
            Payload::Inline { bufs, count: 1 } if !bufs.is_null() => {
                // SAFETY: one entry, per the contract.
                let b = unsafe { *bufs };
                if b.length > self.fast.max_inline as usize {
                    return Err(Errno(libc::ENOSPC));
                }
                // SAFETY: within the slot (FastSend bounds max_inline by
                // it); the source is readable per the contract.
                unsafe {
                    if b.length != 0 {
                        ptr::copy_nonoverlapping(b.addr.cast::<u8>(), slot.add(wqe::SEND_HEADER), b.length);
                    }
                    wqe::write_length(slot, b.length as u32, 0);
                }
                Ok(())
            }
            Payload::UdAddr { ah, remote_qpn, remote_qkey } if !ah.is_null() => {
                // SAFETY: an AH from our create_ah, per the contract.
                let ah_num = unsafe { Ah::from_raw(ah) }.ah_num();
                // SAFETY: the header's union arm, per the contract.
                unsafe { wqe::write_ud_arm(slot, UdAddress { remote_qpn, remote_qkey, ah_num }) };
                Ok(())
            }
            _ => {
                // SAFETY: the slot spans elem_size bytes, ours per the contract.
                let bytes = unsafe { core::slice::from_raw_parts_mut(slot, self.send_slot_size()) };
                // SAFETY: forwarded contract.
                unsafe { payload.apply(bytes, &self.limits) }
            }
        }
    }

    fn send_slot_size(&self) -> usize {
        // SAFETY: the ring's geometry is fixed at creation; reading it races
        // with nothing (only under the lock, which the caller holds).
        unsafe { self.sq.held() }.ring.elem_size()
    }

    /// `ibv_wr_complete`: publishes the batch and rings once, or, if any
    /// builder or setter failed, publishes nothing and returns that error.
    ///
    /// # Safety
    /// Ends a batch this thread started with [`Qp::wr_start`].
    // Inlined into its extern "C" entry: one call layer less on the hot path.
    #[inline(always)]
    pub(crate) unsafe fn wr_complete(&self) -> Result<()> {
        let posted = {
            // SAFETY: per the contract.
            let mut sq = unsafe { self.sq.resume() };
            let q = &mut *sq;
            if q.batch.err != 0 {
                // Nothing is published; the lock drops. (wr_start clears
                // the error for the next batch.)
                return Err(Errno(q.batch.err));
            }
            let ProducerState { start, prod, .. } = q.batch.producer;
            if prod != start {
                q.ring.publish(prod);
            }
            prod != start
            // The lock drops after the publication.
        };
        if posted {
            self.doorbell()?;
        }
        Ok(())
    }

    /// `ibv_wr_abort`: drops everything built since wr_start.
    ///
    /// # Safety
    /// Ends a batch this thread started with [`Qp::wr_start`].
    pub(crate) unsafe fn wr_abort(&self) {
        // SAFETY: per the contract.
        let mut sq = unsafe { self.sq.resume() };
        let SendQueue { ring, batch, .. } = &mut *sq;
        // SAFETY: we hold the lock; the position is this batch's.
        let mut producer = unsafe { Producer::resume(ring, batch.producer) };
        producer.discard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AW: u64 = newer_kernels::QP_EX_WITH_ATOMIC_WRITE;
    const FL: u64 = newer_kernels::QP_EX_WITH_FLUSH;

    fn kernel(cap_flags_ex: u64) -> Features {
        Features { cap_flags_ex, ..Default::default() }
    }

    #[test]
    fn newer_send_ops_follow_the_kernel_and_the_libibverbs() {
        let k61 = kernel(0);
        let k612 = kernel(newer_kernels::DEVICE_ATOMIC_WRITE | newer_kernels::DEVICE_FLUSH_GLOBAL);
        let missing = |flags, f, wr_flush| newer_send_ops_missing(flags, f, wr_flush).map(|m| m.to_string());
        assert!(missing(SUPPORTED_SEND_OPS_RC, k61, false).is_none());
        let m = missing(AW, k61, true).unwrap();
        assert!(m.contains("no ATOMIC WRITE") && m.contains("Linux 6.2"), "{m}");
        assert!(missing(AW, k612, false).is_none());
        let m = missing(FL, k61, true).unwrap();
        assert!(m.contains("no RDMA FLUSH") && m.contains("Linux 6.2"), "{m}");
        assert!(missing(FL, k612, false).unwrap().contains("no ibv_wr_flush"));
        assert!(missing(AW | FL, k612, true).is_none());
    }
}
