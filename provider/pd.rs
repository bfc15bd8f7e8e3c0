//! Protection domains.

use crate::abi::sys::*;
use crate::cmd::{self, Result};
use crate::context::Context;

/// Allocates a PD; the caller owns the returned box until [`dealloc`].
pub fn alloc(ctx: &mut Context) -> Result<Box<ibv_pd>> {
    let resp = cmd::write(ctx.cmd_fd(), ib_uverbs_alloc_pd::default())
        .inspect_err(|e| log::error!("{}: alloc_pd: the kernel refused with {e}", ctx.name()))?;
    Ok(Box::new(ibv_pd { context: ctx.ibv_context(), handle: resp.pd_handle }))
}

/// Destroys the kernel's PD; on success the caller frees the box.
pub fn dealloc(ctx: &Context, pd: &ibv_pd) -> Result<()> {
    let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_pd { pd_handle: pd.handle });
    crate::context::destroy_result(res).inspect_err(|e| {
        log::error!("{}: dealloc_pd: the kernel refused with {e}{}", ctx.name(), busy_hint(*e))
    })
}

/// EBUSY from a destroy means objects still use it: say so.
pub fn busy_hint(e: cmd::Errno) -> &'static str {
    if e.0 == libc::EBUSY {
        " (objects created on it, such as MRs, MWs, QPs or AHs, still exist)"
    } else {
        ""
    }
}
