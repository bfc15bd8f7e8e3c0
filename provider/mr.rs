//! Memory regions and memory windows: REG_MR, DEREG_MR, ALLOC_MW, DEALLOC_MW,
//! marshaled here rather than through libibverbs' ibv_cmd_* helpers.
//!
//! The kernel only answers an errno. When it refuses a registration we work
//! out which of its checks failed (ib_uverbs_reg_mr, ib_check_mr_access,
//! ib_umem_get) from the request and the process's state, and log that.

use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::context::{destroy_result, Context};
use core::ffi::c_void;

use ibv_access_flags as acc;

/// Access bits the kernel's ib_check_mr_access knows (LOCAL_WRITE..HUGETLB),
/// besides the optional range, which it may ignore.
const KERNEL_KNOWN_ACCESS: u32 = 0xff;
/// Bits a device may ignore (IBV_ACCESS_OPTIONAL_RANGE).
const OPTIONAL_ACCESS_RANGE: u32 = ib_uverbs_access_flags::IB_UVERBS_ACCESS_OPTIONAL_RANGE;
const CAP_IPC_LOCK: u32 = 14;
/// Flags that make ib_umem_get pin the pages for writing.
const WRITABLE_ACCESS: u32 = acc::IBV_ACCESS_LOCAL_WRITE
    | acc::IBV_ACCESS_REMOTE_WRITE
    | acc::IBV_ACCESS_REMOTE_ATOMIC
    | acc::IBV_ACCESS_MW_BIND;

/// One registration request, as the kernel sees it.
#[derive(Clone, Copy, Debug)]
pub struct RegRequest {
    pub start: u64,
    pub length: u64,
    pub iova: u64,
    pub access: u32,
}

/// Registers `[addr, addr+length)` at `iova`. Returns the `verbs_mr` libibverbs
/// expects, owned by the caller until [`dereg`].
pub fn reg(ctx: &mut Context, pd: *mut ibv_pd, addr: *mut c_void, length: usize, iova: u64, access: i32) -> Result<Box<verbs_mr>> {
    // SAFETY: libibverbs passes the PD the application gave ibv_reg_mr.
    let pd_handle = unsafe { (*pd).handle };
    let access_bits = access as u32;
    let mut req = ib_uverbs_reg_mr {
        start: addr as u64,
        length: length as u64,
        hca_va: iova,
        pd_handle,
        access_flags: access_bits,
        ..Default::default()
    };
    // Implicit ODP (whole address space) is spelled length = SIZE_MAX, addr = 0.
    if access_bits & acc::IBV_ACCESS_ON_DEMAND != 0 && length == usize::MAX {
        if !addr.is_null() {
            log::error!("{}: reg_mr: refused with EINVAL: implicit on-demand MR (length SIZE_MAX) needs addr NULL", ctx.name());
            return Err(Errno(libc::EINVAL));
        }
        req.length = u64::MAX;
    }
    let asked = RegRequest { start: req.start, length: req.length, iova, access: access_bits };
    let resp = cmd::write(ctx.cmd_fd(), req).inspect_err(|&e| {
        if crate::log::enabled(log::Level::Error) {
            let r = asked;
            log::error!("{}: reg_mr: refused with {}: {}", ctx.name(), e.name(), explain(&r, e, &Facts::gather(&r)));
        }
    })?;
    log::debug!(
        "{}: reg_mr: addr {addr:p} length {length} iova {iova:#x} access {access_bits:#x} -> handle {} lkey {:#x} rkey {:#x}",
        ctx.name(), resp.mr_handle, resp.lkey, resp.rkey
    );
    Ok(Box::new(verbs_mr {
        ibv_mr: ibv_mr {
            context: ctx.ibv_context(),
            pd,
            addr,
            length,
            handle: resp.mr_handle,
            lkey: resp.lkey,
            rkey: resp.rkey,
        },
        mr_type: IBV_MR_TYPE_MR,
        access,
    }))
}

/// Deregisters; on success the caller frees the `verbs_mr`.
pub fn dereg(ctx: &Context, vmr: &verbs_mr) -> Result<()> {
    let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dereg_mr { mr_handle: vmr.ibv_mr.handle });
    destroy_result(res).inspect_err(|e| {
        log::error!("{}: dereg_mr: handle {} refused with {e}{}", ctx.name(), vmr.ibv_mr.handle, bound_hint(*e))
    })
}

fn bound_hint(e: Errno) -> &'static str {
    if e.0 == libc::EBUSY {
        " (a memory window is still bound to it)"
    } else {
        ""
    }
}

/// Allocates a memory window of type 1 or 2.
pub fn alloc_mw(ctx: &mut Context, pd: *mut ibv_pd, mw_type: ibv_mw_type::Type) -> Result<Box<ibv_mw>> {
    // SAFETY: libibverbs passes the application's PD.
    let pd_handle = unsafe { (*pd).handle };
    let req = ib_uverbs_alloc_mw { pd_handle, mw_type: mw_type as u8, ..Default::default() };
    let resp = cmd::write(ctx.cmd_fd(), req).inspect_err(|e| {
        log::error!("{}: alloc_mw: type {mw_type} refused with {e}{}", ctx.name(), mw_type_hint(mw_type))
    })?;
    Ok(Box::new(ibv_mw {
        context: ctx.ibv_context(),
        pd,
        rkey: resp.rkey,
        handle: resp.mw_handle,
        type_: mw_type,
    }))
}

fn mw_type_hint(mw_type: ibv_mw_type::Type) -> &'static str {
    match mw_type {
        ibv_mw_type::IBV_MW_TYPE_1 | ibv_mw_type::IBV_MW_TYPE_2 => "",
        _ => " (memory windows are type 1 or 2)",
    }
}

/// Frees a memory window; on success the caller frees the `ibv_mw`.
pub fn dealloc_mw(ctx: &Context, mw: &ibv_mw) -> Result<()> {
    let res = cmd::write(ctx.cmd_fd(), ib_uverbs_dealloc_mw { mw_handle: mw.handle });
    destroy_result(res).inspect_err(|e| log::error!("{}: dealloc_mw: handle {} refused with {e}", ctx.name(), mw.handle))
}

/// A mapping from /proc/self/maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
}

/// What the process looked like when the kernel refused: the inputs to the
/// kernel's checks that the errno alone does not name.
#[derive(Debug, Default)]
pub struct Facts {
    pub page_size: u64,
    /// Soft RLIMIT_MEMLOCK in bytes; None when unlimited.
    pub memlock_limit: Option<u64>,
    /// Bytes this process already has pinned (VmPin), if known.
    pub pinned: Option<u64>,
    pub cap_ipc_lock: bool,
    /// The mappings overlapping the request, in address order.
    pub mappings: Vec<Mapping>,
}

impl Facts {
    /// Reads the facts for `req` from the process. Only called on failure,
    /// and only when the log line will be written.
    pub fn gather(req: &RegRequest) -> Facts {
        // SAFETY: sysconf and getrlimit only write the struct we pass.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        let memlock_limit = if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } == 0 && rl.rlim_cur != libc::RLIM_INFINITY {
            Some(rl.rlim_cur)
        } else {
            None
        };
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        Facts {
            page_size,
            memlock_limit,
            pinned: parse_vm_pin(&status),
            cap_ipc_lock: parse_cap_ipc_lock(&status),
            mappings: parse_maps(&maps, req.start, req.start.saturating_add(req.length)),
        }
    }
}

/// `VmPin:` from /proc/self/status, in bytes.
pub fn parse_vm_pin(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmPin:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether CAP_IPC_LOCK (bit 14) is in the effective set.
pub fn parse_cap_ipc_lock(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The mappings of /proc/self/maps text that overlap `[start, end)`.
pub fn parse_maps(maps: &str, start: u64, end: u64) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (lo, hi) = fields.next()?.split_once('-')?;
            let perms = fields.next()?.as_bytes();
            Some(Mapping {
                start: u64::from_str_radix(lo, 16).ok()?,
                end: u64::from_str_radix(hi, 16).ok()?,
                readable: perms.first() == Some(&b'r'),
                writable: perms.get(1) == Some(&b'w'),
            })
        })
        .filter(|m| m.end > start && m.start < end)
        .collect()
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", bytes.div_ceil(1024))
}

/// Pages the kernel pins for `[start, start+length)`.
pub fn pages_spanned(req: &RegRequest, page_size: u64) -> u64 {
    if req.length == 0 {
        return 0;
    }
    let first = req.start / page_size;
    let last = (req.start.saturating_add(req.length) - 1) / page_size;
    last - first + 1
}

fn flag_names(bits: u32) -> String {
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
    let names: Vec<&str> = NAMES.iter().filter(|(b, _)| bits & b != 0).map(|(_, n)| *n).collect();
    names.join("|")
}

/// The first address in `[start, end)` not covered by a mapping satisfying `ok`.
fn first_uncovered(mappings: &[Mapping], start: u64, end: u64, ok: impl Fn(&Mapping) -> bool) -> Option<u64> {
    let mut at = start;
    for m in mappings.iter().filter(|m| ok(m)) {
        if m.start > at {
            return Some(at);
        }
        at = at.max(m.end);
        if at >= end {
            return None;
        }
    }
    (at < end).then_some(at)
}

/// Names, in the kernel's terms, the check that refused `req` with `err`.
pub fn explain(req: &RegRequest, err: Errno, f: &Facts) -> String {
    let page = f.page_size.max(1);
    let mask = page - 1;
    let access = req.access;
    let end = req.start.saturating_add(req.length);
    match err.0 {
        libc::EINVAL | libc::EOPNOTSUPP => {
            if access & acc::IBV_ACCESS_ON_DEMAND != 0 {
                return "access IBV_ACCESS_ON_DEMAND is not supported by this device (rxe has no on-demand paging); \
                        register without it so the pages are pinned"
                    .into();
            }
            let unknown = access & !(KERNEL_KNOWN_ACCESS | OPTIONAL_ACCESS_RANGE);
            if unknown != 0 {
                return format!(
                    "access flags {access:#x} include bits {unknown:#x} that are not supported by this device or kernel \
                     (it knows LOCAL_WRITE..HUGETLB, 0xff, and the optional range {OPTIONAL_ACCESS_RANGE:#x})"
                );
            }
            if (req.start & mask) != (req.iova & mask) {
                return format!(
                    "page offset of start {:#x} (offset {:#x}) and iova {:#x} (offset {:#x}) differ; \
                     the kernel requires both to sit at the same offset within a {page}-byte page",
                    req.start, req.start & mask, req.iova, req.iova & mask
                );
            }
            if access & (acc::IBV_ACCESS_REMOTE_WRITE | acc::IBV_ACCESS_REMOTE_ATOMIC) != 0
                && access & acc::IBV_ACCESS_LOCAL_WRITE == 0
            {
                return format!(
                    "access {} asks for remote write or atomic access without IBV_ACCESS_LOCAL_WRITE, which the kernel requires with them",
                    flag_names(access)
                );
            }
            if req.length == 0 || pages_spanned(req, page) == 0 {
                return "length 0: there are no pages to pin, and the kernel refuses an empty region".into();
            }
            if req.start.checked_add(req.length).is_none() {
                return format!("start {:#x} + length {:#x} wraps around the address space", req.start, req.length);
            }
            format!("the kernel gave no detail; start {:#x} length {} iova {:#x} access {access:#x} look valid, check the PD", req.start, req.length, req.iova)
        }
        libc::EPERM => {
            if f.memlock_limit == Some(0) && !f.cap_ipc_lock {
                "RLIMIT_MEMLOCK is 0 and the process lacks CAP_IPC_LOCK, so the kernel lets it pin no memory at all; \
                 raise the memlock limit (ulimit -l, memlock in /etc/security/limits.conf, LimitMEMLOCK= for systemd services)"
                    .into()
            } else {
                "the kernel does not allow this process to pin memory (can_do_mlock failed)".into()
            }
        }
        libc::ENOMEM => {
            let request = pages_spanned(req, page) * page;
            match f.memlock_limit {
                Some(limit) if !f.cap_ipc_lock => {
                    let pinned = f.pinned.map_or(String::new(), |p| format!(", {} already pinned by this process", kib(p)));
                    format!(
                        "pinning {} ({} pages) would exceed RLIMIT_MEMLOCK of {}{pinned}; raise the memlock limit \
                         (ulimit -l, memlock in /etc/security/limits.conf, LimitMEMLOCK= for systemd services) or grant CAP_IPC_LOCK",
                        kib(request),
                        request / page,
                        kib(limit)
                    )
                }
                _ => format!("the kernel ran out of memory pinning {}", kib(request)),
            }
        }
        libc::EFAULT => {
            if let Some(at) = first_uncovered(&f.mappings, req.start, end, |m| m.readable) {
                return format!(
                    "pages at {at:#x} (inside start {:#x} length {}) are unmapped or inaccessible in this process, so the kernel cannot pin them",
                    req.start, req.length
                );
            }
            if access & WRITABLE_ACCESS != 0 {
                if let Some(at) = first_uncovered(&f.mappings, req.start, end, |m| m.writable) {
                    return format!(
                        "pages at {at:#x} are read-only, but access {} makes the MR writable (LOCAL_WRITE, REMOTE_WRITE, \
                         REMOTE_ATOMIC and MW_BIND all pin for writing); map the memory writable or drop those flags",
                        flag_names(access & WRITABLE_ACCESS)
                    );
                }
            }
            "the kernel could not pin the pages (pin_user_pages_fast failed)".into()
        }
        _ => format!("the kernel refused without a known cause ({err})"),
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

    #[test]
    fn page_offset_mismatch_is_named() {
        let m = explain(&req(0x10000, 4096, 0x20010, 1), Errno(libc::EINVAL), &facts());
        assert!(m.contains("page offset"), "{m}");
        assert!(m.contains("0x10"), "{m}");
    }

    #[test]
    fn remote_write_without_local_write_is_named() {
        let m = explain(&req(0x10000, 4096, 0x10000, acc::IBV_ACCESS_REMOTE_WRITE), Errno(libc::EINVAL), &facts());
        assert!(m.contains("LOCAL_WRITE") && m.contains("REMOTE_WRITE"), "{m}");
    }

    #[test]
    fn unknown_bits_and_odp_are_unsupported() {
        let m = explain(&req(0x10000, 4096, 0x10000, 1 << 15), Errno(libc::EINVAL), &facts());
        assert!(m.contains("not supported") && m.contains("0x8000"), "{m}");
        let m = explain(&req(0x10000, 4096, 0x10000, acc::IBV_ACCESS_ON_DEMAND), Errno(libc::EOPNOTSUPP), &facts());
        assert!(m.contains("ON_DEMAND") && m.contains("not supported"), "{m}");
    }

    #[test]
    fn memlock_zero_and_exceeded() {
        let f = Facts { memlock_limit: Some(0), ..facts() };
        let m = explain(&req(0x10000, 4096, 0x10000, 1), Errno(libc::EPERM), &f);
        assert!(m.contains("RLIMIT_MEMLOCK is 0") && m.contains("ulimit -l"), "{m}");
        let f = Facts { memlock_limit: Some(64 << 10), pinned: Some(8192), ..facts() };
        let m = explain(&req(0x10000, 1 << 20, 0x10000, 1), Errno(libc::ENOMEM), &f);
        assert!(m.contains("1024 KiB (256 pages)") && m.contains("RLIMIT_MEMLOCK of 64 KiB") && m.contains("8 KiB already pinned"), "{m}");
    }

    #[test]
    fn unmapped_and_read_only_pages() {
        let ro = Mapping { start: 0x10000, end: 0x12000, readable: true, writable: false };
        let f = Facts { mappings: vec![ro], ..facts() };
        let m = explain(&req(0x10000, 0x3000, 0x10000, 0), Errno(libc::EFAULT), &f);
        assert!(m.contains("unmapped") && m.contains("0x12000"), "{m}");
        let m = explain(&req(0x10000, 0x2000, 0x10000, acc::IBV_ACCESS_LOCAL_WRITE), Errno(libc::EFAULT), &f);
        assert!(m.contains("read-only") && m.contains("LOCAL_WRITE"), "{m}");
        let m = explain(&req(0x20000, 0x1000, 0x20000, 0), Errno(libc::EFAULT), &Facts { mappings: vec![], ..facts() });
        assert!(m.contains("unmapped") && m.contains("0x20000"), "{m}");
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
        let status = "Name:\tx\nVmPin:\t      12 kB\nCapEff:\t0000000000004000\n";
        assert_eq!(parse_vm_pin(status), Some(12 * 1024));
        assert!(parse_cap_ipc_lock(status));
        assert!(!parse_cap_ipc_lock("CapEff:\t0000000000000000\n"));
        let maps = "00400000-00401000 r-xp 00000000 08:01 1 /bin/x\n7f0000000000-7f0000002000 rw-p 00000000 00:00 0\n";
        let v = parse_maps(maps, 0x7f0000001000, 0x7f0000001100);
        assert_eq!(v, vec![Mapping { start: 0x7f0000000000, end: 0x7f0000002000, readable: true, writable: true }]);
    }
}
