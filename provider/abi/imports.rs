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
use super::releases::PRIVATE_ABIS;
use super::sys::*;
use core::ffi::{c_int, c_void, CStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

/// Which `verbs_context_ops` layout a libibverbs has (abi/releases.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpsLayout {
    /// ABI 34 and 57: rdma-core 34-58.
    V34,
    /// ABI 59 in v59-v61.
    V59,
    /// ABI 59 in v62-v63.
    V62,
    V64,
    V65,
}

/// What differs between the libibverbs releases we serve, found at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flavor {
    pub abi: u32,
    /// The rdma-core release, from libibverbs' file name, when it says.
    pub release: Option<u32>,
    pub ops: OpsLayout,
    /// Bytes libibverbs' `verbs_context` has in front of ABI 34's.
    pub context_front: usize,
    /// v45 appended `wr_flush` to `ibv_qp_ex`, moving `verbs_qp::comp_mask`
    /// from 352 to 360 within ABI 34.
    pub qp_has_wr_flush: bool,
}

impl Flavor {
    /// rdma-core 44's, which the host tests and bindgen's headers have.
    pub(crate) const V44: Flavor = Flavor { abi: 34, release: Some(44), ops: OpsLayout::V34, context_front: 0, qp_has_wr_flush: false };

    /// Offset of `verbs_qp::comp_mask` in this release.
    pub(crate) fn qp_comp_mask_offset(&self) -> usize {
        if self.qp_has_wr_flush {
            core::mem::offset_of!(super::releases::verbs_qp_45, comp_mask)
        } else {
            core::mem::offset_of!(verbs_qp, comp_mask)
        }
    }
}

static FLAVOR: OnceLock<Flavor> = OnceLock::new();

/// The libibverbs we registered with (rdma-core 44's before registration,
/// as in host tests).
pub(crate) fn flavor() -> Flavor {
    FLAVOR.get().copied().unwrap_or(Flavor::V44)
}

/// Why the provider cannot run in this process.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    NoLibibverbs,
    UnknownAbi,
    Missing(&'static CStr),
}

impl core::fmt::Display for Unusable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Unusable::NoLibibverbs => write!(f, "libibverbs.so.1 is not loaded in this process"),
            Unusable::UnknownAbi => {
                write!(f, "this libibverbs exports no verbs_register_driver_<ABI> that rxe_rs knows; it serves ABI")?;
                for (i, abi) in PRIVATE_ABIS.iter().enumerate() {
                    write!(f, "{}{}", if i == 0 { " " } else { ", " }, abi.number)?;
                }
                Ok(())
            }
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
    fn _verbs_init_and_alloc_context(device: *mut ibv_device, cmd_fd: c_int, alloc_size: usize, context_offset: *mut c_void, driver_id: u32) -> *mut c_void;
    /// Undoes `verbs_init_context`: frees libibverbs' private part, closes the fds.
    fn verbs_uninit_context(context: *mut c_void);
    /// Installs the non-null entries of `ops` into the context.
    /// `ops` is the `verbs_context_ops` of the release's layout.
    fn verbs_set_ops(vctx: *mut c_void, ops: *const c_void);
    fn ibv_cmd_create_cq(context: *mut ibv_context, cqe: c_int, channel: *mut ibv_comp_channel, comp_vector: c_int, cq: *mut ibv_cq, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_resize_cq(cq: *mut ibv_cq, cqe: c_int, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
    fn ibv_cmd_destroy_cq(cq: *mut ibv_cq) -> c_int;
    fn ibv_cmd_create_qp(pd: *mut ibv_pd, qp: *mut ibv_qp, attr: *mut ibv_qp_init_attr, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int;
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
    fn ibv_cmd_advise_mr(pd: *mut ibv_pd, advice: ib_uverbs_advise_mr_advice::Type, flags: u32, sg_list: *mut ibv_sge, num_sge: u32) -> c_int;
}

static TABLE: OnceLock<Table> = OnceLock::new();

/// The imports whose prototype changed between releases (abi/releases.rs `proto`).
struct Varying {
    create_cq_ex: *mut c_void,
    create_qp_ex2: *mut c_void,
}
// SAFETY: plain function addresses, never written after registration.
unsafe impl Send for Varying {}
// SAFETY: as above.
unsafe impl Sync for Varying {}

static VARYING: OnceLock<Varying> = OnceLock::new();

fn varying() -> &'static Varying {
    VARYING.get().expect("rxe_rs: libibverbs functions used before the provider registered")
}

/// `ibv_cmd_create_cq_ex` with v44's arguments; v59+ take a `prov_attr`
/// (NULL: libibverbs allocates the CQ as before) before `cq`.
///
/// # Safety
/// As for the C function; the provider must have registered.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn ibv_cmd_create_cq_ex(context: *mut ibv_context, attr: *const ibv_cq_init_attr_ex, cq: *mut verbs_cq, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize, cmd_flags: u32) -> c_int {
    let f = varying().create_cq_ex;
    if flavor().abi >= 59 {
        // SAFETY: resolved under IBVERBS_PRIVATE_<59+>, which has this prototype.
        let f = unsafe { core::mem::transmute::<*mut c_void, super::releases::proto::ibv_cmd_create_cq_ex_59>(f) };
        // SAFETY: per the contract.
        unsafe { f(context, attr, core::ptr::null_mut(), cq, cmd, cmd_size, resp, resp_size, cmd_flags) }
    } else {
        type V44 = unsafe extern "C" fn(*mut ibv_context, *const ibv_cq_init_attr_ex, *mut verbs_cq, *mut c_void, usize, *mut c_void, usize, u32) -> c_int;
        // SAFETY: ABI 34 and 57 have v44's prototype.
        let f = unsafe { core::mem::transmute::<*mut c_void, V44>(f) };
        // SAFETY: per the contract.
        unsafe { f(context, attr, cq, cmd, cmd_size, resp, resp_size, cmd_flags) }
    }
}

/// `ibv_cmd_create_qp_ex2` with v44's arguments; v64+ append a `driver`
/// command buffer (NULL: none). `qp` has room for the v45+ `verbs_qp`.
///
/// # Safety
/// As for the C function; the provider must have registered.
pub(crate) unsafe fn ibv_cmd_create_qp_ex2(context: *mut ibv_context, qp: *mut c_void, attr: *mut ibv_qp_init_attr_ex, cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize) -> c_int {
    let f = varying().create_qp_ex2;
    if flavor().abi >= 64 {
        // SAFETY: resolved under IBVERBS_PRIVATE_<64+>, which has this prototype.
        let f = unsafe { core::mem::transmute::<*mut c_void, super::releases::proto::ibv_cmd_create_qp_ex2_64>(f) };
        // SAFETY: per the contract.
        unsafe { f(context, qp.cast(), attr, cmd, cmd_size, resp, resp_size, core::ptr::null_mut()) }
    } else {
        type V44 = unsafe extern "C" fn(*mut ibv_context, *mut c_void, *mut ibv_qp_init_attr_ex, *mut c_void, usize, *mut c_void, usize) -> c_int;
        // SAFETY: ABI 34, 57 and 59 have v44's prototype.
        let f = unsafe { core::mem::transmute::<*mut c_void, V44>(f) };
        // SAFETY: per the contract.
        unsafe { f(context, qp, attr, cmd, cmd_size, resp, resp_size) }
    }
}

/// The release number in libibverbs' file name (`libibverbs.so.1.14.56.1` -> 56).
fn release_from_file_name(path: &[u8]) -> Option<u32> {
    let name = path.rsplit(|&b| b == b'/').next()?;
    let rest = name.strip_prefix(b"libibverbs.so.")?;
    let field = rest.split(|&b| b == b'.').nth(2)?;
    core::str::from_utf8(field).ok()?.parse().ok()
}

/// The file libibverbs was loaded from, symlinks resolved.
fn libibverbs_release(symbol: *mut c_void) -> Option<u32> {
    // SAFETY: all-zero is a valid Dl_info; dladdr only writes it.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: symbol is an address inside libibverbs.
    if unsafe { libc::dladdr(symbol, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returned a NUL-terminated path.
    let path = unsafe { CStr::from_ptr(info.dli_fname) };
    let real = std::fs::canonicalize(std::ffi::OsStr::from_bytes(path.to_bytes())).ok()?;
    release_from_file_name(real.as_os_str().as_bytes())
}

/// Works out the layouts of the libibverbs behind `lib`.
fn flavor_of(lib: *mut c_void, abi: u32, register: *mut c_void) -> Flavor {
    let has = |name: &CStr, version: &CStr| {
        // SAFETY: lib is a live handle; both strings are NUL-terminated.
        !unsafe { libc::dlvsym(lib, name.as_ptr(), version.as_ptr()) }.is_null()
    };
    let release = libibverbs_release(register);
    let (ops, context_front) = match abi {
        65 => (OpsLayout::V65, 48),
        64 => (OpsLayout::V64, 48),
        59 if has(super::releases::ABI59_V62_MARKER.0, super::releases::ABI59_V62_MARKER.1) => (OpsLayout::V62, 32),
        59 => (OpsLayout::V59, 24),
        _ => (OpsLayout::V34, 0),
    };
    // Within ABI 34 only the file name tells 44 from 45-48; symbols added in
    // 49 and 53 tell the later ones when the name does not say.
    let qp_has_wr_flush = abi != 34
        || release.map_or_else(
            || has(c"ibv_wr_opcode_str", c"IBVERBS_PRIVATE_34") || has(c"ibv_cmd_create_cq_ex2", c"IBVERBS_PRIVATE_34"),
            |r| r >= 45,
        );
    Flavor { abi, release, ops, context_front, qp_has_wr_flush }
}

fn table() -> &'static Table {
    // Every entry point runs after register() resolved the table: libibverbs
    // calls none of ours before we registered.
    TABLE.get().expect("rxe_rs: libibverbs functions used before the provider registered")
}

/// The private ABI of the libibverbs behind `lib`, from the registration
/// symbol it exports.
fn detect_abi(lib: *mut c_void) -> Option<(u32, &'static CStr, &'static CStr)> {
    PRIVATE_ABIS.iter().find(|abi| {
        // SAFETY: lib is a live handle; both strings are NUL-terminated.
        !unsafe { libc::dlvsym(lib, abi.register.as_ptr(), abi.node.as_ptr()) }.is_null()
    })
    .map(|abi| (abi.number, abi.register, abi.node))
}

/// Finds the libibverbs that loaded us, resolves every import for its ABI
/// and registers `ops` with it.
pub(crate) fn register(ops: &'static verbs_device_ops) -> Result<Flavor, Unusable> {
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD only finds an already
    // loaded object (the reference it adds is kept for the process's life).
    let lib = unsafe { libc::dlopen(c"libibverbs.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if lib.is_null() {
        return Err(Unusable::NoLibibverbs);
    }
    let (abi, register_name, version) = detect_abi(lib).ok_or(Unusable::UnknownAbi)?;
    let table = Table::resolve(lib, version)?;
    let lookup = |name: &'static CStr| {
        // SAFETY: lib is a live handle; both strings are NUL-terminated.
        let f = unsafe { libc::dlvsym(lib, name.as_ptr(), version.as_ptr()) };
        if f.is_null() {
            Err(Unusable::Missing(name))
        } else {
            Ok(f)
        }
    };
    let varying = Varying { create_cq_ex: lookup(c"ibv_cmd_create_cq_ex")?, create_qp_ex2: lookup(c"ibv_cmd_create_qp_ex2")? };
    let f = lookup(register_name)?;
    let _ = FLAVOR.set(flavor_of(lib, abi, f));
    let _ = TABLE.set(table);
    let _ = VARYING.set(varying);
    // SAFETY: verbs_register_driver_<ABI> takes the ops table of that ABI,
    // which `ops` is (PRIVATE_ABIS lists only ABIs whose layout this build has).
    let register_driver = unsafe { core::mem::transmute::<*mut c_void, unsafe extern "C" fn(*const verbs_device_ops)>(f) };
    // SAFETY: ops is 'static and laid out for this ABI.
    unsafe { register_driver(ops) };
    Ok(flavor())
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
    fn releases_from_file_names() {
        assert_eq!(release_from_file_name(b"/usr/lib/x86_64-linux-gnu/libibverbs.so.1.14.44.0"), Some(44));
        assert_eq!(release_from_file_name(b"/x/libibverbs.so.1.14.56.1"), Some(56));
        assert_eq!(release_from_file_name(b"libibverbs.so.1.18.65.0"), Some(65));
        assert_eq!(release_from_file_name(b"/x/libibverbs.so.1"), None);
        assert_eq!(release_from_file_name(b"/x/libother.so.1.2.3"), None);
    }

    #[test]
    fn the_hosts_flavor_is_v44() {
        // SAFETY: as in the_hosts_libibverbs_is_abi_34.
        let lib = unsafe { libc::dlopen(c"libibverbs.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        // SAFETY: as in detect_abi.
        let register = unsafe { libc::dlvsym(lib, c"verbs_register_driver_34".as_ptr(), c"IBVERBS_PRIVATE_34".as_ptr()) };
        assert_eq!(flavor_of(lib, 34, register), Flavor::V44);
        assert_eq!(Flavor::V44.qp_comp_mask_offset(), 352);
    }

    #[test]
    fn refusals_name_the_abi() {
        let m = Unusable::UnknownAbi.to_string();
        assert!(m.ends_with("it serves ABI 34, 57, 59, 64, 65"), "{m}");
    }
}
