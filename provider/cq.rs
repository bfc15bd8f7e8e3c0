//! Completion queues: the kernel produces `ib_uverbs_wc` entries into a
//! shared ring, we consume them in poll_cq or the extended polling API.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use crate::context::Context;
use crate::queue::{next_index, Ring, SpinLock};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::mem::size_of;
use core::ptr;

use ibv_create_cq_wc_flags as wcf;

/// The completion fields the kernel's entries carry; librxe offers the same.
pub const SUPPORTED_WC_FLAGS: u64 = (wcf::IBV_WC_EX_WITH_BYTE_LEN
    | wcf::IBV_WC_EX_WITH_IMM
    | wcf::IBV_WC_EX_WITH_QP_NUM
    | wcf::IBV_WC_EX_WITH_SRC_QP
    | wcf::IBV_WC_EX_WITH_SLID
    | wcf::IBV_WC_EX_WITH_SL
    | wcf::IBV_WC_EX_WITH_DLID_PATH_BITS) as u64;

/// State touched only under `Cq::lock`.
struct Polling {
    ring: Option<Ring>,
    /// Extended polling: the entry being looked at, and whether it is valid
    /// (false after next_poll ran out).
    cur: u32,
    exposed: bool,
}

#[repr(C)]
pub struct Cq {
    pub vcq: verbs_cq,
    lock: SpinLock,
    polling: UnsafeCell<Polling>,
}

impl Cq {
    fn boxed() -> Box<Cq> {
        Box::new(Cq {
            // SAFETY: all-zero is a valid verbs_cq; libibverbs and the kernel fill it.
            vcq: unsafe { core::mem::zeroed() },
            lock: SpinLock::default(),
            polling: UnsafeCell::new(Polling { ring: None, cur: 0, exposed: false }),
        })
    }

    /// # Safety
    /// `cq` must be the `ibv_cq` of a live [`Cq`].
    pub unsafe fn from_ibv<'a>(cq: *mut ibv_cq) -> &'a Cq {
        // SAFETY: ibv_cq is at offset 0 of verbs_cq, at offset 0 of Cq.
        unsafe { &*cq.cast::<Cq>() }
    }

    pub fn ibv_cq(&self) -> *mut ibv_cq {
        ptr::addr_of!(self.vcq).cast_mut().cast()
    }

    /// # Safety
    /// Caller holds `self.lock`.
    #[allow(clippy::mut_from_ref)]
    unsafe fn polling(&self) -> &mut Polling {
        // SAFETY: exclusive under the lock, per the contract.
        unsafe { &mut *self.polling.get() }
    }

    fn ex(&self) -> *mut ibv_cq_ex {
        ptr::addr_of!(self.vcq.cq_ex).cast_mut()
    }
}

fn map_ring(ctx: &Context, cq: &Cq, mi: &mminfo) -> Result<()> {
    let ring = Ring::map(ctx.cmd_fd(), mi)?;
    if ring.elem_size() < size_of::<ib_uverbs_wc>() {
        log::error!("{}: create_cq: kernel CQ entries are {} bytes, expected at least {}", ctx.name(), ring.elem_size(), size_of::<ib_uverbs_wc>());
        return Err(Errno(libc::EINVAL));
    }
    // SAFETY: the CQ is not shared yet.
    unsafe { cq.polling().ring = Some(ring) };
    Ok(())
}

/// Creates a CQ for `ibv_create_cq`.
pub fn create(ctx: &mut Context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int) -> Result<*mut ibv_cq> {
    let cq = Cq::boxed();
    let mut resp = DrvResp::<ib_uverbs_create_cq_resp, rxe_create_cq_resp>::default();
    // SAFETY: cq is heap-pinned (the kernel keeps its address as user_handle).
    let ret = unsafe {
        ibv_cmd_create_cq(ctx.ibv_context(), cqe, channel, comp_vector, cq.ibv_cq(), ptr::null_mut(), 0, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
    };
    if ret != 0 {
        log::error!("{}: create_cq: {cqe} entries refused with {}", ctx.name(), Errno(ret));
        return Err(Errno(ret));
    }
    finish_create(ctx, cq, &resp.drv.mi).map(|cq| cq.ibv_cq())
}

/// Creates a CQ for `ibv_create_cq_ex`, with the extended polling API.
///
/// # Safety
/// `attr` must be valid.
pub unsafe fn create_ex(ctx: &mut Context, attr: *mut ibv_cq_init_attr_ex) -> Result<*mut ibv_cq_ex> {
    // SAFETY: per contract.
    let wc_flags = unsafe { (*attr).wc_flags };
    if wc_flags & !SUPPORTED_WC_FLAGS != 0 {
        log::error!(
            "{}: create_cq_ex: wc_flags {wc_flags:#x} ask for fields rxe completions do not carry ({:#x}); supported: {SUPPORTED_WC_FLAGS:#x}",
            ctx.name(),
            wc_flags & !SUPPORTED_WC_FLAGS
        );
        return Err(Errno(libc::EOPNOTSUPP));
    }
    let mut cq = Cq::boxed();
    let mut resp = DrvResp::<ib_uverbs_ex_create_cq_resp, rxe_create_cq_resp>::default();
    // SAFETY: as in create().
    let ret = unsafe {
        ibv_cmd_create_cq_ex(ctx.ibv_context(), attr, &mut cq.vcq, ptr::null_mut(), 0, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp), 0)
    };
    if ret != 0 {
        log::error!("{}: create_cq_ex: refused with {}", ctx.name(), Errno(ret));
        return Err(Errno(ret));
    }
    let ex = &mut cq.vcq.cq_ex;
    ex.start_poll = Some(crate::ffi::cq_start_poll);
    ex.next_poll = Some(crate::ffi::cq_next_poll);
    ex.end_poll = Some(crate::ffi::cq_end_poll);
    ex.read_opcode = Some(crate::ffi::cq_read_opcode);
    ex.read_vendor_err = Some(crate::ffi::cq_read_vendor_err);
    ex.read_wc_flags = Some(crate::ffi::cq_read_wc_flags);
    let has = |flag: u32| wc_flags & flag as u64 != 0;
    if has(wcf::IBV_WC_EX_WITH_BYTE_LEN) {
        ex.read_byte_len = Some(crate::ffi::cq_read_byte_len);
    }
    if has(wcf::IBV_WC_EX_WITH_IMM) {
        ex.read_imm_data = Some(crate::ffi::cq_read_imm_data);
    }
    if has(wcf::IBV_WC_EX_WITH_QP_NUM) {
        ex.read_qp_num = Some(crate::ffi::cq_read_qp_num);
    }
    if has(wcf::IBV_WC_EX_WITH_SRC_QP) {
        ex.read_src_qp = Some(crate::ffi::cq_read_src_qp);
    }
    if has(wcf::IBV_WC_EX_WITH_SLID) {
        ex.read_slid = Some(crate::ffi::cq_read_slid);
    }
    if has(wcf::IBV_WC_EX_WITH_SL) {
        ex.read_sl = Some(crate::ffi::cq_read_sl);
    }
    if has(wcf::IBV_WC_EX_WITH_DLID_PATH_BITS) {
        ex.read_dlid_path_bits = Some(crate::ffi::cq_read_dlid_path_bits);
    }
    finish_create(ctx, cq, &resp.drv.mi).map(|cq| cq.ex())
}

fn finish_create<'a>(ctx: &Context, cq: Box<Cq>, mi: &mminfo) -> Result<&'a mut Cq> {
    if let Err(e) = map_ring(ctx, &cq, mi) {
        log::error!("{}: create_cq: mapping the completion ring failed: {e}", ctx.name());
        // SAFETY: the kernel CQ exists and nothing else uses it yet.
        unsafe { ibv_cmd_destroy_cq(cq.ibv_cq()) };
        return Err(e);
    }
    Ok(Box::leak(cq))
}

/// Destroys the kernel CQ, then frees ours (unmapping the ring).
///
/// # Safety
/// `cq` came from create/create_ex and is not used afterwards on success.
pub unsafe fn destroy(cq: *mut ibv_cq) -> Result<()> {
    // SAFETY: forwarded; leaked from a Box<Cq> in finish_create (dropping it unmaps the ring).
    unsafe { crate::cmd::destroy_boxed::<Cq, _>(cq, ibv_cmd_destroy_cq) }
}

/// `ibv_resize_cq`: the kernel moves the entries to a new ring we remap.
pub fn resize(ctx: &Context, cq: &Cq, cqe: c_int) -> Result<()> {
    cq.lock.with(|| {
        let mut cmd = LegacyCmd::<ib_uverbs_resize_cq> { hdr: Default::default(), core: Default::default() };
        let mut resp = DrvResp::<ib_uverbs_resize_cq_resp, rxe_resize_cq_resp>::default();
        // SAFETY: cq is live; buffers are ours.
        let ret = unsafe {
            ibv_cmd_resize_cq(cq.ibv_cq(), cqe, ptr::addr_of_mut!(cmd).cast(), size_of_val(&cmd), ptr::addr_of_mut!(resp).cast(), size_of_val(&resp))
        };
        if ret != 0 {
            log::error!("{}: resize_cq: to {cqe} entries refused with {}", ctx.name(), Errno(ret));
            return Err(Errno(ret));
        }
        // The old mapping is dropped (unmapped) when replaced; we hold the lock.
        match Ring::map(ctx.cmd_fd(), &resp.drv.mi) {
            Ok(ring) => {
                // SAFETY: we hold the lock.
                unsafe { cq.polling().ring = Some(ring) };
                Ok(())
            }
            Err(e) => {
                log::error!("{}: resize_cq: mapping the new ring failed: {e}; the CQ can no longer be polled", ctx.name());
                // SAFETY: we hold the lock.
                unsafe { cq.polling().ring = None };
                Err(e)
            }
        }
    })
}

/// `ibv_poll_cq`: copies up to `ne` completions into `wc`.
///
/// # Safety
/// `wc` must have room for `ne` entries.
pub unsafe fn poll(cq: &Cq, ne: c_int, wc: *mut ibv_wc) -> c_int {
    cq.lock.with(|| {
        // SAFETY: we hold the lock.
        let Some(ring) = (unsafe { &cq.polling().ring }) else { return -1 };
        let mut cons = ring.consumer_index();
        let mut n = 0;
        // One Acquire load of the kernel's index per entry, as librxe does:
        // it also picks up entries that land while we copy.
        while n < ne && cons != ring.producer_index_acquire() {
            // SAFETY: the slot holds a kernel-written ib_uverbs_wc (made
            // visible by the Acquire load), which has ibv_wc's layout.
            unsafe { ptr::copy_nonoverlapping(ring.slot(cons).cast::<ibv_wc>(), wc.add(n as usize), 1) };
            cons = next_index(cons, ring.mask());
            ring.release(cons);
            n += 1;
        }
        n
    })
}

// Extended polling. start_poll takes the lock, end_poll (or a failed
// start_poll) drops it, as the verbs API prescribes.

fn expose(cq: &Cq, ring: &Ring, index: u32) {
    // SAFETY: the slot holds a kernel-written entry; cq_ex is ours to update
    // while polling (the application reads status and wr_id from it).
    unsafe {
        let wc = &*ring.slot(index).cast::<ib_uverbs_wc>();
        (*cq.ex()).status = wc.status as _;
        (*cq.ex()).wr_id = wc.wr_id;
    }
}

pub fn start_poll(cq: &Cq) -> c_int {
    cq.lock.lock();
    // SAFETY: we hold the lock.
    let p = unsafe { cq.polling() };
    let Some(ring) = p.ring.as_ref() else {
        cq.lock.unlock();
        Errno(libc::ENOENT).set();
        return libc::ENOENT;
    };
    p.cur = ring.consumer_index();
    if p.cur == ring.producer_index_acquire() {
        cq.lock.unlock();
        Errno(libc::ENOENT).set();
        return libc::ENOENT;
    }
    p.exposed = true;
    expose(cq, ring, p.cur);
    0
}

pub fn next_poll(cq: &Cq) -> c_int {
    // SAFETY: start_poll succeeded, so we hold the lock.
    let p = unsafe { cq.polling() };
    let Some(ring) = p.ring.as_ref() else { return libc::ENOENT };
    if p.exposed {
        p.cur = next_index(p.cur, ring.mask());
        // Hand the finished entry back right away, as poll_cq does.
        ring.release(p.cur);
    }
    if p.cur == ring.producer_index_acquire() {
        p.exposed = false;
        Errno(libc::ENOENT).set();
        return libc::ENOENT;
    }
    p.exposed = true;
    expose(cq, ring, p.cur);
    0
}

pub fn end_poll(cq: &Cq) {
    // SAFETY: start_poll succeeded, so we hold the lock.
    let p = unsafe { cq.polling() };
    if let Some(ring) = p.ring.as_ref() {
        if p.exposed {
            ring.release(next_index(p.cur, ring.mask()));
        }
    }
    p.exposed = false;
    cq.lock.unlock();
}

/// The entry start_poll/next_poll exposed.
pub fn current(cq: &Cq) -> &ib_uverbs_wc {
    // SAFETY: called between a successful start/next_poll and end_poll, under the lock.
    unsafe {
        let p = cq.polling();
        &*p.ring.as_ref().expect("polling a CQ without a ring").slot(p.cur).cast::<ib_uverbs_wc>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn kernel_completion_has_ibv_wc_layout() {
        assert_eq!(size_of::<ib_uverbs_wc>(), size_of::<ibv_wc>());
        assert_eq!(offset_of!(ib_uverbs_wc, wr_id), offset_of!(ibv_wc, wr_id));
        assert_eq!(offset_of!(ib_uverbs_wc, status), offset_of!(ibv_wc, status));
        assert_eq!(offset_of!(ib_uverbs_wc, opcode), offset_of!(ibv_wc, opcode));
        assert_eq!(offset_of!(ib_uverbs_wc, vendor_err), offset_of!(ibv_wc, vendor_err));
        assert_eq!(offset_of!(ib_uverbs_wc, byte_len), offset_of!(ibv_wc, byte_len));
        assert_eq!(offset_of!(ib_uverbs_wc, ex), offset_of!(ibv_wc, __bindgen_anon_1));
        assert_eq!(offset_of!(ib_uverbs_wc, qp_num), offset_of!(ibv_wc, qp_num));
        assert_eq!(offset_of!(ib_uverbs_wc, src_qp), offset_of!(ibv_wc, src_qp));
        assert_eq!(offset_of!(ib_uverbs_wc, wc_flags), offset_of!(ibv_wc, wc_flags));
        assert_eq!(offset_of!(ib_uverbs_wc, pkey_index), offset_of!(ibv_wc, pkey_index));
        assert_eq!(offset_of!(ib_uverbs_wc, slid), offset_of!(ibv_wc, slid));
        assert_eq!(offset_of!(ib_uverbs_wc, sl), offset_of!(ibv_wc, sl));
        assert_eq!(offset_of!(ib_uverbs_wc, dlid_path_bits), offset_of!(ibv_wc, dlid_path_bits));
    }
}
