//! extern "C" entries of the data path (CQ, QP with both send APIs, SRQ,
//! AH) and the tables that point at them: the extended CQ's readers and the
//! extended QP's send functions. Like the control entries, each only
//! converts, and none lets a panic unwind into C.

use super::{guarded, injected, no_unwind, ret_int, ret_ptr};
use crate::abi::imports::*;
use crate::abi::newer_kernels;
use crate::abi::releases::ibv_qp_ex_45;
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::Result;
use crate::context::Context;
use crate::cq::{self, Cq, PollGuard};
use crate::fault::{self, Event, Fault, Verb};
use crate::{fault_delay, fault_events};
use crate::object::{Boxed, Object};
use crate::qp::{self, Payload, Qp, SendOp};
use crate::srq::{self, Srq};
use crate::wqe::PostError;
use crate::valgrind;
use crate::{ah, ah::Ah};
use core::ffi::{c_int, c_uint, c_void};
use core::mem::MaybeUninit;

use ibv_create_cq_wc_flags as wcf;
use ibv_qp_create_send_ops_flags as ops;

/// A post's outcome in the verbs convention: 0, or an errno with `*bad_wr`
/// naming the WR that was not posted.
///
/// # Safety
/// `bad_wr` is non-null and writable.
unsafe fn post_ret<W>(r: core::result::Result<(), PostError<W>>, bad_wr: *mut *mut W) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: per the contract.
            unsafe { *bad_wr = e.bad };
            e.errno.0
        }
    }
}

/// An injected fault in a post (RXE_RS_FAULTS): a failure (nothing posted,
/// the first WR is the bad one), or an event queued while the post goes on.
///
/// # Safety
/// As for [`post_ret`]; `qp`, if given, is a live QP of ours.
#[cold]
unsafe fn post_injected<W>(verb: Verb, qp: Option<*mut ibv_qp>, wr: *mut W, bad_wr: *mut *mut W) -> Option<c_int> {
    // SAFETY: per the contract.
    let qpn = qp.map(|q| unsafe { (*q).qp_num });
    let what = || format!("{verb:?}{}", qpn.map(|q| format!(" on QP {q:#x}")).unwrap_or_default());
    match fault::check(verb, qpn, &what)? {
        Fault::Errno(e) => {
            // SAFETY: per the contract.
            unsafe { *bad_wr = wr };
            Some(e)
        }
        Fault::Event(e) => {
            // SAFETY: per the contract.
            unsafe { inject_event(e, qp, None) };
            None
        }
        Fault::Status(_) | Fault::Delay(_) => None,
    }
}

/// Moves a QP to the error state, as a real fault leaves it, and records the
/// state where ibv_query_qp's callers and libibverbs look.
///
/// # Safety
/// `q` is a live QP of ours.
unsafe fn move_to_error(q: *mut ibv_qp, why: &str) {
    let mut attr = ibv_qp_attr { qp_state: ibv_qp_state::IBV_QPS_ERR, ..Default::default() };
    // SAFETY: per the contract.
    let r = unsafe { Qp::from_raw(q) }.modify(&mut attr, ibv_qp_attr_mask::IBV_QP_STATE as c_int);
    if r.is_ok() {
        // What ibv_modify_qp records after a state change.
        // SAFETY: as above.
        unsafe { (*q).state = ibv_qp_state::IBV_QPS_ERR };
        // SAFETY: as above.
        fault::say(&format!("fault injected: QP {:#x} moved to the error state {why}", unsafe { (*q).qp_num }));
    }
}

/// Queues an injected asynchronous event: a QP event moves the QP to the
/// error state first; a CQ event names `cq`.
///
/// # Safety
/// `qp` and `cq`, where given, are live objects of ours.
#[cold]
unsafe fn inject_event(e: Event, qp: Option<*mut ibv_qp>, cq: Option<*mut ibv_cq>) {
    let ctx = match (qp, cq) {
        // SAFETY: per the contract: each object's context is ours.
        (Some(q), _) => unsafe { Context::from_raw((*q).context) },
        // SAFETY: as above.
        (None, Some(c)) => unsafe { Context::from_raw((*c).context) },
        (None, None) => return,
    };
    let (event_type, element, object) = match (e, qp, cq) {
        (Event::Qp(t), Some(q), _) => {
            // SAFETY: per the contract.
            unsafe { move_to_error(q, "with its injected event") };
            (t, fault_events::qp_element(q), Some(q as usize))
        }
        (Event::CqErr, _, Some(c)) => (ibv_event_type::IBV_EVENT_CQ_ERR, fault_events::cq_element(c), Some(c as usize)),
        (Event::PortErr, _, _) => (ibv_event_type::IBV_EVENT_PORT_ERR, fault_events::PORT, None),
        _ => return,
    };
    let Some(relay) = ctx.events() else {
        fault::say(&format!("the injected event {} was lost: this context has no event relay (see its log)", fault::event_name(e)));
        return;
    };
    match relay.inject(event_type, element) {
        Ok(()) => {
            if let Some(o) = object {
                fault_events::count(o);
            }
        }
        Err(err) => fault::say(&format!("the injected event {} was lost: {err}", fault::event_name(e))),
    }
}

/// Injected faults among the `n` completions just polled from `cq` into
/// `wc`: a successful one takes the rule's status and its QP moves to the
/// error state, so that its later WRs flush as after a real fault; or an
/// event is queued after it.
///
/// # Safety
/// `wc` holds `n` initialised completions; `cq` is a live CQ of ours.
#[cold]
unsafe fn complete_with_injected_faults(cq: *mut ibv_cq, wc: *mut ibv_wc, n: usize) {
    for i in 0..n {
        // SAFETY: per the contract.
        let w = unsafe { &mut *wc.add(i) };
        // SAFETY: per the contract.
        unsafe { inject_into_completion(cq, w.qp_num, w.wr_id, &mut w.status) };
        if w.status != ibv_wc_status::IBV_WC_SUCCESS {
            w.vendor_err = 0;
        }
    }
}

/// The fault, if any, for one completion of QP `qp_num` whose status is
/// `*status`: a new status, or an event.
///
/// # Safety
/// `cq` is a live CQ of ours.
unsafe fn inject_into_completion(cq: *mut ibv_cq, qp_num: u32, wr_id: u64, status: &mut u32) {
    if *status != ibv_wc_status::IBV_WC_SUCCESS {
        return;
    }
    let what = || format!("a completion of QP {qp_num:#x} (wr_id {wr_id:#x})");
    let fault = fault::check(Verb::PollCq, Some(qp_num), &what);
    if !matches!(fault, Some(Fault::Status(_) | Fault::Event(_))) {
        return;
    }
    if let Some(Fault::Status(s)) = fault {
        *status = s;
    }
    // The QP by number, under the table's lock: destroy_qp takes its entry
    // out under it before the QP goes.
    let qps = fault::QPS.lock().unwrap_or_else(|e| e.into_inner());
    let qp = qps.iter().find(|(num, _)| *num == qp_num).map(|&(_, q)| q as *mut ibv_qp);
    match fault {
        // SAFETY: QPS holds only live QPs of ours (above).
        Some(Fault::Status(_)) => qp.into_iter().for_each(|q| unsafe { move_to_error(q, "after its injected error completion") }),
        // SAFETY: as above; cq per the contract.
        Some(Fault::Event(e)) => unsafe { inject_event(e, qp, Some(cq)) },
        _ => {}
    }
}

// ---- CQ

unsafe extern "C" fn create_cq(ctx: *mut ibv_context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int) -> *mut ibv_cq {
    ret_ptr(guarded("create_cq", || {
        injected(Verb::CreateCq, || format!("create_cq of {cqe} entries"))?;
        // SAFETY: ctx is our context.
        let ctx = unsafe { Context::from_raw(ctx) };
        ctx.with_kernel_async_fd(|| cq::create(ctx, cqe, channel, comp_vector)).map(Cq::leak)
    }))
}

unsafe extern "C" fn create_cq_ex(ctx: *mut ibv_context, attr: *mut ibv_cq_init_attr_ex) -> *mut ibv_cq_ex {
    ret_ptr(guarded("create_cq_ex", || {
        injected(Verb::CreateCq, || "create_cq_ex".into())?;
        // SAFETY: ctx is our context.
        let ctx = unsafe { Context::from_raw(ctx) };
        // SAFETY: attr was checked by libibverbs.
        let mut cq = ctx.with_kernel_async_fd(|| unsafe { cq::create_ex(ctx, attr) })?;
        // SAFETY: as above.
        install_cq_readers(cq.ex_mut(), unsafe { (*attr).wc_flags });
        Ok(Cq::leak(cq).cast::<ibv_cq_ex>())
    }))
}

/// The fast entry, installed unless `valgrind::slow_path()` (add_ops).
pub(crate) unsafe extern "C" fn poll_cq(cq: *mut ibv_cq, ne: c_int, wc: *mut ibv_wc) -> c_int {
    // Every call out of this path is in tail position, and nothing in it
    // can unwind: it needs neither a frame nor a panic guard.
    // SAFETY: cq is ours; the application's array has ne entries.
    match unsafe { Cq::from_raw(cq).try_poll_fast(wc, ne) } {
        Some(Ok(n)) => n,
        Some(Err(e)) => fail(e.0),
        // SAFETY: forwarded contract.
        None => unsafe { poll_cq_waiting(cq, ne, wc) },
    }
}

/// Sets errno to `e` and returns -1, out of line (the hot entries' errors).
#[cold]
#[inline(never)]
extern "C" fn fail(errno: c_int) -> c_int {
    crate::cmd::Errno(errno).set();
    // Opaque, so that callers cannot fold the result in and must jump here
    // (a tail call) rather than call and keep a frame for it.
    core::hint::black_box(-1)
}

/// poll_cq when another thread holds the CQ's lock.
///
/// # Safety
/// As for poll_cq.
#[cold]
#[inline(never)]
unsafe extern "C" fn poll_cq_waiting(cq: *mut ibv_cq, ne: c_int, wc: *mut ibv_wc) -> c_int {
    no_unwind("poll_cq", -1, || {
        // SAFETY: cq is ours; the application's array has ne entries.
        match unsafe { Cq::from_raw(cq).poll_fast_waiting(wc, ne) } {
            Ok(n) => n,
            Err(e) => {
                e.set();
                -1
            }
        }
    })
}

/// poll_cq under helgrind or with faults armed (add_ops installs it then).
///
/// # Safety
/// As for poll_cq.
pub(crate) unsafe extern "C" fn poll_cq_slow(cq: *mut ibv_cq, ne: c_int, wc: *mut ibv_wc) -> c_int {
    no_unwind("poll_cq", -1, || {
        // SAFETY: cq is ours.
        let cq = unsafe { Cq::from_raw(cq) };
        let out = match (ne, wc.is_null()) {
            (n, false) if n > 0 => {
                // SAFETY: the application's array of ne entries, which we only write.
                unsafe { core::slice::from_raw_parts_mut(wc.cast::<MaybeUninit<ibv_wc>>(), n as usize) }
            }
            _ => &mut [],
        };
        let polled = if fault::active() { poll_with_faults(cq, out) } else { cq.poll(out) };
        match polled {
            Ok(n) => n as c_int,
            Err(e) => {
                e.set();
                -1
            }
        }
    })
}

/// poll_cq while faults are armed: only ripe completions when they are
/// delayed, and the injections among those polled.
#[cold]
fn poll_with_faults(cq: &Cq, out: &mut [MaybeUninit<ibv_wc>]) -> Result<usize> {
    let n = match fault::delay() {
        Some(delay) => {
            // Decided and taken under the CQ's marks, against a second poller.
            let mut held = fault_delay::Held::of(cq);
            let (ripe, _) = held.ripe(cq, delay);
            let len = out.len().min(ripe as usize);
            cq.poll(&mut out[..len])?
        }
        None => cq.poll(out)?,
    };
    // SAFETY: poll filled the first n entries of the application's array; cq is ours.
    unsafe { complete_with_injected_faults(cq.raw(), out.as_mut_ptr().cast(), n) };
    Ok(n)
}

/// While completions are delayed, arming returns only once every held one
/// has ripened: the kernel raised no event for those that arrived before
/// the arm (or raised it when they arrived, not when they ripen), and the
/// application polls after arming. Those arriving later raise their own.
#[cold]
fn wait_for_held(cq: &Cq) {
    let Some(delay) = fault::delay() else { return };
    let (_, next) = fault_delay::Held::of(cq).ripe(cq, delay);
    if let Some(t) = next {
        std::thread::sleep(t.saturating_duration_since(std::time::Instant::now()));
    }
}

unsafe extern "C" fn req_notify_cq(cq: *mut ibv_cq, solicited_only: c_int) -> c_int {
    let r = no_unwind("req_notify_cq", libc::EIO, || {
        // SAFETY: cq is ours and live; its context is ours.
        let (ctx, handle) = unsafe { (Context::from_raw((*cq).context), (*cq).handle) };
        ret_int(crate::uverbs_ioctl::req_notify_cq(ctx.cmd_fd(), handle, solicited_only != 0, &ctx.doorbell_via_ioctl))
    });
    if r == 0 && fault::active() {
        // SAFETY: cq is ours.
        unsafe { wait_for_held_entry(cq) };
    }
    r
}

/// wait_for_held behind an entry that cannot unwind (see next_poll_slow).
///
/// # Safety
/// `cq` is one of our CQs.
#[cold]
#[inline(never)]
unsafe extern "C" fn wait_for_held_entry(cq: *mut ibv_cq) {
    // SAFETY: per the contract.
    no_unwind("req_notify_cq", (), || wait_for_held(unsafe { Cq::from_raw(cq) }))
}

unsafe extern "C" fn resize_cq(cq: *mut ibv_cq, cqe: c_int) -> c_int {
    // SAFETY: cq is ours.
    ret_int(guarded("resize_cq", || unsafe { Cq::from_raw(cq) }.resize(cqe)))
}

unsafe extern "C" fn destroy_cq(cq: *mut ibv_cq) -> c_int {
    // SAFETY: cq is ours; libibverbs' destroy contract.
    let destroy = || unsafe { cq::destroy(cq) };
    if !fault::active() {
        return ret_int(guarded("destroy_cq", destroy));
    }
    // SAFETY: cq is ours and live until destroy succeeds; not used after.
    let acks = unsafe { fault_events::cq_acks(cq) };
    let injected = acks.before_destroy();
    let r = ret_int(guarded("destroy_cq", destroy));
    if r == 0 {
        fault_delay::forget(cq as usize);
    } else {
        acks.destroy_failed(injected);
    }
    r
}

/// The fast entry, installed unless faults are armed (install_cq_readers).
pub(crate) unsafe extern "C" fn cq_start_poll(cq: *mut ibv_cq_ex, _attr: *mut ibv_poll_cq_attr) -> c_int {
    no_unwind("start_poll", libc::EIO, || {
        // SAFETY: cq is ours (installed only on our extended CQs).
        match unsafe { Cq::from_raw(cq.cast()) }.start_poll() {
            Ok(guard) => {
                guard.park();
                0
            }
            Err(e) => e.0,
        }
    })
}

/// The fast entry, installed unless faults are armed (install_cq_readers).
pub(crate) unsafe extern "C" fn cq_next_poll(cq: *mut ibv_cq_ex) -> c_int {
    // SAFETY: the verbs API calls next_poll only between a successful
    // start_poll and end_poll on this thread; cq is ours.
    no_unwind("next_poll", libc::EIO, || ret_int(unsafe { Cq::from_raw(cq.cast()).next_poll() }))
}

/// next_poll with faults armed (install_cq_readers installs it then).
///
/// # Safety
/// As for cq_next_poll.
#[cold]
unsafe extern "C" fn next_poll_slow(cq: *mut ibv_cq_ex) -> c_int {
    // SAFETY: forwarded contract.
    no_unwind("next_poll", libc::EIO, || unsafe { next_poll_with_faults(Cq::from_raw(cq.cast())) })
}

/// next_poll while faults are armed: nothing past the ripe completions when
/// they are delayed, and the injections into the exposed one.
///
/// # Safety
/// As for next_poll.
#[cold]
unsafe fn next_poll_with_faults(cq: &Cq) -> c_int {
    if fault::delay().is_some() && !fault_delay::spend(cq) {
        // The rest is held back; end_poll hands back the exposed entry.
        return libc::ENOENT;
    }
    // SAFETY: per the contract.
    let r = unsafe { cq.next_poll() };
    if r.is_ok() {
        // SAFETY: an entry is exposed, the poll lock held.
        unsafe { inject_into_exposed(cq) };
    }
    ret_int(r)
}

/// start_poll with faults armed (install_cq_readers installs it then).
///
/// # Safety
/// `cq` is one of our extended CQs.
#[cold]
unsafe extern "C" fn start_poll_slow(cq: *mut ibv_cq_ex, _attr: *mut ibv_poll_cq_attr) -> c_int {
    // SAFETY: per the contract.
    no_unwind("start_poll", libc::EIO, || start_poll_with_faults(unsafe { Cq::from_raw(cq.cast()) }))
}

/// start_poll while faults are armed: nothing unless a completion is ripe
/// when they are delayed, and the injections into the exposed one.
#[cold]
fn start_poll_with_faults(cq: &Cq) -> c_int {
    let started = match fault::delay() {
        Some(delay) => {
            let mut held = fault_delay::Held::of(cq);
            let (ripe, _) = held.ripe(cq, delay);
            if ripe == 0 {
                return libc::ENOENT;
            }
            cq.start_poll().map(|guard| {
                guard.park();
                ripe - 1
            })
        }
        None => cq.start_poll().map(|guard| {
            guard.park();
            0
        }),
    };
    match started {
        Ok(budget) => {
            // The poll lock is held (parked): the budget's lock comes after it.
            fault_delay::set_budget(cq, budget);
            // SAFETY: an entry is exposed, the poll lock held.
            unsafe { inject_into_exposed(cq) };
            0
        }
        Err(e) => e.0,
    }
}

/// Injections into the completion an extended poll exposes: its status is
/// the one the application reads from the extended CQ.
///
/// # Safety
/// Between a successful start_poll/next_poll on `cq` and end_poll, on the
/// polling thread.
#[cold]
unsafe fn inject_into_exposed(cq: &Cq) {
    // SAFETY: per the contract.
    let wc = unsafe { PollGuard::exposed(cq) };
    let ex = cq.raw().cast::<ibv_cq_ex>();
    // SAFETY: the extended CQ's status is written under the poll lock, which
    // this thread holds (per the contract).
    let status = unsafe { &mut (*ex).status };
    // SAFETY: cq is ours.
    unsafe { inject_into_completion(cq.raw(), wc.qp_num, wc.wr_id, status) };
}

pub(crate) unsafe extern "C" fn cq_end_poll(cq: *mut ibv_cq_ex) {
    // SAFETY: as for next_poll; dropping the guard ends the poll.
    no_unwind("end_poll", (), || drop(unsafe { PollGuard::resume(Cq::from_raw(cq.cast())) }))
}

macro_rules! cq_reader {
    ($name:ident, $ty:ty, |$wc:ident| $value:expr) => {
        pub(crate) unsafe extern "C" fn $name(cq: *mut ibv_cq_ex) -> $ty {
            no_unwind(stringify!($name), Default::default(), || {
                // SAFETY: readers run between a successful start_poll and
                // end_poll, on the polling thread.
                let $wc = unsafe { PollGuard::exposed(Cq::from_raw(cq.cast())) };
                $value
            })
        }
    };
}

cq_reader!(cq_read_opcode, ibv_wc_opcode::Type, |wc| wc.opcode as _);
cq_reader!(cq_read_vendor_err, u32, |wc| wc.vendor_err);
cq_reader!(cq_read_byte_len, u32, |wc| wc.byte_len);
cq_reader!(cq_read_imm_data, __be32, |wc| {
    // SAFETY: imm_data and invalidate_rkey share plain u32 bits.
    unsafe { wc.ex.imm_data }
});
cq_reader!(cq_read_qp_num, u32, |wc| wc.qp_num);
cq_reader!(cq_read_src_qp, u32, |wc| wc.src_qp);
cq_reader!(cq_read_wc_flags, c_uint, |wc| wc.wc_flags);
cq_reader!(cq_read_slid, u32, |wc| wc.slid as u32);
cq_reader!(cq_read_sl, u8, |wc| wc.sl);
cq_reader!(cq_read_dlid_path_bits, u8, |wc| wc.dlid_path_bits);

/// The extended CQ's table: polling, and the readers for the fields asked for.
fn install_cq_readers(ex: &mut ibv_cq_ex, wc_flags: u64) {
    // The entries chosen once: faults are armed (or not) for the process.
    if fault::active() {
        ex.start_poll = Some(start_poll_slow);
        ex.next_poll = Some(next_poll_slow);
    } else {
        ex.start_poll = Some(cq_start_poll);
        ex.next_poll = Some(cq_next_poll);
    }
    ex.end_poll = Some(cq_end_poll);
    ex.read_opcode = Some(cq_read_opcode);
    ex.read_vendor_err = Some(cq_read_vendor_err);
    ex.read_wc_flags = Some(cq_read_wc_flags);
    let has = |flag: u32| wc_flags & flag as u64 != 0;
    if has(wcf::IBV_WC_EX_WITH_BYTE_LEN) {
        ex.read_byte_len = Some(cq_read_byte_len);
    }
    if has(wcf::IBV_WC_EX_WITH_IMM) {
        ex.read_imm_data = Some(cq_read_imm_data);
    }
    if has(wcf::IBV_WC_EX_WITH_QP_NUM) {
        ex.read_qp_num = Some(cq_read_qp_num);
    }
    if has(wcf::IBV_WC_EX_WITH_SRC_QP) {
        ex.read_src_qp = Some(cq_read_src_qp);
    }
    if has(wcf::IBV_WC_EX_WITH_SLID) {
        ex.read_slid = Some(cq_read_slid);
    }
    if has(wcf::IBV_WC_EX_WITH_SL) {
        ex.read_sl = Some(cq_read_sl);
    }
    if has(wcf::IBV_WC_EX_WITH_DLID_PATH_BITS) {
        ex.read_dlid_path_bits = Some(cq_read_dlid_path_bits);
    }
}

// ---- QP

unsafe extern "C" fn create_qp(pd: *mut ibv_pd, attr: *mut ibv_qp_init_attr) -> *mut ibv_qp {
    ret_ptr(guarded("create_qp", || {
        injected(Verb::CreateQp, || "create_qp".into())?;
        // SAFETY: pd is ours (so is its context).
        let ctx = unsafe { Context::from_raw((*pd).context) };
        // SAFETY: attr is the application's.
        let q = ctx.with_kernel_async_fd(|| unsafe { qp::create(ctx, pd, attr) }).map(Qp::leak)?;
        remember_qp(q);
        Ok(q)
    }))
}

unsafe extern "C" fn create_qp_ex(ctx: *mut ibv_context, attr: *mut ibv_qp_init_attr_ex) -> *mut ibv_qp {
    ret_ptr(guarded("create_qp_ex", || {
        injected(Verb::CreateQp, || "create_qp_ex".into())?;
        // SAFETY: ctx is ours.
        let ctx = unsafe { Context::from_raw(ctx) };
        // SAFETY: attr is the application's.
        let mut q = ctx.with_kernel_async_fd(|| unsafe { qp::create_ex(ctx, attr) })?;
        // SAFETY: as above.
        let a = unsafe { &*attr };
        if a.comp_mask & ibv_qp_init_attr_mask::IBV_QP_INIT_ATTR_SEND_OPS_FLAGS != 0 {
            install_send_ops(q.ex45_mut(), a.send_ops_flags);
        }
        let q = Qp::leak(q);
        remember_qp(q);
        Ok(q)
    }))
}

unsafe extern "C" fn query_qp(q: *mut ibv_qp, attr: *mut ibv_qp_attr, mask: c_int, init_attr: *mut ibv_qp_init_attr) -> c_int {
    // SAFETY: q is ours.
    ret_int(guarded("query_qp", || unsafe { Qp::from_raw(q) }.query(attr, mask, init_attr)))
}

unsafe extern "C" fn modify_qp(q: *mut ibv_qp, attr: *mut ibv_qp_attr, mask: c_int) -> c_int {
    // SAFETY: q is ours.
    ret_int(guarded("modify_qp", || unsafe { Qp::from_raw(q) }.modify(attr, mask)))
}

/// While faults are armed, QPs are known by number (fault::QPS).
fn remember_qp(q: *mut ibv_qp) {
    if fault::active() {
        // SAFETY: q was just made, and is ours.
        let num = unsafe { (*q).qp_num };
        fault::QPS.lock().unwrap_or_else(|e| e.into_inner()).push((num, q as usize));
    }
}

unsafe extern "C" fn destroy_qp(q: *mut ibv_qp) -> c_int {
    // SAFETY: q is ours; libibverbs' destroy contract.
    let destroy = || unsafe { qp::destroy(q) };
    if !fault::active() {
        return ret_int(guarded("destroy_qp", destroy));
    }
    // Out of the table, under its lock, before the QP can go: an injected
    // completion error must not move a QP being destroyed.
    let mut qps = fault::QPS.lock().unwrap_or_else(|e| e.into_inner());
    let entry = qps.iter().position(|&(_, p)| p == q as usize).map(|i| qps.swap_remove(i));
    // SAFETY: q is live until destroy succeeds; not used after.
    let acks = unsafe { fault_events::qp_acks(q) };
    let injected = acks.before_destroy();
    let r = ret_int(guarded("destroy_qp", destroy));
    if r != 0 {
        qps.extend(entry);
        acks.destroy_failed(injected);
    }
    r
}

/// The fast entry, installed unless `valgrind::slow_path()` (add_ops).
pub(crate) unsafe extern "C" fn post_send(q: *mut ibv_qp, wr: *mut ibv_send_wr, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // One WR, the usual call, without a frame: nothing in try_post_one
    // calls out or unwinds, and both ways on are jumps.
    // SAFETY: q is ours; the WR is the application's.
    if unsafe { Qp::from_raw(q).try_post_one(wr) } {
        // SAFETY: forwarded contract.
        return unsafe { post_send_doorbell(q, bad_wr) };
    }
    // SAFETY: forwarded contract.
    unsafe { post_send_list(q, wr, bad_wr) }
}

/// The doorbell after post_send's one-WR path published: one write(2),
/// and nothing else unless it failed.
///
/// # Safety
/// `q` is ours; `bad_wr` is not null.
#[inline(never)]
unsafe extern "C" fn post_send_doorbell(q: *mut ibv_qp, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    // SAFETY: per the contract.
    if unsafe { Qp::from_raw(q) }.try_send_doorbell() {
        return 0;
    }
    // SAFETY: per the contract.
    unsafe { post_send_doorbell_again(q, bad_wr) }
}

/// The doorbell when its write(2) did not take: rung again with the
/// fallback to INVOKE_WRITE, or the error logged and returned.
///
/// # Safety
/// As for post_send_doorbell.
#[cold]
#[inline(never)]
unsafe extern "C" fn post_send_doorbell_again(q: *mut ibv_qp, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    // As the list path reports it: the WR is posted, what failed is
    // telling the kernel, so no WR is the bad one.
    // SAFETY: per the contract.
    no_unwind("post_send", libc::EIO, || unsafe {
        post_ret(Qp::from_raw(q).doorbell().map_err(|errno| PostError { errno, bad: core::ptr::null_mut() }), bad_wr)
    })
}

/// post_send for what the one-WR path does not take.
///
/// # Safety
/// As for post_send, with `bad_wr` checked.
#[inline(never)]
unsafe extern "C" fn post_send_list(q: *mut ibv_qp, wr: *mut ibv_send_wr, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    // SAFETY: q is ours; the WR list is the application's; bad_wr checked.
    no_unwind("post_send", libc::EIO, || unsafe { post_ret(Qp::from_raw(q).post_send_fast(wr), bad_wr) })
}

/// post_send under helgrind or with faults armed (add_ops installs it then).
///
/// # Safety
/// As for post_send.
pub(crate) unsafe extern "C" fn post_send_slow(q: *mut ibv_qp, wr: *mut ibv_send_wr, bad_wr: *mut *mut ibv_send_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    if fault::active() {
        // SAFETY: q is ours; bad_wr checked.
        if let Some(e) = unsafe { post_injected(Verb::PostSend, Some(q), wr, bad_wr) } {
            return e;
        }
    }
    // SAFETY: q is ours; the WR list is the application's; bad_wr checked.
    no_unwind("post_send", libc::EIO, || unsafe { post_ret(Qp::from_raw(q).post_send(wr), bad_wr) })
}

/// The fast entry, installed unless `valgrind::slow_path()` (add_ops).
pub(crate) unsafe extern "C" fn post_recv(q: *mut ibv_qp, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: q is ours; the WR list is the application's; bad_wr checked.
    no_unwind("post_recv", libc::EIO, || unsafe { post_ret(Qp::from_raw(q).post_recv::<true>(wr), bad_wr) })
}

/// post_recv under helgrind or with faults armed (add_ops installs it then).
///
/// # Safety
/// As for post_recv.
pub(crate) unsafe extern "C" fn post_recv_slow(q: *mut ibv_qp, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    if fault::active() {
        // SAFETY: q is ours; bad_wr checked.
        if let Some(e) = unsafe { post_injected(Verb::PostRecv, Some(q), wr, bad_wr) } {
            return e;
        }
    }
    // SAFETY: as above.
    no_unwind("post_recv", libc::EIO, || unsafe { post_ret(Qp::from_raw(q).post_recv::<false>(wr), bad_wr) })
}

unsafe extern "C" fn bind_mw(q: *mut ibv_qp, mw: *mut ibv_mw, bind: *mut ibv_mw_bind) -> c_int {
    let r = guarded("bind_mw", || {
        if bind.is_null() || mw.is_null() {
            return Err(crate::cmd::Errno(libc::EINVAL));
        }
        // SAFETY: q and mw are ours; bind is the application's.
        unsafe { Qp::from_raw(q).bind_mw(mw, &*bind) }
    });
    if let Err(e) = r {
        e.set();
    }
    ret_int(r)
}

// ---- The extended send API

/// # Safety
/// `q` is the `ibv_qp_ex` of one of our QPs (these entries are installed
/// only on those).
unsafe fn qpx<'a>(q: *mut ibv_qp_ex) -> &'a Qp {
    // SAFETY: per the contract; ibv_qp_ex sits at offset 0 like ibv_qp.
    unsafe { Qp::from_raw(q.cast()) }
}

pub(crate) unsafe extern "C" fn wr_start(q: *mut ibv_qp_ex) {
    // SAFETY: the verbs API pairs wr_start with wr_complete/wr_abort.
    no_unwind("wr_start", (), || unsafe { qpx(q).wr_start() })
}

/// The fast entry, installed unless faults are armed.
pub(crate) unsafe extern "C" fn wr_complete(q: *mut ibv_qp_ex) -> c_int {
    // SAFETY: ends the batch wr_start opened.
    no_unwind("wr_complete", libc::EIO, || ret_int(unsafe { qpx(q).wr_complete() }))
}

/// wr_complete with faults armed (installed then).
///
/// # Safety
/// As for wr_complete.
#[cold]
pub(crate) unsafe extern "C" fn wr_complete_slow(q: *mut ibv_qp_ex) -> c_int {
    // SAFETY: q is one of our QPs, in a batch.
    if let Some(e) = unsafe { wr_complete_injected(q) } {
        return e;
    }
    // SAFETY: forwarded contract.
    unsafe { wr_complete(q) }
}

/// An injected post_send failure at ibv_wr_complete: the batch is dropped,
/// as a failed ibv_wr_complete posts nothing of it.
///
/// # Safety
/// `q` is one of our QPs, inside a batch.
#[cold]
unsafe fn wr_complete_injected(q: *mut ibv_qp_ex) -> Option<c_int> {
    let mut bad = core::ptr::null_mut::<c_void>();
    // SAFETY: per the contract; `bad` is ours.
    let e = unsafe { post_injected(Verb::PostSend, Some(q.cast()), core::ptr::null_mut(), &mut bad) }?;
    // SAFETY: ends the batch wr_start opened.
    no_unwind("wr_abort", (), || unsafe { qpx(q).wr_abort() });
    Some(e)
}

unsafe extern "C" fn wr_abort(q: *mut ibv_qp_ex) {
    // SAFETY: ends the batch wr_start opened.
    no_unwind("wr_abort", (), || unsafe { qpx(q).wr_abort() })
}

macro_rules! wr_builder {
    ($name:ident($($arg:ident: $ty:ty),*) => $op:expr) => {
        pub(crate) unsafe extern "C" fn $name(q: *mut ibv_qp_ex $(, $arg: $ty)*) {
            // SAFETY: builders run inside a batch (the verbs contract); the
            // pointers in the op are the application's.
            no_unwind(stringify!($name), (), || unsafe { qpx(q).wr_build($op) })
        }
    };
}

wr_builder!(wr_send() => SendOp::Send);
wr_builder!(wr_send_imm(imm: __be32) => SendOp::SendImm(imm));
wr_builder!(wr_send_inv(rkey: u32) => SendOp::SendInv(rkey));
wr_builder!(wr_rdma_write(rkey: u32, addr: u64) => SendOp::RdmaWrite { rkey, addr });
wr_builder!(wr_rdma_write_imm(rkey: u32, addr: u64, imm: __be32) => SendOp::RdmaWriteImm { rkey, addr, imm });
wr_builder!(wr_rdma_read(rkey: u32, addr: u64) => SendOp::RdmaRead { rkey, addr });
wr_builder!(wr_atomic_cmp_swp(rkey: u32, addr: u64, compare: u64, swap: u64) => SendOp::CmpSwp { rkey, addr, compare, swap });
wr_builder!(wr_atomic_fetch_add(rkey: u32, addr: u64, add: u64) => SendOp::FetchAdd { rkey, addr, add });
wr_builder!(wr_local_inv(rkey: u32) => SendOp::LocalInv(rkey));
wr_builder!(wr_bind_mw(mw: *mut ibv_mw, rkey: u32, info: *const ibv_mw_bind_info) => SendOp::BindMw { mw, rkey, info });
wr_builder!(wr_atomic_write(rkey: u32, addr: u64, data: *const c_void) => SendOp::AtomicWrite { rkey, addr, data: data.cast() });
wr_builder!(wr_flush(rkey: u32, addr: u64, len: usize, ptype: u8, level: u8) => SendOp::Flush { rkey, addr, len, ptype, level });

macro_rules! wr_setter {
    ($name:ident($($arg:ident: $ty:ty),*) => $payload:expr) => {
        pub(crate) unsafe extern "C" fn $name(q: *mut ibv_qp_ex $(, $arg: $ty)*) {
            // SAFETY: setters run inside a batch (the verbs contract); the
            // pointers in the payload are the application's.
            no_unwind(stringify!($name), (), || unsafe { qpx(q).wr_set($payload) })
        }
    };
}

wr_setter!(wr_set_ud_addr(ah: *mut ibv_ah, remote_qpn: u32, remote_qkey: u32) => Payload::UdAddr { ah, remote_qpn, remote_qkey });
wr_setter!(wr_set_sge(lkey: u32, addr: u64, length: u32) => Payload::Sge { lkey, addr, length });
wr_setter!(wr_set_sge_list(count: usize, list: *const ibv_sge) => Payload::SgeList { list, count });
wr_setter!(wr_set_inline_data_list(count: usize, bufs: *const ibv_data_buf) => Payload::Inline { bufs, count });

pub(crate) unsafe extern "C" fn wr_set_inline_data(q: *mut ibv_qp_ex, addr: *mut c_void, length: usize) {
    let one = [ibv_data_buf { addr, length }];
    // SAFETY: as for the other setters; `one` outlives the call.
    no_unwind("wr_set_inline_data", (), || unsafe { qpx(q).wr_set(Payload::Inline { bufs: one.as_ptr(), count: 1 }) })
}

/// The extended QP's table: the builders asked for, and every setter.
/// create_ex allowed FLUSH only where this libibverbs' `ibv_qp_ex` has
/// `wr_flush` (rdma-core 45+; in 44 that place is `verbs_qp::comp_mask`).
fn install_send_ops(ex45: &mut ibv_qp_ex_45, flags: u64) {
    if flags & newer_kernels::QP_EX_WITH_FLUSH != 0 && crate::abi::imports::flavor().qp_has_wr_flush {
        ex45.wr_flush = Some(wr_flush);
    }
    let ex = &mut ex45.v44;
    let has = |f: u32| flags & f as u64 != 0;
    if flags & newer_kernels::QP_EX_WITH_ATOMIC_WRITE != 0 {
        ex.wr_atomic_write = Some(wr_atomic_write);
    }
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
    ex.wr_complete = Some(if fault::active() { wr_complete_slow } else { wr_complete });
    ex.wr_abort = Some(wr_abort);
}

// ---- SRQ

unsafe extern "C" fn create_srq(pd: *mut ibv_pd, attr: *mut ibv_srq_init_attr) -> *mut ibv_srq {
    ret_ptr(guarded("create_srq", || {
        // SAFETY: pd is ours (so is its context).
        let ctx = unsafe { Context::from_raw((*pd).context) };
        // SAFETY: attr is the application's.
        ctx.with_kernel_async_fd(|| unsafe { srq::create(ctx, pd, attr) }).map(Srq::leak)
    }))
}

unsafe extern "C" fn create_srq_ex(ctx: *mut ibv_context, attr: *mut ibv_srq_init_attr_ex) -> *mut ibv_srq {
    ret_ptr(guarded("create_srq_ex", || {
        // SAFETY: ctx is ours.
        let ctx = unsafe { Context::from_raw(ctx) };
        // SAFETY: attr is the application's.
        ctx.with_kernel_async_fd(|| unsafe { srq::create_ex(ctx, attr) }).map(Srq::leak)
    }))
}

unsafe extern "C" fn modify_srq(s: *mut ibv_srq, attr: *mut ibv_srq_attr, mask: c_int) -> c_int {
    // SAFETY: s is ours.
    ret_int(guarded("modify_srq", || unsafe { Srq::from_raw(s) }.modify(attr, mask)))
}

unsafe extern "C" fn query_srq(s: *mut ibv_srq, attr: *mut ibv_srq_attr) -> c_int {
    // SAFETY: s is ours.
    ret_int(guarded("query_srq", || unsafe { Srq::from_raw(s) }.query(attr)))
}

unsafe extern "C" fn destroy_srq(s: *mut ibv_srq) -> c_int {
    // SAFETY: s is ours; libibverbs' destroy contract.
    ret_int(guarded("destroy_srq", || unsafe { srq::destroy(s) }))
}

/// The fast entry, installed unless `valgrind::slow_path()` (add_ops).
pub(crate) unsafe extern "C" fn post_srq_recv(s: *mut ibv_srq, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: s is ours; the WR list is the application's; bad_wr checked.
    no_unwind("post_srq_recv", libc::EIO, || unsafe { post_ret(Srq::from_raw(s).post_recv::<true>(wr), bad_wr) })
}

/// post_srq_recv under helgrind or with faults armed (add_ops installs it then).
///
/// # Safety
/// As for post_srq_recv.
pub(crate) unsafe extern "C" fn post_srq_recv_slow(s: *mut ibv_srq, wr: *mut ibv_recv_wr, bad_wr: *mut *mut ibv_recv_wr) -> c_int {
    if bad_wr.is_null() {
        return libc::EINVAL;
    }
    if fault::active() {
        // SAFETY: bad_wr checked.
        if let Some(e) = unsafe { post_injected(Verb::PostSrqRecv, None, wr, bad_wr) } {
            return e;
        }
    }
    // SAFETY: s is ours; the WR list is the application's; bad_wr checked.
    no_unwind("post_srq_recv", libc::EIO, || unsafe { post_ret(Srq::from_raw(s).post_recv::<false>(wr), bad_wr) })
}

// ---- AH and multicast

unsafe extern "C" fn create_ah(pd: *mut ibv_pd, attr: *mut ibv_ah_attr) -> *mut ibv_ah {
    // SAFETY: pd is ours (so is its context).
    ret_ptr(guarded("create_ah", || unsafe { ah::create(Context::from_raw((*pd).context), pd, attr) }.map(Ah::leak)))
}

unsafe extern "C" fn destroy_ah(a: *mut ibv_ah) -> c_int {
    // SAFETY: a is ours; libibverbs' destroy contract.
    ret_int(guarded("destroy_ah", || unsafe { ah::destroy(a) }))
}

unsafe extern "C" fn attach_mcast(q: *mut ibv_qp, gid: *const ibv_gid, lid: u16) -> c_int {
    // Attaching is one plain command with no provider part.
    // SAFETY: q is ours; gid the application's.
    ret_int(guarded("attach_mcast", || -> Result<()> { crate::cmd::checked(unsafe { ibv_cmd_attach_mcast(q, gid, lid) }) }))
}

unsafe extern "C" fn detach_mcast(q: *mut ibv_qp, gid: *const ibv_gid, lid: u16) -> c_int {
    // SAFETY: as above.
    ret_int(guarded("detach_mcast", || -> Result<()> { crate::cmd::checked(unsafe { ibv_cmd_detach_mcast(q, gid, lid) }) }))
}

/// The data-path part of the context's ops table.
pub(super) fn add_ops(ops: &mut verbs_context_ops) {
    ops.create_cq = Some(create_cq);
    ops.create_cq_ex = Some(create_cq_ex);
    // The hot entries chosen once: helgrind and armed faults (decided at
    // load, before any context) need the general paths; otherwise the fast
    // ones run without a check per call.
    let slow = valgrind::slow_path();
    ops.poll_cq = Some(if slow { poll_cq_slow } else { poll_cq });
    ops.req_notify_cq = Some(req_notify_cq);
    ops.resize_cq = Some(resize_cq);
    ops.destroy_cq = Some(destroy_cq);
    ops.create_qp = Some(create_qp);
    ops.create_qp_ex = Some(create_qp_ex);
    ops.query_qp = Some(query_qp);
    ops.modify_qp = Some(modify_qp);
    ops.destroy_qp = Some(destroy_qp);
    ops.post_send = Some(if slow { post_send_slow } else { post_send });
    ops.post_recv = Some(if slow { post_recv_slow } else { post_recv });
    ops.bind_mw = Some(bind_mw);
    ops.create_srq = Some(create_srq);
    ops.create_srq_ex = Some(create_srq_ex);
    ops.modify_srq = Some(modify_srq);
    ops.query_srq = Some(query_srq);
    ops.destroy_srq = Some(destroy_srq);
    ops.post_srq_recv = Some(if slow { post_srq_recv_slow } else { post_srq_recv });
    ops.create_ah = Some(create_ah);
    ops.destroy_ah = Some(destroy_ah);
    ops.attach_mcast = Some(attach_mcast);
    ops.detach_mcast = Some(detach_mcast);
}
