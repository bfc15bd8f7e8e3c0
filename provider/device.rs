//! Device registration: what libibverbs needs to match rxe devices to us.

use crate::abi::private::*;
use crate::abi::sys::rdma_driver_id::RDMA_DRIVER_RXE;
use crate::cmd::Result;
use crate::object::{self, Boxed};
use core::cell::UnsafeCell;
use core::ptr;

/// Our per-device object. libibverbs owns its `verbs_device` part (it
/// fills it in and keeps a refcount there); we allocate and free the whole.
#[repr(C)]
pub(crate) struct Device {
    vdev: UnsafeCell<verbs_device>,
    /// The uverbs ABI version sysfs reported (1 or 2: identical on 64-bit).
    abi_version: u32,
}

object::boxed_object!(Device, verbs_device, vdev);

/// A `Sync` wrapper: these tables hold raw pointers to static data only.
#[repr(transparent)]
pub(crate) struct Static<T>(pub T);
// SAFETY: the wrapped tables point only at immutable 'static data.
unsafe impl<T> Sync for Static<T> {}

/// Match by the kernel's driver id, and, for kernels without one, by the
/// device name prefix "rxe", exactly as the C librxe does.
pub(crate) static MATCH_TABLE: Static<[verbs_match_ent; 3]> = Static([
    verbs_match_ent {
        driver_data: ptr::null_mut(),
        u: verbs_match_ent_u { driver_id: RDMA_DRIVER_RXE as u64 },
        vendor: 0,
        device: 0,
        kind: VERBS_MATCH_DRIVER_ID,
    },
    verbs_match_ent {
        driver_data: ptr::null_mut(),
        u: verbs_match_ent_u { modalias: c"rdma_device:*Nrxe*".as_ptr() },
        vendor: 0,
        device: 0,
        kind: VERBS_MATCH_MODALIAS,
    },
    verbs_match_ent {
        driver_data: ptr::null_mut(),
        u: verbs_match_ent_u { driver_id: 0 },
        vendor: 0,
        device: 0,
        kind: VERBS_MATCH_SENTINEL,
    },
]);

pub(crate) const PROVIDER_NAME: &core::ffi::CStr = c"rxe_rs";

/// Allocates our device object for a matched sysfs device.
///
/// # Safety
/// `sysfs` must be libibverbs' live description of the device.
pub(crate) unsafe fn alloc(sysfs: *const verbs_sysfs_dev) -> Result<*mut verbs_device> {
    // SAFETY: all-zero is a valid Device (null pointers, zero counts);
    // libibverbs fills the verbs_device in after we return.
    let mut dev: Box<Device> = unsafe { object::try_box_zeroed() }?;
    // SAFETY: libibverbs' live description of the device; names are NUL-terminated.
    let name = unsafe {
        dev.abi_version = (*sysfs).abi_ver;
        core::ffi::CStr::from_ptr((*sysfs).ibdev_name.as_ptr())
    };
    log::info!(
        "{}: device matched by rxe_rs {} (uverbs ABI {})",
        name.to_str().unwrap_or("?"),
        env!("CARGO_PKG_VERSION"),
        dev.abi_version
    );
    Ok(dev.leak())
}

/// Frees what [`alloc`] returned.
///
/// # Safety
/// `vdev` must come from [`alloc`] and not be used afterwards.
pub(crate) unsafe fn free(vdev: *mut verbs_device) {
    // SAFETY: per the contract; freeing a device has no kernel part.
    let _ = unsafe { object::destroy::<Device>(vdev, |_| Ok(())) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn match_table_matches_rxe_like_librxe() {
        let t = &MATCH_TABLE.0;
        assert_eq!(t[0].kind, VERBS_MATCH_DRIVER_ID);
        // SAFETY: the arm this row's kind selects.
        assert_eq!(unsafe { t[0].u.driver_id }, RDMA_DRIVER_RXE as u64);
        assert_eq!(t[1].kind, VERBS_MATCH_MODALIAS);
        // SAFETY: the arm this row's kind selects: a static C string.
        let alias = unsafe { CStr::from_ptr(t[1].u.modalias) };
        assert_eq!(alias.to_str().unwrap(), "rdma_device:*Nrxe*");
        assert_eq!(t[2].kind, VERBS_MATCH_SENTINEL);
    }
}
