//! Protection domains.

use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::context::Context;
use crate::object::{self, Object};
use core::cell::UnsafeCell;

#[repr(C)]
pub(crate) struct Pd {
    raw: UnsafeCell<ibv_pd>,
}

object::boxed_object!(Pd, ibv_pd, raw);

impl Pd {
    pub(crate) fn handle(&self) -> u32 {
        // SAFETY: set at allocation, never changed.
        unsafe { (*self.raw()).handle }
    }
}

/// Allocates a PD; the caller hands it to libibverbs with [`Boxed::leak`].
pub(crate) fn alloc(ctx: &Context) -> Result<Box<Pd>> {
    let resp = cmd::write(ctx.cmd_fd(), ib_uverbs_alloc_pd::default())
        .inspect_err(|e| log::error!("{}: alloc_pd: the kernel refused with {e}", ctx.name()))?;
    let pd = object::try_box(Pd { raw: UnsafeCell::new(ibv_pd { context: ctx.raw(), handle: resp.pd_handle }) });
    if pd.is_err() {
        // Nothing will ever name the kernel's PD: give it back.
        let _ = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_pd { pd_handle: resp.pd_handle });
    }
    pd
}

/// Destroys the kernel's PD, then frees ours.
///
/// # Safety
/// `pd` came from [`alloc`] via leak; on success nobody uses it again.
pub(crate) unsafe fn dealloc(pd: *mut ibv_pd) -> Result<()> {
    // SAFETY: per the contract.
    unsafe {
        object::destroy::<Pd>(pd, |pd| {
            let ctx = Context::from_raw((*pd.raw()).context);
            let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_pd { pd_handle: pd.handle() });
            cmd::destroy_outcome(res).inspect_err(|e| {
                log::error!("{}: dealloc_pd: the kernel refused with {e}{}", ctx.name(), busy_hint(*e))
            })
        })
    }
}

/// EBUSY from a destroy means objects still use it: say so.
fn busy_hint(e: Errno) -> &'static str {
    if e.0 == libc::EBUSY {
        " (objects created on it, such as MRs, MWs, QPs or AHs, still exist)"
    } else {
        ""
    }
}
