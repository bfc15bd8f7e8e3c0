//! Address handles, for UD sends: the kernel keeps the address and gives us
//! its index (ah_num), which each UD WQE names.

use crate::abi::imports::*;
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::context::Context;
use crate::object::{self, Object};
use core::cell::UnsafeCell;
use core::ptr;

#[repr(C)]
pub(crate) struct Ah {
    raw: UnsafeCell<ibv_ah>,
    ah_num: u32,
}

object::boxed_object!(Ah, ibv_ah, raw);

impl Ah {
    pub(crate) fn ah_num(&self) -> u32 {
        self.ah_num
    }

    /// An AH with a given index, for host tests.
    #[cfg(test)]
    pub(crate) fn for_tests(ah_num: u32) -> Box<Ah> {
        // SAFETY: all-zero is a valid ibv_ah.
        object::try_box(Ah { raw: UnsafeCell::new(unsafe { core::mem::zeroed() }), ah_num }).unwrap()
    }
}

/// `ibv_create_ah`.
///
/// # Safety
/// `pd` and `attr` are the application's, valid (libibverbs checked them).
pub(crate) unsafe fn create(ctx: &Context, pd: *mut ibv_pd, attr: *mut ibv_ah_attr) -> Result<Box<Ah>> {
    // SAFETY: all-zero is a valid ibv_ah; the kernel helper fills it in place.
    let mut ah = object::try_box(Ah { raw: UnsafeCell::new(unsafe { core::mem::zeroed() }), ah_num: 0 })?;
    let mut resp = DrvResp::<ib_uverbs_create_ah_resp, rxe_create_ah_resp>::default();
    // SAFETY: per the contract; ah is heap-pinned and ours.
    cmd::checked(unsafe { ibv_cmd_create_ah(pd, ah.raw(), attr, ptr::addr_of_mut!(resp).cast(), size_of_val(&resp)) })
        .inspect_err(|e| log::error!("{}: create_ah: refused with {e}", ctx.name()))?;
    if resp.drv.ah_num == 0 {
        // Kernels before 5.11 return no index and want the whole address in
        // each WQE; Debian 12's 6.1 always returns one.
        log::error!("{}: create_ah: the kernel returned no ah_num; rxe_rs needs Linux 5.11 or later", ctx.name());
        // SAFETY: the kernel AH exists and nothing else uses it.
        let _ = unsafe { ibv_cmd_destroy_ah(ah.raw()) };
        return Err(Errno(libc::EOPNOTSUPP));
    }
    ah.ah_num = resp.drv.ah_num;
    Ok(ah)
}

/// `ibv_destroy_ah`.
///
/// # Safety
/// `ah` came from [`create`] via leak; on success nobody uses it again.
pub(crate) unsafe fn destroy(ah: *mut ibv_ah) -> Result<()> {
    // SAFETY: per the contract.
    unsafe { object::destroy::<Ah>(ah, |ah| cmd::checked(ibv_cmd_destroy_ah(ah.raw()))) }
}
