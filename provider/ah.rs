//! Address handles, for UD sends: the kernel keeps the address and gives us
//! its index (ah_num), which each UD WQE names.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{Errno, Result};
use crate::context::Context;
use core::ptr;

#[repr(C)]
pub struct Ah {
    pub ibv_ah: ibv_ah,
    pub ah_num: u32,
}

impl Ah {
    /// # Safety
    /// `ah` must be the `ibv_ah` of a live [`Ah`].
    pub unsafe fn from_ibv<'a>(ah: *mut ibv_ah) -> &'a Ah {
        // SAFETY: ibv_ah is at offset 0.
        unsafe { &*ah.cast::<Ah>() }
    }
}

/// `ibv_create_ah`.
///
/// # Safety
/// `pd` and `attr` are the application's, valid.
pub unsafe fn create(ctx: &Context, pd: *mut ibv_pd, attr: *mut ibv_ah_attr) -> Result<*mut ibv_ah> {
    // SAFETY: all-zero is valid for ibv_ah.
    let mut ah = Box::new(Ah { ibv_ah: unsafe { core::mem::zeroed() }, ah_num: 0 });
    let mut resp = DrvResp::<ib_uverbs_create_ah_resp, rxe_create_ah_resp>::default();
    // SAFETY: per contract.
    let ret = unsafe { ibv_cmd_create_ah(pd, &mut ah.ibv_ah, attr, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp)) };
    if ret != 0 {
        log::error!("{}: create_ah: refused with {}", ctx.name(), Errno(ret));
        return Err(Errno(ret));
    }
    if resp.drv.ah_num == 0 {
        // Kernels before 5.11 return no index and want the whole address in
        // each WQE; Debian 12's 6.1 always returns one.
        log::error!("{}: create_ah: the kernel returned no ah_num; rxe_rs needs Linux 5.11 or later", ctx.name());
        // SAFETY: the kernel AH exists, unused.
        unsafe { ibv_cmd_destroy_ah(&mut ah.ibv_ah) };
        return Err(Errno(libc::EOPNOTSUPP));
    }
    ah.ah_num = resp.drv.ah_num;
    Ok(ptr::addr_of_mut!(Box::leak(ah).ibv_ah))
}

/// `ibv_destroy_ah`.
///
/// # Safety
/// `ah` is not used afterwards on success.
pub unsafe fn destroy(ah: *mut ibv_ah) -> Result<()> {
    // SAFETY: forwarded; leaked from a Box<Ah> in create().
    unsafe { crate::cmd::destroy_boxed::<Ah, _>(ah, ibv_cmd_destroy_ah) }
}
