//! Building the work queue entries the kernel reads from our rings: pure
//! functions from verbs work requests to `rxe_send_wqe` / `rxe_recv_wqe`.

use crate::abi::sys::*;
use crate::cmd::Errno;
use core::mem::{offset_of, size_of};
use core::ptr;

use ibv_wr_opcode as op;

/// What a send queue accepts, fixed at QP creation.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendLimits {
    pub max_sge: u32,
    pub max_inline: u32,
    pub qp_type: ibv_qp_type::Type,
}

/// Opcodes the kernel's rxe executes (6.1 has no ATOMIC_WRITE or TSO).
pub fn opcode_known(opcode: ibv_wr_opcode::Type) -> bool {
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

fn is_atomic(opcode: ibv_wr_opcode::Type) -> bool {
    matches!(opcode, op::IBV_WR_ATOMIC_CMP_AND_SWP | op::IBV_WR_ATOMIC_FETCH_AND_ADD)
}

/// The SGEs of a work request.
///
/// # Safety
/// `sg_list` must hold `num_sge` entries when `num_sge > 0`.
pub unsafe fn sges<'a>(sg_list: *const ibv_sge, num_sge: i32) -> &'a [ibv_sge] {
    if num_sge <= 0 || sg_list.is_null() {
        &[]
    } else {
        // SAFETY: per contract.
        unsafe { core::slice::from_raw_parts(sg_list, num_sge as usize) }
    }
}

/// Checks a send WR as librxe does, returning its total length, with the
/// reason for a refusal.
pub fn validate_send(wr: &ibv_send_wr, sges: &[ibv_sge], lim: &SendLimits) -> core::result::Result<u32, (Errno, String)> {
    let einval = |why: String| Err((Errno(libc::EINVAL), why));
    if wr.num_sge < 0 || wr.num_sge as u32 > lim.max_sge {
        return einval(format!("num_sge {} exceeds the QP's max_send_sge {}", wr.num_sge, lim.max_sge));
    }
    if !opcode_known(wr.opcode) {
        return einval(format!("opcode {} is not one rxe executes", wr.opcode));
    }
    let length = sges.iter().fold(0u32, |sum, s| sum.wrapping_add(s.length));
    if is_atomic(wr.opcode) {
        // SAFETY: reading the atomic arm of the union the opcode selects.
        let remote = unsafe { wr.wr.atomic.remote_addr };
        if length < 8 || remote & 7 != 0 {
            return einval(format!("atomic needs an 8-byte local buffer and an 8-byte aligned remote address (length {length}, remote {remote:#x})"));
        }
    }
    if wr.send_flags & ibv_send_flags::IBV_SEND_INLINE != 0 && length > lim.max_inline {
        return einval(format!("inline data of {length} bytes exceeds the QP's max_inline_data {}", lim.max_inline));
    }
    if wr.opcode == op::IBV_WR_BIND_MW {
        // SAFETY: imm_data shares its union with invalidate_rkey; any bits are valid.
        let imm = unsafe { wr.__bindgen_anon_1.imm_data };
        if length != 0 || wr.num_sge != 0 || imm != 0 {
            return einval("BIND_MW takes no SGEs and no immediate data".into());
        }
        if lim.qp_type != ibv_qp_type::IBV_QPT_RC && lim.qp_type != ibv_qp_type::IBV_QPT_UC {
            return einval("BIND_MW needs an RC or UC QP".into());
        }
    }
    Ok(length)
}

/// Where a send WQE's SGEs or inline data start.
pub fn send_payload(wqe: *mut rxe_send_wqe) -> *mut u8 {
    wqe.cast::<u8>().wrapping_add(offset_of!(rxe_send_wqe, dma) + offset_of!(rxe_dma_info, __bindgen_anon_1))
}

/// Bytes of slot a send WQE header occupies, before its payload.
pub const SEND_HEADER: usize = offset_of!(rxe_send_wqe, dma) + offset_of!(rxe_dma_info, __bindgen_anon_1);
pub const RECV_HEADER: usize = offset_of!(rxe_recv_wqe, dma) + offset_of!(rxe_dma_info, __bindgen_anon_1);

/// Zeroes a WQE header and fills what every opcode carries.
///
/// # Safety
/// `wqe` must point to a slot of at least `SEND_HEADER` bytes.
pub unsafe fn start_send_wqe(wqe: *mut rxe_send_wqe, wr_id: u64, opcode: u32, send_flags: u32, ssn: u32) {
    // SAFETY: per contract; all-zero is a valid header.
    unsafe {
        ptr::write_bytes(wqe.cast::<u8>(), 0, SEND_HEADER);
        (*wqe).wr.wr_id = wr_id;
        (*wqe).wr.opcode = opcode;
        (*wqe).wr.send_flags = send_flags;
        (*wqe).ssn = ssn;
    }
}

/// Fills a send WQE from a validated WR.
///
/// # Safety
/// `wqe` is a slot big enough for the QP's max SGEs / inline data; `wr` was
/// validated against the same limits; inline SGE addresses are readable.
pub unsafe fn write_send(wqe: *mut rxe_send_wqe, wr: &ibv_send_wr, sges: &[ibv_sge], length: u32, ud: Option<(u32, u32, u32)>, ssn: u32) {
    // SAFETY: per contract; each union arm read is the one the opcode selects.
    unsafe {
        start_send_wqe(wqe, wr.wr_id, wr.opcode, wr.send_flags, ssn);
        let k = &mut (*wqe).wr;
        k.ex.imm_data = wr.__bindgen_anon_1.imm_data;
        match wr.opcode {
            op::IBV_WR_RDMA_WRITE | op::IBV_WR_RDMA_WRITE_WITH_IMM | op::IBV_WR_RDMA_READ => {
                k.wr.rdma.remote_addr = wr.wr.rdma.remote_addr;
                k.wr.rdma.rkey = wr.wr.rdma.rkey;
                (*wqe).iova = wr.wr.rdma.remote_addr;
            }
            op::IBV_WR_ATOMIC_CMP_AND_SWP | op::IBV_WR_ATOMIC_FETCH_AND_ADD => {
                k.wr.atomic.remote_addr = wr.wr.atomic.remote_addr;
                k.wr.atomic.compare_add = wr.wr.atomic.compare_add;
                k.wr.atomic.swap = wr.wr.atomic.swap;
                k.wr.atomic.rkey = wr.wr.atomic.rkey;
                (*wqe).iova = wr.wr.atomic.remote_addr;
            }
            op::IBV_WR_BIND_MW => {
                let bind = &wr.__bindgen_anon_2.bind_mw;
                k.wr.mw.addr = bind.bind_info.addr;
                k.wr.mw.length = bind.bind_info.length;
                k.wr.mw.mr_lkey = (*bind.bind_info.mr).lkey;
                k.wr.mw.mw_rkey = (*bind.mw).rkey;
                k.wr.mw.rkey = bind.rkey;
                k.wr.mw.access = bind.bind_info.mw_access_flags;
            }
            _ => {}
        }
        if let Some((remote_qpn, remote_qkey, ah_num)) = ud {
            if matches!(wr.opcode, op::IBV_WR_SEND | op::IBV_WR_SEND_WITH_IMM) {
                k.wr.ud.remote_qpn = remote_qpn;
                k.wr.ud.remote_qkey = remote_qkey;
                k.wr.ud.ah_num = ah_num;
            }
        }
        let payload = send_payload(wqe);
        if wr.send_flags & ibv_send_flags::IBV_SEND_INLINE != 0 {
            let mut at = payload;
            for s in sges {
                ptr::copy_nonoverlapping(s.addr as usize as *const u8, at, s.length as usize);
                at = at.add(s.length as usize);
            }
        } else {
            ptr::copy_nonoverlapping(sges.as_ptr().cast::<rxe_sge>(), payload.cast::<rxe_sge>(), sges.len());
        }
        let dma = &mut (*wqe).dma;
        dma.length = length;
        dma.resid = length;
        dma.num_sge = sges.len() as u32;
    }
}

/// Fills a receive WQE.
///
/// # Safety
/// `wqe` is a slot with room for `sges.len()` SGEs.
pub unsafe fn write_recv(wqe: *mut rxe_recv_wqe, wr_id: u64, sges: &[ibv_sge]) {
    // SAFETY: per contract.
    unsafe {
        ptr::write_bytes(wqe.cast::<u8>(), 0, RECV_HEADER);
        (*wqe).wr_id = wr_id;
        let payload = wqe.cast::<u8>().add(RECV_HEADER).cast::<rxe_sge>();
        ptr::copy_nonoverlapping(sges.as_ptr().cast::<rxe_sge>(), payload, sges.len());
        let length = sges.iter().fold(0u32, |sum, s| sum.wrapping_add(s.length));
        (*wqe).dma.length = length;
        (*wqe).dma.resid = length;
        (*wqe).dma.num_sge = sges.len() as u32;
    }
}

/// Room a receive slot has for SGEs.
pub fn recv_slot_sges(elem_size: usize) -> usize {
    elem_size.saturating_sub(RECV_HEADER) / size_of::<rxe_sge>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Vec<u64> {
        vec![0xa5a5_a5a5_a5a5_a5a5; 128] // 1 KiB, 8-byte aligned, dirty
    }

    fn limits(qp_type: ibv_qp_type::Type) -> SendLimits {
        SendLimits { max_sge: 4, max_inline: 64, qp_type }
    }

    fn wr(opcode: u32, sg: &mut [ibv_sge]) -> ibv_send_wr {
        let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
        wr.opcode = opcode;
        wr.sg_list = sg.as_mut_ptr();
        wr.num_sge = sg.len() as i32;
        wr
    }

    #[test]
    fn sge_and_ibv_sge_share_layout() {
        assert_eq!(size_of::<rxe_sge>(), size_of::<ibv_sge>());
        assert_eq!(offset_of!(rxe_sge, lkey), offset_of!(ibv_sge, lkey));
    }

    #[test]
    fn rdma_write_wqe() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 100, lkey: 7 }, ibv_sge { addr: 0x2000, length: 28, lkey: 8 }];
        let mut w = wr(op::IBV_WR_RDMA_WRITE, &mut sg);
        w.wr_id = 42;
        w.send_flags = ibv_send_flags::IBV_SEND_SIGNALED;
        w.wr.rdma.remote_addr = 0xdead0000;
        w.wr.rdma.rkey = 0x55;
        let len = validate_send(&w, &sg, &limits(ibv_qp_type::IBV_QPT_RC)).unwrap();
        assert_eq!(len, 128);
        let mut buf = slot();
        let wqe = buf.as_mut_ptr().cast::<rxe_send_wqe>();
        unsafe {
            write_send(wqe, &w, &sg, len, None, 9);
            assert_eq!((*wqe).wr.wr_id, 42);
            assert_eq!((*wqe).wr.opcode, op::IBV_WR_RDMA_WRITE);
            assert_eq!((*wqe).wr.wr.rdma.rkey, 0x55);
            assert_eq!((*wqe).iova, 0xdead0000);
            assert_eq!((*wqe).ssn, 9);
            assert_eq!((*wqe).state, 0);
            assert_eq!((*wqe).dma.length, 128);
            assert_eq!((*wqe).dma.resid, 128);
            assert_eq!((*wqe).dma.num_sge, 2);
            assert_eq!((*wqe).dma.cur_sge, 0);
            let s = buf.as_ptr().cast::<u8>().add(SEND_HEADER).cast::<rxe_sge>();
            assert_eq!((*s.add(1)).addr, 0x2000);
            assert_eq!((*s.add(1)).lkey, 8);
        }
    }

    #[test]
    fn inline_copies_bytes() {
        let data = *b"hello, inline world!";
        let mut sg = [ibv_sge { addr: data.as_ptr() as u64, length: data.len() as u32, lkey: 0 }];
        let mut w = wr(op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
        let len = validate_send(&w, &sg, &limits(ibv_qp_type::IBV_QPT_RC)).unwrap();
        let mut buf = slot();
        let wqe = buf.as_mut_ptr().cast::<rxe_send_wqe>();
        unsafe {
            write_send(wqe, &w, &sg, len, None, 0);
            let got = core::slice::from_raw_parts(buf.as_ptr().cast::<u8>().add(SEND_HEADER), data.len());
            assert_eq!(got, &data);
            assert_eq!((*wqe).dma.length, data.len() as u32);
        }
    }

    #[test]
    fn ud_send_carries_address() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 10, lkey: 1 }];
        let w = wr(op::IBV_WR_SEND, &mut sg);
        let mut buf = slot();
        let wqe = buf.as_mut_ptr().cast::<rxe_send_wqe>();
        unsafe {
            write_send(wqe, &w, &sg, 10, Some((0x11, 0x1111_1111, 3)), 0);
            assert_eq!((*wqe).wr.wr.ud.remote_qpn, 0x11);
            assert_eq!((*wqe).wr.wr.ud.remote_qkey, 0x1111_1111);
            assert_eq!((*wqe).wr.wr.ud.ah_num, 3);
        }
    }

    #[test]
    fn refusals_match_librxe() {
        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }; 5];
        let w = wr(op::IBV_WR_SEND, &mut sg);
        assert!(validate_send(&w, &sg, &limits(ibv_qp_type::IBV_QPT_RC)).unwrap_err().1.contains("max_send_sge"));

        let mut sg = [ibv_sge { addr: 0x1000, length: 100, lkey: 1 }];
        let mut w = wr(op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
        assert!(validate_send(&w, &sg, &limits(ibv_qp_type::IBV_QPT_RC)).unwrap_err().1.contains("max_inline_data"));

        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
        let mut w = wr(op::IBV_WR_ATOMIC_FETCH_AND_ADD, &mut sg);
        w.wr.atomic.remote_addr = 0x1004;
        assert_eq!(validate_send(&w, &sg, &limits(ibv_qp_type::IBV_QPT_RC)).unwrap_err().0, Errno(libc::EINVAL));

        let w = wr(99, &mut []);
        assert!(validate_send(&w, &[], &limits(ibv_qp_type::IBV_QPT_RC)).unwrap_err().1.contains("opcode"));

        let w = wr(op::IBV_WR_BIND_MW, &mut []);
        assert!(validate_send(&w, &[], &limits(ibv_qp_type::IBV_QPT_UD)).is_err());
    }

    #[test]
    fn recv_wqe() {
        let sg = [ibv_sge { addr: 0x3000, length: 4096, lkey: 5 }, ibv_sge { addr: 0x5000, length: 4, lkey: 6 }];
        let mut buf = slot();
        let wqe = buf.as_mut_ptr().cast::<rxe_recv_wqe>();
        unsafe {
            write_recv(wqe, 77, &sg);
            assert_eq!((*wqe).wr_id, 77);
            assert_eq!((*wqe).dma.length, 4100);
            assert_eq!((*wqe).dma.num_sge, 2);
            assert_eq!((*wqe).dma.sge_offset, 0);
            let s = buf.as_ptr().cast::<u8>().add(RECV_HEADER).cast::<rxe_sge>();
            assert_eq!((*s).lkey, 5);
        }
        assert_eq!(recv_slot_sges(RECV_HEADER + 64), 4);
    }
}
