//! The data path on the host: post_send, post_recv, post_srq_recv and every
//! ibv_wr_* builder and setter, against heap rings where the test plays the
//! kernel (consuming entries, checking what was written) and a pipe stands
//! in for the command fd, so every doorbell can be counted.

use crate::abi::sys::*;
use crate::ah::Ah;
use crate::cmd::Errno;
use crate::context::Context;
use crate::object::Object;
use crate::qp::{Payload, Qp, SendOp};
use crate::queue::Ring;
use crate::srq::Srq;
use crate::wqe::{SendLimits, RECV_HEADER, SEND_HEADER};
use core::mem::size_of;
use core::ptr;

use ibv_wr_opcode as op;

/// A context whose commands land in a pipe we can read back.
struct Kernel {
    ctx: Box<Context>,
    read_end: i32,
}

impl Kernel {
    fn new() -> Kernel {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into our array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        Kernel { ctx: Context::for_tests(fds[1]), read_end: fds[0] }
    }

    /// How many doorbells (zero-WR POST_SEND commands) were rung since last asked.
    fn doorbells(&self) -> usize {
        let mut buf = [0u8; 4096];
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(self.read_end, buf.as_mut_ptr().cast(), buf.len()) }.max(0) as usize;
        let each = size_of::<ib_uverbs_cmd_hdr>() + size_of::<ib_uverbs_post_send>();
        assert_eq!(n % each, 0, "a doorbell is one whole command");
        for cmd in buf[..n].chunks(each) {
            let command = u32::from_ne_bytes(cmd[..4].try_into().unwrap());
            assert_eq!(command, ib_uverbs_write_cmds::IB_USER_VERBS_CMD_POST_SEND);
            // wr_count sits after the response address and the QP handle.
            assert_eq!(u32::from_ne_bytes(cmd[8 + 12..8 + 16].try_into().unwrap()), 0, "no WRs in a doorbell");
        }
        n / each
    }

    fn qp(&self, qp_type: u32, sq_slots: u32, rq_slots: u32) -> Box<Qp> {
        let limits = SendLimits { max_sge: 4, max_inline: 64, qp_type, max_msg: 1 << 20 };
        Qp::for_tests(&self.ctx, Ring::heap(sq_slots, 512), Some(Ring::heap(rq_slots, 128)), limits, 4)
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        // SAFETY: our fds.
        unsafe {
            libc::close(self.read_end);
            libc::close(self.ctx.cmd_fd());
        }
    }
}

fn send_wr(wr_id: u64, opcode: u32, sg: &mut [ibv_sge]) -> ibv_send_wr {
    // SAFETY: all-zero is a valid ibv_send_wr.
    let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
    wr.wr_id = wr_id;
    wr.opcode = opcode;
    wr.sg_list = if sg.is_empty() { ptr::null_mut() } else { sg.as_mut_ptr() };
    wr.num_sge = sg.len() as i32;
    wr
}

/// Chains WRs in order and returns the head.
fn chain(wrs: &mut [ibv_send_wr]) -> *mut ibv_send_wr {
    for i in (1..wrs.len()).rev() {
        let next: *mut ibv_send_wr = &mut wrs[i];
        wrs[i - 1].next = next;
    }
    &mut wrs[0]
}

fn wqe_at(ring: &Ring, index: u32) -> rxe_send_wqe {
    // SAFETY: the slot holds a send WQE header (integers only).
    unsafe { ptr::read(ring.sim_slot(index).as_ptr().cast::<rxe_send_wqe>()) }
}

fn sent(qp: &Qp) -> u32 {
    qp.with_rings(|sq, _| sq.sim_pending())
}

#[test]
fn a_list_is_published_with_one_doorbell() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let mut sg = [ibv_sge { addr: 0x1000, length: 64, lkey: 1 }];
    let mut wrs = [send_wr(1, op::IBV_WR_SEND, &mut sg), send_wr(2, op::IBV_WR_SEND, &mut sg), send_wr(3, op::IBV_WR_RDMA_WRITE, &mut sg)];
    // SAFETY: a list of live local WRs.
    unsafe { qp.post_send_fast(chain(&mut wrs)) }.unwrap();
    assert_eq!((sent(&qp), k.doorbells()), (3, 1));
    qp.with_rings(|sq, _| {
        for i in 0..3 {
            let w = wqe_at(sq, i);
            assert_eq!((w.wr.wr_id, w.ssn, w.dma.length), (i as u64 + 1, i, 64));
        }
    });
}

#[test]
fn a_bad_wr_stops_the_list_and_the_rest_still_rings() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
    let mut many = [ibv_sge::default(); 5];
    let mut wrs = [send_wr(1, op::IBV_WR_SEND, &mut sg), send_wr(2, op::IBV_WR_SEND, &mut many), send_wr(3, op::IBV_WR_SEND, &mut sg)];
    let head = chain(&mut wrs);
    // SAFETY: as above.
    let err = unsafe { qp.post_send_fast(head) }.unwrap_err();
    assert_eq!((err.errno, err.bad), (Errno(libc::EINVAL), &mut wrs[1] as *mut _));
    assert_eq!((sent(&qp), k.doorbells()), (1, 1));
}

#[test]
fn full_send_queue_is_enomem_and_wraps_after_the_kernel_consumes() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 4, 4);
    let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
    let mut id = 0;
    for round in 0..5 {
        for _ in 0..3 {
            let mut w = send_wr(id, op::IBV_WR_SEND, &mut sg);
            // SAFETY: a live local WR.
            unsafe { qp.post_send_fast(&mut w) }.unwrap();
            id += 1;
        }
        let mut w = send_wr(99, op::IBV_WR_SEND, &mut sg);
        // SAFETY: as above.
        let err = unsafe { qp.post_send_fast(&mut w) }.unwrap_err();
        assert_eq!((err.errno, err.bad), (Errno(libc::ENOMEM), &mut w as *mut _), "round {round}");
        qp.with_rings(|sq, _| {
            // The last WQE written sits at index id-1 whatever the wrap.
            assert_eq!(wqe_at(sq, (id - 1) as u32).wr.wr_id, id - 1);
            sq.sim_consume(3);
        });
    }
    // One a post, the refused ones too (as librxe, the kernel is kicked
    // when the queue is full).
    assert_eq!(k.doorbells(), 20);
}

#[test]
fn nothing_is_posted_before_rts() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    qp.set_state_for_tests(ibv_qp_state::IBV_QPS_INIT);
    let mut w = send_wr(1, op::IBV_WR_SEND, &mut []);
    // SAFETY: a live local WR.
    let err = unsafe { qp.post_send_fast(&mut w) }.unwrap_err();
    assert_eq!((err.errno, err.bad), (Errno(libc::EINVAL), &mut w as *mut _));
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
    // Receives are fine in INIT, not in RESET.
    let mut r = ibv_recv_wr { wr_id: 1, next: ptr::null_mut(), sg_list: ptr::null_mut(), num_sge: 0 };
    // SAFETY: as above.
    unsafe { qp.post_recv::<true>(&mut r) }.unwrap();
    qp.set_state_for_tests(ibv_qp_state::IBV_QPS_RESET);
    // SAFETY: as above.
    assert_eq!(unsafe { qp.post_recv::<true>(&mut r) }.unwrap_err().errno, Errno(libc::EINVAL));
}

#[test]
fn ud_sends_carry_the_ah_and_other_opcodes_are_refused() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_UD, 8, 8);
    let ah = Ah::for_tests(7);
    let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
    let mut w = send_wr(1, op::IBV_WR_SEND, &mut sg);
    w.wr.ud = ibv_send_wr__bindgen_ty_2__bindgen_ty_3 { ah: ah.raw(), remote_qpn: 0x42, remote_qkey: 0x1111 };
    // SAFETY: a live local WR with our AH.
    unsafe { qp.post_send_fast(&mut w) }.unwrap();
    // SAFETY: plain integers.
    qp.with_rings(|sq, _| assert_eq!(unsafe { wqe_at(sq, 0).wr.wr.ud.ah_num }, 7));
    // An RDMA write's union holds a remote address where a UD send has its AH.
    let mut w = send_wr(2, op::IBV_WR_RDMA_WRITE, &mut sg);
    w.wr.rdma.remote_addr = 0xdead_beef;
    // SAFETY: a live local WR; the remote address must never be read as an AH.
    assert_eq!(unsafe { qp.post_send_fast(&mut w) }.unwrap_err().errno, Errno(libc::EINVAL));
    let mut w = send_wr(3, op::IBV_WR_SEND, &mut sg);
    // SAFETY: as above.
    assert_eq!(unsafe { qp.post_send_fast(&mut w) }.unwrap_err().errno, Errno(libc::EINVAL), "no AH");
    assert_eq!((sent(&qp), k.doorbells()), (1, 1));
}

#[test]
fn inline_length_wrap_and_null_lists_are_refused_unwritten() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let mut sg = [ibv_sge { addr: 0x1000, length: 0x8000_0000, lkey: 0 }; 2];
    let mut w = send_wr(1, op::IBV_WR_SEND, &mut sg);
    w.send_flags = ibv_send_flags::IBV_SEND_INLINE;
    // SAFETY: refused before the (bogus) inline addresses are read.
    assert_eq!(unsafe { qp.post_send_fast(&mut w) }.unwrap_err().errno, Errno(libc::EINVAL));
    let mut w = send_wr(2, op::IBV_WR_SEND, &mut []);
    w.num_sge = 1;
    // SAFETY: the NULL list must be refused, not read.
    assert_eq!(unsafe { qp.post_send_fast(&mut w) }.unwrap_err().errno, Errno(libc::EINVAL));
    let mut r = ibv_recv_wr { wr_id: 1, next: ptr::null_mut(), sg_list: ptr::null_mut(), num_sge: 1 };
    // SAFETY: as above.
    assert_eq!(unsafe { qp.post_recv::<true>(&mut r) }.unwrap_err().errno, Errno(libc::EINVAL));
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
    qp.with_rings(|_, rq| assert_eq!(rq.unwrap().sim_pending(), 0));
}

#[test]
fn receives_wrap_around_on_qp_and_srq() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 4, 4);
    let srq = Srq::for_tests(&k.ctx, Ring::heap(4, 128), 2);
    let mut sg = [ibv_sge { addr: 0x2000, length: 32, lkey: 2 }];
    for _ in 0..10 {
        let mut r = ibv_recv_wr { wr_id: 5, next: ptr::null_mut(), sg_list: sg.as_mut_ptr(), num_sge: 1 };
        // SAFETY: a live local WR.
        unsafe { qp.post_recv::<true>(&mut r) }.unwrap();
        // SAFETY: as above.
        unsafe { srq.post_recv::<true>(&mut r) }.unwrap();
        qp.with_rings(|_, rq| rq.unwrap().sim_consume(1));
        srq.with_ring(|ring| ring.sim_consume(1));
    }
    let mut r = ibv_recv_wr { wr_id: 6, next: ptr::null_mut(), sg_list: sg.as_mut_ptr(), num_sge: 3 };
    // SAFETY: as above.
    let err = unsafe { srq.post_recv::<true>(&mut r) }.unwrap_err();
    assert_eq!((err.errno, err.bad), (Errno(libc::EINVAL), &mut r as *mut _));
    assert_eq!(k.doorbells(), 0, "receives need no doorbell");
}

/// Every builder and setter of the extended API in one batch.
#[test]
fn every_wr_builder_in_one_batch() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 16, 8);
    // SAFETY: all-zero is a valid ibv_mw; the unbind needs no MR.
    let mw: ibv_mw = unsafe { core::mem::zeroed() };
    let unbind = ibv_mw_bind_info { mr: ptr::null_mut(), addr: 0, length: 0, mw_access_flags: 0 };
    let data = *b"inline!";
    let sges = [ibv_sge { addr: 0x1000, length: 10, lkey: 1 }, ibv_sge { addr: 0x2000, length: 20, lkey: 2 }];
    let bufs = [ibv_data_buf { addr: data.as_ptr() as *mut _, length: 3 }, ibv_data_buf { addr: data[3..].as_ptr() as *mut _, length: 4 }];
    let ops = [
        (SendOp::Send, op::IBV_WR_SEND),
        (SendOp::SendImm(0x1234), op::IBV_WR_SEND_WITH_IMM),
        (SendOp::SendInv(0x55), op::IBV_WR_SEND_WITH_INV),
        (SendOp::RdmaWrite { rkey: 9, addr: 0x9000 }, op::IBV_WR_RDMA_WRITE),
        (SendOp::RdmaWriteImm { rkey: 9, addr: 0x9000, imm: 1 }, op::IBV_WR_RDMA_WRITE_WITH_IMM),
        (SendOp::RdmaRead { rkey: 9, addr: 0x9008 }, op::IBV_WR_RDMA_READ),
        (SendOp::CmpSwp { rkey: 9, addr: 0x9010, compare: 1, swap: 2 }, op::IBV_WR_ATOMIC_CMP_AND_SWP),
        (SendOp::FetchAdd { rkey: 9, addr: 0x9018, add: 3 }, op::IBV_WR_ATOMIC_FETCH_AND_ADD),
        (SendOp::LocalInv(0x66), op::IBV_WR_LOCAL_INV),
        (SendOp::BindMw { mw: &mw as *const _ as *mut _, rkey: 0x77, info: &unbind }, op::IBV_WR_BIND_MW),
    ];
    // SAFETY: one batch on this thread, ended by wr_complete; all pointers are live locals.
    unsafe {
        qp.wr_start();
        for (i, (send_op, _)) in ops.iter().enumerate() {
            (*qp.ex_raw()).wr_id = i as u64;
            qp.wr_build(*send_op);
            match i % 3 {
                0 => qp.wr_set(Payload::Sge { lkey: 1, addr: 0x1000, length: 100 }),
                1 => qp.wr_set(Payload::SgeList { list: sges.as_ptr(), count: 2 }),
                _ => qp.wr_set(Payload::Inline { bufs: bufs.as_ptr(), count: 2 }),
            }
        }
        qp.wr_complete().unwrap();
    }
    assert_eq!((sent(&qp), k.doorbells()), (ops.len() as u32, 1));
    qp.with_rings(|sq, _| {
        for (i, (_, opcode)) in ops.iter().enumerate() {
            let w = wqe_at(sq, i as u32);
            assert_eq!((w.wr.wr_id, w.wr.opcode, w.ssn), (i as u64, *opcode, i as u32));
            let expect_len = [100, 30, 7][i % 3];
            assert_eq!(w.dma.length, expect_len, "WQE {i}");
        }
        // SAFETY: plain integers.
        assert_eq!(unsafe { wqe_at(sq, 6).wr.wr.atomic.swap }, 2);
        assert_eq!(&sq.sim_slot(2)[SEND_HEADER..SEND_HEADER + 7], &data);
    });
}

#[test]
fn a_failed_setter_fails_the_batch_and_publishes_nothing() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let data = [0u8; 4];
    let wrapping = [ibv_data_buf { addr: data.as_ptr() as *mut _, length: usize::MAX }, ibv_data_buf { addr: data.as_ptr() as *mut _, length: 2 }];
    // SAFETY: batches on this thread, each ended; pointers are live locals.
    unsafe {
        qp.wr_start();
        qp.wr_set(Payload::Sge { lkey: 1, addr: 0, length: 1 }); // no WQE yet
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));

        qp.wr_start();
        qp.wr_build(SendOp::Send);
        qp.wr_set(Payload::Inline { bufs: wrapping.as_ptr(), count: 2 });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::ENOSPC)));

        qp.wr_start();
        qp.wr_build(SendOp::Send);
        qp.wr_set(Payload::SgeList { list: ptr::null(), count: 1 });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));

        qp.wr_start();
        qp.wr_build(SendOp::BindMw { mw: ptr::null_mut(), rkey: 1, info: ptr::null() });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));

        qp.wr_start();
        qp.wr_build(SendOp::Send);
        qp.wr_abort();
    }
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
}

#[test]
fn a_batch_that_overfills_the_queue_is_enospc() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_UD, 4, 4);
    let ah = Ah::for_tests(3);
    // SAFETY: batches on this thread, each ended.
    unsafe {
        qp.wr_start();
        for _ in 0..3 {
            qp.wr_build(SendOp::Send);
            qp.wr_set(Payload::UdAddr { ah: ah.raw(), remote_qpn: 1, remote_qkey: 2 });
        }
        qp.wr_complete().unwrap();
        qp.wr_start();
        qp.wr_build(SendOp::Send);
        assert_eq!(qp.wr_complete(), Err(Errno(libc::ENOSPC)));
    }
    assert_eq!((sent(&qp), k.doorbells()), (3, 1));
    // SAFETY: plain integers.
    qp.with_rings(|sq, _| assert_eq!(unsafe { wqe_at(sq, 2).wr.wr.ud.ah_num }, 3));
}

#[test]
fn atomic_write_and_flush_builders_fill_the_wqe_as_the_kernel_reads_it() {
    use crate::abi::newer_kernels::{rxe_flush_wr, WR_ATOMIC_WRITE, WR_FLUSH};
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let value = 0x1122_3344_5566_7788u64.to_ne_bytes();
    // SAFETY: one batch on this thread, ended; the value outlives it.
    unsafe {
        qp.wr_start();
        (*qp.ex_raw()).wr_id = 1;
        qp.wr_build(SendOp::AtomicWrite { rkey: 0x42, addr: 0xa000, data: value.as_ptr() });
        (*qp.ex_raw()).wr_id = 2;
        qp.wr_build(SendOp::Flush { rkey: 0x43, addr: 0xb000, len: 4096, ptype: 1, level: 0 });
        qp.wr_complete().unwrap();
    }
    assert_eq!((sent(&qp), k.doorbells()), (2, 1));
    qp.with_rings(|sq, _| {
        let w = wqe_at(sq, 0);
        // SAFETY: plain integers.
        let rdma = unsafe { w.wr.wr.rdma };
        assert_eq!((w.wr.wr_id, w.wr.opcode, rdma.rkey, rdma.remote_addr, w.iova), (1, WR_ATOMIC_WRITE, 0x42, 0xa000, 0xa000));
        assert_eq!((w.dma.length, w.dma.resid, w.dma.num_sge), (8, 8, 0));
        assert_eq!(&sq.sim_slot(0)[SEND_HEADER..SEND_HEADER + 8], &value);

        let w = wqe_at(sq, 1);
        // SAFETY: the flush arm overlays the union's start (asserted in newer_kernels).
        let flush = unsafe { ptr::read(ptr::addr_of!(w.wr.wr).cast::<rxe_flush_wr>()) };
        assert_eq!((w.wr.wr_id, w.wr.opcode), (2, WR_FLUSH));
        assert_eq!(flush, rxe_flush_wr { remote_addr: 0xb000, length: 0, rkey: 0x43, ptype: 1, level: 0 });
        assert_eq!((w.dma.length, w.dma.resid, w.iova), (4096, 4096, 0xb000));
    });
}

#[test]
fn bad_atomic_write_and_flush_operands_fail_the_batch() {
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    // SAFETY: batches on this thread, each ended.
    unsafe {
        qp.wr_start();
        qp.wr_build(SendOp::AtomicWrite { rkey: 1, addr: 0, data: ptr::null() });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));
        qp.wr_start();
        qp.wr_build(SendOp::Flush { rkey: 1, addr: 0, len: 1 << 32, ptype: 1, level: 0 });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));
    }
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
}

#[test]
fn flush_and_atomic_write_through_post_send_are_refused_unposted() {
    use crate::abi::newer_kernels::{WR_ATOMIC_WRITE, WR_FLUSH};
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    for opcode in [WR_FLUSH, WR_ATOMIC_WRITE] {
        let mut sg = [ibv_sge { addr: 0x1000, length: 8, lkey: 1 }];
        let mut wr = send_wr(7, opcode, &mut sg);
        // SAFETY: a valid one-WR list on our stack.
        let e = unsafe { qp.post_send_fast(&mut wr) }.unwrap_err();
        assert_eq!((e.errno, e.bad), (Errno(libc::EINVAL), &mut wr as *mut _));
    }
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
}

#[test]
fn messages_longer_than_the_ports_limit_are_refused_unposted() {
    // Kernel::qp's limits say max_msg_sz is 1 MiB.
    let k = Kernel::new();
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    let mut sg = [ibv_sge { addr: 0x1000, length: (1 << 20) + 1, lkey: 1 }];
    let mut wr = send_wr(1, op::IBV_WR_RDMA_WRITE, &mut sg);
    // SAFETY: a valid one-WR list on our stack.
    let e = unsafe { qp.post_send_fast(&mut wr) }.unwrap_err();
    assert_eq!((e.errno, e.bad), (Errno(libc::EINVAL), &mut wr as *mut _));
    let two = [ibv_sge { addr: 0x1000, length: 1 << 19, lkey: 1 }, ibv_sge { addr: 0x2000, length: (1 << 19) + 1, lkey: 1 }];
    // SAFETY: batches on this thread, each ended; the list outlives them.
    unsafe {
        qp.wr_start();
        qp.wr_build(SendOp::RdmaWrite { rkey: 1, addr: 0 });
        qp.wr_set(Payload::Sge { lkey: 1, addr: 0x1000, length: (1 << 20) + 1 });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));
        qp.wr_start();
        qp.wr_build(SendOp::RdmaWrite { rkey: 1, addr: 0 });
        qp.wr_set(Payload::SgeList { list: two.as_ptr(), count: 2 });
        assert_eq!(qp.wr_complete(), Err(Errno(libc::EINVAL)));
    }
    assert_eq!((sent(&qp), k.doorbells()), (0, 0));
    // Exactly the limit goes.
    sg[0].length = 1 << 20;
    let mut wr = send_wr(2, op::IBV_WR_RDMA_WRITE, &mut sg);
    // SAFETY: as above.
    unsafe { qp.post_send_fast(&mut wr) }.unwrap();
    assert_eq!((sent(&qp), k.doorbells()), (1, 1));
}

/// The fast path writes what the general path writes, in every word the
/// kernel reads: the header's first 56 bytes (the union arms the kernel
/// reads with an ah_num), its last 64 (status to dma) and the payload. The
/// one difference is librxe's: `ex` carries imm_data for every opcode.
#[test]
fn the_fast_path_writes_what_the_general_path_writes() {
    let k = Kernel::new();
    let ah = Ah::for_tests(5);
    let data = *b"0123456789abcdef0123456789abcdef";
    for (qp_type, opcode, inline) in [
        (ibv_qp_type::IBV_QPT_RC, op::IBV_WR_SEND, false),
        (ibv_qp_type::IBV_QPT_RC, op::IBV_WR_SEND_WITH_IMM, false),
        (ibv_qp_type::IBV_QPT_RC, op::IBV_WR_RDMA_WRITE, false),
        (ibv_qp_type::IBV_QPT_RC, op::IBV_WR_RDMA_WRITE_WITH_IMM, true),
        (ibv_qp_type::IBV_QPT_RC, op::IBV_WR_RDMA_READ, false),
        (ibv_qp_type::IBV_QPT_UC, op::IBV_WR_SEND, true),
        (ibv_qp_type::IBV_QPT_UD, op::IBV_WR_SEND, false),
        (ibv_qp_type::IBV_QPT_UD, op::IBV_WR_SEND_WITH_IMM, true),
    ] {
        let mut sg = [ibv_sge { addr: data.as_ptr() as u64, length: data.len() as u32, lkey: 9 }];
        let mut w = send_wr(0x77, opcode, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_SIGNALED | if inline { ibv_send_flags::IBV_SEND_INLINE } else { 0 };
        if qp_type == ibv_qp_type::IBV_QPT_UD {
            w.wr.ud = ibv_send_wr__bindgen_ty_2__bindgen_ty_3 { ah: ah.raw(), remote_qpn: 0x42, remote_qkey: 0x1111 };
        } else {
            w.wr.rdma = ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr: 0xabc000, rkey: 0x55 };
        }
        if matches!(opcode, op::IBV_WR_SEND_WITH_IMM | op::IBV_WR_RDMA_WRITE_WITH_IMM) {
            w.__bindgen_anon_1.imm_data = 0x1234_5678;
        }
        assert_paths_write_alike(&k, qp_type, &mut w, if inline { data.len() } else { size_of::<ibv_sge>() });
    }
    assert!(k.doorbells() > 0);
}

/// Inline data of every length the one-WR path copies itself (and one
/// longer, which it leaves to the list path), written as the general path
/// writes it.
#[test]
fn the_one_wr_path_copies_inline_data_of_every_length() {
    let k = Kernel::new();
    let data: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37).wrapping_add(11)).collect();
    for len in 0..=data.len() {
        let mut sg = [ibv_sge { addr: data.as_ptr() as u64, length: len as u32, lkey: 9 }];
        let mut w = send_wr(len as u64, op::IBV_WR_SEND, &mut sg);
        w.send_flags = ibv_send_flags::IBV_SEND_SIGNALED | ibv_send_flags::IBV_SEND_INLINE;
        assert_paths_write_alike(&k, ibv_qp_type::IBV_QPT_RC, &mut w, len);
    }
    assert!(k.doorbells() > 0);
}

/// Posts `w` on a fresh QP of `qp_type` through the general path, the
/// list fast path and the one-WR path (which must take it), each into a
/// dirtied slot, and checks they wrote the same header and the first
/// `payload` bytes after it. The one difference allowed is librxe's: `ex`
/// carries imm_data for every opcode.
fn assert_paths_write_alike(k: &Kernel, qp_type: u32, w: &mut ibv_send_wr, payload: usize) {
    let mut slots = Vec::new();
    for path in ["general", "list", "one"] {
        let qp = k.qp(qp_type, 8, 8);
        // Dirty slots: whatever the path leaves unwritten shows.
        qp.with_rings(|sq, _| {
            // SAFETY: no producer runs; the test owns the ring.
            unsafe { ptr::write_bytes(sq.slot_raw(0), 0xa5, sq.elem_size()) }
        });
        // SAFETY: a live local WR; an AH in it is ours.
        unsafe {
            match path {
                "general" => qp.post_send(w).unwrap(),
                "list" => qp.post_send_fast(w).unwrap(),
                _ => {
                    assert!(qp.try_post_one(w), "the one-WR path should take opcode {} on QP type {qp_type}", w.opcode);
                    qp.doorbell().unwrap();
                }
            }
        }
        assert_eq!(sent(&qp), 1, "{path}");
        slots.push(qp.with_rings(|sq, _| sq.sim_slot(0).to_vec()));
    }
    let general = &slots[0];
    let end = SEND_HEADER + payload;
    for (path, slot) in ["list", "one"].iter().zip(&slots[1..]) {
        let what = format!("{path}: opcode {} on QP type {qp_type}, flags {:#x}, payload {payload}", w.opcode, w.send_flags);
        assert_eq!(general[..20], slot[..20], "{what}");
        assert_eq!(general[24..56], slot[24..56], "{what}");
        assert_eq!(general[144..end], slot[144..end], "{what}");
        assert_eq!(slot[end..end + 1], [0xa5], "{what}: wrote past the payload");
        let ex = u32::from_ne_bytes(slot[20..24].try_into().unwrap());
        // SAFETY: plain u32 bits.
        assert_eq!(ex, unsafe { w.__bindgen_anon_1.imm_data }, "{what}");
    }
}

/// What the one-WR path leaves to the list path, untouched: lists, WRs
/// needing the general checks, inline data past what it copies, a full
/// queue, a state that allows no sends.
#[test]
fn the_one_wr_path_declines_without_writing() {
    let k = Kernel::new();
    let data = [7u8; 65];
    let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 2, 8);
    let mut sg = [ibv_sge { addr: data.as_ptr() as u64, length: 65, lkey: 9 }];
    let mut long_inline = send_wr(1, op::IBV_WR_SEND, &mut sg);
    long_inline.send_flags = ibv_send_flags::IBV_SEND_INLINE;
    let mut sg2 = [ibv_sge { addr: 0x1000, length: 8, lkey: 9 }, ibv_sge { addr: 0x2000, length: 8, lkey: 9 }];
    let mut two_sges = send_wr(2, op::IBV_WR_SEND, &mut sg2);
    let mut sg3 = [ibv_sge { addr: 0x1000, length: 8, lkey: 9 }];
    let mut sg4 = sg3;
    let mut wrs = [send_wr(3, op::IBV_WR_SEND, &mut sg3), send_wr(4, op::IBV_WR_SEND, &mut sg4)];
    let list = chain(&mut wrs);
    // SAFETY: live local WRs.
    unsafe {
        assert!(!qp.try_post_one(&mut long_inline));
        assert!(!qp.try_post_one(&mut two_sges));
        assert!(!qp.try_post_one(list));
        assert!(!qp.try_post_one(ptr::null_mut()));
    }
    assert_eq!(sent(&qp), 0);
    let mut sg5 = [ibv_sge { addr: 0x1000, length: 8, lkey: 9 }];
    let mut one = send_wr(5, op::IBV_WR_SEND, &mut sg5);
    // SAFETY: a live local WR.
    unsafe {
        assert!(qp.try_post_one(&mut one));
        // Two slots hold one WR: the queue is full now.
        assert!(!qp.try_post_one(&mut one));
    }
    assert_eq!(sent(&qp), 1);
    let reset = k.qp(ibv_qp_type::IBV_QPT_RC, 8, 8);
    reset.set_state_for_tests(ibv_qp_state::IBV_QPS_INIT);
    // SAFETY: a live local WR.
    assert!(!unsafe { reset.try_post_one(&mut one) });
    assert_eq!(sent(&reset), 0);
}

/// The single-WR receive path against the general one: the same slot
/// contents, and every refusal still made (full queue, no SGE allowed).
#[test]
fn the_receive_fast_path_writes_and_refuses_what_the_general_path_does() {
    let k = Kernel::new();
    let srq = Srq::for_tests(&k.ctx, Ring::heap(4, 128), 2);
    let mut sg = [ibv_sge { addr: 0x2000, length: 32, lkey: 2 }];
    let mut r = ibv_recv_wr { wr_id: 0x66, next: ptr::null_mut(), sg_list: sg.as_mut_ptr(), num_sge: 1 };
    let mut slots = Vec::new();
    for fast in [false, true] {
        let qp = k.qp(ibv_qp_type::IBV_QPT_RC, 4, 4);
        qp.with_rings(|_, rq| {
            let rq = rq.unwrap();
            // SAFETY: no producer runs; the test owns the ring.
            unsafe { ptr::write_bytes(rq.slot_raw(0), 0xa5, rq.elem_size()) }
        });
        // SAFETY: a live local WR.
        unsafe { if fast { qp.post_recv::<true>(&mut r) } else { qp.post_recv::<false>(&mut r) } }.unwrap();
        slots.push(qp.with_rings(|_, rq| rq.unwrap().sim_slot(0)[..RECV_HEADER + size_of::<ibv_sge>()].to_vec()));
        // Three slots of four hold entries: the next post finds the queue full.
        for _ in 0..2 {
            // SAFETY: as above.
            unsafe { qp.post_recv::<true>(&mut r) }.unwrap();
        }
        // SAFETY: as above.
        let err = unsafe { qp.post_recv::<true>(&mut r) }.unwrap_err();
        assert_eq!((err.errno, err.bad), (Errno(libc::ENOMEM), &mut r as *mut _));
        qp.with_rings(|_, rq| assert_eq!(rq.unwrap().sim_pending(), 3));
    }
    assert_eq!(slots[0], slots[1]);
    for _ in 0..3 {
        // SAFETY: as above.
        unsafe { srq.post_recv::<true>(&mut r) }.unwrap();
    }
    // SAFETY: as above.
    let err = unsafe { srq.post_recv::<true>(&mut r) }.unwrap_err();
    assert_eq!((err.errno, err.bad), (Errno(libc::ENOMEM), &mut r as *mut _));
    // A QP made with max_recv_sge 0 takes no SGE.
    let limits = SendLimits { max_sge: 4, max_inline: 64, qp_type: ibv_qp_type::IBV_QPT_RC, max_msg: 1 << 20 };
    let qp = Qp::for_tests(&k.ctx, Ring::heap(4, 512), Some(Ring::heap(4, 128)), limits, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { qp.post_recv::<true>(&mut r) }.unwrap_err().errno, Errno(libc::EINVAL));
    qp.with_rings(|_, rq| assert_eq!(rq.unwrap().sim_pending(), 0));
}
