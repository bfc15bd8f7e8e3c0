//! A host harness for counting the instructions of the hot paths with
//! callgrind, without a VM (heap rings, a pipe for the doorbell):
//!
//!     cargo test --release --lib icount_harness -- --ignored   # builds it
//!     valgrind --tool=callgrind --toggle-collect='*icount_loop_*' <test binary> icount_harness --ignored
//!
//! Each `icount_loop_*` runs its verb N times through its extern "C" entry
//! (as libibverbs calls it); callgrind_annotate --inclusive=yes divided by
//! N gives instructions per call. The figures that count are tests/bench's
//! (the real rings and doorbell in the VM, and a single-threaded process,
//! whose write(2) is cheaper than here); this one is for quick turns.

use crate::abi::sys::*;
use crate::ah::Ah;
use crate::ffi::datapath as c;
use crate::object::Object;
use crate::context::Context;
use crate::cq::Cq;
use crate::qp::Qp;
use crate::queue::Ring;
use crate::srq::Srq;
use crate::wqe::SendLimits;
use core::mem::MaybeUninit;
use core::ptr;

const N: u32 = 64;

fn ctx() -> Box<Context> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into our array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
    // Drain the doorbells so the pipe never fills: /dev/null as the read side is not possible; make it big.
    // SAFETY: our fd.
    unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
    Context::for_tests(fds[1])
}

fn drain(fd: i32) {
    let mut buf = [0u8; 65536];
    // SAFETY: reading into our own buffer.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

#[inline(always)]
fn post_send_n(qp: &Qp, wr: &mut ibv_send_wr, tag: u64) {
    let mut bad = ptr::null_mut();
    for i in 0..N {
        // A tag per loop keeps the linker from folding the loops into one.
        wr.wr_id = i as u64 | tag;
        // SAFETY: our QP and a live local WR.
        assert_eq!(unsafe { c::post_send(qp.raw(), wr, &mut bad) }, 0);
    }
}

#[inline(always)]
fn wr_send_n(qp: &Qp, inline: Option<&[u8]>, ud: Option<&Ah>) {
    let x = qp.ex_raw();
    for i in 0..N {
        // SAFETY: one batch on this thread, ended below; our QP.
        unsafe {
            c::wr_start(x);
            (*x).wr_id = i as u64;
            (*x).wr_flags = ibv_send_flags::IBV_SEND_SIGNALED;
            c::wr_send(x);
            if let Some(ah) = ud {
                c::wr_set_ud_addr(x, ah.raw(), 0x11, 0x1111_1111);
            }
            match inline {
                None => c::wr_set_sge(x, 1, 0x1000, 64),
                Some(d) => c::wr_set_inline_data(x, d.as_ptr() as *mut _, d.len()),
            }
            assert_eq!(c::wr_complete(x), 0);
        }
    }
}

#[inline(never)]
fn icount_loop_post_recv(qp: &Qp, wr: &mut ibv_recv_wr) {
    let mut bad = ptr::null_mut();
    for i in 0..N {
        wr.wr_id = i as u64;
        // SAFETY: our QP and a live local WR.
        assert_eq!(unsafe { c::post_recv(qp.raw(), wr, &mut bad) }, 0);
    }
}

#[inline(never)]
fn icount_loop_post_srq_recv(srq: &Srq, wr: &mut ibv_recv_wr) {
    let mut bad = ptr::null_mut();
    for i in 0..N {
        wr.wr_id = i as u64;
        // SAFETY: our SRQ and a live local WR.
        assert_eq!(unsafe { c::post_srq_recv(srq.raw(), wr, &mut bad) }, 0);
    }
}

#[inline(always)]
fn poll_n(cq: &Cq, tag: usize) -> usize {
    let mut wc = [MaybeUninit::<ibv_wc>::uninit(); 1];
    let mut got = tag;
    for _ in 0..N {
        // SAFETY: our CQ and room for one completion.
        got += unsafe { c::poll_cq(cq.raw(), 1, wc.as_mut_ptr().cast()) } as usize;
    }
    got
}

#[inline(never)]
fn icount_loop_poll_empty(cq: &Cq) -> usize {
    poll_n(cq, 0) + 1
}

#[inline(never)]
fn icount_loop_poll(cq: &Cq) -> usize {
    poll_n(cq, 0)
}

#[inline(never)]
fn icount_loop_post_send(qp: &Qp, wr: &mut ibv_send_wr) {
    post_send_n(qp, wr, 1 << 32)
}

#[inline(never)]
fn icount_loop_post_send_write(qp: &Qp, wr: &mut ibv_send_wr) {
    post_send_n(qp, wr, 2 << 32)
}

#[inline(never)]
fn icount_loop_post_send_inline(qp: &Qp, wr: &mut ibv_send_wr) {
    post_send_n(qp, wr, 3 << 32)
}

#[inline(never)]
fn icount_loop_wr_send(qp: &Qp) {
    wr_send_n(qp, None, None)
}

#[inline(never)]
fn icount_loop_wr_send_inline(qp: &Qp, data: &[u8]) {
    wr_send_n(qp, Some(data), None)
}

/// Extended polling as tests/bench does it: next_poll and two readers per
/// completion (the first one, from start_poll, is not counted).
#[inline(never)]
fn icount_loop_next_poll(cq: &Cq) -> u64 {
    let x = cq.raw().cast::<ibv_cq_ex>();
    let mut sum = 0u64;
    // SAFETY: our extended CQ, polled on this thread from start to end.
    unsafe {
        assert_eq!(c::cq_start_poll(x, ptr::null_mut()), 0);
        for _ in 0..N {
            assert_eq!(c::cq_next_poll(x), 0);
            sum += c::cq_read_opcode(x) as u64 + c::cq_read_byte_len(x) as u64;
        }
        c::cq_end_poll(x);
    }
    sum
}

#[inline(never)]
fn icount_loop_post_send_ud(qp: &Qp, wr: &mut ibv_send_wr) {
    post_send_n(qp, wr, 4 << 32)
}

#[inline(never)]
fn icount_loop_wr_send_ud(qp: &Qp, ah: &Ah) {
    wr_send_n(qp, None, Some(ah))
}

#[test]
#[ignore = "a harness for callgrind, see the module doc"]
fn icount_harness() {
    let ctx = ctx();
    let fd = ctx.cmd_fd();
    let limits = SendLimits { max_sge: 1, max_inline: 64, qp_type: ibv_qp_type::IBV_QPT_RC, max_msg: 1 << 23 };
    let qp = Qp::for_tests(&ctx, Ring::heap(256, 512), Some(Ring::heap(256, 128)), limits, 1);
    let mut sg = [ibv_sge { addr: 0x1000, length: 64, lkey: 1 }];
    // SAFETY: all-zero is a valid ibv_send_wr.
    let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
    wr.sg_list = sg.as_mut_ptr();
    wr.num_sge = 1;
    wr.opcode = ibv_wr_opcode::IBV_WR_SEND;
    wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED;
    icount_loop_post_send(&qp, &mut wr);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    icount_loop_wr_send(&qp);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    let data = [7u8; 64];
    icount_loop_wr_send_inline(&qp, &data);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    wr.opcode = ibv_wr_opcode::IBV_WR_RDMA_WRITE;
    wr.wr.rdma = ibv_send_wr__bindgen_ty_2__bindgen_ty_1 { remote_addr: 0x4000, rkey: 2 };
    icount_loop_post_send_write(&qp, &mut wr);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    wr.opcode = ibv_wr_opcode::IBV_WR_SEND;
    wr.send_flags |= ibv_send_flags::IBV_SEND_INLINE;
    // SAFETY: wr's list is `sg`, alive; written through the WR's own pointer.
    unsafe { (*wr.sg_list).addr = data.as_ptr() as u64 };
    icount_loop_post_send_inline(&qp, &mut wr);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    wr.send_flags = ibv_send_flags::IBV_SEND_SIGNALED;

    let mut rwr = ibv_recv_wr { wr_id: 0, next: ptr::null_mut(), sg_list: sg.as_mut_ptr(), num_sge: 1 };
    icount_loop_post_recv(&qp, &mut rwr);
    let srq = Srq::for_tests(&ctx, Ring::heap(256, 128), 1);
    icount_loop_post_srq_recv(&srq, &mut rwr);

    let cq = Cq::for_tests(Ring::heap(256, 64));
    for i in 0..N {
        cq.with_ring(|r| r.sim_produce(ib_uverbs_wc { wr_id: i as u64, byte_len: 64, ..Default::default() }));
    }
    assert_eq!(icount_loop_poll(&cq), N as usize);
    assert_eq!(icount_loop_poll_empty(&cq), 1);
    for i in 0..=N {
        cq.with_ring(|r| r.sim_produce(ib_uverbs_wc { wr_id: i as u64, byte_len: 64, ..Default::default() }));
    }
    assert_eq!(icount_loop_next_poll(&cq), N as u64 * 64);

    let ah = Ah::for_tests(1);
    let ud_limits = SendLimits { qp_type: ibv_qp_type::IBV_QPT_UD, ..limits };
    let ud = Qp::for_tests(&ctx, Ring::heap(256, 512), None, ud_limits, 1);
    wr.wr.ud = ibv_send_wr__bindgen_ty_2__bindgen_ty_3 { ah: ah.raw(), remote_qpn: 0x11, remote_qkey: 0x1111_1111 };
    icount_loop_post_send_ud(&ud, &mut wr);
    ud.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    icount_loop_wr_send_ud(&ud, &ah);
    drain(fd);
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}
