//! Memory regions and memory windows: REG_MR, DEREG_MR, ALLOC_MW, DEALLOC_MW,
//! marshaled here rather than through libibverbs' ibv_cmd_* helpers.
//!
//! The kernel only answers an errno. When it refuses a registration we work
//! out which of its checks failed (ib_uverbs_reg_mr, ib_check_mr_access,
//! ib_umem_get) from the request and the process's state, and log that with
//! a stable `cause=<token>`. The diagnosis allocates nothing: it runs when
//! the process may be out of memory.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::abi::imports::ibv_cmd_advise_mr;
use crate::abi::newer_kernels;
use crate::context::{Context, Features, FLUSH_SINCE, ODP_SINCE};
use crate::object::{self, Object};
use crate::pd::Pd;
use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::fmt;

use ibv_access_flags as acc;

/// Access bits the kernel's ib_check_mr_access knows (LOCAL_WRITE..HUGETLB),
/// besides the optional range, which it may ignore.
const KERNEL_KNOWN_ACCESS: u32 = 0xff;
/// The placement-type bits kernels from 6.2 know (FLUSH_GLOBAL, FLUSH_PERSISTENT).
const FLUSH_ACCESS: u32 = newer_kernels::ACCESS_FLUSH_GLOBAL | newer_kernels::ACCESS_FLUSH_PERSISTENT;
/// Bits a device may ignore (IBV_ACCESS_OPTIONAL_RANGE).
const OPTIONAL_ACCESS_RANGE: u32 = ib_uverbs_access_flags::IB_UVERBS_ACCESS_OPTIONAL_RANGE;
const CAP_IPC_LOCK: u32 = 14;
/// Flags that make ib_umem_get pin the pages for writing.
const WRITABLE_ACCESS: u32 = acc::IBV_ACCESS_LOCAL_WRITE
    | acc::IBV_ACCESS_REMOTE_WRITE
    | acc::IBV_ACCESS_REMOTE_ATOMIC
    | acc::IBV_ACCESS_MW_BIND;

/// A registered region; libibverbs knows it as `verbs_mr` (and `ibv_mr`, its first field).
#[repr(C)]
pub(crate) struct Mr {
    raw: UnsafeCell<verbs_mr>,
}

object::boxed_object!(Mr, verbs_mr, raw);

/// A memory window; libibverbs knows it as `ibv_mw`.
#[repr(C)]
pub(crate) struct Mw {
    raw: UnsafeCell<ibv_mw>,
}

object::boxed_object!(Mw, ibv_mw, raw);

impl Mw {
    pub(crate) fn rkey(&self) -> u32 {
        // SAFETY: an aligned u32 inside our object; libibverbs does not write it.
        unsafe { (*self.raw()).rkey }
    }

    /// Records the rkey a type 1 bind gave the window, as librxe does.
    pub(crate) fn set_rkey(&self, rkey: u32) {
        // SAFETY: as above; the application serializes binds of one window.
        unsafe { (*self.raw()).rkey = rkey };
    }
}

/// `ibv_advise_mr`: prefetching pages of on-demand MRs is the kernel's work.
/// rdma-core 59+'s librxe passes it straight through and older ones leave it
/// to libibverbs' EOPNOTSUPP; ours passes it through under every release.
///
/// # Safety
/// `sg_list` holds `num_sge` readable entries (the verbs contract).
pub(crate) unsafe fn advise(pd: &Pd, advice: u32, flags: u32, sg_list: *mut ibv_sge, num_sge: u32) -> Result<()> {
    // SAFETY: a PD's context outlives it.
    let ctx = unsafe { Context::from_raw((*pd.raw()).context) };
    // SAFETY: our PD; the list per the contract.
    cmd::checked(unsafe { ibv_cmd_advise_mr(pd.raw(), advice, flags, sg_list, num_sge) }).inspect_err(|e| {
        if ctx.features().odp() {
            log::error!("{}: advise_mr: advice {advice} flags {flags:#x} num_sge {num_sge} refused with {e}", ctx.name());
        } else {
            log::error!("{}: advise_mr: refused with {e}: {ODP_SINCE}", ctx.name());
        }
    })
}

/// The rkey a type 1 bind gives a window: its low byte moves on, as in librxe.
pub(crate) fn next_rkey(rkey: u32) -> u32 {
    (rkey & 0xffff_ff00) | (rkey.wrapping_add(1) & 0xff)
}

/// One registration request, as the kernel sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegRequest {
    pub start: u64,
    pub length: u64,
    pub iova: u64,
    pub access: u32,
}

/// Registers `[addr, addr+length)` at `iova`; the caller hands the result to
/// libibverbs with [`Boxed::leak`].
pub(crate) fn reg(pd: &Pd, addr: *mut c_void, length: usize, iova: u64, access: c_int) -> Result<Box<Mr>> {
    // SAFETY: a PD's context outlives it.
    let ctx = unsafe { Context::from_raw((*pd.raw()).context) };
    let access_bits = access as u32;
    let mut req = ib_uverbs_reg_mr {
        start: addr as u64,
        length: length as u64,
        hca_va: iova,
        pd_handle: pd.handle(),
        access_flags: access_bits,
        ..Default::default()
    };
    // Implicit ODP (whole address space) is spelled length = SIZE_MAX, addr = 0.
    if access_bits & acc::IBV_ACCESS_ON_DEMAND != 0 && length == usize::MAX {
        if !addr.is_null() {
            log::error!("{}: reg_mr: refused with EINVAL cause=implicit-odp-addr: implicit on-demand MR (length SIZE_MAX) needs addr NULL", ctx.name());
            return Err(Errno(libc::EINVAL));
        }
        req.length = u64::MAX;
    }
    let asked = RegRequest { start: req.start, length: req.length, iova, access: access_bits };
    let resp = cmd::write(ctx.cmd_fd(), req).inspect_err(|&e| {
        if crate::log::enabled(log::Level::Error) {
            let cause = explain(&asked, e, &Facts::gather(&asked, ctx.features()));
            log::error!("{}: reg_mr: refused with {} cause={}: {cause}", ctx.name(), e.name(), cause.token());
        }
    })?;
    log::debug!(
        "{}: reg_mr: addr {addr:p} length {length} iova {iova:#x} access {access_bits:#x} -> handle {} lkey {:#x} rkey {:#x}",
        ctx.name(),
        resp.mr_handle,
        resp.lkey,
        resp.rkey
    );
    let mr = object::try_box(Mr {
        raw: UnsafeCell::new(verbs_mr {
            ibv_mr: ibv_mr { context: ctx.raw(), pd: pd.raw(), addr, length, handle: resp.mr_handle, lkey: resp.lkey, rkey: resp.rkey },
            mr_type: IBV_MR_TYPE_MR,
            access,
        }),
    });
    if mr.is_err() {
        // Nothing will ever name the kernel's MR: give it back.
        let _ = cmd::write(ctx.cmd_fd(), ib_uverbs_dereg_mr { mr_handle: resp.mr_handle });
    }
    mr
}

/// Deregisters, then frees ours.
///
/// # Safety
/// `vmr` came from [`reg`] via leak; on success nobody uses it again.
pub(crate) unsafe fn dereg(vmr: *mut verbs_mr) -> Result<()> {
    // SAFETY: per the contract.
    unsafe {
        object::destroy::<Mr>(vmr, |mr| {
            let m = &(*mr.raw()).ibv_mr;
            let ctx = Context::from_raw(m.context);
            let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dereg_mr { mr_handle: m.handle });
            cmd::destroy_outcome(res).inspect_err(|e| {
                log::error!("{}: dereg_mr: handle {} refused with {e}{}", ctx.name(), m.handle, bound_hint(*e))
            })
        })
    }
}

/// rxe refuses to deregister an MR that memory windows are bound to, with
/// EINVAL (rxe_dereg_mr, "See IBA 10.6.7.2.6").
fn bound_hint(e: Errno) -> &'static str {
    if e.0 == libc::EINVAL {
        " (is a memory window still bound to it? rxe refuses that with EINVAL; invalidate or unbind the windows first)"
    } else {
        ""
    }
}

/// Allocates a memory window of type 1 or 2.
pub(crate) fn alloc_mw(pd: &Pd, mw_type: ibv_mw_type::Type) -> Result<Box<Mw>> {
    // SAFETY: a PD's context outlives it.
    let ctx = unsafe { Context::from_raw((*pd.raw()).context) };
    let req = ib_uverbs_alloc_mw { pd_handle: pd.handle(), mw_type: mw_type as u8, ..Default::default() };
    let resp = cmd::write(ctx.cmd_fd(), req).inspect_err(|e| {
        log::error!("{}: alloc_mw: type {mw_type} refused with {e}{}", ctx.name(), mw_type_hint(mw_type))
    })?;
    let mw = object::try_box(Mw {
        raw: UnsafeCell::new(ibv_mw { context: ctx.raw(), pd: pd.raw(), rkey: resp.rkey, handle: resp.mw_handle, type_: mw_type }),
    });
    if mw.is_err() {
        let _ = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_mw { mw_handle: resp.mw_handle });
    }
    mw
}

fn mw_type_hint(mw_type: ibv_mw_type::Type) -> &'static str {
    match mw_type {
        ibv_mw_type::IBV_MW_TYPE_1 | ibv_mw_type::IBV_MW_TYPE_2 => "",
        _ => " (memory windows are type 1 or 2)",
    }
}

/// Frees a memory window, then ours.
///
/// # Safety
/// `mw` came from [`alloc_mw`] via leak; on success nobody uses it again.
pub(crate) unsafe fn dealloc_mw(mw: *mut ibv_mw) -> Result<()> {
    // SAFETY: per the contract.
    unsafe {
        object::destroy::<Mw>(mw, |mw| {
            let m = &*mw.raw();
            let ctx = Context::from_raw(m.context);
            let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_mw { mw_handle: m.handle });
            cmd::destroy_outcome(res).inspect_err(|e| log::error!("{}: dealloc_mw: handle {} refused with {e}", ctx.name(), m.handle))
        })
    }
}

/// A mapping from /proc/self/maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
}

/// Finds the first address of `[start, end)` that mappings with a property
/// do not cover, fed the mappings in address order (as /proc/self/maps lists
/// them), without storing them.
#[derive(Clone, Copy, Debug)]
struct Coverage {
    at: u64,
    gap: Option<u64>,
}

impl Coverage {
    fn new(start: u64) -> Self {
        Coverage { at: start, gap: None }
    }

    fn feed(&mut self, m: &Mapping, end: u64) {
        if self.gap.is_some() || self.at >= end || m.end <= self.at {
            return;
        }
        if m.start > self.at {
            self.gap = Some(self.at);
        } else {
            self.at = m.end;
        }
    }

    fn first_uncovered(&self, end: u64) -> Option<u64> {
        self.gap.or((self.at < end).then_some(self.at))
    }
}

/// What the process looked like when the kernel refused: the inputs to the
/// kernel's checks that the errno alone does not name.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    pub page_size: u64,
    /// Soft RLIMIT_MEMLOCK in bytes; None when unlimited.
    pub memlock_limit: Option<u64>,
    /// Bytes this process already has pinned (VmPin), if known.
    pub pinned: Option<u64>,
    pub cap_ipc_lock: bool,
    /// The first address of the request no readable mapping covers.
    pub first_unreadable: Option<u64>,
    /// The first address of the request no writable mapping covers.
    pub first_unwritable: Option<u64>,
    /// What the device's kernel driver can do (ODP, FLUSH).
    pub features: Features,
}

impl Facts {
    /// Reads the facts for `req` from the process. Only called on failure,
    /// and only when the log line will be written.
    pub(crate) fn gather(req: &RegRequest, features: Features) -> Facts {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes the struct we pass.
        let got = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0;
        let memlock_limit = (got && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur);
        let mut f = Facts { page_size, memlock_limit, features, ..Default::default() };
        for_each_line(c"/proc/self/status", |line| {
            f.pinned = f.pinned.or_else(|| parse_vm_pin(line));
            f.cap_ipc_lock |= parse_cap_ipc_lock(line);
        });
        let (start, end) = (req.start, req.start.saturating_add(req.length));
        let (mut readable, mut writable) = (Coverage::new(start), Coverage::new(start));
        for_each_line(c"/proc/self/maps", |line| {
            if let Some(m) = parse_map_line(line) {
                if m.readable {
                    readable.feed(&m, end);
                }
                if m.writable {
                    writable.feed(&m, end);
                }
            }
        });
        f.first_unreadable = readable.first_uncovered(end);
        f.first_unwritable = writable.first_uncovered(end);
        f
    }
}

/// Calls `f` with each line of a /proc file, read through a stack buffer.
/// Lines longer than the buffer are cut (only their first fields matter).
fn for_each_line(path: &core::ffi::CStr, mut f: impl FnMut(&str)) {
    // SAFETY: a NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    let mut line = [0u8; 256];
    let mut len = 0;
    let mut chunk = [0u8; 4096];
    loop {
        // SAFETY: reading into our own buffer of that size.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n <= 0 {
            break;
        }
        for &b in &chunk[..n as usize] {
            if b == b'\n' {
                f(core::str::from_utf8(&line[..len]).unwrap_or(""));
                len = 0;
            } else if len < line.len() {
                line[len] = b;
                len += 1;
            }
        }
    }
    if len > 0 {
        f(core::str::from_utf8(&line[..len]).unwrap_or(""));
    }
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
}

/// `VmPin:` from a /proc/self/status line, in bytes.
fn parse_vm_pin(line: &str) -> Option<u64> {
    let kib: u64 = line.strip_prefix("VmPin:")?.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether a /proc/self/status line says CAP_IPC_LOCK (bit 14) is effective.
fn parse_cap_ipc_lock(line: &str) -> bool {
    line.strip_prefix("CapEff:")
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// One /proc/self/maps line.
fn parse_map_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (lo, hi) = fields.next()?.split_once('-')?;
    let perms = fields.next()?.as_bytes();
    Some(Mapping {
        start: u64::from_str_radix(lo, 16).ok()?,
        end: u64::from_str_radix(hi, 16).ok()?,
        readable: perms.first() == Some(&b'r'),
        writable: perms.get(1) == Some(&b'w'),
    })
}

/// Pages the kernel pins for `[start, start+length)`.
pub(crate) fn pages_spanned(req: &RegRequest, page_size: u64) -> u64 {
    if req.length == 0 {
        return 0;
    }
    let first = req.start / page_size;
    let last = (req.start.saturating_add(req.length) - 1) / page_size;
    last - first + 1
}

/// Access flags by name, joined with '|'.
struct Flags(u32);

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 9] = [
            (acc::IBV_ACCESS_LOCAL_WRITE, "LOCAL_WRITE"),
            (acc::IBV_ACCESS_REMOTE_WRITE, "REMOTE_WRITE"),
            (acc::IBV_ACCESS_REMOTE_READ, "REMOTE_READ"),
            (acc::IBV_ACCESS_REMOTE_ATOMIC, "REMOTE_ATOMIC"),
            (acc::IBV_ACCESS_MW_BIND, "MW_BIND"),
            (acc::IBV_ACCESS_ZERO_BASED, "ZERO_BASED"),
            (acc::IBV_ACCESS_ON_DEMAND, "ON_DEMAND"),
            (acc::IBV_ACCESS_HUGETLB, "HUGETLB"),
            (acc::IBV_ACCESS_RELAXED_ORDERING, "RELAXED_ORDERING"),
        ];
        let mut sep = "";
        for (_, name) in NAMES.iter().filter(|(b, _)| self.0 & b != 0) {
            write!(f, "{sep}{name}")?;
            sep = "|";
        }
        Ok(())
    }
}

/// Byte counts as KiB, rounded up.
struct Kib(u64);

impl fmt::Display for Kib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KiB", self.0.div_ceil(1024))
    }
}

/// Which of the kernel's checks refused a registration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Cause {
    OdpUnsupported,
    ImplicitOdpUnsupported,
    FlushUnsupported,
    PersistentNotPmem,
    AccessUnsupported { access: u32, bits: u32 },
    AccessUnknownBits { access: u32, unknown: u32 },
    PageOffsetMismatch { start: u64, iova: u64, page: u64 },
    RemoteWithoutLocalWrite { access: u32 },
    ZeroLength,
    RangeWraps { start: u64, length: u64 },
    NoDetail { req: (u64, u64, u64, u32) },
    MemlockZero,
    MlockDenied,
    MemlockExceeded { request: u64, pages: u64, limit: u64, pinned: Option<u64> },
    OutOfMemory { request: u64 },
    Unmapped { at: u64, start: u64, length: u64 },
    ReadOnly { at: u64, access: u32 },
    PinFailed,
    Unknown(Errno),
}

impl Cause {
    /// A stable name for tests and log searches.
    pub(crate) fn token(&self) -> &'static str {
        match self {
            Cause::OdpUnsupported => "odp-unsupported",
            Cause::ImplicitOdpUnsupported => "implicit-odp-unsupported",
            Cause::FlushUnsupported => "flush-unsupported",
            Cause::PersistentNotPmem => "persistent-not-pmem",
            Cause::AccessUnsupported { .. } => "access-unsupported",
            Cause::AccessUnknownBits { .. } => "access-unknown-bits",
            Cause::PageOffsetMismatch { .. } => "page-offset-mismatch",
            Cause::RemoteWithoutLocalWrite { .. } => "remote-without-local-write",
            Cause::ZeroLength => "zero-length",
            Cause::RangeWraps { .. } => "range-wraps",
            Cause::NoDetail { .. } => "no-detail",
            Cause::MemlockZero => "memlock-zero",
            Cause::MlockDenied => "mlock-denied",
            Cause::MemlockExceeded { .. } => "memlock-exceeded",
            Cause::OutOfMemory { .. } => "out-of-memory",
            Cause::Unmapped { .. } => "unmapped",
            Cause::ReadOnly { .. } => "read-only",
            Cause::PinFailed => "pin-failed",
            Cause::Unknown(_) => "unknown",
        }
    }
}

const RAISE_MEMLOCK: &str = "raise the memlock limit (ulimit -l, memlock in /etc/security/limits.conf, LimitMEMLOCK= for systemd services)";

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cause::OdpUnsupported => {
                write!(f, "access IBV_ACCESS_ON_DEMAND: {ODP_SINCE}; register without it so the pages are pinned")
            }
            Cause::ImplicitOdpUnsupported => write!(
                f,
                "an implicit on-demand MR (addr NULL, length SIZE_MAX) needs IBV_ODP_SUPPORT_IMPLICIT, which this device does not \
                 report (rxe pages explicit ODP MRs only); register the range you use with IBV_ACCESS_ON_DEMAND"
            ),
            Cause::FlushUnsupported => write!(f, "access FLUSH_GLOBAL or FLUSH_PERSISTENT: {FLUSH_SINCE}"),
            Cause::AccessUnsupported { access, bits } => write!(
                f,
                "access {} includes {}, which this kernel's rxe does not support (rxe from 6.2 on refuses it; 6.1 ignored it); drop it",
                Flags(access),
                Flags(bits)
            ),
            Cause::PersistentNotPmem => write!(
                f,
                "access IBV_ACCESS_FLUSH_PERSISTENT needs pages of persistent memory (pmem); rxe refuses it for ordinary memory, \
                 register with IBV_ACCESS_FLUSH_GLOBAL instead"
            ),
            Cause::AccessUnknownBits { access, unknown } => write!(
                f,
                "access flags {access:#x} include bits {unknown:#x} that are not supported by this device or kernel \
                 (it knows LOCAL_WRITE..HUGETLB, 0xff, and the optional range {OPTIONAL_ACCESS_RANGE:#x})"
            ),
            Cause::PageOffsetMismatch { start, iova, page } => write!(
                f,
                "page offset of start {start:#x} (offset {:#x}) and iova {iova:#x} (offset {:#x}) differ; \
                 the kernel requires both to sit at the same offset within a {page}-byte page",
                start & (page - 1),
                iova & (page - 1)
            ),
            Cause::RemoteWithoutLocalWrite { access } => write!(
                f,
                "access {} asks for remote write or atomic access without IBV_ACCESS_LOCAL_WRITE, which the kernel requires with them",
                Flags(access)
            ),
            Cause::ZeroLength => write!(f, "length 0: there are no pages to pin, and the kernel refuses an empty region"),
            Cause::RangeWraps { start, length } => write!(f, "start {start:#x} + length {length:#x} wraps around the address space"),
            Cause::NoDetail { req: (start, length, iova, access) } => write!(
                f,
                "the kernel gave no detail; start {start:#x} length {length} iova {iova:#x} access {access:#x} look valid, check the PD"
            ),
            Cause::MemlockZero => write!(
                f,
                "RLIMIT_MEMLOCK is 0 and the process lacks CAP_IPC_LOCK, so the kernel lets it pin no memory at all; {RAISE_MEMLOCK}"
            ),
            Cause::MlockDenied => write!(f, "the kernel does not allow this process to pin memory (can_do_mlock failed)"),
            Cause::MemlockExceeded { request, pages, limit, pinned } => {
                write!(f, "pinning {} ({pages} pages) would exceed RLIMIT_MEMLOCK of {}", Kib(request), Kib(limit))?;
                if let Some(p) = pinned {
                    write!(f, ", {} already pinned by this process", Kib(p))?;
                }
                write!(f, "; {RAISE_MEMLOCK} or grant CAP_IPC_LOCK")
            }
            Cause::OutOfMemory { request } => write!(f, "the kernel ran out of memory pinning {}", Kib(request)),
            Cause::Unmapped { at, start, length } => write!(
                f,
                "pages at {at:#x} (inside start {start:#x} length {length}) are unmapped or inaccessible in this process, so the kernel cannot pin them"
            ),
            Cause::ReadOnly { at, access } => write!(
                f,
                "pages at {at:#x} are read-only, but access {} makes the MR writable (LOCAL_WRITE, REMOTE_WRITE, \
                 REMOTE_ATOMIC and MW_BIND all pin for writing); map the memory writable or drop those flags",
                Flags(access & WRITABLE_ACCESS)
            ),
            Cause::PinFailed => write!(f, "the kernel could not pin the pages (pin_user_pages_fast failed)"),
            Cause::Unknown(e) => write!(f, "the kernel refused without a known cause ({e})"),
        }
    }
}

/// Names, in the kernel's terms, the check that refused `req` with `err`.
pub(crate) fn explain(req: &RegRequest, err: Errno, f: &Facts) -> Cause {
    let page = f.page_size.max(1);
    let mask = page - 1;
    let access = req.access;
    match err.0 {
        libc::EINVAL | libc::EOPNOTSUPP => {
            if access & acc::IBV_ACCESS_ON_DEMAND != 0 {
                if !f.features.odp() {
                    return Cause::OdpUnsupported;
                }
                if req.length == u64::MAX && !f.features.odp_implicit() {
                    return Cause::ImplicitOdpUnsupported;
                }
            }
            if access & FLUSH_ACCESS != 0 && !f.features.flush() {
                return Cause::FlushUnsupported;
            }
            // Newer rxe refuses the flags it never acted on (rxe_reg_user_mr).
            let never_acted_on = access & (acc::IBV_ACCESS_ZERO_BASED | acc::IBV_ACCESS_HUGETLB);
            if err.0 == libc::EOPNOTSUPP && never_acted_on != 0 {
                return Cause::AccessUnsupported { access, bits: never_acted_on };
            }
            let known = KERNEL_KNOWN_ACCESS | FLUSH_ACCESS;
            let unknown = access & !(known | OPTIONAL_ACCESS_RANGE);
            if unknown != 0 {
                return Cause::AccessUnknownBits { access, unknown };
            }
            if (req.start & mask) != (req.iova & mask) {
                return Cause::PageOffsetMismatch { start: req.start, iova: req.iova, page };
            }
            if access & (acc::IBV_ACCESS_REMOTE_WRITE | acc::IBV_ACCESS_REMOTE_ATOMIC) != 0 && access & acc::IBV_ACCESS_LOCAL_WRITE == 0 {
                return Cause::RemoteWithoutLocalWrite { access };
            }
            if access & newer_kernels::ACCESS_FLUSH_PERSISTENT != 0 && err.0 == libc::EINVAL {
                return Cause::PersistentNotPmem;
            }
            if req.length == 0 || pages_spanned(req, page) == 0 {
                return Cause::ZeroLength;
            }
            if req.start.checked_add(req.length).is_none() {
                return Cause::RangeWraps { start: req.start, length: req.length };
            }
            Cause::NoDetail { req: (req.start, req.length, req.iova, access) }
        }
        libc::EPERM => {
            if f.memlock_limit == Some(0) && !f.cap_ipc_lock {
                Cause::MemlockZero
            } else {
                Cause::MlockDenied
            }
        }
        libc::ENOMEM => {
            let request = pages_spanned(req, page) * page;
            match f.memlock_limit {
                Some(limit) if !f.cap_ipc_lock => Cause::MemlockExceeded { request, pages: request / page, limit, pinned: f.pinned },
                _ => Cause::OutOfMemory { request },
            }
        }
        libc::EFAULT => {
            if let Some(at) = f.first_unreadable {
                return Cause::Unmapped { at, start: req.start, length: req.length };
            }
            if access & WRITABLE_ACCESS != 0 {
                if let Some(at) = f.first_unwritable {
                    return Cause::ReadOnly { at, access };
                }
            }
            Cause::PinFailed
        }
        _ => Cause::Unknown(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn facts() -> Facts {
        Facts { page_size: PAGE, memlock_limit: Some(8 << 20), ..Default::default() }
    }

    fn req(start: u64, length: u64, iova: u64, access: u32) -> RegRequest {
        RegRequest { start, length, iova, access }
    }

    fn why(r: RegRequest, e: i32, f: &Facts) -> (&'static str, String) {
        let c = explain(&r, Errno(e), f);
        (c.token(), c.to_string())
    }

    #[test]
    fn page_offset_mismatch_is_named() {
        let (t, m) = why(req(0x10000, 4096, 0x20010, 1), libc::EINVAL, &facts());
        assert_eq!(t, "page-offset-mismatch");
        assert!(m.contains("(offset 0x10)"), "{m}");
    }

    #[test]
    fn remote_write_without_local_write_is_named() {
        let (t, m) = why(req(0x10000, 4096, 0x10000, acc::IBV_ACCESS_REMOTE_WRITE), libc::EINVAL, &facts());
        assert_eq!(t, "remote-without-local-write");
        assert!(m.contains("access REMOTE_WRITE asks"), "{m}");
    }

    #[test]
    fn unknown_bits_and_odp_are_unsupported() {
        assert_eq!(why(req(0x10000, 4096, 0x10000, 1 << 15), libc::EINVAL, &facts()).0, "access-unknown-bits");
        assert_eq!(why(req(0x10000, 4096, 0x10000, acc::IBV_ACCESS_ON_DEMAND), libc::EOPNOTSUPP, &facts()).0, "odp-unsupported");
        assert_eq!(why(req(0x10000, 0, 0x10000, 1), libc::EINVAL, &facts()).0, "zero-length");
    }

    #[test]
    fn odp_and_flush_refusals_follow_what_the_kernel_reports() {
        let odp = acc::IBV_ACCESS_ON_DEMAND | acc::IBV_ACCESS_LOCAL_WRITE;
        // 6.1: no ODP, no FLUSH; the line names the kernel and the release that added it.
        let (t, m) = why(req(0x10000, 4096, 0x10000, odp), libc::EOPNOTSUPP, &facts());
        assert_eq!(t, "odp-unsupported");
        assert!(m.contains("has no on-demand paging") && m.contains("Linux 6.14"), "{m}");
        let flush = newer_kernels::ACCESS_FLUSH_GLOBAL | 1;
        let (t, m) = why(req(0x10000, 4096, 0x10000, flush), libc::EINVAL, &facts());
        assert_eq!(t, "flush-unsupported");
        assert!(m.contains("Linux 6.2"), "{m}");
        // A kernel with explicit ODP and FLUSH.
        let newer = Features {
            cap_flags_ex: newer_kernels::DEVICE_FLUSH_GLOBAL | newer_kernels::DEVICE_FLUSH_PERSISTENT,
            odp_general: ibv_odp_general_caps::IBV_ODP_SUPPORT as u64,
            ..Default::default()
        };
        let f = Facts { features: newer, ..facts() };
        assert_eq!(why(req(0, u64::MAX, 0, odp), libc::EINVAL, &f).0, "implicit-odp-unsupported");
        assert_eq!(why(req(0x10000, 4096, 0x20010, odp), libc::EINVAL, &f).0, "page-offset-mismatch");
        let persistent = newer_kernels::ACCESS_FLUSH_PERSISTENT | 1;
        assert_eq!(why(req(0x10000, 4096, 0x10000, persistent), libc::EINVAL, &f).0, "persistent-not-pmem");
        assert_eq!(why(req(0x10000, 4096, 0x10000, 1 << 15), libc::EINVAL, &f).0, "access-unknown-bits");
        let (t, m) = why(req(0x10000, 4096, 0x10000, acc::IBV_ACCESS_HUGETLB | 1), libc::EOPNOTSUPP, &f);
        assert_eq!(t, "access-unsupported");
        assert!(m.contains("includes HUGETLB"), "{m}");
    }

    #[test]
    fn memlock_zero_and_exceeded() {
        let f = Facts { memlock_limit: Some(0), ..facts() };
        assert_eq!(why(req(0x10000, 4096, 0x10000, 1), libc::EPERM, &f).0, "memlock-zero");
        let f = Facts { memlock_limit: Some(64 << 10), pinned: Some(8192), ..facts() };
        let (t, m) = why(req(0x10000, 1 << 20, 0x10000, 1), libc::ENOMEM, &f);
        assert_eq!(t, "memlock-exceeded");
        assert!(m.contains("1024 KiB (256 pages)") && m.contains("RLIMIT_MEMLOCK of 64 KiB") && m.contains("8 KiB already pinned"), "{m}");
        let f = Facts { cap_ipc_lock: true, ..facts() };
        assert_eq!(why(req(0x10000, 4096, 0x10000, 1), libc::ENOMEM, &f).0, "out-of-memory");
    }

    fn coverage(maps: &[Mapping], start: u64, end: u64, pick: fn(&Mapping) -> bool) -> Option<u64> {
        let mut c = Coverage::new(start);
        for m in maps.iter().filter(|m| pick(m)) {
            c.feed(m, end);
        }
        c.first_uncovered(end)
    }

    #[test]
    fn coverage_finds_the_first_hole() {
        let m = |start, end, w| Mapping { start, end, readable: true, writable: w };
        let maps = [m(0x1000, 0x3000, true), m(0x3000, 0x4000, false), m(0x5000, 0x6000, true)];
        assert_eq!(coverage(&maps, 0x1000, 0x4000, |m| m.readable), None);
        assert_eq!(coverage(&maps, 0x1000, 0x5800, |m| m.readable), Some(0x4000));
        assert_eq!(coverage(&maps, 0x2000, 0x3800, |m| m.writable), Some(0x3000));
        assert_eq!(coverage(&maps, 0x8000, 0x9000, |m| m.readable), Some(0x8000));
        assert_eq!(coverage(&[], 0x10, 0x20, |_| true), Some(0x10));
    }

    #[test]
    fn unmapped_and_read_only_pages() {
        let f = Facts { first_unreadable: Some(0x12000), ..facts() };
        let (t, m) = why(req(0x10000, 0x3000, 0x10000, 0), libc::EFAULT, &f);
        assert_eq!(t, "unmapped");
        assert!(m.contains("0x12000"), "{m}");
        let f = Facts { first_unwritable: Some(0x10000), ..facts() };
        assert_eq!(why(req(0x10000, 0x2000, 0x10000, acc::IBV_ACCESS_LOCAL_WRITE), libc::EFAULT, &f).0, "read-only");
        assert_eq!(why(req(0x10000, 0x2000, 0x10000, 0), libc::EFAULT, &f).0, "pin-failed");
    }

    #[test]
    fn page_counting() {
        assert_eq!(pages_spanned(&req(0, 1, 0, 0), PAGE), 1);
        assert_eq!(pages_spanned(&req(4095, 2, 0, 0), PAGE), 2);
        assert_eq!(pages_spanned(&req(4096, 4096, 0, 0), PAGE), 1);
        assert_eq!(pages_spanned(&req(123, 0, 0, 0), PAGE), 0);
    }

    #[test]
    fn proc_parsing() {
        assert_eq!(parse_vm_pin("VmPin:\t      12 kB"), Some(12 * 1024));
        assert!(parse_cap_ipc_lock("CapEff:\t0000000000004000"));
        assert!(!parse_cap_ipc_lock("CapEff:\t0000000000000000"));
        let m = parse_map_line("7f0000000000-7f0000002000 rw-p 00000000 00:00 0");
        assert_eq!(m, Some(Mapping { start: 0x7f0000000000, end: 0x7f0000002000, readable: true, writable: true }));
        assert_eq!(parse_map_line("garbage"), None);
    }

    #[test]
    fn facts_of_this_process() {
        let buf = vec![0u8; 8192];
        let f = Facts::gather(&req(buf.as_ptr() as u64, 8192, 0, acc::IBV_ACCESS_LOCAL_WRITE), Features::default());
        assert_eq!((f.first_unreadable, f.first_unwritable), (None, None));
        assert!(f.page_size >= 4096);
    }

    #[test]
    fn type1_rkey_moves_its_low_byte() {
        assert_eq!(next_rkey(0x1234_5600), 0x1234_5601);
        assert_eq!(next_rkey(0x1234_56ff), 0x1234_5600);
    }
}
