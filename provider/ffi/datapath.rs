//! extern "C" entries of the data path: CQ, QP (both send APIs), SRQ, AH.
//! Like the control entries in the parent module, each catches panics.

use super::{guarded, no_unwind, ret_int, ret_ptr};
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::context::Context;
use crate::cq::{self, Cq};
use crate::qp::{self, Qp};
use crate::srq::{self, Srq};
use crate::{ah, wqe};
use core::ffi::{c_int, c_uint, c_void};
use core::ptr;

use ibv_qp_create_send_ops_flags as ops;
use ibv_wr_opcode as op;

// ---- CQ

pub unsafe extern "C" fn create_cq(ctx: *mut ibv_context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int) -> *mut ibv_cq {
    // SAFETY: ctx is our context.
    ret_ptr(guarded("create_cq", || cq::create(unsafe { Context::from_ibv(ctx) }, cqe, channel, comp_vector)))
}

pub unsafe extern "C" fn create_cq_ex(ctx: *mut ibv_context, attr: *mut ibv_cq_init_attr_ex) -> *mut ibv_cq_ex {
    // SAFETY: ctx is our context; attr is libibverbs-checked.
    ret_ptr(guarded("create_cq_ex", || unsafe { cq::create_ex(Context::from_ibv(ctx), attr) }))
}

pub unsafe extern "C" fn poll_cq(cq: *mut ibv_cq, ne: c_int, wc: *mut ibv_wc) -> c_int {
    // SAFETY: cq is ours; wc has room for ne entries.
    no_unwind("poll_cq", -1, || unsafe { cq::poll(Cq::from_ibv(cq), ne, wc) })
}

pub unsafe extern "C" fn resize_cq(cq: *mut ibv_cq, cqe: c_int) -> c_int {
    ret_int(guarded("resize_cq", || unsafe {
        // SAFETY: cq is ours.
        let cq = Cq::from_ibv(cq);
        cq::resize(Context::from_ibv((*cq.ibv_cq()).context), cq, cqe)
    }))
}

pub unsafe extern "C" fn destroy_cq(cq: *mut ibv_cq) -> c_int {
    // SAFETY: cq is ours.
    ret_int(guarded("destroy_cq", || unsafe { cq::destroy(cq) }))
}

pub unsafe extern "C" fn cq_start_poll(cq: *mut ibv_cq_ex, _attr: *mut ibv_poll_cq_attr) -> c_int {
    // SAFETY: cq is ours.
    no_unwind("start_poll", libc::EIO, || cq::start_poll(unsafe { Cq::from_ibv(cq.cast()) }))
}

pub unsafe extern "C" fn cq_next_poll(cq: *mut ibv_cq_ex) -> c_int {
    // SAFETY: cq is ours.
    no_unwind("next_poll", libc::EIO, || cq::next_poll(unsafe { Cq::from_ibv(cq.cast()) }))
}

pub unsafe extern "C" fn cq_end_poll(cq: *mut ibv_cq_ex) {
    // SAFETY: cq is ours.
    no_unwind("end_poll", (), || cq::end_poll(unsafe { Cq::from_ibv(cq.cast()) }))
}

macro_rules! cq_reader {
    ($name:ident, $ty:ty, |$wc:ident| $value:expr) => {
        pub unsafe extern "C" fn $name(cq: *mut ibv_cq_ex) -> $ty {
            // SAFETY: cq is ours and between start_poll and end_poll.
            no_unwind(stringify!($name), Default::default(), || {
                let $wc = cq::current(unsafe { Cq::from_ibv(cq.cast()) });
                $value
            })
        }
    };
}

cq_reader!(cq_read_opcode, ibv_wc_opcode::Type, |wc| wc.opcode as _);
cq_reader!(cq_read_vendor_err, u32, |wc| wc.vendor_err);
cq_reader!(cq_read_byte_len, u32, |wc| wc.byte_len);
// SAFETY (each union read): imm_data and invalidate_rkey share plain u32 bits.
cq_reader!(cq_read_imm_data, __be32, |wc| unsafe { wc.ex.imm_data });
cq_reader!(cq_read_qp_num, u32, |wc| wc.qp_num);
cq_reader!(cq_read_src_qp, u32, |wc| wc.src_qp);
cq_reader!(cq_read_wc_flags, c_uint, |wc| wc.wc_flags);
cq_reader!(cq_read_slid, u32, |wc| wc.slid as u32);
cq_reader!(cq_read_sl, u8, |wc| wc.sl);
cq_reader!(cq_read_dlid_path_bits, u8, |wc| wc.dlid_path_bits);

// ---- QP

pub unsafe extern "C" fn create_qp(pd: *mut ibv_pd, attr: *mut ibv_qp_init_attr) -> *mut ibv_qp {
    // SAFETY: pd is ours, attr the application's.
    ret_ptr(guarded("create_qp", || unsafe { qp::create(Context::from_ibv((*pd).context), pd, attr) }))
}

pub unsafe extern "C" fn create_qp_ex(ctx: *mut ibv_context, attr: *mut ibv_qp_init_attr_ex) -> *mut ibv_qp {
    // SAFETY: ctx is ours, attr the application's.
    ret_ptr(guarded("create_qp_ex", || unsafe { qp::create_ex(Context::from_ibv(ctx), attr) }))
}

pub unsafe extern "C" fn query_qp(q: *mut ibv_qp, attr: *mut ibv_qp_attr, mask: c_int, init_attr: *mut ibv_qp_init_attr) -> c_int {
    // SAFETY: q is ours.
    ret_int(guarded("query_qp", || qp::query(unsafe { Qp::from_ibv(q) }, attr, mask, init_attr)))
}

pub unsafe extern "C" fn modify_qp(q: *mut ibv_qp, attr: *mut ibv_qp_attr, mask: c_int) -> c_int {
    // SAFETY: q is ours.
    ret_int(guarded("modify_qp", || qp::modify(unsafe { Qp::from_ibv(q) }, attr, mask)))
}

pub unsafe extern "C" fn destroy_qp(q: *mut ibv_qp) -> c_int {
    // SAFETY: q is ours.
    ret_int(guarded("destroy_qp", || unsafe { qp::destroy(q) }))
}

pub unsafe extern "C" fn post_send(q: *mut ibv_qp, wr: *mut ibv_send_wr, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    // SAFETY: q is ours; the WR list is the application's.
    no_unwind("post_send", libc::EIO, || unsafe { qp::post_send(Qp::from_ibv(q), wr, bad_wr) })
}

pub unsafe extern "C" fn post_recv(q: *mut ibv_qp, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    // SAFETY: as above.
    no_unwind("post_recv", libc::EIO, || unsafe { qp::post_recv(Qp::from_ibv(q), wr, bad_wr) })
}

/// Type 1 windows move their rkey's low byte on each bind, as librxe does.
fn next_rkey(rkey: u32) -> u32 {
    (rkey & 0xffff_ff00) | (rkey.wrapping_add(1) & 0xff)
}

/// `ibv_bind_mw` (type 1): a BIND_MW work request through post_send.
pub unsafe extern "C" fn bind_mw(q: *mut ibv_qp, mw: *mut ibv_mw, bind: *mut ibv_mw_bind) -> c_int {
    no_unwind("bind_mw", libc::EIO, || unsafe {
        // SAFETY: the application's objects, checked by libibverbs.
        let b = &*bind;
        let qp = Qp::from_ibv(q);
        if b.bind_info.mw_access_flags & ibv_access_flags::IBV_ACCESS_ZERO_BASED != 0 {
            log::error!("bind_mw: zero-based memory windows are not supported by rxe");
            crate::cmd::Errno(libc::EINVAL).set();
            return libc::EINVAL;
        }
        let mut wr: ibv_send_wr = core::mem::zeroed();
        wr.opcode = op::IBV_WR_BIND_MW;
        wr.wr_id = b.wr_id;
        wr.send_flags = b.send_flags;
        wr.__bindgen_anon_2.bind_mw.bind_info = b.bind_info;
        wr.__bindgen_anon_2.bind_mw.mw = mw;
        wr.__bindgen_anon_2.bind_mw.rkey = next_rkey((*mw).rkey);
        let mut bad = ptr::null_mut();
        let ret = qp::post_send(qp, &mut wr, &mut bad);
        if ret != 0 {
            crate::cmd::Errno(ret).set();
            return ret;
        }
        // If the bind fails in the completion, the application undoes this.
        (*mw).rkey = wr.__bindgen_anon_2.bind_mw.rkey;
        0
    })
}

// ---- The extended send API

/// Installs the builders the application asked for and all setters.
pub fn install_send_ops(ex: &mut ibv_qp_ex, flags: u64) {
    let has = |f: u32| flags & f as u64 != 0;
    if has(ops::IBV_QP_EX_WITH_ATOMIC_CMP_AND_SWP) {
        ex.wr_atomic_cmp_swp = Some(wr_atomic_cmp_swp);
    }
    if has(ops::IBV_QP_EX_WITH_ATOMIC_FETCH_AND_ADD) {
        ex.wr_atomic_fetch_add = Some(wr_atomic_fetch_add);
    }
    if has(ops::IBV_QP_EX_WITH_BIND_MW) {
        ex.wr_bind_mw = Some(wr_bind_mw);
    }
    if has(ops::IBV_QP_EX_WITH_LOCAL_INV) {
        ex.wr_local_inv = Some(wr_local_inv);
    }
    if has(ops::IBV_QP_EX_WITH_RDMA_READ) {
        ex.wr_rdma_read = Some(wr_rdma_read);
    }
    if has(ops::IBV_QP_EX_WITH_RDMA_WRITE) {
        ex.wr_rdma_write = Some(wr_rdma_write);
    }
    if has(ops::IBV_QP_EX_WITH_RDMA_WRITE_WITH_IMM) {
        ex.wr_rdma_write_imm = Some(wr_rdma_write_imm);
    }
    if has(ops::IBV_QP_EX_WITH_SEND) {
        ex.wr_send = Some(wr_send);
    }
    if has(ops::IBV_QP_EX_WITH_SEND_WITH_IMM) {
        ex.wr_send_imm = Some(wr_send_imm);
    }
    if has(ops::IBV_QP_EX_WITH_SEND_WITH_INV) {
        ex.wr_send_inv = Some(wr_send_inv);
    }
    ex.wr_set_ud_addr = Some(wr_set_ud_addr);
    ex.wr_set_inline_data = Some(wr_set_inline_data);
    ex.wr_set_inline_data_list = Some(wr_set_inline_data_list);
    ex.wr_set_sge = Some(wr_set_sge);
    ex.wr_set_sge_list = Some(wr_set_sge_list);
    ex.wr_start = Some(wr_start);
    ex.wr_complete = Some(wr_complete);
    ex.wr_abort = Some(wr_abort);
}

fn qpx<'a>(q: *mut ibv_qp_ex) -> &'a Qp {
    // SAFETY: libibverbs only calls these on QPs made by create_qp_ex.
    unsafe { Qp::from_ibv(q) }
}

unsafe extern "C" fn wr_start(q: *mut ibv_qp_ex) {
    no_unwind("wr_start", (), || qp::wr_start(qpx(q)))
}

unsafe extern "C" fn wr_complete(q: *mut ibv_qp_ex) -> c_int {
    no_unwind("wr_complete", libc::EIO, || qp::wr_complete(qpx(q)))
}

unsafe extern "C" fn wr_abort(q: *mut ibv_qp_ex) {
    no_unwind("wr_abort", (), || qp::wr_abort(qpx(q)))
}

unsafe extern "C" fn wr_send(q: *mut ibv_qp_ex) {
    no_unwind("wr_send", (), || qp::build(qpx(q), op::IBV_WR_SEND, |_| {}))
}

unsafe extern "C" fn wr_send_imm(q: *mut ibv_qp_ex, imm: __be32) {
    no_unwind("wr_send_imm", (), || qp::build(qpx(q), op::IBV_WR_SEND_WITH_IMM, |w| w.wr.ex.imm_data = imm))
}

unsafe extern "C" fn wr_send_inv(q: *mut ibv_qp_ex, rkey: u32) {
    no_unwind("wr_send_inv", (), || qp::build(qpx(q), op::IBV_WR_SEND_WITH_INV, |w| w.wr.ex.invalidate_rkey = rkey))
}

fn rdma(w: &mut rxe_send_wqe, rkey: u32, remote_addr: u64) {
    // SAFETY (union writes): plain integers.
    w.wr.wr.rdma = rxe_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr, rkey, reserved: 0 };
    w.iova = remote_addr;
}

unsafe extern "C" fn wr_rdma_write(q: *mut ibv_qp_ex, rkey: u32, addr: u64) {
    no_unwind("wr_rdma_write", (), || qp::build(qpx(q), op::IBV_WR_RDMA_WRITE, |w| rdma(w, rkey, addr)))
}

unsafe extern "C" fn wr_rdma_write_imm(q: *mut ibv_qp_ex, rkey: u32, addr: u64, imm: __be32) {
    no_unwind("wr_rdma_write_imm", (), || {
        qp::build(qpx(q), op::IBV_WR_RDMA_WRITE_WITH_IMM, |w| {
            rdma(w, rkey, addr);
            w.wr.ex.imm_data = imm;
        })
    })
}

unsafe extern "C" fn wr_rdma_read(q: *mut ibv_qp_ex, rkey: u32, addr: u64) {
    no_unwind("wr_rdma_read", (), || qp::build(qpx(q), op::IBV_WR_RDMA_READ, |w| rdma(w, rkey, addr)))
}

fn atomic(w: &mut rxe_send_wqe, rkey: u32, remote_addr: u64, compare_add: u64, swap: u64) {
    w.wr.wr.atomic = rxe_send_wr__bindgen_ty_2__bindgen_ty_2 { remote_addr, compare_add, swap, rkey, reserved: 0 };
    w.iova = remote_addr;
}

unsafe extern "C" fn wr_atomic_cmp_swp(q: *mut ibv_qp_ex, rkey: u32, addr: u64, compare: u64, swap: u64) {
    no_unwind("wr_atomic_cmp_swp", (), || qp::build(qpx(q), op::IBV_WR_ATOMIC_CMP_AND_SWP, |w| atomic(w, rkey, addr, compare, swap)))
}

unsafe extern "C" fn wr_atomic_fetch_add(q: *mut ibv_qp_ex, rkey: u32, addr: u64, add: u64) {
    no_unwind("wr_atomic_fetch_add", (), || qp::build(qpx(q), op::IBV_WR_ATOMIC_FETCH_AND_ADD, |w| atomic(w, rkey, addr, add, 0)))
}

unsafe extern "C" fn wr_local_inv(q: *mut ibv_qp_ex, rkey: u32) {
    no_unwind("wr_local_inv", (), || qp::build(qpx(q), op::IBV_WR_LOCAL_INV, |w| w.wr.ex.invalidate_rkey = rkey))
}

unsafe extern "C" fn wr_bind_mw(q: *mut ibv_qp_ex, mw: *mut ibv_mw, rkey: u32, info: *const ibv_mw_bind_info) {
    no_unwind("wr_bind_mw", (), || {
        qp::build(qpx(q), op::IBV_WR_BIND_MW, |w| unsafe {
            // SAFETY: the application's window and bind description.
            let info = &*info;
            w.wr.wr.mw = rxe_send_wr__bindgen_ty_2__bindgen_ty_4 {
                addr: info.addr,
                length: info.length,
                mr_lkey: (*info.mr).lkey,
                mw_rkey: (*mw).rkey,
                rkey,
                access: info.mw_access_flags,
            };
        })
    })
}

unsafe extern "C" fn wr_set_ud_addr(q: *mut ibv_qp_ex, ah: *mut ibv_ah, remote_qpn: u32, remote_qkey: u32) {
    no_unwind("wr_set_ud_addr", (), || {
        qp::with_last(qpx(q), |w, _| {
            if ah.is_null() {
                return Err(libc::EINVAL);
            }
            // SAFETY: the application's AH from our create_ah.
            let ah_num = unsafe { ah::Ah::from_ibv(ah) }.ah_num;
            w.wr.wr.ud.remote_qpn = remote_qpn;
            w.wr.wr.ud.remote_qkey = remote_qkey;
            w.wr.wr.ud.ah_num = ah_num;
            Ok(())
        })
    })
}

fn set_length(w: &mut rxe_send_wqe, length: u32, num_sge: u32) {
    w.dma.length = length;
    w.dma.resid = length;
    w.dma.num_sge = num_sge;
}

unsafe extern "C" fn wr_set_sge(q: *mut ibv_qp_ex, lkey: u32, addr: u64, length: u32) {
    no_unwind("wr_set_sge", (), || {
        qp::with_last(qpx(q), |w, _| {
            // A zero-length SGE means no data at all, as in librxe.
            if length != 0 {
                // SAFETY: every send slot has room for at least one SGE.
                unsafe { wqe::send_payload(w).cast::<rxe_sge>().write(rxe_sge { addr, length, lkey }) };
                set_length(w, length, 1);
            }
            Ok(())
        })
    })
}

unsafe extern "C" fn wr_set_sge_list(q: *mut ibv_qp_ex, num_sge: usize, sg_list: *const ibv_sge) {
    no_unwind("wr_set_sge_list", (), || {
        qp::with_last(qpx(q), |w, lim| {
            if num_sge > lim.max_sge as usize {
                return Err(libc::ENOSPC);
            }
            // SAFETY: the application's list of num_sge entries; the slot has room for max_sge.
            let sges = unsafe { wqe::sges(sg_list, num_sge as i32) };
            unsafe { ptr::copy_nonoverlapping(sges.as_ptr().cast::<rxe_sge>(), wqe::send_payload(w).cast::<rxe_sge>(), sges.len()) };
            let length = sges.iter().fold(0u32, |sum, s| sum.wrapping_add(s.length));
            set_length(w, length, num_sge as u32);
            Ok(())
        })
    })
}

unsafe extern "C" fn wr_set_inline_data(q: *mut ibv_qp_ex, addr: *mut c_void, length: usize) {
    no_unwind("wr_set_inline_data", (), || {
        qp::with_last(qpx(q), |w, lim| {
            if length > lim.max_inline as usize {
                return Err(libc::ENOSPC);
            }
            // SAFETY: the application's buffer; the slot has room for max_inline bytes.
            unsafe { ptr::copy_nonoverlapping(addr.cast::<u8>(), wqe::send_payload(w), length) };
            set_length(w, length as u32, 0);
            Ok(())
        })
    })
}

unsafe extern "C" fn wr_set_inline_data_list(q: *mut ibv_qp_ex, num_buf: usize, bufs: *const ibv_data_buf) {
    no_unwind("wr_set_inline_data_list", (), || {
        qp::with_last(qpx(q), |w, lim| {
            // SAFETY: the application's list of num_buf buffers.
            let bufs = if num_buf == 0 { &[][..] } else { unsafe { core::slice::from_raw_parts(bufs, num_buf) } };
            let total: usize = bufs.iter().map(|b| b.length).sum();
            if total > lim.max_inline as usize {
                return Err(libc::ENOSPC);
            }
            let mut at = wqe::send_payload(w);
            for b in bufs {
                // SAFETY: total fits the slot's inline room.
                unsafe {
                    ptr::copy_nonoverlapping(b.addr.cast::<u8>(), at, b.length);
                    at = at.add(b.length);
                }
            }
            set_length(w, total as u32, 0);
            Ok(())
        })
    })
}

// ---- SRQ

pub unsafe extern "C" fn create_srq(pd: *mut ibv_pd, attr: *mut ibv_srq_init_attr) -> *mut ibv_srq {
    // SAFETY: pd is ours.
    ret_ptr(guarded("create_srq", || unsafe { srq::create(Context::from_ibv((*pd).context), pd, attr) }))
}

pub unsafe extern "C" fn create_srq_ex(ctx: *mut ibv_context, attr: *mut ibv_srq_init_attr_ex) -> *mut ibv_srq {
    // SAFETY: ctx is ours.
    ret_ptr(guarded("create_srq_ex", || unsafe { srq::create_ex(Context::from_ibv(ctx), attr) }))
}

pub unsafe extern "C" fn modify_srq(s: *mut ibv_srq, attr: *mut ibv_srq_attr, mask: c_int) -> c_int {
    // SAFETY: s is ours.
    ret_int(guarded("modify_srq", || srq::modify(unsafe { Srq::from_ibv(s) }, attr, mask)))
}

pub unsafe extern "C" fn query_srq(s: *mut ibv_srq, attr: *mut ibv_srq_attr) -> c_int {
    // SAFETY: s is ours.
    ret_int(guarded("query_srq", || srq::query(unsafe { Srq::from_ibv(s) }, attr)))
}

pub unsafe extern "C" fn destroy_srq(s: *mut ibv_srq) -> c_int {
    // SAFETY: s is ours.
    ret_int(guarded("destroy_srq", || unsafe { srq::destroy(s) }))
}

pub unsafe extern "C" fn post_srq_recv(s: *mut ibv_srq, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    // SAFETY: s is ours; the WR list is the application's.
    no_unwind("post_srq_recv", libc::EIO, || unsafe { srq::post_recv(Srq::from_ibv(s), wr, bad_wr) })
}

// ---- AH

pub unsafe extern "C" fn create_ah(pd: *mut ibv_pd, attr: *mut ibv_ah_attr) -> *mut ibv_ah {
    // SAFETY: pd is ours.
    ret_ptr(guarded("create_ah", || unsafe { ah::create(Context::from_ibv((*pd).context), pd, attr) }))
}

pub unsafe extern "C" fn destroy_ah(a: *mut ibv_ah) -> c_int {
    // SAFETY: a is ours.
    ret_int(guarded("destroy_ah", || unsafe { ah::destroy(a) }))
}

/// The data-path part of the ops table.
pub fn add_data_path_ops(ops: &mut verbs_context_ops) {
    ops.create_cq = Some(create_cq);
    ops.create_cq_ex = Some(create_cq_ex);
    ops.poll_cq = Some(poll_cq);
    // Arming a CQ is one plain command with no provider part.
    ops.req_notify_cq = Some(ibv_cmd_req_notify_cq);
    ops.resize_cq = Some(resize_cq);
    ops.destroy_cq = Some(destroy_cq);
    ops.create_qp = Some(create_qp);
    ops.create_qp_ex = Some(create_qp_ex);
    ops.query_qp = Some(query_qp);
    ops.modify_qp = Some(modify_qp);
    ops.destroy_qp = Some(destroy_qp);
    ops.post_send = Some(post_send);
    ops.post_recv = Some(post_recv);
    ops.bind_mw = Some(bind_mw);
    ops.create_srq = Some(create_srq);
    ops.create_srq_ex = Some(create_srq_ex);
    ops.modify_srq = Some(modify_srq);
    ops.query_srq = Some(query_srq);
    ops.destroy_srq = Some(destroy_srq);
    ops.post_srq_recv = Some(post_srq_recv);
    ops.create_ah = Some(create_ah);
    ops.destroy_ah = Some(destroy_ah);
    // Multicast attach/detach are plain commands too.
    ops.attach_mcast = Some(ibv_cmd_attach_mcast);
    ops.detach_mcast = Some(ibv_cmd_detach_mcast);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type1_rkey_moves_its_low_byte() {
        assert_eq!(next_rkey(0x1234_5600), 0x1234_5601);
        assert_eq!(next_rkey(0x1234_56ff), 0x1234_5600);
    }
}
