//! The device context: opened once per `ibv_open_device`, it owns the command
//! fd every other verb writes to. Also the device and port queries.

use crate::abi::imports::*;
use crate::abi::newer_kernels;
use crate::abi::private::*;
use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use crate::object::Object;
use crate::offset_of_end;
use core::cell::UnsafeCell;
use core::ffi::{c_int, CStr};
use core::mem::offset_of;
use std::os::fd::RawFd;

/// The most any release puts in front of ABI 34's `verbs_context` (ABI 64
/// and 65: six function pointers; abi/releases.rs).
const MAX_CONTEXT_FRONT: usize = 48;

/// Our context. libibverbs callocs it (we tell it our size) and sees only
/// its `verbs_context`; it writes parts of it (the ops, its private pointer)
/// after open. Later releases grow `verbs_context` at the front only, so
/// ours ends with ABI 34's and reserves room before it: libibverbs' struct
/// starts `front` bytes before `vctx`, and `ibv_context` (its last member)
/// is at the same place in every release.
#[repr(C)]
pub(crate) struct Context {
    front: UnsafeCell<[u64; MAX_CONTEXT_FRONT / 8]>,
    vctx: UnsafeCell<verbs_context>,
    /// Set once write(2) was refused for changed credentials: the send
    /// doorbell and CQ arming then go by ioctl (uverbs_ioctl::doorbell,
    /// uverbs_ioctl::req_notify_cq).
    pub(crate) doorbell_via_ioctl: core::sync::atomic::AtomicBool,
    /// What the kernel's rxe can do beyond 6.1's; written before the
    /// context is handed out, read-only after.
    features: Features,
    /// The relay of asynchronous events while an event fault is armed
    /// (crate::fault_events); null otherwise. Set before the context is
    /// handed out, taken when it closes.
    events: core::sync::atomic::AtomicPtr<crate::fault_events::Relay>,
}

/// What the device's kernel driver reports beyond 6.1's rxe, read once when
/// the context opens. Features follow the running kernel, not the headers
/// the provider was built with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Features {
    pub cap_flags_ex: u64,
    pub odp_general: u64,
    pub odp_rc: u32,
    pub odp_ud: u32,
    /// Port 1's max_msg_sz (rxe has one port); 0 when the query failed.
    pub max_msg_sz: u32,
}

impl Features {
    /// From the kernel's QUERY_DEVICE_EX answer of `resp_len` bytes.
    fn from_resp(resp: &ib_uverbs_ex_query_device_resp, resp_len: usize) -> Features {
        let mut out = ibv_device_attr_ex::default();
        fill_device_attr(&mut out, resp, resp_len);
        Features {
            cap_flags_ex: out.device_cap_flags_ex,
            odp_general: out.odp_caps.general_caps,
            odp_rc: out.odp_caps.per_transport_caps.rc_odp_caps,
            odp_ud: out.odp_caps.per_transport_caps.ud_odp_caps,
            max_msg_sz: 0,
        }
    }

    /// Asks the kernel; a kernel that cannot answer has none of them.
    fn query(cmd_fd: RawFd) -> Features {
        let mut f = match cmd::write_ex(cmd_fd, ib_uverbs_ex_query_device::default()) {
            Ok(r) => Features::from_resp(&r, r.response_length as usize),
            Err(e) => {
                log::debug!("QUERY_DEVICE_EX refused ({e}): assuming 6.1's rxe features");
                Features::default()
            }
        };
        match crate::uverbs_ioctl::query_port(cmd_fd, 1) {
            Ok(p) => f.max_msg_sz = p.legacy_resp.max_msg_sz,
            Err(e) => log::debug!("QUERY_PORT refused ({e}): message lengths are left to the kernel"),
        }
        f
    }

    pub(crate) fn atomic_write(&self) -> bool {
        self.cap_flags_ex & newer_kernels::DEVICE_ATOMIC_WRITE != 0
    }

    pub(crate) fn flush(&self) -> bool {
        self.cap_flags_ex & (newer_kernels::DEVICE_FLUSH_GLOBAL | newer_kernels::DEVICE_FLUSH_PERSISTENT) != 0
    }

    pub(crate) fn odp(&self) -> bool {
        self.odp_general & ibv_odp_general_caps::IBV_ODP_SUPPORT as u64 != 0
    }

    pub(crate) fn odp_implicit(&self) -> bool {
        self.odp_general & ibv_odp_general_caps::IBV_ODP_SUPPORT_IMPLICIT as u64 != 0
    }
}

/// A kernel feature the running kernel's rxe lacks, for refusal lines:
/// names the feature, this kernel and the Linux release that added it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MissingInKernel {
    pub feature: &'static str,
    pub since: &'static str,
}

pub(crate) const ATOMIC_WRITE_SINCE: MissingInKernel = MissingInKernel { feature: "ATOMIC WRITE", since: "6.2" };
pub(crate) const FLUSH_SINCE: MissingInKernel = MissingInKernel { feature: "RDMA FLUSH", since: "6.2" };
pub(crate) const ODP_SINCE: MissingInKernel = MissingInKernel { feature: "on-demand paging (ODP)", since: "6.14" };

impl core::fmt::Display for MissingInKernel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: all-zero is a valid utsname; uname only writes it.
        let mut u: libc::utsname = unsafe { core::mem::zeroed() };
        // SAFETY: u is ours and writable.
        let release = if unsafe { libc::uname(&mut u) } == 0 {
            // SAFETY: uname NUL-terminates its fields.
            unsafe { CStr::from_ptr(u.release.as_ptr()) }.to_str().unwrap_or("?")
        } else {
            "?"
        };
        write!(f, "this kernel's rxe ({release}) has no {}; rxe gained it in Linux {}", self.feature, self.since)
    }
}

// SAFETY: after open we only read fields that libibverbs no longer changes
// (cmd_fd, device), and the flag is atomic; everything else in it is
// libibverbs' to synchronize.
unsafe impl Sync for Context {}

// SAFETY: ibv_context sits `RAW_OFFSET` bytes into Context (the end of our
// verbs_context); every ibv_context libibverbs passes us was opened by `open`.
unsafe impl Object for Context {
    type Raw = ibv_context;
    const RAW_OFFSET: usize = offset_of!(Context, vctx) + offset_of!(verbs_context, context);
    fn raw(&self) -> *mut ibv_context {
        // SAFETY: in bounds of our verbs_context.
        unsafe { core::ptr::addr_of_mut!((*self.vctx.get()).context) }
    }
}

impl Context {
    pub(crate) fn cmd_fd(&self) -> RawFd {
        // SAFETY: set before libibverbs hands the context to anyone, never changed.
        unsafe { (*self.raw()).cmd_fd }
    }

    /// The device name ("rxe0"), for log lines.
    pub(crate) fn name(&self) -> &str {
        // SAFETY: libibverbs keeps the device alive while a context is open,
        // and its name is a NUL-terminated array.
        unsafe {
            let dev = (*self.raw()).device;
            if dev.is_null() {
                return "?";
            }
            CStr::from_ptr((*dev).name.as_ptr()).to_str().unwrap_or("?")
        }
    }

    pub(crate) fn features(&self) -> Features {
        self.features
    }

    fn sysfs(&self) -> *const verbs_sysfs_dev {
        // SAFETY: every device libibverbs opens through us is a verbs_device.
        unsafe { (*(*self.raw()).device.cast::<verbs_device>()).sysfs }
    }

    /// A context for host tests: no device, commands go to `cmd_fd`.
    #[cfg(test)]
    pub(crate) fn for_tests(cmd_fd: RawFd) -> Box<Context> {
        Context::for_tests_with(cmd_fd, Features::default())
    }

    /// As [`Context::for_tests`], on a kernel with `features`.
    #[cfg(test)]
    pub(crate) fn for_tests_with(cmd_fd: RawFd, features: Features) -> Box<Context> {
        // SAFETY: all-zero is a valid Context (null pointers, zero fds, no features).
        let mut ctx: Box<Context> = unsafe { crate::object::try_box_zeroed() }.unwrap();
        ctx.features = features;
        // SAFETY: not shared yet.
        unsafe { (*ctx.raw()).cmd_fd = cmd_fd };
        ctx
    }
}

/// Where this release's `verbs_context` starts inside our Context.
fn release_vctx_offset() -> usize {
    let front = crate::abi::imports::flavor().context_front;
    assert!(front <= MAX_CONTEXT_FRONT, "a verbs_context front larger than reserved");
    offset_of!(Context, vctx) - front
}

/// Opens a context on `cmd_fd` (which we own from here on, even on failure)
/// and installs `ops`, a `verbs_context_ops` of this release's layout.
/// Returns the start of this release's `verbs_context`.
///
/// # Safety
/// `device` must be a device libibverbs matched to us; `ops` is 'static and
/// laid out for the registered release.
pub(crate) unsafe fn open(device: *mut ibv_device, cmd_fd: c_int, ops: *const core::ffi::c_void) -> Result<*mut verbs_context> {
    let vctx_offset = release_vctx_offset();
    // SAFETY: libibverbs callocs a Context (all-zero is valid for it: a
    // zeroed verbs_context, and an AtomicBool that is false) and
    // initializes its verbs_context; it closes cmd_fd on failure.
    let raw = unsafe {
        _verbs_init_and_alloc_context(
            device,
            cmd_fd,
            core::mem::size_of::<Context>(),
            vctx_offset as *mut core::ffi::c_void,
            rdma_driver_id::RDMA_DRIVER_RXE,
        )
    }
    .cast::<Context>();
    if raw.is_null() {
        return Err(Errno::last());
    }
    match crate::uverbs_ioctl::get_context(cmd_fd) {
        Ok(info) => {
            // SAFETY: raw is a fresh Context nobody else holds yet; its
            // ibv_context sits inside the UnsafeCell'd verbs_context.
            unsafe {
                let ibctx = core::ptr::addr_of_mut!((*(*raw).vctx.get()).context);
                (*ibctx).async_fd = relayed_async_fd(&*raw, info.async_fd);
                (*ibctx).num_comp_vectors = info.num_comp_vectors as c_int;
            }
            if let Some(bits) = info.core_support {
                // SAFETY: every device libibverbs matches to us is a verbs_device;
                // libibverbs itself stores the field this way on GET_CONTEXT.
                unsafe { (*device.cast::<verbs_device>()).core_support = bits };
            }
        }
        Err(e) => {
            // SAFETY: raw is initialized; nothing else holds it yet.
            log::error!("{}: GET_CONTEXT refused by the kernel: {e}", unsafe { &*raw }.name());
            // SAFETY: nothing else holds it.
            unsafe { release(raw) };
            return Err(e);
        }
    }
    // Needs the kernel context GET_CONTEXT made; written before anyone reads it.
    let features = Features::query(cmd_fd);
    // SAFETY: raw is ours alone until we return it.
    unsafe { core::ptr::addr_of_mut!((*raw).features).write(features) };
    // SAFETY: raw is a fresh, initialized Context nobody else holds yet.
    let ctx = unsafe { &*raw };
    // SAFETY: libibverbs' verbs_context starts vctx_offset bytes into our
    // allocation and was initialized above; ops is 'static, per the contract.
    let release_vctx = unsafe { raw.cast::<u8>().add(vctx_offset) };
    // SAFETY: as above.
    unsafe { verbs_set_ops(release_vctx.cast(), ops) };
    let f = crate::abi::imports::flavor();
    log::info!(
        "{}: context opened by rxe_rs {} (cmd fd {cmd_fd}; libibverbs private ABI {}, rdma-core {}) kernel rxe has atomic_write={} flush={} odp={}",
        ctx.name(),
        env!("CARGO_PKG_VERSION"),
        f.abi,
        f.release.map_or(-1, |r| r as i64),
        features.atomic_write() as u8,
        features.flush() as u8,
        features.odp() as u8,
    );
    Ok(release_vctx.cast())
}

/// The fd the application reads events from: the kernel's, or while an
/// event fault is armed, the relay's (crate::fault_events).
fn relayed_async_fd(ctx: &Context, kernel_fd: c_int) -> c_int {
    if !crate::fault::events_armed() {
        return kernel_fd;
    }
    match crate::fault_events::attach(kernel_fd) {
        Ok((relay, app_fd)) => {
            ctx.events.store(Box::into_raw(relay), core::sync::atomic::Ordering::Release);
            app_fd
        }
        Err(e) => {
            log::error!("{}: asynchronous events cannot be injected into this context: its relay failed ({e})", ctx.name());
            kernel_fd
        }
    }
}

impl Context {
    /// Runs `f` (a create command) with the kernel's event file as
    /// `async_fd`, where the context has a relay: libibverbs names that fd
    /// in the command, and the kernel accepts only its own file
    /// (crate::fault_events).
    pub(crate) fn with_kernel_async_fd<R>(&self, f: impl FnOnce() -> R) -> R {
        let Some(relay) = self.events() else { return f() };
        // SAFETY: the field is inside our live context.
        let field = unsafe { core::ptr::addr_of_mut!((*self.raw()).async_fd) };
        let set = |fd| {
            let mut n = relay.creating.lock().unwrap_or_else(|e| e.into_inner());
            *n = if fd == relay.kernel_fd { *n + 1 } else { *n - 1 };
            // The first create in swaps the file in, the last out puts the
            // application's end back. Volatile: libibverbs reads the field
            // in other threads without a lock.
            if (fd == relay.kernel_fd && *n == 1) || (fd == relay.app_fd && *n == 0) {
                // SAFETY: an int inside our live context.
                unsafe { field.write_volatile(fd) };
            }
        };
        set(relay.kernel_fd);
        let r = f();
        set(relay.app_fd);
        r
    }

    /// The relay injected events go to, if this context has one.
    pub(crate) fn events(&self) -> Option<&crate::fault_events::Relay> {
        // SAFETY: set once before the context was handed out; freed only
        // when it closes, after which nobody uses the context.
        unsafe { self.events.load(core::sync::atomic::Ordering::Acquire).as_ref() }
    }
}

/// Closes a context made by [`open`].
///
/// # Safety
/// `ctx` came from [`open`] and nothing uses it afterwards.
pub(crate) unsafe fn close(ctx: *mut ibv_context) {
    // SAFETY: per the contract.
    let context = unsafe { Context::from_raw(ctx) };
    log::info!("{}: context closed", context.name());
    let raw = (context as *const Context).cast_mut();
    // SAFETY: forwarded contract.
    unsafe { release(raw) };
}

/// Uninitializes libibverbs' part (closing the fds) and frees the calloc'd context.
///
/// # Safety
/// `ctx` came from `_verbs_init_and_alloc_context` and is not used afterwards.
unsafe fn release(ctx: *mut Context) {
    // SAFETY: per the contract; the relay, if any, was made by open() with
    // Box::into_raw and nothing else frees it.
    let relay = unsafe { (*ctx).events.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel) };
    if !relay.is_null() {
        // SAFETY: as above. Stops its thread and closes the kernel's file.
        drop(unsafe { Box::from_raw(relay) });
    }
    // SAFETY: per the contract.
    unsafe {
        verbs_uninit_context(ctx.cast::<u8>().add(release_vctx_offset()).cast());
        libc::free(ctx.cast());
    }
}

/// `ibv_query_device_ex` (and, with `attr_size` of the legacy struct,
/// `ibv_query_device`). Writes only within the caller's `attr_size` bytes.
///
/// # Safety
/// `attr` must point to `attr_size` writable bytes.
pub(crate) unsafe fn query_device(
    ctx: &Context,
    input: Option<&ibv_query_device_ex_input>,
    attr: *mut ibv_device_attr_ex,
    attr_size: usize,
) -> Result<()> {
    if input.is_some_and(|i| i.comp_mask != 0) {
        return Err(Errno(libc::EINVAL));
    }
    let legacy_size = core::mem::size_of::<ibv_device_attr>();
    if attr_size < legacy_size {
        return Err(Errno(libc::EINVAL));
    }
    // Prefer the extended command; fall back to the legacy one where the kernel lacks it.
    let (resp, resp_len) = if attr_size > legacy_size {
        match cmd::write_ex(ctx.cmd_fd(), ib_uverbs_ex_query_device::default()) {
            Ok(r) => (r, r.response_length as usize),
            Err(Errno(libc::EOPNOTSUPP | libc::ENOSYS)) => legacy_query_device(ctx)?,
            Err(e) => return Err(e),
        }
    } else {
        legacy_query_device(ctx)?
    };

    let mut out: ibv_device_attr_ex = Default::default();
    fill_device_attr(&mut out, &resp, resp_len);
    let ports = ctx.sysfs();
    // SAFETY: libibverbs keeps the sysfs description alive with the device.
    let sysfs_ports = if ports.is_null() { 0 } else { unsafe { (*ports).num_ports } };
    out.phys_port_cnt_ex = if sysfs_ports != 0 { sysfs_ports } else { out.orig_attr.phys_port_cnt as u32 };

    // Copy whole fields only, up to what the caller's struct holds.
    let copy_len = device_attr_copy_len(attr_size);
    // SAFETY: copy_len <= attr_size, which the caller vouches for; zero the rest.
    unsafe {
        core::ptr::copy_nonoverlapping((&out as *const ibv_device_attr_ex).cast::<u8>(), attr.cast::<u8>(), copy_len);
        core::ptr::write_bytes(attr.cast::<u8>().add(copy_len), 0, attr_size.saturating_sub(copy_len));
    }
    Ok(())
}

fn legacy_query_device(ctx: &Context) -> Result<(ib_uverbs_ex_query_device_resp, usize)> {
    let base = cmd::write(ctx.cmd_fd(), ib_uverbs_query_device::default())?;
    let resp = ib_uverbs_ex_query_device_resp { base, ..Default::default() };
    Ok((resp, core::mem::size_of::<ib_uverbs_query_device_resp>()))
}

/// How many bytes of `ibv_device_attr_ex` a caller with `attr_size` bytes
/// gets: the legacy part always, then each extended field that fits whole.
fn device_attr_copy_len(attr_size: usize) -> usize {
    let ends = [
        offset_of_end!(ibv_device_attr_ex, orig_attr),
        offset_of_end!(ibv_device_attr_ex, comp_mask),
        offset_of_end!(ibv_device_attr_ex, odp_caps),
        offset_of_end!(ibv_device_attr_ex, completion_timestamp_mask),
        offset_of_end!(ibv_device_attr_ex, hca_core_clock),
        offset_of_end!(ibv_device_attr_ex, device_cap_flags_ex),
        offset_of_end!(ibv_device_attr_ex, tso_caps),
        offset_of_end!(ibv_device_attr_ex, rss_caps),
        offset_of_end!(ibv_device_attr_ex, max_wq_type_rq),
        offset_of_end!(ibv_device_attr_ex, packet_pacing_caps),
        offset_of_end!(ibv_device_attr_ex, raw_packet_caps),
        offset_of_end!(ibv_device_attr_ex, tm_caps),
        offset_of_end!(ibv_device_attr_ex, cq_mod_caps),
        offset_of_end!(ibv_device_attr_ex, max_dm_size),
        offset_of_end!(ibv_device_attr_ex, pci_atomic_caps),
        offset_of_end!(ibv_device_attr_ex, xrc_odp_caps),
        offset_of_end!(ibv_device_attr_ex, phys_port_cnt_ex),
    ];
    ends.iter().copied().filter(|&end| end <= attr_size).max().unwrap_or(0)
}

/// Fills a full `ibv_device_attr_ex` from the kernel's answer, taking each
/// extended field only when the kernel's response was long enough to carry it.
fn fill_device_attr(out: &mut ibv_device_attr_ex, resp: &ib_uverbs_ex_query_device_resp, resp_len: usize) {
    let b = &resp.base;
    let a = &mut out.orig_attr;
    a.fw_ver = fw_ver_string(b.fw_ver);
    a.node_guid = b.node_guid;
    a.sys_image_guid = b.sys_image_guid;
    a.max_mr_size = b.max_mr_size;
    a.page_size_cap = b.page_size_cap;
    a.vendor_id = b.vendor_id;
    a.vendor_part_id = b.vendor_part_id;
    a.hw_ver = b.hw_ver;
    a.max_qp = b.max_qp as i32;
    a.max_qp_wr = b.max_qp_wr as i32;
    a.device_cap_flags = b.device_cap_flags;
    a.max_sge = b.max_sge as i32;
    a.max_sge_rd = b.max_sge_rd as i32;
    a.max_cq = b.max_cq as i32;
    a.max_cqe = b.max_cqe as i32;
    a.max_mr = b.max_mr as i32;
    a.max_pd = b.max_pd as i32;
    a.max_qp_rd_atom = b.max_qp_rd_atom as i32;
    a.max_ee_rd_atom = b.max_ee_rd_atom as i32;
    a.max_res_rd_atom = b.max_res_rd_atom as i32;
    a.max_qp_init_rd_atom = b.max_qp_init_rd_atom as i32;
    a.max_ee_init_rd_atom = b.max_ee_init_rd_atom as i32;
    a.atomic_cap = b.atomic_cap as _;
    a.max_ee = b.max_ee as i32;
    a.max_rdd = b.max_rdd as i32;
    a.max_mw = b.max_mw as i32;
    a.max_raw_ipv6_qp = b.max_raw_ipv6_qp as i32;
    a.max_raw_ethy_qp = b.max_raw_ethy_qp as i32;
    a.max_mcast_grp = b.max_mcast_grp as i32;
    a.max_mcast_qp_attach = b.max_mcast_qp_attach as i32;
    a.max_total_mcast_qp_attach = b.max_total_mcast_qp_attach as i32;
    a.max_ah = b.max_ah as i32;
    a.max_fmr = b.max_fmr as i32;
    a.max_map_per_fmr = b.max_map_per_fmr as i32;
    a.max_srq = b.max_srq as i32;
    a.max_srq_wr = b.max_srq_wr as i32;
    a.max_srq_sge = b.max_srq_sge as i32;
    a.max_pkeys = b.max_pkeys;
    a.local_ca_ack_delay = b.local_ca_ack_delay;
    a.phys_port_cnt = b.phys_port_cnt;

    // No extended comp_mask bit is defined: report none.
    out.comp_mask = 0;
    macro_rules! carried {
        ($f:ident) => {
            resp_len >= offset_of_end!(ib_uverbs_ex_query_device_resp, $f)
        };
    }
    if carried!(odp_caps) {
        out.odp_caps.general_caps = resp.odp_caps.general_caps;
        out.odp_caps.per_transport_caps.rc_odp_caps = resp.odp_caps.per_transport_caps.rc_odp_caps;
        out.odp_caps.per_transport_caps.uc_odp_caps = resp.odp_caps.per_transport_caps.uc_odp_caps;
        out.odp_caps.per_transport_caps.ud_odp_caps = resp.odp_caps.per_transport_caps.ud_odp_caps;
    }
    if carried!(timestamp_mask) {
        out.completion_timestamp_mask = resp.timestamp_mask;
    }
    if carried!(hca_core_clock) {
        out.hca_core_clock = resp.hca_core_clock;
    }
    if carried!(device_cap_flags_ex) {
        out.device_cap_flags_ex = resp.device_cap_flags_ex;
    }
    if carried!(rss_caps) {
        out.rss_caps.supported_qpts = resp.rss_caps.supported_qpts;
        out.rss_caps.max_rwq_indirection_tables = resp.rss_caps.max_rwq_indirection_tables;
        out.rss_caps.max_rwq_indirection_table_size = resp.rss_caps.max_rwq_indirection_table_size;
    }
    if carried!(max_wq_type_rq) {
        out.max_wq_type_rq = resp.max_wq_type_rq;
    }
    if carried!(raw_packet_caps) {
        out.raw_packet_caps = resp.raw_packet_caps;
    }
    if carried!(tm_caps) {
        out.tm_caps.max_rndv_hdr_size = resp.tm_caps.max_rndv_hdr_size;
        out.tm_caps.max_num_tags = resp.tm_caps.max_num_tags;
        out.tm_caps.flags = resp.tm_caps.flags;
        out.tm_caps.max_ops = resp.tm_caps.max_ops;
        out.tm_caps.max_sge = resp.tm_caps.max_sge;
    }
    if carried!(cq_moderation_caps) {
        out.cq_mod_caps.max_cq_count = resp.cq_moderation_caps.max_cq_moderation_count;
        out.cq_mod_caps.max_cq_period = resp.cq_moderation_caps.max_cq_moderation_period;
    }
    if carried!(max_dm_size) {
        out.max_dm_size = resp.max_dm_size;
    }
    if carried!(xrc_odp_caps) {
        out.xrc_odp_caps = resp.xrc_odp_caps;
    }
}

/// The kernel packs the firmware version as major<<32 | minor<<16 | sub_minor;
/// librxe prints it as "major.minor.sub_minor".
fn fw_ver_string(raw: u64) -> [core::ffi::c_char; 64] {
    use core::fmt::Write;
    /// Writes into a fixed buffer, keeping the last byte for the NUL.
    struct Fixed([core::ffi::c_char; 64], usize);
    impl Write for Fixed {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                if self.1 + 1 < self.0.len() {
                    self.0[self.1] = b as core::ffi::c_char;
                    self.1 += 1;
                }
            }
            Ok(())
        }
    }
    let mut out = Fixed([0; 64], 0);
    let _ = write!(out, "{}.{}.{}", (raw >> 32) & 0xffff, (raw >> 16) & 0xffff, raw & 0xffff);
    out.0
}

/// `ibv_query_port`. libibverbs has already zeroed `attr`.
pub(crate) fn query_port(ctx: &Context, port_num: u8, attr: &mut ibv_port_attr) -> Result<()> {
    let ex = crate::uverbs_ioctl::query_port(ctx.cmd_fd(), port_num)?;
    let r = ex.legacy_resp;
    attr.state = r.state as _;
    attr.max_mtu = r.max_mtu as _;
    attr.active_mtu = r.active_mtu as _;
    attr.gid_tbl_len = r.gid_tbl_len as i32;
    attr.port_cap_flags = r.port_cap_flags;
    attr.max_msg_sz = r.max_msg_sz;
    attr.bad_pkey_cntr = r.bad_pkey_cntr;
    attr.qkey_viol_cntr = r.qkey_viol_cntr;
    attr.pkey_tbl_len = r.pkey_tbl_len;
    attr.lid = r.lid;
    attr.sm_lid = r.sm_lid;
    attr.lmc = r.lmc;
    attr.max_vl_num = r.max_vl_num;
    attr.sm_sl = r.sm_sl;
    attr.subnet_timeout = r.subnet_timeout;
    attr.init_type_reply = r.init_type_reply;
    attr.active_width = r.active_width;
    attr.active_speed = r.active_speed;
    attr.phys_state = r.phys_state;
    attr.link_layer = r.link_layer;
    attr.flags = r.flags;
    attr.port_cap_flags2 = ex.port_cap_flags2;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn fw_version_is_dotted() {
        let s = fw_ver_string((1 << 32) | (2 << 16) | 3);
        // SAFETY: fw_ver_string always NUL-terminates.
        let text = unsafe { CStr::from_ptr(s.as_ptr()) };
        assert_eq!(text.to_str().unwrap(), "1.2.3");
        let zero = fw_ver_string(0);
        // SAFETY: as above.
        assert_eq!(unsafe { CStr::from_ptr(zero.as_ptr()) }.to_str().unwrap(), "0.0.0");
    }

    #[test]
    fn legacy_callers_get_only_the_legacy_struct() {
        assert_eq!(device_attr_copy_len(size_of::<ibv_device_attr>()), size_of::<ibv_device_attr>());
        assert_eq!(device_attr_copy_len(size_of::<ibv_device_attr_ex>()), offset_of_end!(ibv_device_attr_ex, phys_port_cnt_ex));
        // A caller whose struct ends inside odp_caps gets nothing of it.
        let mid_odp = offset_of_end!(ibv_device_attr_ex, odp_caps) - 1;
        assert_eq!(device_attr_copy_len(mid_odp), offset_of_end!(ibv_device_attr_ex, comp_mask));
    }

    #[test]
    fn features_come_from_the_kernels_answer() {
        let mut resp = ib_uverbs_ex_query_device_resp {
            device_cap_flags_ex: newer_kernels::DEVICE_ATOMIC_WRITE | newer_kernels::DEVICE_FLUSH_GLOBAL,
            ..Default::default()
        };
        resp.odp_caps.general_caps = ibv_odp_general_caps::IBV_ODP_SUPPORT as u64;
        let full = Features::from_resp(&resp, size_of::<ib_uverbs_ex_query_device_resp>());
        assert!(full.atomic_write() && full.flush() && full.odp() && !full.odp_implicit());
        // A kernel whose answer stops before device_cap_flags_ex has none of them.
        let short = Features::from_resp(&resp, offset_of_end!(ib_uverbs_ex_query_device_resp, odp_caps));
        assert!(!short.atomic_write() && !short.flush() && short.odp());
        assert_eq!(Features::default(), Features::from_resp(&Default::default(), 0));
    }

    #[test]
    fn short_kernel_answers_leave_extended_fields_zero() {
        let mut resp = ib_uverbs_ex_query_device_resp::default();
        resp.base.max_qp = 7;
        resp.device_cap_flags_ex = 0xabc;
        resp.max_dm_size = 99;
        let mut out = ibv_device_attr_ex::default();
        fill_device_attr(&mut out, &resp, offset_of_end!(ib_uverbs_ex_query_device_resp, device_cap_flags_ex));
        assert_eq!(out.orig_attr.max_qp, 7);
        assert_eq!(out.device_cap_flags_ex, 0xabc);
        assert_eq!(out.max_dm_size, 0);
    }
}
