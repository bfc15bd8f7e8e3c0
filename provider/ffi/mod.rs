//! The C edge: every function-pointer table libibverbs reads (device ops,
//! context ops, the extended CQ readers, the extended send functions) and
//! every `extern "C"` entry in them. An entry only converts pointers to our
//! objects, calls the object modules, turns `Result` into the C convention
//! of that op (and errno), and keeps panics from unwinding into C: a panic
//! is logged and reported as EIO.

use crate::abi::imports::{self, OpsLayout};
use crate::abi::private::*;
use crate::abi::releases;
use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use crate::context::{self, Context};
use crate::device::{MATCH_TABLE, PROVIDER_NAME};
use crate::fault::{self, Fault, Verb};
use crate::mr::{self, Mr, Mw};
use crate::object::{Boxed, Object};
use crate::pd::{self, Pd};
use core::ffi::{c_int, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

pub(crate) mod datapath;

/// Runs `f`, turning a panic into `Err(EIO)` with a log line.
fn guarded<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("");
        log::error!("{op}: internal error (panic: {what}); reporting EIO");
        Err(Errno(libc::EIO))
    })
}

/// For hot-path ops with their own return conventions: `on_panic` if `f`
/// panics. Inlined so the hot path costs no extra calls when nothing panics.
#[inline(always)]
fn no_unwind<T>(op: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    // `move`: the handler takes `op` by value, so the happy path does not
    // spill it to the stack for a closure that runs only on a panic.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(move |_| {
        log::error!("{op}: internal error (panic)");
        on_panic
    })
}

/// The failure RXE_RS_FAULTS injects into this call of `verb`, if a rule
/// fires (`what` describes the call for the log line).
#[inline(always)]
fn injected(verb: Verb, what: impl Fn() -> String) -> Result<()> {
    if fault::active() {
        if let Some(Fault::Errno(e)) = fault::check(verb, None, &what) {
            return Err(Errno(e));
        }
    }
    Ok(())
}

/// For ops that return an object: NULL and errno on failure.
fn ret_ptr<T>(r: Result<*mut T>) -> *mut T {
    r.unwrap_or_else(|e| {
        e.set();
        ptr::null_mut()
    })
}

/// For ops that return 0 or a positive errno.
fn ret_int(r: Result<()>) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.0,
    }
}

/// What the provider registers with libibverbs.
pub(crate) static DEVICE_OPS: crate::device::Static<verbs_device_ops> = crate::device::Static(verbs_device_ops {
    name: PROVIDER_NAME.as_ptr(),
    // uverbs ABI 1 and 2 are the same on 64-bit machines; accept both.
    match_min_abi_version: 1,
    match_max_abi_version: 2,
    match_table: &MATCH_TABLE.0 as *const verbs_match_ent,
    static_providers: ptr::null(),
    match_device: None,
    alloc_context: Some(alloc_context),
    import_context: None,
    alloc_device: Some(alloc_device),
    uninit_device: Some(uninit_device),
});

unsafe extern "C" fn alloc_device(sysfs: *mut verbs_sysfs_dev) -> *mut verbs_device {
    crate::log::init();
    // SAFETY: libibverbs passes the sysfs device it is matching.
    ret_ptr(guarded("alloc_device", || unsafe { crate::device::alloc(sysfs) }))
}

unsafe extern "C" fn uninit_device(vdev: *mut verbs_device) {
    // SAFETY: libibverbs passes back what alloc_device returned, once.
    let _ = guarded("uninit_device", || unsafe {
        crate::device::free(vdev);
        Ok(())
    });
}

unsafe extern "C" fn alloc_context(device: *mut ibv_device, cmd_fd: c_int, _private_data: *mut c_void) -> *mut verbs_context {
    crate::log::init();
    // SAFETY: libibverbs hands us a device it matched to us and the fd it opened.
    ret_ptr(guarded("alloc_context", || unsafe { context::open(device, cmd_fd, context_ops_for(imports::flavor().ops)) }))
}

unsafe extern "C" fn free_context(ctx: *mut ibv_context) {
    // SAFETY: ctx came from alloc_context; libibverbs frees it only once.
    let _ = guarded("free_context", || unsafe {
        context::close(ctx);
        Ok(())
    });
}

unsafe extern "C" fn query_device_ex(ctx: *mut ibv_context, input: *const ibv_query_device_ex_input, attr: *mut ibv_device_attr_ex, attr_size: usize) -> c_int {
    ret_int(guarded("query_device_ex", || unsafe {
        // SAFETY: our context, and the caller's attr of attr_size bytes.
        context::query_device(Context::from_raw(ctx), input.as_ref(), attr, attr_size)
    }))
}

unsafe extern "C" fn query_port(ctx: *mut ibv_context, port_num: u8, attr: *mut ibv_port_attr) -> c_int {
    ret_int(guarded("query_port", || unsafe {
        // SAFETY: libibverbs always passes a full ibv_port_attr (it uses a temporary for short ones).
        context::query_port(Context::from_raw(ctx), port_num, &mut *attr)
    }))
}

unsafe extern "C" fn alloc_pd(ctx: *mut ibv_context) -> *mut ibv_pd {
    // SAFETY: ctx is our context.
    ret_ptr(guarded("alloc_pd", || pd::alloc(unsafe { Context::from_raw(ctx) }).map(Boxed::leak)))
}

unsafe extern "C" fn dealloc_pd(pd: *mut ibv_pd) -> c_int {
    // SAFETY: pd came from alloc_pd; libibverbs' destroy contract.
    ret_int(guarded("dealloc_pd", || unsafe { pd::dealloc(pd) }))
}

unsafe extern "C" fn reg_mr(pd: *mut ibv_pd, addr: *mut c_void, length: usize, iova: u64, access: c_int) -> *mut ibv_mr {
    ret_ptr(guarded("reg_mr", || {
        injected(Verb::RegMr, || format!("reg_mr of {length} bytes at {addr:p}"))?;
        // SAFETY: pd is one of our PDs.
        let pd = unsafe { Pd::from_raw(pd) };
        // verbs_mr starts with its ibv_mr, so the pointers coincide.
        mr::reg(pd, addr, length, iova, access).map(|m| Mr::leak(m).cast::<ibv_mr>())
    }))
}

unsafe extern "C" fn advise_mr(pd: *mut ibv_pd, advice: ib_uverbs_advise_mr_advice::Type, flags: u32, sg_list: *mut ibv_sge, num_sge: u32) -> c_int {
    // SAFETY: pd is one of our PDs; the list is the application's.
    ret_int(guarded("advise_mr", || unsafe { mr::advise(Pd::from_raw(pd), advice, flags, sg_list, num_sge) }))
}

unsafe extern "C" fn dereg_mr(vmr: *mut verbs_mr) -> c_int {
    // SAFETY: vmr came from reg_mr; libibverbs' destroy contract.
    ret_int(guarded("dereg_mr", || unsafe { mr::dereg(vmr) }))
}

unsafe extern "C" fn alloc_mw(pd: *mut ibv_pd, mw_type: ibv_mw_type::Type) -> *mut ibv_mw {
    // SAFETY: pd is one of our PDs.
    ret_ptr(guarded("alloc_mw", || mr::alloc_mw(unsafe { Pd::from_raw(pd) }, mw_type).map(Mw::leak)))
}

unsafe extern "C" fn dealloc_mw(mw: *mut ibv_mw) -> c_int {
    // SAFETY: mw came from alloc_mw; libibverbs' destroy contract.
    ret_int(guarded("dealloc_mw", || unsafe { mr::dealloc_mw(mw) }))
}

/// The ops table installed into every context; libibverbs keeps its
/// defaults (ENOSYS/EOPNOTSUPP) for the entries we leave empty.
fn context_ops() -> &'static verbs_context_ops {
    static OPS: OnceLock<verbs_context_ops> = OnceLock::new();
    OPS.get_or_init(|| {
        let mut ops = verbs_context_ops {
            query_device_ex: Some(query_device_ex),
            query_port: Some(query_port),
            alloc_pd: Some(alloc_pd),
            dealloc_pd: Some(dealloc_pd),
            reg_mr: Some(reg_mr),
            dereg_mr: Some(dereg_mr),
            advise_mr: Some(advise_mr),
            alloc_mw: Some(alloc_mw),
            dealloc_mw: Some(dealloc_mw),
            free_context: Some(free_context),
            ..Default::default()
        };
        datapath::add_ops(&mut ops);
        ops
    })
}

/// The same entries in a later release's `verbs_context_ops` (which has
/// every one of ABI 34's, by name, plus new ones we leave empty).
macro_rules! relaid {
    ($src:expr, $dst:path) => {{
        let s = $src;
        $dst {
            advise_mr: s.advise_mr,
            alloc_dm: s.alloc_dm,
            alloc_mw: s.alloc_mw,
            alloc_null_mr: s.alloc_null_mr,
            alloc_parent_domain: s.alloc_parent_domain,
            alloc_pd: s.alloc_pd,
            alloc_td: s.alloc_td,
            async_event: s.async_event,
            attach_counters_point_flow: s.attach_counters_point_flow,
            attach_mcast: s.attach_mcast,
            bind_mw: s.bind_mw,
            close_xrcd: s.close_xrcd,
            cq_event: s.cq_event,
            create_ah: s.create_ah,
            create_counters: s.create_counters,
            create_cq: s.create_cq,
            create_cq_ex: s.create_cq_ex,
            create_flow: s.create_flow,
            create_flow_action_esp: s.create_flow_action_esp,
            create_qp: s.create_qp,
            create_qp_ex: s.create_qp_ex,
            create_rwq_ind_table: s.create_rwq_ind_table,
            create_srq: s.create_srq,
            create_srq_ex: s.create_srq_ex,
            create_wq: s.create_wq,
            dealloc_mw: s.dealloc_mw,
            dealloc_pd: s.dealloc_pd,
            dealloc_td: s.dealloc_td,
            dereg_mr: s.dereg_mr,
            destroy_ah: s.destroy_ah,
            destroy_counters: s.destroy_counters,
            destroy_cq: s.destroy_cq,
            destroy_flow: s.destroy_flow,
            destroy_flow_action: s.destroy_flow_action,
            destroy_qp: s.destroy_qp,
            destroy_rwq_ind_table: s.destroy_rwq_ind_table,
            destroy_srq: s.destroy_srq,
            destroy_wq: s.destroy_wq,
            detach_mcast: s.detach_mcast,
            free_context: s.free_context,
            free_dm: s.free_dm,
            get_srq_num: s.get_srq_num,
            import_dm: s.import_dm,
            import_mr: s.import_mr,
            import_pd: s.import_pd,
            modify_cq: s.modify_cq,
            modify_flow_action_esp: s.modify_flow_action_esp,
            modify_qp: s.modify_qp,
            modify_qp_rate_limit: s.modify_qp_rate_limit,
            modify_srq: s.modify_srq,
            modify_wq: s.modify_wq,
            open_qp: s.open_qp,
            open_xrcd: s.open_xrcd,
            poll_cq: s.poll_cq,
            post_recv: s.post_recv,
            post_send: s.post_send,
            post_srq_ops: s.post_srq_ops,
            post_srq_recv: s.post_srq_recv,
            query_device_ex: s.query_device_ex,
            query_ece: s.query_ece,
            query_port: s.query_port,
            query_qp: s.query_qp,
            query_qp_data_in_order: s.query_qp_data_in_order,
            query_rt_values: s.query_rt_values,
            query_srq: s.query_srq,
            read_counters: s.read_counters,
            reg_dm_mr: s.reg_dm_mr,
            reg_dmabuf_mr: s.reg_dmabuf_mr,
            reg_mr: s.reg_mr,
            req_notify_cq: s.req_notify_cq,
            rereg_mr: s.rereg_mr,
            resize_cq: s.resize_cq,
            set_ece: s.set_ece,
            unimport_dm: s.unimport_dm,
            unimport_mr: s.unimport_mr,
            unimport_pd: s.unimport_pd,
            ..Default::default()
        }
    }};
}

/// The ops table in the layout of the registered libibverbs.
fn context_ops_for(layout: OpsLayout) -> *const c_void {
    static V59: OnceLock<releases::verbs_context_ops_59> = OnceLock::new();
    static V62: OnceLock<releases::verbs_context_ops_62> = OnceLock::new();
    static V64: OnceLock<releases::verbs_context_ops_64> = OnceLock::new();
    static V65: OnceLock<releases::verbs_context_ops_65> = OnceLock::new();
    match layout {
        OpsLayout::V34 => (context_ops() as *const verbs_context_ops).cast(),
        OpsLayout::V59 => (V59.get_or_init(|| relaid!(context_ops(), releases::verbs_context_ops_59)) as *const releases::verbs_context_ops_59).cast(),
        OpsLayout::V62 => (V62.get_or_init(|| relaid!(context_ops(), releases::verbs_context_ops_62)) as *const releases::verbs_context_ops_62).cast(),
        OpsLayout::V64 => (V64.get_or_init(|| relaid!(context_ops(), releases::verbs_context_ops_64)) as *const releases::verbs_context_ops_64).cast(),
        OpsLayout::V65 => (V65.get_or_init(|| relaid!(context_ops(), releases::verbs_context_ops_65)) as *const releases::verbs_context_ops_65).cast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_eio_not_unwinds() {
        let r: Result<()> = guarded("test", || panic!("boom"));
        assert_eq!(r, Err(Errno(libc::EIO)));
        assert_eq!(ret_int(r), libc::EIO);
        assert_eq!(no_unwind("test", -1, || panic!("boom")), -1);
    }

    #[test]
    fn null_and_errno_on_failure() {
        let p: *mut u8 = ret_ptr(Err(Errno(libc::EINVAL)));
        assert!(p.is_null());
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn later_layouts_carry_every_entry_at_its_own_place() {
        let v34 = context_ops();
        // SAFETY: each pointer is a 'static table of the named layout.
        unsafe {
            let v65 = &*context_ops_for(OpsLayout::V65).cast::<releases::verbs_context_ops_65>();
            assert_eq!(v65.post_send.map(|f| f as usize), v34.post_send.map(|f| f as usize));
            assert_eq!(v65.reg_mr.map(|f| f as usize), v34.reg_mr.map(|f| f as usize));
            assert!(v65.create_comp_cntr.is_none());
            let v59 = &*context_ops_for(OpsLayout::V59).cast::<releases::verbs_context_ops_59>();
            assert_eq!(v59.free_context.map(|f| f as usize), v34.free_context.map(|f| f as usize));
            assert!(v59.reg_mr_ex.is_none());
        }
    }

    #[test]
    fn every_table_entry_is_set() {
        let ops = context_ops();
        assert!(ops.post_send.is_some() && ops.poll_cq.is_some() && ops.reg_mr.is_some() && ops.free_context.is_some());
        assert!(DEVICE_OPS.0.alloc_context.is_some() && DEVICE_OPS.0.alloc_device.is_some());
    }
}
