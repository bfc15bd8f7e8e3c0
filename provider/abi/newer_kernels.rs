//! What kernels after 6.1 (and rdma-core after 44) added to the ABI, which
//! the headers the provider is built with (Debian 12: kernel 6.1 uapi,
//! rdma-core 44's verbs.h) lack. Written by hand from the later headers
//! (include/uapi/rdma/ib_user_verbs.h and rdma_user_rxe.h of 6.2+, verbs.h
//! of rdma-core 45+); the values are ABI and never change. Whether a kernel
//! has a feature is decided at run time from what the device reports
//! (context::Features), never from these headers.

use super::sys::*;
use core::mem::{offset_of, size_of};

/// `device_cap_flags_ex` bits (ib_uverbs_device_cap_flags, Linux 6.2).
pub(crate) const DEVICE_FLUSH_GLOBAL: u64 = 1 << 38;
pub(crate) const DEVICE_FLUSH_PERSISTENT: u64 = 1 << 39;
pub(crate) const DEVICE_ATOMIC_WRITE: u64 = 1 << 40;

/// Work request opcodes (ib_uverbs_wr_opcode / ibv_wr_opcode).
pub(crate) const WR_FLUSH: u32 = 14;
pub(crate) const WR_ATOMIC_WRITE: u32 = ibv_wr_opcode::IBV_WR_ATOMIC_WRITE;
const _: () = assert!(WR_ATOMIC_WRITE == 15);

/// `ibv_qp_create_send_ops_flags` of rdma-core 45+.
pub(crate) const QP_EX_WITH_FLUSH: u64 = 1 << 11;
pub(crate) const QP_EX_WITH_ATOMIC_WRITE: u64 = ibv_qp_create_send_ops_flags::IBV_QP_EX_WITH_ATOMIC_WRITE as u64;
const _: () = assert!(QP_EX_WITH_ATOMIC_WRITE == 1 << 12);

/// MR access flags of rdma-core 45+ / Linux 6.2.
pub(crate) const ACCESS_FLUSH_GLOBAL: u32 = 1 << 8;
pub(crate) const ACCESS_FLUSH_PERSISTENT: u32 = 1 << 9;

/// The `flush` arm of `rxe_send_wr`'s `wr` union (Linux 6.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct rxe_flush_wr {
    pub remote_addr: u64,
    /// The kernel reads the length from the WQE's dma part; this stays 0, as in librxe.
    pub length: u32,
    pub rkey: u32,
    pub ptype: u8,
    pub level: u8,
}

// It overlays the union's start like the other arms.
const _: () = assert!(size_of::<rxe_flush_wr>() <= size_of::<rxe_send_wr__bindgen_ty_2>());
// Offsets as in rdma_user_rxe.h of 6.2+ (rkey after a 32-bit length).
const _: () = assert!(offset_of!(rxe_flush_wr, rkey) == 12 && offset_of!(rxe_flush_wr, ptype) == 16 && offset_of!(rxe_flush_wr, level) == 17);
const _: () = assert!(size_of::<rxe_flush_wr>() == 24);

/// ATOMIC WRITE's 8 bytes travel in the WQE where inline data would
/// (`rxe_dma_info::atomic_wr`, a union member with `inline_data`).
pub(crate) const ATOMIC_WRITE_LEN: usize = 8;
