//! A host harness for counting the instructions of the hot paths with
//! callgrind, without a VM (heap rings, a pipe for the doorbell):
//!
//!     cargo test --release --lib icount_harness -- --ignored   # builds it
//!     valgrind --tool=callgrind --toggle-collect='*icount_loop_*' <test binary> icount_harness --ignored
//!
//! Each `icount_loop_*` runs its verb N times; callgrind_annotate
//! --inclusive=yes divided by N gives instructions per call. The figures
//! that count are tests/bench's (the real rings and doorbell in the VM);
//! this one is for quick turns while optimizing.

use crate::abi::sys::*;
use crate::ah::Ah;
use crate::context::Context;
use crate::cq::Cq;
use crate::qp::{Payload, Qp, SendOp};
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

#[inline(never)]
fn icount_loop_post_send(qp: &Qp, wr: &mut ibv_send_wr) {
    for i in 0..N {
        wr.wr_id = i as u64;
        // SAFETY: a live local WR.
        unsafe { qp.post_send(wr) }.unwrap();
    }
}

#[inline(never)]
fn icount_loop_wr_send(qp: &Qp, inline: Option<&[u8]>) {
    for i in 0..N {
        // SAFETY: one batch on this thread, ended below.
        unsafe {
            qp.wr_start();
            (*qp.ex_raw()).wr_id = i as u64;
            (*qp.ex_raw()).wr_flags = ibv_send_flags::IBV_SEND_SIGNALED;
            qp.wr_build(SendOp::Send);
            match inline {
                None => qp.wr_set(Payload::Sge { lkey: 1, addr: 0x1000, length: 64 }),
                Some(d) => {
                    let one = [ibv_data_buf { addr: d.as_ptr() as *mut _, length: d.len() }];
                    qp.wr_set(Payload::Inline { bufs: one.as_ptr(), count: 1 })
                }
            }
            qp.wr_complete().unwrap();
        }
    }
}

#[inline(never)]
fn icount_loop_post_recv(qp: &Qp, wr: &mut ibv_recv_wr) {
    for i in 0..N {
        wr.wr_id = i as u64;
        // SAFETY: a live local WR.
        unsafe { qp.post_recv(wr) }.unwrap();
    }
}

#[inline(never)]
fn icount_loop_post_srq_recv(srq: &Srq, wr: &mut ibv_recv_wr) {
    for i in 0..N {
        wr.wr_id = i as u64;
        // SAFETY: a live local WR.
        unsafe { srq.post_recv(wr) }.unwrap();
    }
}

#[inline(never)]
fn icount_loop_poll(cq: &Cq) -> usize {
    let mut wc = [MaybeUninit::<ibv_wc>::uninit(); 1];
    let mut got = 0;
    for _ in 0..N {
        got += cq.poll(&mut wc).unwrap();
    }
    got
}

#[inline(never)]
fn icount_loop_poll_empty(cq: &Cq) -> usize {
    icount_loop_poll(cq)
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
    icount_loop_wr_send(&qp, None);
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);
    let data = [7u8; 64];
    icount_loop_wr_send(&qp, Some(&data));
    qp.with_rings(|sq, _| sq.sim_consume(N));
    drain(fd);

    let mut rwr = ibv_recv_wr { wr_id: 0, next: ptr::null_mut(), sg_list: sg.as_mut_ptr(), num_sge: 1 };
    icount_loop_post_recv(&qp, &mut rwr);
    let srq = Srq::for_tests(&ctx, Ring::heap(256, 128), 1);
    icount_loop_post_srq_recv(&srq, &mut rwr);

    let cq = Cq::for_tests(Ring::heap(256, 64));
    for i in 0..N {
        cq.with_ring(|r| r.sim_produce(ib_uverbs_wc { wr_id: i as u64, byte_len: 64, ..Default::default() }));
    }
    assert_eq!(icount_loop_poll(&cq), N as usize);
    assert_eq!(icount_loop_poll_empty(&cq), 0);
    let _ = Ah::for_tests(1);
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}
