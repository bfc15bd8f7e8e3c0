//! The work queue entries the kernel reads from our rings: checks of verbs
//! work requests, and builders that write `rxe_send_wqe` / `rxe_recv_wqe`
//! into a slot given as a byte slice, so no builder can write past its slot.

use crate::abi::newer_kernels;
use crate::abi::sys::*;
use crate::cmd::Errno;
use core::fmt;
use core::mem::{align_of, offset_of, size_of};

use ibv_wr_opcode as op;

/// Bytes of slot a send WQE header occupies, before its SGEs or inline data.
pub(crate) const SEND_HEADER: usize = offset_of!(rxe_send_wqe, dma) + offset_of!(rxe_dma_info, __bindgen_anon_1);
/// Likewise for receive WQEs.
pub(crate) const RECV_HEADER: usize = offset_of!(rxe_recv_wqe, dma) + offset_of!(rxe_dma_info, __bindgen_anon_1);
const SGE: usize = size_of::<rxe_sge>();

// The kernel reads our SGE lists as rxe_sge; verbs hands us ibv_sge.
const _: () = assert!(size_of::<rxe_sge>() == size_of::<ibv_sge>());
const _: () = assert!(offset_of!(rxe_sge, length) == offset_of!(ibv_sge, length));
const _: () = assert!(offset_of!(rxe_sge, lkey) == offset_of!(ibv_sge, lkey));
const _: () = assert!(size_of::<rxe_send_wqe>() <= SEND_HEADER && size_of::<rxe_recv_wqe>() <= RECV_HEADER);

/// What a send queue accepts, fixed at QP creation from what the kernel granted.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SendLimits {
    pub max_sge: u32,
    pub max_inline: u32,
    pub qp_type: ibv_qp_type::Type,
    /// The port's max_msg_sz; 0 when unknown (nothing checked).
    pub max_msg: u32,
}

/// Slot bytes a send queue with these limits needs: the kernel sizes each
/// slot for the larger of the SGE list and the inline data.
pub(crate) fn send_slot_needed(max_sge: u32, max_inline: u32) -> u64 {
    SEND_HEADER as u64 + (max_sge as u64 * SGE as u64).max(max_inline as u64)
}

/// Slot bytes a receive queue with `max_sge` SGEs needs.
pub(crate) fn recv_slot_needed(max_sge: u32) -> u64 {
    RECV_HEADER as u64 + max_sge as u64 * SGE as u64
}

/// Why a work request was refused. Carries numbers, not text, so refusing
/// allocates nothing; the log line is written from it after the queue lock
/// is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManySges { num_sge: i32, max: u32 },
    MessageTooLong { length: u32, max: u32 },
    NullSgList { num_sge: i32 },
    UnknownOpcode(u32),
    /// FLUSH and ATOMIC WRITE carry operands `ibv_send_wr` has no field for.
    OnlyThroughWrApi(u32),
    OpcodeNotForTransport { opcode: u32, qp_type: u32 },
    LengthOverflow,
    AtomicMisaligned { length: u32, remote: u64 },
    InlineTooLong { length: u64, max: u32 },
    BindMwExtras,
    BindMwNoWindow,
    BindMwWithoutMr { length: u64 },
    UdWithoutAh,
    QueueFull { slots: u32 },
    QpState(u32),
    RecvThroughSrq,
    RecvInReset,
    NoRing,
}

impl Refusal {
    pub(crate) fn errno(self) -> Errno {
        Errno(match self {
            Refusal::QueueFull { .. } => libc::ENOMEM,
            _ => libc::EINVAL,
        })
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Refusal::TooManySges { num_sge, max } => write!(f, "num_sge {num_sge} is outside 0..={max}, the QP's limit"),
            Refusal::NullSgList { num_sge } => write!(f, "sg_list is NULL but num_sge is {num_sge}"),
            Refusal::UnknownOpcode(o) => write!(f, "opcode {o} is not one rxe executes"),
            Refusal::OnlyThroughWrApi(o) => write!(
                f,
                "opcode {o} ({}) has operands ibv_send_wr cannot carry; post it with {} on a QP created with its send_ops_flags",
                if o == newer_kernels::WR_FLUSH { "FLUSH" } else { "ATOMIC_WRITE" },
                if o == newer_kernels::WR_FLUSH { "ibv_wr_flush" } else { "ibv_wr_atomic_write" }
            ),
            Refusal::OpcodeNotForTransport { opcode, qp_type } => {
                write!(f, "opcode {opcode} is not allowed on a {} QP", qp_type_name(qp_type))
            }
            Refusal::LengthOverflow => write!(f, "the SGE lengths add up to more than 4 GiB"),
            Refusal::MessageTooLong { length, max } => write!(f, "a message of {length} bytes exceeds the port's max_msg_sz {max}"),
            Refusal::AtomicMisaligned { length, remote } => write!(
                f,
                "atomic needs an 8-byte local buffer and an 8-byte aligned remote address (length {length}, remote {remote:#x})"
            ),
            Refusal::InlineTooLong { length, max } => write!(f, "inline data of {length} bytes exceeds the QP's max_inline_data {max}"),
            Refusal::BindMwExtras => write!(f, "BIND_MW takes no SGEs and no immediate data"),
            Refusal::BindMwNoWindow => write!(f, "BIND_MW names no memory window"),
            Refusal::BindMwWithoutMr { length } => write!(f, "BIND_MW of {length} bytes names no MR (only an unbind, length 0, may)"),
            Refusal::UdWithoutAh => write!(f, "UD send has no address handle"),
            Refusal::QueueFull { slots } => write!(f, "queue full ({slots} slots)"),
            Refusal::QpState(s) => write!(f, "QP is in state {}; sends need RTS (or SQD, SQE, ERR)", qp_state_name(s)),
            Refusal::RecvThroughSrq => write!(f, "this QP receives through an SRQ; use ibv_post_srq_recv"),
            Refusal::RecvInReset => write!(f, "QP is in RESET; move it to INIT first"),
            Refusal::NoRing => write!(f, "the queue's ring is gone after a failed resize"),
        }
    }
}

/// A refused post: the errno, and the WR the application gets back as
/// `bad_wr` (null when the failure belongs to no single WR).
pub(crate) struct PostError<W> {
    pub errno: Errno,
    pub bad: *mut W,
}

impl<W> fmt::Debug for PostError<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {:p}", self.errno, self.bad)
    }
}

pub(crate) fn qp_type_name(t: u32) -> &'static str {
    match t {
        ibv_qp_type::IBV_QPT_RC => "RC",
        ibv_qp_type::IBV_QPT_UC => "UC",
        ibv_qp_type::IBV_QPT_UD => "UD",
        _ => "non-RC/UC/UD",
    }
}

pub(crate) fn qp_state_name(state: u32) -> &'static str {
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

/// Opcodes ibv_post_send can hand the kernel's rxe (not TSO, which rxe
/// lacks, nor FLUSH and ATOMIC WRITE: see `Refusal::OnlyThroughWrApi`).
fn opcode_known(opcode: u32) -> bool {
    matches!(
        opcode,
        op::IBV_WR_RDMA_WRITE
            | op::IBV_WR_RDMA_WRITE_WITH_IMM
            | op::IBV_WR_SEND
            | op::IBV_WR_SEND_WITH_IMM
            | op::IBV_WR_RDMA_READ
            | op::IBV_WR_ATOMIC_CMP_AND_SWP
            | op::IBV_WR_ATOMIC_FETCH_AND_ADD
            | op::IBV_WR_LOCAL_INV
            | op::IBV_WR_BIND_MW
            | op::IBV_WR_SEND_WITH_INV
    )
}

fn is_atomic(opcode: u32) -> bool {
    matches!(opcode, op::IBV_WR_ATOMIC_CMP_AND_SWP | op::IBV_WR_ATOMIC_FETCH_AND_ADD)
}

/// The SGE list of a work request, after checking its count and pointer.
///
/// # Safety
/// When `sg_list` is non-null it must hold `num_sge` readable entries (the
/// verbs API's contract with the application).
pub(crate) unsafe fn sge_list<'a>(sg_list: *const ibv_sge, num_sge: i32, max_sge: u32) -> Result<&'a [ibv_sge], Refusal> {
    if num_sge < 0 || num_sge as u32 > max_sge {
        return Err(Refusal::TooManySges { num_sge, max: max_sge });
    }
    if num_sge == 0 {
        return Ok(&[]);
    }
    if sg_list.is_null() {
        return Err(Refusal::NullSgList { num_sge });
    }
    // SAFETY: non-null with num_sge entries, per the contract.
    Ok(unsafe { core::slice::from_raw_parts(sg_list, num_sge as usize) })
}

/// Where a UD send goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UdAddress {
    pub remote_qpn: u32,
    pub remote_qkey: u32,
    pub ah_num: u32,
}

/// The parts of a memory-window bind the WQE carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct MwBind {
    pub addr: u64,
    pub length: u64,
    pub mr_lkey: u32,
    pub mw_rkey: u32,
    pub rkey: u32,
    pub access: u32,
}

impl MwBind {
    /// Reads a bind description. An unbind (length 0) needs no MR; the kernel
    /// accepts a zero-length bind without one.
    ///
    /// # Safety
    /// `mw` and `info.mr`, when non-null, point to live verbs objects.
    pub(crate) unsafe fn from_verbs(mw: *const ibv_mw, rkey: u32, info: &ibv_mw_bind_info) -> Result<MwBind, Refusal> {
        if mw.is_null() {
            return Err(Refusal::BindMwNoWindow);
        }
        let mr_lkey = if info.mr.is_null() {
            if info.length != 0 {
                return Err(Refusal::BindMwWithoutMr { length: info.length });
            }
            0
        } else {
            // SAFETY: a live MR, per the contract.
            unsafe { (*info.mr).lkey }
        };
        Ok(MwBind {
            addr: info.addr,
            length: info.length,
            mr_lkey,
            // SAFETY: a live window, per the contract.
            mw_rkey: unsafe { (*mw).rkey },
            rkey,
            access: info.mw_access_flags,
        })
    }
}

/// A send WR that passed every check: what the builder needs.
pub(crate) struct CheckedSend<'a> {
    pub sges: &'a [ibv_sge],
    pub length: u32,
    pub inline: bool,
    pub bind: Option<MwBind>,
}

/// Checks a send WR as librxe does, plus the checks librxe lacks (NULL
/// lists, length wrap, opcodes the transport forbids, unbinds without an MR).
/// `ud` must be Some for UD QPs; it is looked up by the caller from the AH.
///
/// # Safety
/// The WR's pointers (sg_list; for BIND_MW the window and MR) follow the
/// verbs API's contract.
#[inline(always)]
pub(crate) unsafe fn check_send<'a>(wr: &'a ibv_send_wr, lim: &SendLimits) -> Result<CheckedSend<'a>, Refusal> {
    // SAFETY: per the contract.
    let sges = unsafe { sge_list(wr.sg_list, wr.num_sge, lim.max_sge) }?;
    // One test for the opcode on the hot path; which refusal it is, out of line.
    if !opcode_allowed(wr.opcode, lim.qp_type) {
        return Err(opcode_refusal(wr.opcode, lim.qp_type));
    }
    let total: u64 = match sges {
        [one] => one.length as u64,
        _ => sges.iter().map(|s| s.length as u64).sum(),
    };
    let inline = wr.send_flags & ibv_send_flags::IBV_SEND_INLINE != 0;
    if inline && total > lim.max_inline as u64 {
        return Err(Refusal::InlineTooLong { length: total, max: lim.max_inline });
    }
    let length = u32::try_from(total).map_err(|_| Refusal::LengthOverflow)?;
    check_message_length(length, lim)?;
    let mut bind = None;
    if wr.opcode >= op::IBV_WR_ATOMIC_CMP_AND_SWP {
        // The rarer opcodes' checks, kept off the path of sends and RDMA.
        // SAFETY: per the contract.
        bind = unsafe { check_send_rare(wr, lim, length) }?;
    }
    Ok(CheckedSend { sges, length, inline, bind })
}

/// Opcodes `ibv_post_send` takes on each transport, as bit masks.
const KNOWN_OPS: u32 = (1 << op::IBV_WR_RDMA_WRITE)
    | (1 << op::IBV_WR_RDMA_WRITE_WITH_IMM)
    | (1 << op::IBV_WR_SEND)
    | (1 << op::IBV_WR_SEND_WITH_IMM)
    | (1 << op::IBV_WR_RDMA_READ)
    | (1 << op::IBV_WR_ATOMIC_CMP_AND_SWP)
    | (1 << op::IBV_WR_ATOMIC_FETCH_AND_ADD)
    | (1 << op::IBV_WR_LOCAL_INV)
    | (1 << op::IBV_WR_BIND_MW)
    | (1 << op::IBV_WR_SEND_WITH_INV);
const UD_OPS: u32 = (1 << op::IBV_WR_SEND) | (1 << op::IBV_WR_SEND_WITH_IMM);

/// Whether `ibv_post_send` accepts `opcode` on a QP of `qp_type`: exactly
/// when [`opcode_refusal`]'s checks all pass.
#[inline(always)]
pub(crate) fn opcode_allowed(opcode: u32, qp_type: u32) -> bool {
    let allowed = if qp_type == ibv_qp_type::IBV_QPT_UD { UD_OPS } else { KNOWN_OPS };
    opcode < 32 && allowed & (1 << opcode) != 0
}

/// Why `opcode` is refused on `qp_type`, in the order the checks are documented.
#[cold]
#[inline(never)]
fn opcode_refusal(opcode: u32, qp_type: u32) -> Refusal {
    if matches!(opcode, newer_kernels::WR_FLUSH | newer_kernels::WR_ATOMIC_WRITE) {
        return Refusal::OnlyThroughWrApi(opcode);
    }
    if !opcode_known(opcode) {
        return Refusal::UnknownOpcode(opcode);
    }
    Refusal::OpcodeNotForTransport { opcode, qp_type }
}

/// The checks of atomics and BIND_MW (opcodes from CMP_AND_SWP up).
///
/// # Safety
/// As for [`check_send`].
#[inline(never)]
unsafe fn check_send_rare(wr: &ibv_send_wr, lim: &SendLimits, length: u32) -> Result<Option<MwBind>, Refusal> {
    if is_atomic(wr.opcode) {
        // SAFETY: reading the atomic arm of the union the opcode selects (plain integers).
        let remote = unsafe { wr.wr.atomic.remote_addr };
        if length < 8 || remote & 7 != 0 {
            return Err(Refusal::AtomicMisaligned { length, remote });
        }
    }
    if wr.opcode == op::IBV_WR_BIND_MW {
        // SAFETY: imm_data shares its union with invalidate_rkey; any bits are valid.
        let imm = unsafe { wr.__bindgen_anon_1.imm_data };
        if length != 0 || wr.num_sge != 0 || imm != 0 {
            return Err(Refusal::BindMwExtras);
        }
        if lim.qp_type != ibv_qp_type::IBV_QPT_RC && lim.qp_type != ibv_qp_type::IBV_QPT_UC {
            return Err(Refusal::OpcodeNotForTransport { opcode: wr.opcode, qp_type: lim.qp_type });
        }
        // SAFETY: the bind arm of the union the opcode selects; pointers per the contract.
        let b = unsafe { &wr.__bindgen_anon_2.bind_mw };
        // SAFETY: per the contract.
        return Ok(Some(unsafe { MwBind::from_verbs(b.mw, b.rkey, &b.bind_info) }?));
    }
    Ok(None)
}

/// A message longer than the port's limit: 6.1's rxe would even execute some
/// (it reports 8 MiB and moves more), later ones fail them in the kernel.
pub(crate) fn check_message_length(length: u32, lim: &SendLimits) -> Result<(), Refusal> {
    if lim.max_msg != 0 && length > lim.max_msg {
        return Err(Refusal::MessageTooLong { length, max: lim.max_msg });
    }
    Ok(())
}

// The fixed offsets `write_header` stores at (rdma/rdma_user_rxe.h), so
// that it can write the header as 8-byte words.
const _: () = {
    assert!(offset_of!(rxe_send_wqe, wr) == 0 && offset_of!(rxe_send_wr, wr_id) == 0);
    assert!(offset_of!(rxe_send_wr, reserved) == 8 && offset_of!(rxe_send_wr, opcode) == 12);
    assert!(offset_of!(rxe_send_wr, send_flags) == 16 && offset_of!(rxe_send_wr, ex) == 20);
    assert!(offset_of!(rxe_send_wr, wr) == 24 && size_of::<rxe_send_wr>() == 144);
    assert!(offset_of!(rxe_send_wqe, status) == 144 && offset_of!(rxe_send_wqe, state) == 148);
    assert!(offset_of!(rxe_send_wqe, iova) == 152 && offset_of!(rxe_send_wqe, mask) == 160);
    assert!(offset_of!(rxe_send_wqe, first_psn) == 164 && offset_of!(rxe_send_wqe, last_psn) == 168);
    assert!(offset_of!(rxe_send_wqe, ack_length) == 172 && offset_of!(rxe_send_wqe, ssn) == 176);
    assert!(offset_of!(rxe_send_wqe, has_rd_atomic) == 180 && offset_of!(rxe_send_wqe, dma) == 184);
    assert!(offset_of!(rxe_dma_info, length) == 0 && offset_of!(rxe_dma_info, resid) == 4);
    assert!(offset_of!(rxe_dma_info, cur_sge) == 8 && offset_of!(rxe_dma_info, num_sge) == 12);
    assert!(offset_of!(rxe_dma_info, sge_offset) == 16 && offset_of!(rxe_dma_info, reserved) == 20);
    assert!(SEND_HEADER == 208);
    // The union's arms the kernel reads with an ah_num (all but the old
    // kernels' inline address vector) lie in its first 32 bytes.
    assert!(size_of::<rxe_send_wr__bindgen_ty_2__bindgen_ty_1>() <= 32); // rdma
    assert!(size_of::<rxe_send_wr__bindgen_ty_2__bindgen_ty_2>() <= 32); // atomic
    assert!(size_of::<rxe_send_wr__bindgen_ty_2__bindgen_ty_4>() <= 32); // mw
    assert!(offset_of!(rxe_send_wr__bindgen_ty_2__bindgen_ty_3, ah_num) == 12);
    assert!(offset_of!(rxe_send_wr__bindgen_ty_2__bindgen_ty_3, pad) == 16);
    assert!(offset_of!(rxe_recv_wqe, wr_id) == 0 && offset_of!(rxe_recv_wqe, dma) == 16 && RECV_HEADER == 40);
    assert!(offset_of!(rxe_recv_wqe, reserved) == 8 && offset_of!(rxe_recv_wqe, padding) == 12);
};

/// A send WQE header as the fast paths write it: every field the kernel
/// reads (librxe's set and more: the status, PSN and rd_atomic words it
/// leaves stale are zeroed), as whole words.
#[derive(Clone, Copy)]
pub(crate) struct Header {
    pub wr_id: u64,
    pub opcode: u32,
    pub send_flags: u32,
    /// imm_data or invalidate_rkey.
    pub ex: u32,
    /// The first 32 bytes of the opcode's union arm (the rest is only the
    /// address vector of kernels before ah_num, which rxe_rs refuses).
    pub arm: [u64; 4],
    pub iova: u64,
    pub ssn: u32,
    pub length: u32,
    pub num_sge: u32,
}

impl Header {
    /// The union arm of an RDMA opcode: remote_addr, then rkey and a zero
    /// reserved word.
    #[inline(always)]
    pub(crate) fn rdma_arm(rkey: u32, remote_addr: u64) -> [u64; 4] {
        [remote_addr, rkey as u64, 0, 0]
    }

    /// The atomic arm: remote_addr, compare_add, swap, then rkey and reserved.
    #[inline(always)]
    pub(crate) fn atomic_arm(rkey: u32, remote_addr: u64, compare_add: u64, swap: u64) -> [u64; 4] {
        [remote_addr, compare_add, swap, rkey as u64]
    }

    /// The UD arm: remote_qpn, remote_qkey, pkey_index and reserved (0),
    /// ah_num, then zero padding.
    #[inline(always)]
    pub(crate) fn ud_arm(ud: UdAddress) -> [u64; 4] {
        [ud.remote_qpn as u64 | (ud.remote_qkey as u64) << 32, (ud.ah_num as u64) << 32, 0, 0]
    }
}

/// Writes a send WQE header into the slot at `slot` in 8-byte stores.
///
/// # Safety
/// `slot` is 8-byte aligned with SEND_HEADER writable bytes that nothing
/// else accesses meanwhile (a reserved producer slot).
#[inline(always)]
pub(crate) unsafe fn write_header(slot: *mut u8, h: &Header) {
    let w = slot.cast::<u64>();
    // SAFETY: every word lies in the header's 208 bytes (offsets asserted
    // above), aligned per the contract; the ring is plain memory.
    unsafe {
        w.write(h.wr_id);
        w.add(1).write((h.opcode as u64) << 32); // reserved, opcode
        w.add(2).write(h.send_flags as u64 | (h.ex as u64) << 32);
        w.add(3).write(h.arm[0]);
        w.add(4).write(h.arm[1]);
        w.add(5).write(h.arm[2]);
        w.add(6).write(h.arm[3]);
        w.add(18).write(0); // status, state (posted)
        w.add(19).write(h.iova);
        w.add(20).write(0); // mask, first_psn
        w.add(21).write(0); // last_psn, ack_length
        w.add(22).write(h.ssn as u64); // ssn, has_rd_atomic
        w.add(23).write(h.length as u64 | (h.length as u64) << 32); // length, resid
        w.add(24).write((h.num_sge as u64) << 32); // cur_sge, num_sge
        w.add(25).write(0); // sge_offset, reserved
    }
}

/// Sets a written header's length, resid and num_sge (the setters).
///
/// # Safety
/// As for [`write_header`].
#[inline(always)]
pub(crate) unsafe fn write_length(slot: *mut u8, length: u32, num_sge: u32) {
    let w = slot.cast::<u64>();
    // SAFETY: as in write_header.
    unsafe {
        w.add(23).write(length as u64 | (length as u64) << 32);
        w.add(24).write((num_sge as u64) << 32);
    }
}

/// Writes the UD arm's address fields (the header's other words stay as
/// the builder wrote them: pkey_index, reserved and the padding zero).
///
/// # Safety
/// As for [`write_header`].
#[inline(always)]
pub(crate) unsafe fn write_ud_arm(slot: *mut u8, ud: UdAddress) {
    let arm = Header::ud_arm(ud);
    let w = slot.cast::<u64>();
    // SAFETY: as in write_header.
    unsafe {
        w.add(3).write(arm[0]);
        w.add(4).write(arm[1]);
    }
}

/// Writes one SGE where a send slot's payload starts.
///
/// # Safety
/// As for [`write_header`], with SEND_HEADER + 16 writable bytes.
#[inline(always)]
pub(crate) unsafe fn write_first_sge(slot: *mut u8, sge: ibv_sge) {
    // SAFETY: in the slot per the contract; ibv_sge is 16 bytes of integers.
    unsafe { slot.add(SEND_HEADER).cast::<ibv_sge>().write(sge) };
}

/// The WQE header at the start of a send slot.
fn send_header(slot: &mut [u8]) -> &mut rxe_send_wqe {
    assert!(slot.len() >= SEND_HEADER && slot.as_ptr() as usize % align_of::<rxe_send_wqe>() == 0);
    // SAFETY: long and aligned enough (checked); every bit pattern is a valid
    // rxe_send_wqe (integers only), and the borrow is tied to the slot's.
    unsafe { &mut *slot.as_mut_ptr().cast::<rxe_send_wqe>() }
}

/// The WQE header of a send slot written earlier (for the extended API's setters).
pub(crate) fn send_wqe(slot: &mut [u8]) -> &mut rxe_send_wqe {
    send_header(slot)
}

/// Zeroes a send slot's header and fills what every opcode carries.
pub(crate) fn start_send(slot: &mut [u8], wr_id: u64, opcode: u32, send_flags: u32, ssn: u32) -> &mut rxe_send_wqe {
    slot[..SEND_HEADER].fill(0);
    let w = send_header(slot);
    w.wr.wr_id = wr_id;
    w.wr.opcode = opcode;
    w.wr.send_flags = send_flags;
    w.ssn = ssn;
    w
}

pub(crate) fn set_rdma(w: &mut rxe_send_wqe, rkey: u32, remote_addr: u64) {
    w.wr.wr.rdma = rxe_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey, reserved: 0 };
    w.iova = remote_addr;
}

pub(crate) fn set_atomic(w: &mut rxe_send_wqe, rkey: u32, remote_addr: u64, compare_add: u64, swap: u64) {
    w.wr.wr.atomic = rxe_send_wr__bindgen_ty_2__bindgen_ty_2 { remote_addr, compare_add, swap, rkey, reserved: 0 };
    w.iova = remote_addr;
}

/// FLUSH: the flush arm of the union; the kernel takes the length from the
/// WQE's dma part, as librxe (rdma-core 45+) puts it.
pub(crate) fn set_flush(w: &mut rxe_send_wqe, rkey: u32, remote_addr: u64, length: u32, ptype: u8, level: u8) {
    let flush = newer_kernels::rxe_flush_wr { remote_addr, length: 0, rkey, ptype, level };
    // SAFETY: rxe_flush_wr fits the union (asserted in newer_kernels) and
    // needs no more alignment than it; every byte of the union is plain data.
    unsafe { core::ptr::addr_of_mut!(w.wr.wr).cast::<newer_kernels::rxe_flush_wr>().write(flush) };
    w.dma.length = length;
    w.dma.resid = length;
    w.iova = remote_addr;
}

/// ATOMIC WRITE's operand, where the WQE's inline data starts. Fails if the
/// slot is too short to hold it (never with the kernel's slot sizes).
pub(crate) fn set_atomic_write_data(slot: &mut [u8], bytes: [u8; newer_kernels::ATOMIC_WRITE_LEN]) -> Result<(), ()> {
    let at = slot.get_mut(SEND_HEADER..SEND_HEADER + bytes.len()).ok_or(())?;
    at.copy_from_slice(&bytes);
    let w = send_header(slot);
    w.dma.length = bytes.len() as u32;
    w.dma.resid = bytes.len() as u32;
    Ok(())
}

pub(crate) fn set_bind(w: &mut rxe_send_wqe, b: &MwBind) {
    w.wr.wr.mw = rxe_send_wr__bindgen_ty_2__bindgen_ty_4 {
        addr: b.addr,
        length: b.length,
        mr_lkey: b.mr_lkey,
        mw_rkey: b.mw_rkey,
        rkey: b.rkey,
        access: b.access,
    };
}

pub(crate) fn set_ud(w: &mut rxe_send_wqe, ud: UdAddress) {
    // Writing union fields is safe: plain integers into the ud arm.
    w.wr.wr.ud.remote_qpn = ud.remote_qpn;
    w.wr.wr.ud.remote_qkey = ud.remote_qkey;
    w.wr.wr.ud.ah_num = ud.ah_num;
}

fn set_length(slot: &mut [u8], length: u32, num_sge: u32) {
    let dma = &mut send_header(slot).dma;
    dma.length = length;
    dma.resid = length;
    dma.num_sge = num_sge;
}

fn sge_bytes(sges: &[ibv_sge]) -> &[u8] {
    // SAFETY: ibv_sge is plain integers without padding (16 bytes), so its
    // bytes are initialized; the view lives as long as the borrow.
    unsafe { core::slice::from_raw_parts(sges.as_ptr().cast::<u8>(), core::mem::size_of_val(sges)) }
}

/// One SGE at the start of `payload`: the common case, as two 8-byte
/// stores (a copy_from_slice here ends up a memcpy call, the lengths of the
/// other cases merged in).
#[inline(always)]
fn put_sge(payload: &mut [u8], sge: &ibv_sge) {
    let dst = &mut payload[..SGE];
    // SAFETY: `dst` holds SGE (16) bytes, checked by the slicing above;
    // ibv_sge is plain integers and the store is unaligned-safe.
    unsafe { dst.as_mut_ptr().cast::<ibv_sge>().write_unaligned(*sge) };
}

/// Fills a send slot from a checked WR.
///
/// # Safety
/// For inline WRs, each SGE's `addr` must point to `length` readable bytes
/// (the verbs API's contract for IBV_SEND_INLINE).
#[inline(always)]
pub(crate) unsafe fn write_send(slot: &mut [u8], wr: &ibv_send_wr, c: &CheckedSend<'_>, ud: Option<UdAddress>, ssn: u32) {
    let w = start_send(slot, wr.wr_id, wr.opcode, wr.send_flags, ssn);
    // SAFETY (union reads below): each reads the arm the opcode selects; all are plain integers.
    match wr.opcode {
        op::IBV_WR_SEND_WITH_IMM | op::IBV_WR_RDMA_WRITE_WITH_IMM => {
            // SAFETY: see above.
            w.wr.ex.imm_data = unsafe { wr.__bindgen_anon_1.imm_data };
        }
        op::IBV_WR_SEND_WITH_INV | op::IBV_WR_LOCAL_INV => {
            // SAFETY: see above.
            w.wr.ex.invalidate_rkey = unsafe { wr.__bindgen_anon_1.invalidate_rkey };
        }
        _ => {}
    }
    match wr.opcode {
        op::IBV_WR_RDMA_WRITE | op::IBV_WR_RDMA_WRITE_WITH_IMM | op::IBV_WR_RDMA_READ => {
            // SAFETY: see above.
            let r = unsafe { wr.wr.rdma };
            set_rdma(w, r.rkey, r.remote_addr);
        }
        op::IBV_WR_ATOMIC_CMP_AND_SWP | op::IBV_WR_ATOMIC_FETCH_AND_ADD => {
            // SAFETY: see above.
            let a = unsafe { wr.wr.atomic };
            set_atomic(w, a.rkey, a.remote_addr, a.compare_add, a.swap);
        }
        _ => {}
    }
    if let Some(b) = &c.bind {
        set_bind(w, b);
    }
    if let Some(ud) = ud {
        set_ud(w, ud);
    }
    let payload = &mut slot[SEND_HEADER..];
    if c.inline {
        let mut at = 0;
        for s in c.sges {
            let len = s.length as usize;
            // SAFETY: readable per the contract.
            let src = unsafe { core::slice::from_raw_parts(s.addr as usize as *const u8, len) };
            payload[at..at + len].copy_from_slice(src);
            at += len;
        }
    } else if let [one] = c.sges {
        put_sge(payload, one);
    } else {
        let bytes = sge_bytes(c.sges);
        payload[..bytes.len()].copy_from_slice(bytes);
    }
    set_length(slot, c.length, c.sges.len() as u32);
}

/// `ibv_wr_set_sge`: one SGE; a zero length means no data, as in librxe.
pub(crate) fn set_sge(slot: &mut [u8], lkey: u32, addr: u64, length: u32) {
    if length != 0 {
        let sge = [ibv_sge { addr, length, lkey }];
        slot[SEND_HEADER..SEND_HEADER + SGE].copy_from_slice(sge_bytes(&sge));
        set_length(slot, length, 1);
    }
}

/// `ibv_wr_set_sge_list`. Errors are the errno the batch fails with.
pub(crate) fn set_sge_list(slot: &mut [u8], sges: &[ibv_sge], lim: &SendLimits) -> Result<(), Errno> {
    if sges.len() > lim.max_sge as usize {
        return Err(Errno(libc::ENOSPC));
    }
    let total: u64 = sges.iter().map(|s| s.length as u64).sum();
    let length = u32::try_from(total).map_err(|_| Errno(libc::EINVAL))?;
    check_message_length(length, lim).map_err(Refusal::errno)?;
    let bytes = sge_bytes(sges);
    slot[SEND_HEADER..SEND_HEADER + bytes.len()].copy_from_slice(bytes);
    set_length(slot, length, sges.len() as u32);
    Ok(())
}

/// `ibv_wr_set_inline_data_list` (and, with one buffer, `ibv_wr_set_inline_data`).
/// The running total is checked before each copy, so lengths that would wrap
/// a sum are refused like any other excess.
///
/// # Safety
/// Each buffer's `addr` points to `length` readable bytes when the total fits.
pub(crate) unsafe fn set_inline(slot: &mut [u8], bufs: &[ibv_data_buf], lim: &SendLimits) -> Result<(), Errno> {
    let mut total = 0usize;
    for b in bufs {
        if b.length > lim.max_inline as usize - total {
            return Err(Errno(libc::ENOSPC));
        }
        // SAFETY: readable per the contract; length is within max_inline.
        let src = unsafe { core::slice::from_raw_parts(b.addr.cast::<u8>(), b.length) };
        slot[SEND_HEADER + total..SEND_HEADER + total + b.length].copy_from_slice(src);
        total += b.length;
    }
    set_length(slot, total as u32, 0);
    Ok(())
}

/// [`write_recv`] as fixed-offset stores into the slot at `slot`.
///
/// # Safety
/// `slot` is 8-byte aligned, with RECV_HEADER + 16 * sges.len() writable
/// bytes nothing else accesses meanwhile (a reserved producer slot).
#[inline(always)]
pub(crate) unsafe fn write_recv_raw(slot: *mut u8, wr_id: u64, sges: &[ibv_sge]) {
    let length = match sges {
        [one] => one.length,
        _ => sges.iter().fold(0u32, |sum, s| sum.wrapping_add(s.length)),
    };
    let w = slot.cast::<u64>();
    // SAFETY: within the slot per the contract (offsets asserted with
    // write_header's); ibv_sge has rxe_sge's layout (asserted above).
    unsafe {
        w.write(wr_id);
        w.add(1).write(0); // reserved, padding
        w.add(2).write(length as u64 | (length as u64) << 32); // length, resid
        w.add(3).write((sges.len() as u64) << 32); // cur_sge, num_sge
        w.add(4).write(0); // sge_offset, reserved
        let dst = slot.add(RECV_HEADER).cast::<ibv_sge>();
        match sges {
            [one] => dst.write(*one),
            _ => core::ptr::copy_nonoverlapping(sges.as_ptr(), dst, sges.len()),
        }
    }
}

/// Fills a receive slot. The total length wraps as in librxe: the kernel
/// places data by the SGEs themselves.
#[cfg(test)]
pub(crate) fn write_recv(slot: &mut [u8], wr_id: u64, sges: &[ibv_sge]) {
    assert!(slot.len() >= RECV_HEADER && slot.as_ptr() as usize % align_of::<rxe_recv_wqe>() == 0);
    slot[..RECV_HEADER].fill(0);
    let length = if let [one] = sges {
        // Fixed-size stores rather than a memcpy call.
        slot[RECV_HEADER..RECV_HEADER + SGE].copy_from_slice(sge_bytes(core::slice::from_ref(one)));
        one.length
    } else {
        let bytes = sge_bytes(sges);
        slot[RECV_HEADER..RECV_HEADER + bytes.len()].copy_from_slice(bytes);
        sges.iter().fold(0u32, |sum, s| sum.wrapping_add(s.length))
    };
    // SAFETY: long and aligned enough (checked above); integers only.
    let w = unsafe { &mut *slot.as_mut_ptr().cast::<rxe_recv_wqe>() };
    w.wr_id = wr_id;
    w.dma.length = length;
    w.dma.resid = length;
    w.dma.num_sge = sges.len() as u32;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An aligned, dirty slot.
    #[repr(C, align(64))]
    pub(crate) struct Slot(pub [u8; 1024]);

    fn slot() -> Box<Slot> {
        Box::new(Slot([0xa5; 1024]))
    }

    fn header(s: &Slot) -> &rxe_send_wqe {
        // SAFETY: aligned and long enough.
        unsafe { &*s.0.as_ptr().cast::<rxe_send_wqe>() }
    }

    pub(crate) fn limits(qp_type: ibv_qp_type::Type) -> SendLimits {
        SendLimits { max_sge: 4, max_inline: 64, qp_type, max_msg: 0 }
    }

    fn wr(opcode: u32, sg: &mut [ibv_sge]) -> ibv_send_wr {
        // SAFETY: all-zero is a valid ibv_send_wr.
        let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
        wr.opcode = opcode;
        wr.sg_list = sg.as_mut_ptr();
        wr.num_sge = sg.len() as i32;
        wr
    }

    fn check<'a>(w: &'a ibv_send_wr, t: u32) -> Result<CheckedSend<'a>, Refusal> {
        // SAFETY: test WRs point at live local arrays.
        unsafe { check_send(w, &limits(t)) }
    }

    #[test]
    fn rdma_write_wqe() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 100, lkey: 7 }, ibv_sge { addr: 0x2000, length: 28, lkey: 8 }];
        let mut w = wr(op::IBV_WR_RDMA_WRITE, &mut sg);
        w.wr_id = 42;
        w.send_flags = ibv_send_flags::IBV_SEND_SIGNALED;
        w.wr.rdma.remote_addr = 0xdead0000;
        w.wr.rdma.rkey = 0x55;
        let c = check(&w, ibv_qp_type::IBV_QPT_RC).unwrap();
        assert_eq!(c.length, 128);
        let mut s = slot();
        // SAFETY: not inline.
        unsafe { write_send(&mut s.0, &w, &c, None, 9) };
        let h = header(&s);
        assert_eq!(h.wr.wr_id, 42);
        assert_eq!(h.wr.opcode, op::IBV_WR_RDMA_WRITE);
        // SAFETY: plain integers.
        assert_eq!(unsafe { h.wr.wr.rdma.rkey }, 0x55);
        assert_eq!(h.iova, 0xdead0000);
        assert_eq!((h.ssn, h.state, h.dma.length, h.dma.resid, h.dma.num_sge, h.dma.cur_sge), (9, 0, 128, 128, 2, 0));
        assert_eq!(&s.0[SEND_HEADER + 16..SEND_HEADER + 24], &0x2000u64.to_ne_bytes());
    }

    #[test]
    fn inline_copies_bytes() {
        let data = *b"hello, inline world!";
        let mut sg = [ibv_sge { addr: data.as_ptr() as u64, length: data.len() as u32, lkey: 0 }];
        let mut w = wr(op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
        let c = check(&w, ibv_qp_type::IBV_QPT_RC).unwrap();
        let mut s = slot();
        // SAFETY: the SGE points at `data`.
        unsafe { write_send(&mut s.0, &w, &c, None, 0) };
        assert_eq!(&s.0[SEND_HEADER..SEND_HEADER + data.len()], &data);
        assert_eq!(header(&s).dma.length, data.len() as u32);
    }

    #[test]
    fn ud_send_carries_address() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 10, lkey: 1 }];
        let w = wr(op::IBV_WR_SEND, &mut sg);
        let c = check(&w, ibv_qp_type::IBV_QPT_UD).unwrap();
        let mut s = slot();
        // SAFETY: not inline.
        unsafe { write_send(&mut s.0, &w, &c, Some(UdAddress { remote_qpn: 0x11, remote_qkey: 0x1111_1111, ah_num: 3 }), 0) };
        // SAFETY: plain integers.
        let ud = unsafe { header(&s).wr.wr.ud };
        assert_eq!((ud.remote_qpn, ud.remote_qkey, ud.ah_num), (0x11, 0x1111_1111, 3));
    }

    #[test]
    fn refusals_match_librxe() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }; 5];
        let w = wr(op::IBV_WR_SEND, &mut sg);
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_RC), Err(Refusal::TooManySges { num_sge: 5, max: 4 })));

        let mut sg = [ibv_sge { addr: 0x1000, length: 100, lkey: 1 }];
        let mut w = wr(op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_RC), Err(Refusal::InlineTooLong { length: 100, max: 64 })));

        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
        let mut w = wr(op::IBV_WR_ATOMIC_FETCH_AND_ADD, &mut sg);
        w.wr.atomic.remote_addr = 0x1004;
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err().unwrap().errno(), Errno(libc::EINVAL));

        let w = wr(99, &mut []);
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err(), Some(Refusal::UnknownOpcode(99)));

        let w = wr(op::IBV_WR_BIND_MW, &mut []);
        assert!(check(&w, ibv_qp_type::IBV_QPT_UD).is_err());
    }

    #[test]
    fn the_opcode_mask_agrees_with_the_documented_checks() {
        // opcode_allowed is one mask test; opcode_refusal the checks in
        // order. Every opcode on every transport: allowed exactly when no
        // check refuses, and each refusal the one the order gives.
        for qp_type in [ibv_qp_type::IBV_QPT_RC, ibv_qp_type::IBV_QPT_UC, ibv_qp_type::IBV_QPT_UD] {
            for opcode in (0..70).chain([u32::MAX, 1 << 31, 32, 31]) {
                let refused = if matches!(opcode, newer_kernels::WR_FLUSH | newer_kernels::WR_ATOMIC_WRITE) {
                    Some(Refusal::OnlyThroughWrApi(opcode))
                } else if !opcode_known(opcode) {
                    Some(Refusal::UnknownOpcode(opcode))
                } else if qp_type == ibv_qp_type::IBV_QPT_UD && !matches!(opcode, op::IBV_WR_SEND | op::IBV_WR_SEND_WITH_IMM) {
                    Some(Refusal::OpcodeNotForTransport { opcode, qp_type })
                } else {
                    None
                };
                assert_eq!(opcode_allowed(opcode, qp_type), refused.is_none(), "opcode {opcode} on {qp_type}");
                if let Some(r) = refused {
                    assert_eq!(opcode_refusal(opcode, qp_type), r);
                }
            }
        }
    }

    #[test]
    fn closes_librxe_crashes() {
        // Two SGEs of 2 GiB: a u32 sum wraps to 0 and passed the inline check.
        let mut sg = [ibv_sge { addr: 0x1000, length: 0x8000_0000, lkey: 0 }; 2];
        let mut w = wr(op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_RC), Err(Refusal::InlineTooLong { length: 0x1_0000_0000, .. })));
        w.send_flags = 0;
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err(), Some(Refusal::LengthOverflow));
        // RDMA on UD would read the AH from the remote address.
        let w = wr(op::IBV_WR_RDMA_WRITE, &mut []);
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_UD), Err(Refusal::OpcodeNotForTransport { .. })));
        // NULL list with a count.
        let mut w = wr(op::IBV_WR_SEND, &mut []);
        w.sg_list = core::ptr::null_mut();
        w.num_sge = 1;
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err(), Some(Refusal::NullSgList { num_sge: 1 }));
        w.num_sge = 0x7fff_ffff;
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_RC), Err(Refusal::TooManySges { .. })));
        w.num_sge = -1;
        assert!(matches!(check(&w, ibv_qp_type::IBV_QPT_RC), Err(Refusal::TooManySges { .. })));
    }

    #[test]
    fn unbind_needs_no_mr_but_a_bind_does() {
        // SAFETY: all-zero is a valid ibv_mw.
        let mw: ibv_mw = unsafe { core::mem::zeroed() };
        let mut w = wr(op::IBV_WR_BIND_MW, &mut []);
        w.__bindgen_anon_2.bind_mw.mw = &mw as *const _ as *mut _;
        w.__bindgen_anon_2.bind_mw.bind_info.mr = core::ptr::null_mut();
        let c = check(&w, ibv_qp_type::IBV_QPT_RC).unwrap();
        assert_eq!(c.bind.unwrap().mr_lkey, 0);
        w.__bindgen_anon_2.bind_mw.bind_info.length = 4096;
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err(), Some(Refusal::BindMwWithoutMr { length: 4096 }));
        w.__bindgen_anon_2.bind_mw.mw = core::ptr::null_mut();
        assert_eq!(check(&w, ibv_qp_type::IBV_QPT_RC).err(), Some(Refusal::BindMwNoWindow));
    }

    #[test]
    fn inline_lists_that_wrap_are_refused() {
        let data = [0u8; 8];
        let bufs = [
            ibv_data_buf { addr: data.as_ptr() as *mut _, length: usize::MAX },
            ibv_data_buf { addr: data.as_ptr() as *mut _, length: 2 },
        ];
        let mut s = slot();
        // SAFETY: refused before any copy.
        assert_eq!(unsafe { set_inline(&mut s.0, &bufs, &limits(ibv_qp_type::IBV_QPT_RC)) }, Err(Errno(libc::ENOSPC)));
        assert!(s.0[SEND_HEADER..].iter().all(|&b| b == 0xa5), "nothing written");
    }

    #[test]
    fn recv_wqe() {
        let sg = [ibv_sge { addr: 0x3000, length: 4096, lkey: 5 }, ibv_sge { addr: 0x5000, length: 4, lkey: 6 }];
        let mut s = slot();
        write_recv(&mut s.0, 77, &sg);
        // SAFETY: aligned and long enough.
        let w = unsafe { &*s.0.as_ptr().cast::<rxe_recv_wqe>() };
        assert_eq!((w.wr_id, w.dma.length, w.dma.num_sge, w.dma.sge_offset), (77, 4100, 2, 0));
        assert_eq!(&s.0[RECV_HEADER + 12..RECV_HEADER + 16], &5u32.to_ne_bytes());
    }

    #[test]
    fn raw_receive_wqes_match_the_slice_builder() {
        let sg = [ibv_sge { addr: 0x3000, length: 4096, lkey: 5 }, ibv_sge { addr: 0x5000, length: 4, lkey: 6 }, ibv_sge::default()];
        for n in 0..=3 {
            let (mut a, mut b) = (slot(), slot());
            write_recv(&mut a.0, 77, &sg[..n]);
            // SAFETY: an aligned 1 KiB slot.
            unsafe { write_recv_raw(b.0.as_mut_ptr(), 77, &sg[..n]) };
            assert_eq!(a.0[..RECV_HEADER + 16 * n], b.0[..RECV_HEADER + 16 * n], "{n} SGEs");
        }
    }

    #[test]
    fn slot_sizes() {
        assert_eq!(send_slot_needed(4, 64), SEND_HEADER as u64 + 64);
        assert_eq!(send_slot_needed(1, 256), SEND_HEADER as u64 + 256);
        assert_eq!(recv_slot_needed(2), RECV_HEADER as u64 + 32);
    }
}
