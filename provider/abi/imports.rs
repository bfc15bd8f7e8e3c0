//! The functions we call in libibverbs' private ABI, found when the provider
//! is loaded rather than bound by the dynamic linker.
//!
//! Each is exported under a version node named after the private ABI
//! (`IBVERBS_PRIVATE_34` for rdma-core 34..56). Linking them in would tie
//! the library to one release and make any other libibverbs refuse to load
//! it with an unresolved-symbol error; looking them up with `dlvsym` in the
//! libibverbs that loaded us lets the provider see which release it is in
//! and say so when it cannot serve it.
//!
//! The lookup goes through a handle to the already loaded libibverbs
//! (`RTLD_NOLOAD`), not `RTLD_DEFAULT`: a program that loads libibverbs
//! privately (Python extension modules are opened `RTLD_LOCAL`) has it
//! outside the global scope.

use super::private::*;
use super::sys::*;
use core::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

/// Private ABIs whose registration symbol we look for, newest first; the
/// ones this build serves are in [`SERVED`].
const KNOWN: [(u32, &CStr, &CStr); 5] = [
    (65, c"verbs_register_driver_65", c"IBVERBS_PRIVATE_65"),
    (64, c"verbs_register_driver_64", c"IBVERBS_PRIVATE_64"),
    (59, c"verbs_register_driver_59", c"IBVERBS_PRIVATE_59"),
    (57, c"verbs_register_driver_57", c"IBVERBS_PRIVATE_57"),
    (34, c"verbs_register_driver_34", c"IBVERBS_PRIVATE_34"),
];

/// The private ABIs whose layouts this build knows.
const SERVED: &[u32] = &[34];

/// Why the provider cannot run in this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    NoLibibverbs,
    UnknownAbi,
    UnservedAbi(u32),
    Missing(&'static CStr),
}

impl core::fmt::Display for Unusable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unusable::NoLibibverbs => write!(f, "libibverbs.so.1 is not loaded in this process"),
            Unusable::UnknownAbi => write!(f, "this libibverbs exports no verbs_register_driver_<ABI> that rxe_rs knows"),
            Unusable::UnservedAbi(abi) => write!(
                f,
                "this libibverbs has private ABI {abi} (IBVERBS_PRIVATE_{abi}); this build of rxe_rs serves ABI {}",
                SERVED.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ),
            Unusable::Missing(name) => write!(f, "libibverbs lacks {}", name.to_str().unwrap_or("?")),
        }
    }
}

macro_rules! imports {
    ($(
        $(#[doc = $doc:literal])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;
    )*) => {
        /// Every imported function, resolved once.
        struct Table {
            $($name: unsafe extern "C" fn($($ty),*) $(-> $ret)?,)*
        }

        impl Table {
            fn resolve(lib: *mut c_void, version: &CStr) -> Result<Table, Unusable> {
                Ok(Table {
                    $($name: {
                        let name = const { cstr(concat!(stringify!($name), "\0")) };
                        // SAFETY: lib is a live handle; both strings are NUL-terminated.
                        let f = unsafe { libc::dlvsym(lib, name.as_ptr(), version.as_ptr()) };
                        if f.is_null() {
                            return Err(Unusable::Missing(name));
                        }
                        // SAFETY: libibverbs exports this symbol under this version
                        // with exactly this C signature (driver.h of that release).
                        unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn($($ty),*) $(-> $ret)?>(f) }
                    },)*
                })
            }
        }

        $(
            $(#[doc = $doc])*
            ///
            /// # Safety
            /// As for the C function in libibverbs' driver.h; the provider
            /// must have been registered (the table resolved).
            #[allow(clippy::too_many_arguments)]
            pub(crate) unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                // SAFETY: per the contract.
                unsafe { (table().$name)($($arg),*) }
            }
        )*
    };
}

const fn cstr(s: &'static str) -> &'static CStr {
    match CStr::from_bytes_with_nul(s.as_bytes()) {
        Ok(c) => c,
        Err(_) => panic!("symbol names are NUL-terminated"),
    }
}

imports! {
    /// Callocs `alloc_size` bytes for the provider's context and initializes
    /// the `verbs_context` found `context_offset` bytes into it (the offset is
    /// passed as a pointer value, as driver.h's macro does). Closes `cmd_fd`
    /// and returns NULL on failure. Free the result with `free(3)`.
    fn _verbs_init_and_alloc_context(device: *mut ibv_device, cmd_fd: c_int, alloc_size: usize, context_offset: *mut verbs_context, driver_id: u32) -> *mut c_void;
    /// Undoes `verbs_init_context`: frees libibverbs' private part, closes the fds.
    fn verbs_uninit_context(context: *mut verbs_context);
    /// Installs the non-null entries of `ops` into the context.
    fn verbs_set_ops(vctx: *mut verbs_context, ops: *const verbs_context_ops);
    fn ibv_cmd_create_cq(context: *mut ibv_context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int, cq: *mut ibv_cq, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_create_cq_ex(context: *mut ibv_context, attr: *const ibv_cq_init_attr_ex, cq: *mut verbs_cq, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize, cmd_flags: u32) -> c_int;
    fn ibv_cmd_resize_cq(cq: *mut ibv_cq, cqe: c_int, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_destroy_cq(cq: *mut ibv_cq) -> c_int;
    fn ibv_cmd_req_notify_cq(cq: *mut ibv_cq, solicited_only: c_int) -> c_int;
    fn ibv_cmd_create_qp(pd: *mut ibv_pd, qp: *mut ibv_qp, attr: *mut ibv_qp_init_attr, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_create_qp_ex2(context: *mut ibv_context, qp: *mut verbs_qp, attr: *mut ibv_qp_init_attr_ex, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_modify_qp(qp: *mut ibv_qp, attr: *mut ibv_qp_attr, attr_mask: c_int, cmd: *mut c_void, cmd_size: usize) -> c_int;
    fn ibv_cmd_query_qp(qp: *mut ibv_qp, attr: *mut ibv_qp_attr, attr_mask: c_int, init_attr: *mut ibv_qp_init_attr, cmd: *mut c_void, cmd_size: usize) -> c_int;
    fn ibv_cmd_destroy_qp(qp: *mut ibv_qp) -> c_int;
    fn ibv_cmd_create_srq(pd: *mut ibv_pd, srq: *mut ibv_srq, attr: *mut ibv_srq_init_attr, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_create_srq_ex(context: *mut ibv_context, srq: *mut verbs_srq, attr: *mut ibv_srq_init_attr_ex, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_modify_srq(srq: *mut ibv_srq, attr: *mut ibv_srq_attr, attr_mask: c_int, cmd: *mut c_void, cmd_size: usize) -> c_int;
    fn ibv_cmd_query_srq(srq: *mut ibv_srq, attr: *mut ibv_srq_attr, cmd: *mut c_void, cmd_size: usize) -> c_int;
    fn ibv_cmd_destroy_srq(srq: *mut ibv_srq) -> c_int;
    fn ibv_cmd_create_ah(pd: *mut ibv_pd, ah: *mut ibv_ah, attr: *mut ibv_ah_attr, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_destroy_ah(ah: *mut ibv_ah) -> c_int;
    fn ibv_cmd_attach_mcast(qp: *mut ibv_qp, gid: *const ibv_gid, lid: u16) -> c_int;
    fn ibv_cmd_detach_mcast(qp: *mut ibv_qp, gid: *const ibv_gid, lid: u16) -> c_int;
}

static TABLE: OnceLock<Table> = OnceLock::new();

fn table() -> &'static Table {
    // Every entry point runs after register() resolved the table: libibverbs
    // calls none of ours before we registered.
    TABLE.get().expect("rxe_rs: libibverbs functions used before the provider registered")
}

/// The private ABI of the libibverbs behind `lib`, from the registration
/// symbol it exports.
fn detect_abi(lib: *mut c_void) -> Option<(u32, &'static CStr, &'static CStr)> {
    KNOWN.iter().copied().find(|(_, name, version)| {
        // SAFETY: lib is a live handle; both strings are NUL-terminated.
        !unsafe { libc::dlvsym(lib, name.as_ptr(), version.as_ptr()) }.is_null()
    })
}

/// Finds the libibverbs that loaded us, resolves every import for its ABI
/// and registers `ops` with it.
pub(crate) fn register(ops: &'static verbs_device_ops) -> Result<u32, Unusable> {
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD only finds an already
    // loaded object (the reference it adds is kept for the process's life).
    let lib = unsafe { libc::dlopen(c"libibverbs.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if lib.is_null() {
        return Err(Unusable::NoLibibverbs);
    }
    let (abi, register_name, version) = detect_abi(lib).ok_or(Unusable::UnknownAbi)?;
    if !SERVED.contains(&abi) {
        return Err(Unusable::UnservedAbi(abi));
    }
    let table = Table::resolve(lib, version)?;
    let _ = TABLE.set(table);
    // SAFETY: as in detect_abi.
    let f = unsafe { libc::dlvsym(lib, register_name.as_ptr(), version.as_ptr()) };
    // SAFETY: verbs_register_driver_<ABI> takes the ops table of that ABI,
    // which `ops` is (SERVED holds only ABIs whose layout this build has).
    let register_driver = unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const verbs_device_ops)>(f) };
    // SAFETY: ops is 'static and laid out for this ABI.
    unsafe { register_driver(ops) };
    Ok(abi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_libibverbs_is_abi_34() {
        // SAFETY: a NUL-terminated name; loading libibverbs runs no code of ours.
        let lib = unsafe { libc::dlopen(c"libibverbs.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!lib.is_null(), "libibverbs1 (rdma-core 44) is installed");
        assert_eq!(detect_abi(lib).map(|(abi, ..)| abi), Some(34));
        assert!(Table::resolve(lib, c"IBVERBS_PRIVATE_34").is_ok());
        assert_eq!(Table::resolve(lib, c"IBVERBS_PRIVATE_65").err(), Some(Unusable::Missing(c"_verbs_init_and_alloc_context")));
    }

    #[test]
    fn refusals_name_the_abi() {
        let m = Unusable::UnservedAbi(65).to_string();
        assert!(m.contains("private ABI 65") && m.contains("serves ABI 34"), "{m}");
    }
}
