//! The extern "C" entry points libibverbs calls. Each one converts raw
//! pointers, calls the safe-ish Rust in the object modules, and maps the result
//! to the C convention of that op. None lets a panic unwind into C: a panic is
//! logged and reported as EIO.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use crate::context::{self, Context};
use crate::{device, mr, pd};
use core::ffi::{c_int, c_void};
use core::ptr;
use std::panic::{catch_unwind, AssertUnwindSafe};

mod datapath;
pub use datapath::*;

/// Runs `f`, turning a panic into `Err(EIO)` with a log line.
fn guarded<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!("{op}: internal error (panic: {what}); reporting EIO");
        Err(Errno(libc::EIO))
    })
}

/// For hot-path ops with their own return conventions: `on_panic` if `f` panics.
/// Inlined so the hot path costs no extra calls when nothing panics.
#[inline(always)]
fn no_unwind<T>(op: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log::error!("{op}: internal error (panic)");
        on_panic
    })
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

pub unsafe extern "C" fn alloc_device(sysfs: *mut verbs_sysfs_dev) -> *mut verbs_device {
    crate::log::init();
    // SAFETY: libibverbs passes the sysfs device it is matching.
    ret_ptr(guarded("alloc_device", || Ok(unsafe { device::alloc(sysfs) })))
}

pub unsafe extern "C" fn uninit_device(vdev: *mut verbs_device) {
    // SAFETY: libibverbs passes back what alloc_device returned, once.
    let _ = guarded("uninit_device", || Ok(unsafe { device::free(vdev) }));
}

pub unsafe extern "C" fn alloc_context(device: *mut ibv_device, cmd_fd: c_int, _private_data: *mut c_void) -> *mut verbs_context {
    crate::log::init();
    // SAFETY: libibverbs hands us a device it matched to us and the fd it opened.
    ret_ptr(guarded("alloc_context", || unsafe { context::open(device, cmd_fd) }))
}

unsafe extern "C" fn free_context(ctx: *mut ibv_context) {
    // SAFETY: ctx came from alloc_context; libibverbs frees it only once.
    let _ = guarded("free_context", || Ok(unsafe { context::close(Context::from_ibv(ctx)) }));
}

unsafe extern "C" fn query_device_ex(
    ctx: *mut ibv_context,
    input: *const ibv_query_device_ex_input,
    attr: *mut ibv_device_attr_ex,
    attr_size: usize,
) -> c_int {
    ret_int(guarded("query_device_ex", || unsafe {
        // SAFETY: libibverbs passes our context and the caller's attr of attr_size bytes.
        context::query_device(Context::from_ibv(ctx), input.as_ref(), attr, attr_size)
    }))
}

unsafe extern "C" fn query_port(ctx: *mut ibv_context, port_num: u8, attr: *mut ibv_port_attr) -> c_int {
    ret_int(guarded("query_port", || unsafe {
        // SAFETY: libibverbs always passes a full ibv_port_attr (it uses a temporary for short ones).
        context::query_port(Context::from_ibv(ctx), port_num, &mut *attr)
    }))
}

unsafe extern "C" fn alloc_pd(ctx: *mut ibv_context) -> *mut ibv_pd {
    ret_ptr(guarded("alloc_pd", || {
        // SAFETY: ctx is our context.
        pd::alloc(unsafe { Context::from_ibv(ctx) }).map(Box::into_raw)
    }))
}

unsafe extern "C" fn dealloc_pd(pd: *mut ibv_pd) -> c_int {
    ret_int(guarded("dealloc_pd", || unsafe {
        // SAFETY: pd came from alloc_pd and is freed only once the kernel let it go.
        pd::dealloc(Context::from_ibv((*pd).context), &*pd)?;
        drop(Box::from_raw(pd));
        Ok(())
    }))
}

unsafe extern "C" fn reg_mr(pd: *mut ibv_pd, addr: *mut c_void, length: usize, iova: u64, access: c_int) -> *mut ibv_mr {
    ret_ptr(guarded("reg_mr", || {
        // SAFETY: pd is one of our PDs, so its context is ours.
        let ctx = unsafe { Context::from_ibv((*pd).context) };
        // verbs_mr starts with its ibv_mr, so the pointers coincide.
        mr::reg(ctx, pd, addr, length, iova, access).map(|vmr| Box::into_raw(vmr).cast::<ibv_mr>())
    }))
}

unsafe extern "C" fn dereg_mr(vmr: *mut verbs_mr) -> c_int {
    ret_int(guarded("dereg_mr", || unsafe {
        // SAFETY: vmr came from reg_mr.
        mr::dereg(Context::from_ibv((*vmr).ibv_mr.context), &*vmr)?;
        drop(Box::from_raw(vmr));
        Ok(())
    }))
}

unsafe extern "C" fn alloc_mw(pd: *mut ibv_pd, mw_type: ibv_mw_type::Type) -> *mut ibv_mw {
    ret_ptr(guarded("alloc_mw", || {
        // SAFETY: pd is one of our PDs.
        let ctx = unsafe { Context::from_ibv((*pd).context) };
        mr::alloc_mw(ctx, pd, mw_type).map(Box::into_raw)
    }))
}

unsafe extern "C" fn dealloc_mw(mw: *mut ibv_mw) -> c_int {
    ret_int(guarded("dealloc_mw", || unsafe {
        // SAFETY: mw came from alloc_mw.
        mr::dealloc_mw(Context::from_ibv((*mw).context), &*mw)?;
        drop(Box::from_raw(mw));
        Ok(())
    }))
}

/// The ops table installed into every context.
pub fn context_ops() -> verbs_context_ops {
    let mut ops = verbs_context_ops {
        query_device_ex: Some(query_device_ex),
        query_port: Some(query_port),
        alloc_pd: Some(alloc_pd),
        dealloc_pd: Some(dealloc_pd),
        reg_mr: Some(reg_mr),
        dereg_mr: Some(dereg_mr),
        alloc_mw: Some(alloc_mw),
        dealloc_mw: Some(dealloc_mw),
        free_context: Some(free_context),
        ..Default::default()
    };
    add_data_path_ops(&mut ops);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_eio_not_unwinds() {
        let r: Result<()> = guarded("test", || panic!("boom"));
        assert_eq!(r, Err(Errno(libc::EIO)));
        assert_eq!(ret_int(r), libc::EIO);
    }

    #[test]
    fn null_and_errno_on_failure() {
        let p: *mut u8 = ret_ptr(Err(Errno(libc::EINVAL)));
        assert!(p.is_null());
        assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
    }
}
