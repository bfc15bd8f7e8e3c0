//! Device registration: what libibverbs needs to match rxe devices to us.

use crate::abi::private::*;
use crate::abi::sys::rdma_driver_id::RDMA_DRIVER_RXE;
use core::ffi::c_char;
use core::ptr;

/// Our per-device object. libibverbs owns its `verbs_device` part; the
/// provider allocates and frees the whole.
#[repr(C)]
pub struct Device {
    pub vdev: verbs_device,
    /// The uverbs ABI version sysfs reported (1 or 2: identical on 64-bit).
    pub abi_version: u32,
}

/// A `Sync` wrapper: these tables hold raw pointers to static data only.
#[repr(transparent)]
pub struct Static<T>(pub T);
// SAFETY: the wrapped tables point only at immutable 'static data.
unsafe impl<T> Sync for Static<T> {}

/// Match by the kernel's driver id, and, for kernels without one, by the
/// device name prefix "rxe", exactly as the C librxe does.
pub static MATCH_TABLE: Static<[verbs_match_ent; 3]> = Static([
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

pub const PROVIDER_NAME: &core::ffi::CStr = c"rxe_rs";

pub static DEVICE_OPS: Static<verbs_device_ops> = Static(verbs_device_ops {
    name: PROVIDER_NAME.as_ptr() as *const c_char,
    // uverbs ABI 1 and 2 are the same on 64-bit machines; accept both.
    match_min_abi_version: 1,
    match_max_abi_version: 2,
    match_table: &MATCH_TABLE.0 as *const verbs_match_ent,
    static_providers: ptr::null(),
    match_device: None,
    alloc_context: Some(crate::ffi::alloc_context),
    import_context: None,
    alloc_device: Some(crate::ffi::alloc_device),
    uninit_device: Some(crate::ffi::uninit_device),
});

/// Allocates our device object for a matched sysfs device.
///
/// # Safety
/// `sysfs` must be libibverbs' live description of the device.
pub unsafe fn alloc(sysfs: *const verbs_sysfs_dev) -> *mut verbs_device {
    // SAFETY: all-zero is a valid verbs_device (null pointers, zero counts);
    // libibverbs fills it in after we return.
    let mut dev: Box<Device> = Box::new(unsafe { core::mem::zeroed() });
    // SAFETY: libibverbs' live description of the device; names are NUL-terminated.
    let name = unsafe {
        dev.abi_version = (*sysfs).abi_ver;
        core::ffi::CStr::from_ptr((*sysfs).ibdev_name.as_ptr()).to_string_lossy()
    };
    log::info!("{name}: device matched by rxe_rs {} (uverbs ABI {})", env!("CARGO_PKG_VERSION"), dev.abi_version);
    &mut Box::leak(dev).vdev
}

/// Frees what [`alloc`] returned.
///
/// # Safety
/// `vdev` must come from [`alloc`] and not be used afterwards.
pub unsafe fn free(vdev: *mut verbs_device) {
    // SAFETY: vdev is the first field of a leaked Box<Device>.
    drop(unsafe { Box::from_raw(vdev.cast::<Device>()) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn match_table_matches_rxe_like_librxe() {
        let t = &MATCH_TABLE.0;
        assert_eq!(t[0].kind, VERBS_MATCH_DRIVER_ID);
        assert_eq!(unsafe { t[0].u.driver_id }, RDMA_DRIVER_RXE as u64);
        assert_eq!(t[1].kind, VERBS_MATCH_MODALIAS);
        let alias = unsafe { CStr::from_ptr(t[1].u.modalias) };
        assert_eq!(alias.to_str().unwrap(), "rdma_device:*Nrxe*");
        assert_eq!(t[2].kind, VERBS_MATCH_SENTINEL);
    }
}
