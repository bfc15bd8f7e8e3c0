//! The uverbs ioctl interface (`RDMA_VERBS_IOCTL` on the context's command fd),
//! marshaled here.
//!
//! Why: the kernel's write(2) entry (ib_uverbs_write) refuses, with EACCES, a
//! writer whose credentials are not the very ones that opened the file: a
//! program that opens the device and then drops privileges, or a forked child.
//! The ioctl entry (ib_uverbs_ioctl) has no such check, and libibverbs uses it
//! whenever the kernel has it. So do we:
//! - [`invoke_write`]: any classic write command, legacy or extended, through
//!   the device object's INVOKE_WRITE method;
//! - [`get_context`]: the GET_CONTEXT method (which also reports the kernel's
//!   `core_support` bits), then an async event fd from ASYNC_EVENT_ALLOC;
//! - [`query_port`]: the QUERY_PORT method, whose answer carries `port_cap_flags2`;
//! - [`doorbell`]: the send doorbell stays on write(2), the cheaper path in the
//!   kernel, until write(2) is refused for credentials.
//!
//! One ioctl is a 24-byte header followed by an array of 16-byte attributes,
//! each naming an attribute id of the method, a length and a `data` word:
//! - input buffers of up to 8 bytes travel inline in `data`; longer ones as
//!   a pointer in `data` (the kernel decides by the length alone);
//! - constants are inputs of exactly 8 bytes, inline;
//! - output buffers are always a pointer; the kernel sets
//!   `UVERBS_ATTR_F_VALID_OUTPUT` in the attribute's flags when it wrote one;
//! - a new fd is an attribute of length 0 whose `data` the kernel overwrites
//!   with the fd number.
//!
//! What the kernel answers when it cannot run a request (uverbs_ioctl.c):
//! - ENOTTY: no ioctl interface at all (the fd has no ioctl handler);
//! - EPROTONOSUPPORT: this object/method is unknown, or an attribute flagged
//!   mandatory is; the kernel reserves this errno for that case (it turns a
//!   method's own EPROTONOSUPPORT into EINVAL);
//! - EINVAL: a malformed header (length, driver id) or attribute;
//! - through INVOKE_WRITE: EOPNOTSUPP for a write command the kernel or the
//!   device lacks (write(2) answers the same), ENOSPC when the core request or
//!   response is shorter than the command's structs.
//!
//! Like libibverbs (cmd_fallback.c), only ENOTTY and EPROTONOSUPPORT mean
//! "use write(2) instead" ([`falls_back`]). ENOTTY marks every method missing,
//! EPROTONOSUPPORT the one method; both are remembered for the process (every
//! rxe device sits on the same kernel), so a kernel without them costs one
//! failed ioctl per method, once.

use crate::abi::sys::*;
use crate::cmd::{self, Errno, Result};
use core::marker::PhantomData;
use core::mem::{size_of, MaybeUninit};
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::os::fd::RawFd;

use ib_uverbs_write_cmds as w;

/// `_IOWR(RDMA_IOCTL_MAGIC, 1, struct ib_uverbs_ioctl_hdr)`, for this architecture.
pub(crate) const RDMA_VERBS_IOCTL: libc::Ioctl = libc::_IOWR::<ib_uverbs_ioctl_hdr>(RDMA_IOCTL_MAGIC, 1);

/// The kernel refuses (EINVAL) a header whose driver id is not the device's.
const DRIVER_ID: u32 = rdma_driver_id::RDMA_DRIVER_RXE;

/// The most attributes one of our requests carries (INVOKE_WRITE: the command,
/// core in, core out, driver in, driver out).
const MAX_ATTRS: usize = 5;

/// Data that may be handed to the kernel and back as bytes.
///
/// # Safety
/// The type has no padding bytes and every bit pattern is a valid value (the
/// kernel's uapi structs are built that way: integers and explicit `reserved`
/// fields only).
pub(crate) unsafe trait Plain: Sized {}

// SAFETY: integers and the empty type have no padding and no invalid values.
unsafe impl Plain for () {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: uapi struct: the legacy port answer (integers only), a u16 and 6 reserved bytes.
unsafe impl Plain for ib_uverbs_query_port_resp_ex {}
// SAFETY: uapi struct: two u32s.
unsafe impl Plain for ib_uverbs_req_notify_cq {}

/// The bytes of `v`.
pub(crate) fn as_bytes<T: Plain>(v: &T) -> &[u8] {
    // SAFETY: T has no padding (Plain), so all size_of::<T>() bytes are initialized.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// The bytes of `v`, writable.
pub(crate) fn as_bytes_mut<T: Plain>(v: &mut T) -> &mut [u8] {
    // SAFETY: as for as_bytes; any bytes written leave a valid T (Plain).
    unsafe { core::slice::from_raw_parts_mut((v as *mut T).cast::<u8>(), size_of::<T>()) }
}

/// The ioctl methods we call, each remembered separately when the kernel lacks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    InvokeWrite,
    GetContext,
    QueryPort,
    AsyncEventAlloc,
}

impl Method {
    /// (object id, method id) in the kernel's uapi.
    fn ids(self) -> (u32, u32) {
        use uverbs_default_objects as obj;
        use uverbs_methods_device as dev;
        match self {
            Method::InvokeWrite => (obj::UVERBS_OBJECT_DEVICE, dev::UVERBS_METHOD_INVOKE_WRITE),
            Method::GetContext => (obj::UVERBS_OBJECT_DEVICE, dev::UVERBS_METHOD_GET_CONTEXT),
            Method::QueryPort => (obj::UVERBS_OBJECT_DEVICE, dev::UVERBS_METHOD_QUERY_PORT),
            Method::AsyncEventAlloc => (
                obj::UVERBS_OBJECT_ASYNC_EVENT,
                uverbs_method_async_event::UVERBS_METHOD_ASYNC_EVENT_ALLOC,
            ),
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Methods this process found missing from the kernel.
static MISSING: AtomicU8 = AtomicU8::new(0);

/// Whether `e`, from one of this module's ioctls, means "the kernel has no
/// such ioctl: use write(2)" rather than a refusal of the request itself.
pub(crate) fn falls_back(e: Errno) -> bool {
    matches!(e.0, libc::ENOTTY | libc::EPROTONOSUPPORT)
}

/// Records what a failed ioctl says about the kernel.
fn note_failure(method: Method, e: Errno) {
    match e.0 {
        libc::ENOTTY => {
            MISSING.store(u8::MAX, Ordering::Relaxed);
        }
        libc::EPROTONOSUPPORT => {
            MISSING.fetch_or(method.bit(), Ordering::Relaxed);
        }
        _ => {}
    }
}

fn known_missing(method: Method) -> bool {
    MISSING.load(Ordering::Relaxed) & method.bit() != 0
}

/// The header and its attributes, contiguous as the kernel reads them.
#[repr(C)]
struct Frame {
    hdr: ib_uverbs_ioctl_hdr,
    attrs: [ib_uverbs_attr; MAX_ATTRS],
}

/// One ioctl request being built. Borrows, for `'a`, every buffer it points the
/// kernel to, so none can move or be freed before [`Command::execute`].
pub(crate) struct Command<'a> {
    frame: Frame,
    used: usize,
    method: Method,
    /// An attribute could not be marshaled (over 65535 bytes, or too many).
    unmarshalable: bool,
    _buffers: PhantomData<&'a mut [u8]>,
}

impl<'a> Command<'a> {
    pub(crate) fn new(method: Method) -> Command<'a> {
        let (object, method_id) = method.ids();
        let mut frame = Frame { hdr: Default::default(), attrs: [Default::default(); MAX_ATTRS] };
        frame.hdr.object_id = object as u16;
        frame.hdr.method_id = method_id as u16;
        frame.hdr.driver_id = DRIVER_ID;
        Command { frame, used: 0, method, unmarshalable: false, _buffers: PhantomData }
    }

    /// Appends an attribute; every one we send is mandatory, as libibverbs
    /// sends them, so a kernel that does not know one says EPROTONOSUPPORT
    /// instead of ignoring it.
    fn push(&mut self, id: u32, len: usize, data: u64) -> usize {
        let idx = self.used;
        if idx == MAX_ATTRS || len > u16::MAX as usize {
            self.unmarshalable = true;
            return idx.min(MAX_ATTRS - 1);
        }
        let attr = &mut self.frame.attrs[idx];
        *attr = Default::default();
        attr.attr_id = id as u16;
        attr.len = len as u16;
        attr.flags = _bindgen_ty_19::UVERBS_ATTR_F_MANDATORY as u16;
        attr.__bindgen_anon_1.data = data;
        self.used += 1;
        idx
    }

    /// A constant (the kernel's CONST_IN: always 8 bytes, inline).
    pub(crate) fn const_in(&mut self, id: u32, value: u64) -> &mut Self {
        self.push(id, size_of::<u64>(), value);
        self
    }

    /// An input buffer: inline when it fits the 8-byte data word.
    pub(crate) fn bytes_in(&mut self, id: u32, data: &'a [u8]) -> &mut Self {
        if data.len() <= size_of::<u64>() {
            let mut word = [0u8; 8];
            word[..data.len()].copy_from_slice(data);
            self.push(id, data.len(), u64::from_ne_bytes(word));
        } else {
            self.push(id, data.len(), data.as_ptr() as u64);
        }
        self
    }

    /// An output buffer the kernel may write up to its length.
    pub(crate) fn bytes_out(&mut self, id: u32, data: &'a mut [u8]) -> &mut Self {
        self.push(id, data.len(), data.as_mut_ptr() as u64);
        self
    }

    /// A new fd the kernel creates; read it with [`Command::fd_at`] after
    /// [`Command::execute`]. Returns the attribute's index.
    pub(crate) fn fd_out(&mut self, id: u32) -> usize {
        self.push(id, 0, 0)
    }

    /// The fd the kernel wrote into attribute `idx`.
    pub(crate) fn fd_at(&self, idx: usize) -> RawFd {
        // SAFETY: both union members are 8-byte integers; any bits are valid.
        unsafe { self.frame.attrs[idx].__bindgen_anon_1.data_s64 as RawFd }
    }

    #[cfg(test)]
    /// Whether the kernel marked attribute `idx` as written.
    pub(crate) fn output_valid(&self, idx: usize) -> bool {
        self.frame.attrs[idx].flags as u32 & _bindgen_ty_19::UVERBS_ATTR_F_VALID_OUTPUT != 0
    }

    /// Fills in the header's counts; the kernel requires `length` to be
    /// exactly the header plus `num_attrs` attributes.
    fn seal(&mut self) {
        self.frame.hdr.num_attrs = self.used as u16;
        self.frame.hdr.length = (size_of::<ib_uverbs_ioctl_hdr>() + self.used * size_of::<ib_uverbs_attr>()) as u16;
        self.frame.hdr.reserved1 = 0;
        self.frame.hdr.reserved2 = 0;
    }

    #[cfg(test)]
    pub(crate) fn header(&mut self) -> &ib_uverbs_ioctl_hdr {
        self.seal();
        &self.frame.hdr
    }

    #[cfg(test)]
    pub(crate) fn attrs(&self) -> &[ib_uverbs_attr] {
        &self.frame.attrs[..self.used]
    }

    /// Sends the request on `fd`. A method the kernel was already found to lack
    /// fails at once with EPROTONOSUPPORT.
    pub(crate) fn execute(&mut self, fd: RawFd) -> Result<()> {
        if self.unmarshalable {
            return Err(Errno(libc::EINVAL));
        }
        if known_missing(self.method) {
            return Err(Errno(libc::EPROTONOSUPPORT));
        }
        self.seal();
        // SAFETY: frame is the header immediately followed by `used` attributes
        // (repr(C), 8-byte aligned), as hdr.length says; every pointer in them
        // addresses a buffer borrowed for 'a with the length its attribute
        // states, output buffers mutably, so the kernel reads and writes only
        // memory we lend it. The kernel also writes flags and fd numbers back
        // into the attributes, which we own mutably here.
        let rc = unsafe { libc::ioctl(fd, RDMA_VERBS_IOCTL, &mut self.frame as *mut Frame) };
        if rc != 0 {
            let e = Errno::last();
            note_failure(self.method, e);
            return Err(e);
        }
        Ok(())
    }
}

/// Runs write command `command` through INVOKE_WRITE. `core_in` is the
/// command's request struct without any header (for a legacy command it
/// starts with the `response` word, which this path ignores: the answer goes
/// to `core_out`); `drv_in`/`drv_out` are the provider-specific parts. Empty
/// buffers are left out. For an extended command pass
/// `IB_USER_VERBS_CMD_FLAG_EXTENDED | id` (see [`invoke_write_ex`]).
///
/// The kernel refuses with ENOSPC a `core_in` or `core_out` shorter than the
/// command's structs; it zero-fills what the command leaves of `core_out`.
pub(crate) fn invoke_write(
    fd: RawFd,
    command: u32,
    core_in: &[u8],
    core_out: &mut [u8],
    drv_in: &[u8],
    drv_out: &mut [u8],
) -> Result<()> {
    invoke_write_command(command, core_in, core_out, drv_in, drv_out).execute(fd)
}

/// [`invoke_write`] for an extended command: `core_in` is the request after
/// both the command header and the extended header.
pub(crate) fn invoke_write_ex(fd: RawFd, id: u32, core_in: &[u8], core_out: &mut [u8]) -> Result<()> {
    invoke_write(fd, IB_USER_VERBS_CMD_FLAG_EXTENDED | id, core_in, core_out, &[], &mut [])
}

fn invoke_write_command<'a>(
    command: u32,
    core_in: &'a [u8],
    core_out: &'a mut [u8],
    drv_in: &'a [u8],
    drv_out: &'a mut [u8],
) -> Command<'a> {
    use uverbs_attrs_invoke_write_cmd_attr_ids as a;
    let mut c = Command::new(Method::InvokeWrite);
    c.const_in(a::UVERBS_ATTR_WRITE_CMD, command as u64);
    if !core_in.is_empty() {
        c.bytes_in(a::UVERBS_ATTR_CORE_IN, core_in);
    }
    if !core_out.is_empty() {
        c.bytes_out(a::UVERBS_ATTR_CORE_OUT, core_out);
    }
    if !drv_in.is_empty() {
        c.bytes_in(_bindgen_ty_18::UVERBS_ATTR_UHW_IN, drv_in);
    }
    if !drv_out.is_empty() {
        c.bytes_out(_bindgen_ty_18::UVERBS_ATTR_UHW_OUT, drv_out);
    }
    c
}

/// What opening a context tells us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContextInfo {
    pub num_comp_vectors: u32,
    /// `IB_UVERBS_CORE_SUPPORT_*` bits; only the ioctl method reports them.
    pub core_support: Option<u64>,
    /// The context's async event fd.
    pub async_fd: RawFd,
}

/// Creates the kernel's context for `fd`: GET_CONTEXT by ioctl, then an async
/// event fd by ASYNC_EVENT_ALLOC (the ioctl method, unlike the write command,
/// makes none). Falls back to the GET_CONTEXT write command, which returns
/// the async fd itself, when the kernel lacks the method.
///
/// (libibverbs 34..56 would also allocate the async fd itself after
/// `alloc_context` when the provider leaves `async_fd` at -1; doing it here
/// hands libibverbs a finished context either way.)
pub(crate) fn get_context(fd: RawFd) -> Result<ContextInfo> {
    match get_context_ioctl(fd) {
        Ok((num_comp_vectors, core_support)) => {
            let async_fd = alloc_async_fd(fd)?;
            Ok(ContextInfo { num_comp_vectors, core_support: Some(core_support), async_fd })
        }
        Err(e) if falls_back(e) => {
            let resp = cmd::write(fd, ib_uverbs_get_context::default())?;
            Ok(ContextInfo {
                num_comp_vectors: resp.num_comp_vectors,
                core_support: None,
                async_fd: resp.async_fd as RawFd,
            })
        }
        Err(e) => Err(e),
    }
}

/// GET_CONTEXT by ioctl: (num_comp_vectors, core_support).
pub(crate) fn get_context_ioctl(fd: RawFd) -> Result<(u32, u64)> {
    use uverbs_attrs_get_context_attr_ids as a;
    let mut num_comp_vectors = 0u32;
    let mut core_support = 0u64;
    Command::new(Method::GetContext)
        .bytes_out(a::UVERBS_ATTR_GET_CONTEXT_NUM_COMP_VECTORS, as_bytes_mut(&mut num_comp_vectors))
        .bytes_out(a::UVERBS_ATTR_GET_CONTEXT_CORE_SUPPORT, as_bytes_mut(&mut core_support))
        .execute(fd)?;
    Ok((num_comp_vectors, core_support))
}

/// A new async event fd for the context on `fd` (ASYNC_EVENT_ALLOC). The
/// kernel opens it close-on-exec.
pub(crate) fn alloc_async_fd(fd: RawFd) -> Result<RawFd> {
    let mut c = Command::new(Method::AsyncEventAlloc);
    let idx = c.fd_out(uverbs_attrs_async_event_create::UVERBS_ATTR_ASYNC_EVENT_ALLOC_FD_HANDLE);
    c.execute(fd)?;
    Ok(c.fd_at(idx))
}

/// Port attributes: the QUERY_PORT method, whose answer adds `port_cap_flags2`
/// to the legacy one; the QUERY_PORT write command (flags2 left 0) when the
/// kernel lacks the method.
pub(crate) fn query_port(fd: RawFd, port_num: u8) -> Result<ib_uverbs_query_port_resp_ex> {
    match query_port_ioctl(fd, port_num) {
        Err(e) if falls_back(e) => {
            let legacy = cmd::write(fd, ib_uverbs_query_port { port_num, ..Default::default() })?;
            Ok(ib_uverbs_query_port_resp_ex { legacy_resp: legacy, ..Default::default() })
        }
        other => other,
    }
}

/// QUERY_PORT by ioctl only.
pub(crate) fn query_port_ioctl(fd: RawFd, port_num: u8) -> Result<ib_uverbs_query_port_resp_ex> {
    use uverbs_attrs_query_port_cmd_attr_ids as a;
    let mut resp = ib_uverbs_query_port_resp_ex::default();
    Command::new(Method::QueryPort)
        .const_in(a::UVERBS_ATTR_QUERY_PORT_PORT_NUM, port_num as u64)
        .bytes_out(a::UVERBS_ATTR_QUERY_PORT_RESP, as_bytes_mut(&mut resp))
        .execute(fd)?;
    Ok(resp)
}

/// The request rxe's send doorbell is: POST_SEND with no work requests (the
/// kernel then just runs the QP's requester on what the ring holds).
fn doorbell_request(qp_handle: u32) -> ib_uverbs_post_send {
    ib_uverbs_post_send {
        qp_handle,
        wr_count: 0,
        sge_count: 0,
        // Checked against the kernel's WR struct even with no WRs; librxe sends this size.
        wqe_size: size_of::<ibv_send_wr>() as u32,
        ..Default::default()
    }
}

/// Rings the send doorbell of QP `qp_handle` on context fd `fd`.
///
/// write(2) first: the kernel's cheapest path, and what librxe uses. When
/// write(2) is refused with EACCES (credentials changed since the device was
/// opened), `via_ioctl` (owned by the caller, one per context) is set and
/// this and every later doorbell of the context go through INVOKE_WRITE,
/// which the kernel does not refuse for that. On a kernel without it the
/// EACCES stands.
// QPs ring through their PreparedDoorbell; this one-off form stays for tests.
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn doorbell(fd: RawFd, qp_handle: u32, via_ioctl: &AtomicBool) -> Result<()> {
    if !via_ioctl.load(Ordering::Relaxed) {
        // The hot path, as lean as librxe's: one request on the stack, one
        // write(2). Errors and the switch to ioctl are out of line.
        let mut resp = MaybeUninit::<ib_uverbs_post_send_resp>::uninit();
        let req = DoorbellWrite {
            hdr: ib_uverbs_cmd_hdr {
                command: w::IB_USER_VERBS_CMD_POST_SEND,
                in_words: (size_of::<DoorbellWrite>() / 4) as u16,
                out_words: (size_of::<ib_uverbs_post_send_resp>() / 4) as u16,
            },
            core: ib_uverbs_post_send { response: resp.as_mut_ptr() as u64, ..doorbell_request(qp_handle) },
        };
        // SAFETY: a plain request on our stack; the kernel writes its
        // response into `resp`, which outlives the call and is never read.
        let n = unsafe { libc::write(fd, ptr::addr_of!(req).cast(), size_of::<DoorbellWrite>()) };
        if n == size_of::<DoorbellWrite>() as isize {
            return Ok(());
        }
        return doorbell_write_failed(fd, qp_handle, via_ioctl, n);
    }
    doorbell_ioctl(fd, qp_handle)
}

/// A legacy POST_SEND as write(2) takes it: header, then the request.
#[repr(C)]
struct DoorbellWrite {
    hdr: ib_uverbs_cmd_hdr,
    core: ib_uverbs_post_send,
}

/// Where prepared doorbells point the kernel's response (bad_wr, always 0
/// with no WRs): written by the kernel, never read, so one sink serves
/// every QP and thread.
struct ResponseSink(core::cell::UnsafeCell<ib_uverbs_post_send_resp>);
// SAFETY: only the kernel writes it, and nothing of ours reads it.
unsafe impl Sync for ResponseSink {}
static RESPONSE_SINK: ResponseSink = ResponseSink(core::cell::UnsafeCell::new(ib_uverbs_post_send_resp { bad_wr: 0 }));

/// A QP's send doorbell, its write(2) bytes built once when the QP is made
/// (the request differs between QPs only in the handle): ringing it is one
/// write(2) of these bytes, with [`doorbell`]'s fallback to INVOKE_WRITE.
pub(crate) struct PreparedDoorbell {
    req: DoorbellWrite,
    qp_handle: u32,
}

impl PreparedDoorbell {
    pub(crate) fn new(qp_handle: u32) -> PreparedDoorbell {
        let req = DoorbellWrite {
            hdr: ib_uverbs_cmd_hdr {
                command: w::IB_USER_VERBS_CMD_POST_SEND,
                in_words: (size_of::<DoorbellWrite>() / 4) as u16,
                out_words: (size_of::<ib_uverbs_post_send_resp>() / 4) as u16,
            },
            core: ib_uverbs_post_send { response: RESPONSE_SINK.0.get() as u64, ..doorbell_request(qp_handle) },
        };
        PreparedDoorbell { req, qp_handle }
    }

    /// One attempt at the usual way, a write(2) on `fd`: true when the
    /// kernel took it. On false nothing is known to have rung; [`Self::ring`]
    /// rings again with the fallback and the error (ringing twice is
    /// harmless: a zero-WR POST_SEND only tells the kernel to look).
    #[inline(always)]
    pub(crate) fn try_write(&self, fd: RawFd, via_ioctl: &AtomicBool) -> bool {
        !via_ioctl.load(Ordering::Relaxed) && self.write(fd) == size_of::<DoorbellWrite>() as isize
    }

    /// The request written on `fd`: write(2)'s result.
    #[inline(always)]
    fn write(&self, fd: RawFd) -> isize {
        // SAFETY: a plain request in our object; the kernel writes its
        // response into the sink, which lives forever.
        unsafe { libc::write(fd, ptr::addr_of!(self.req).cast(), size_of::<DoorbellWrite>()) }
    }

    /// Rings it on context fd `fd`, as [`doorbell`] does.
    #[inline(always)]
    pub(crate) fn ring(&self, fd: RawFd, via_ioctl: &AtomicBool) -> Result<()> {
        if !via_ioctl.load(Ordering::Relaxed) {
            let n = self.write(fd);
            if n == size_of::<DoorbellWrite>() as isize {
                return Ok(());
            }
            return doorbell_write_failed(fd, self.qp_handle, via_ioctl, n);
        }
        doorbell_ioctl(fd, self.qp_handle)
    }
}

/// What a doorbell write(2) that did not take means: EACCES switches the
/// context to INVOKE_WRITE (and rings that way), other errors are returned,
/// a short write is EIO (the kernel consumes a command whole or not at all).
#[cold]
#[inline(never)]
fn doorbell_write_failed(fd: RawFd, qp_handle: u32, via_ioctl: &AtomicBool, n: isize) -> Result<()> {
    if n >= 0 {
        return Err(Errno(libc::EIO));
    }
    match Errno::last() {
        Errno(libc::EACCES) => {
            via_ioctl.store(true, Ordering::Relaxed);
            doorbell_ioctl(fd, qp_handle)
        }
        e => Err(e),
    }
}

#[cold]
#[inline(never)]
fn doorbell_ioctl(fd: RawFd, qp_handle: u32) -> Result<()> {
    let req = doorbell_request(qp_handle);
    let mut resp = ib_uverbs_post_send_resp::default();
    match invoke_write(fd, w::IB_USER_VERBS_CMD_POST_SEND, as_bytes(&req), as_bytes_mut(&mut resp), &[], &mut []) {
        Err(e) if falls_back(e) => Err(Errno(libc::EACCES)),
        other => other,
    }
}

/// Arms CQ `cq_handle` (REQ_NOTIFY_CQ) on context fd `fd`, as the doorbell
/// goes: write(2), or INVOKE_WRITE once write(2) was refused with EACCES.
/// Marshaled here rather than by libibverbs' `ibv_cmd_req_notify_cq` (the
/// same request) so that arming costs one system call and little else.
pub(crate) fn req_notify_cq(fd: RawFd, cq_handle: u32, solicited_only: bool, via_ioctl: &AtomicBool) -> Result<()> {
    let core = ib_uverbs_req_notify_cq { cq_handle, solicited_only: solicited_only as u32 };
    if !via_ioctl.load(Ordering::Relaxed) {
        let req = NotifyWrite {
            hdr: ib_uverbs_cmd_hdr {
                command: w::IB_USER_VERBS_CMD_REQ_NOTIFY_CQ,
                in_words: (size_of::<NotifyWrite>() / 4) as u16,
                out_words: 0,
            },
            core,
        };
        // SAFETY: a plain request on our stack; the command has no response.
        let n = unsafe { libc::write(fd, ptr::addr_of!(req).cast(), size_of::<NotifyWrite>()) };
        if n == size_of::<NotifyWrite>() as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(Errno(libc::EIO));
        }
        match Errno::last() {
            Errno(libc::EACCES) => via_ioctl.store(true, Ordering::Relaxed),
            e => return Err(e),
        }
    }
    req_notify_cq_ioctl(fd, core)
}

#[repr(C)]
struct NotifyWrite {
    hdr: ib_uverbs_cmd_hdr,
    core: ib_uverbs_req_notify_cq,
}

#[cold]
#[inline(never)]
fn req_notify_cq_ioctl(fd: RawFd, core: ib_uverbs_req_notify_cq) -> Result<()> {
    match invoke_write(fd, w::IB_USER_VERBS_CMD_REQ_NOTIFY_CQ, as_bytes(&core), &mut [], &[], &mut []) {
        Err(e) if falls_back(e) => Err(Errno(libc::EACCES)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use uverbs_attrs_invoke_write_cmd_attr_ids as iw;

    fn data(a: &ib_uverbs_attr) -> u64 {
        // SAFETY: both union members are plain 8-byte integers.
        unsafe { a.__bindgen_anon_1.data }
    }

    #[test]
    fn ioctl_number_and_layouts_match_the_uapi() {
        // x86-64 and the other asm-generic architectures: dir 3 (read|write), size 24, type 0x1b, nr 1.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        assert_eq!(RDMA_VERBS_IOCTL, 0xc018_1b01);
        assert_eq!(size_of::<ib_uverbs_ioctl_hdr>(), 24);
        assert_eq!(size_of::<ib_uverbs_attr>(), 16);
        assert_eq!(offset_of!(Frame, attrs), 24);
        assert_eq!(size_of::<ib_uverbs_query_port_resp_ex>(), 48);
        assert_eq!(offset_of!(ib_uverbs_query_port_resp_ex, port_cap_flags2), 40);
        assert_eq!(size_of::<ib_uverbs_post_send>(), 24);
    }

    #[test]
    fn invoke_write_of_a_legacy_command_with_a_response() {
        // REG_MR: 40-byte core request (passed by pointer), 12-byte response.
        let req = [7u8; 40];
        let mut resp = [0u8; 12];
        let (in_ptr, out_ptr) = (req.as_ptr() as u64, resp.as_mut_ptr() as u64);
        let mut c = invoke_write_command(w::IB_USER_VERBS_CMD_REG_MR, &req, &mut resp, &[], &mut []);
        let hdr = c.header();
        assert_eq!(hdr.object_id as u32, uverbs_default_objects::UVERBS_OBJECT_DEVICE);
        assert_eq!(hdr.method_id as u32, uverbs_methods_device::UVERBS_METHOD_INVOKE_WRITE);
        assert_eq!(hdr.num_attrs, 3);
        assert_eq!(hdr.length, 24 + 3 * 16);
        assert_eq!(hdr.driver_id, rdma_driver_id::RDMA_DRIVER_RXE);
        assert_eq!((hdr.reserved1, hdr.reserved2), (0, 0));
        let a = c.attrs();
        assert_eq!((a[0].attr_id as u32, a[0].len, data(&a[0])), (iw::UVERBS_ATTR_WRITE_CMD, 8, 9));
        assert_eq!((a[1].attr_id as u32, a[1].len, data(&a[1])), (iw::UVERBS_ATTR_CORE_IN, 40, in_ptr));
        assert_eq!((a[2].attr_id as u32, a[2].len, data(&a[2])), (iw::UVERBS_ATTR_CORE_OUT, 12, out_ptr));
        for attr in a {
            assert_eq!(attr.flags as u32, _bindgen_ty_19::UVERBS_ATTR_F_MANDATORY);
            // SAFETY: reading a plain u16 union member.
            assert_eq!(unsafe { attr.attr_data.reserved }, 0);
        }
    }

    #[test]
    fn short_inputs_travel_inline_and_empty_parts_are_left_out() {
        // DEALLOC_PD: a 4-byte request, no response.
        let req = 0x1234_5678u32;
        let mut c = invoke_write_command(w::IB_USER_VERBS_CMD_DEALLOC_PD, as_bytes(&req), &mut [], &[], &mut []);
        assert_eq!(c.header().num_attrs, 2);
        let a = c.attrs();
        assert_eq!((a[1].attr_id as u32, a[1].len), (iw::UVERBS_ATTR_CORE_IN, 4));
        assert_eq!(data(&a[1]).to_ne_bytes()[..4], req.to_ne_bytes());
        assert_eq!(data(&a[1]).to_ne_bytes()[4..], [0; 4]);
        // Exactly 8 bytes is still inline; 9 is a pointer.
        let eight = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let nine = [9u8; 9];
        let mut c = Command::new(Method::InvokeWrite);
        c.bytes_in(1, &eight).bytes_in(2, &nine);
        assert_eq!(data(&c.attrs()[0]), u64::from_ne_bytes(eight));
        assert_eq!(data(&c.attrs()[1]), nine.as_ptr() as u64);
    }

    #[test]
    fn extended_commands_and_driver_data() {
        let req = ib_uverbs_ex_query_device::default();
        let mut out = [0u8; 16];
        let mut c = invoke_write_command(
            IB_USER_VERBS_CMD_FLAG_EXTENDED | w::IB_USER_VERBS_CMD_QUERY_DEVICE,
            as_bytes(&req),
            &mut out,
            &[],
            &mut [],
        );
        assert_eq!(data(&c.attrs()[0]), 0x8000_0001);
        assert_eq!(c.header().num_attrs, 3);

        let (din, mut dout) = ([5u8; 24], [0u8; 32]);
        let dout_ptr = dout.as_mut_ptr() as u64;
        let mut core_out = [0u8; 4];
        let mut c = invoke_write_command(w::IB_USER_VERBS_CMD_ALLOC_PD, &[0u8; 8], &mut core_out, &din, &mut dout);
        assert_eq!(c.header().num_attrs, 5);
        let a = c.attrs();
        assert_eq!((a[3].attr_id as u32, a[3].len, data(&a[3])), (_bindgen_ty_18::UVERBS_ATTR_UHW_IN, 24, din.as_ptr() as u64));
        assert_eq!((a[4].attr_id as u32, a[4].len, data(&a[4])), (_bindgen_ty_18::UVERBS_ATTR_UHW_OUT, 32, dout_ptr));
    }

    #[test]
    fn query_port_get_context_and_async_fd_requests() {
        use uverbs_attrs_query_port_cmd_attr_ids as qp;
        let mut resp = ib_uverbs_query_port_resp_ex::default();
        let resp_ptr = &mut resp as *mut _ as u64;
        let mut c = Command::new(Method::QueryPort);
        c.const_in(qp::UVERBS_ATTR_QUERY_PORT_PORT_NUM, 1)
            .bytes_out(qp::UVERBS_ATTR_QUERY_PORT_RESP, as_bytes_mut(&mut resp));
        assert_eq!(c.header().method_id as u32, uverbs_methods_device::UVERBS_METHOD_QUERY_PORT);
        let a = c.attrs();
        assert_eq!((a[0].len, data(&a[0])), (8, 1));
        assert_eq!((a[1].attr_id as u32, a[1].len, data(&a[1])), (qp::UVERBS_ATTR_QUERY_PORT_RESP, 48, resp_ptr));

        let mut c = Command::new(Method::AsyncEventAlloc);
        let idx = c.fd_out(uverbs_attrs_async_event_create::UVERBS_ATTR_ASYNC_EVENT_ALLOC_FD_HANDLE);
        let hdr = c.header();
        assert_eq!(hdr.object_id as u32, uverbs_default_objects::UVERBS_OBJECT_ASYNC_EVENT);
        assert_eq!(hdr.method_id as u32, uverbs_method_async_event::UVERBS_METHOD_ASYNC_EVENT_ALLOC);
        assert_eq!((c.attrs()[idx].len, data(&c.attrs()[idx])), (0, 0));
        // The kernel writes the new fd over data.
        c.frame.attrs[idx].__bindgen_anon_1.data = 17;
        assert_eq!(c.fd_at(idx), 17);
        assert!(!c.output_valid(idx));
        c.frame.attrs[idx].flags |= _bindgen_ty_19::UVERBS_ATTR_F_VALID_OUTPUT as u16;
        assert!(c.output_valid(idx));
    }

    #[test]
    fn unmarshalable_requests_fail_before_the_kernel() {
        let big = vec![0u8; 70_000];
        let mut c = Command::new(Method::InvokeWrite);
        c.bytes_in(0, &big);
        assert_eq!(c.execute(-1), Err(Errno(libc::EINVAL)));
        let mut c = Command::new(Method::InvokeWrite);
        for id in 0..=MAX_ATTRS as u32 {
            c.const_in(id, 0);
        }
        assert_eq!(c.attrs().len(), MAX_ATTRS);
        assert_eq!(c.execute(-1), Err(Errno(libc::EINVAL)));
    }

    #[test]
    fn fallback_errnos() {
        assert!(falls_back(Errno(libc::ENOTTY)));
        assert!(falls_back(Errno(libc::EPROTONOSUPPORT)));
        for e in [libc::EOPNOTSUPP, libc::EINVAL, libc::ENOSPC, libc::EACCES, libc::EIO] {
            assert!(!falls_back(Errno(e)));
        }
    }

    #[test]
    fn a_file_without_the_ioctl_falls_back_to_write() {
        // /dev/null has no ioctl handler (ENOTTY) and swallows writes: the
        // transport must fall back to write(2), and remember to.
        use std::os::fd::AsRawFd;
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        let fd = null.as_raw_fd();
        assert_eq!(get_context_ioctl(fd), Err(Errno(libc::ENOTTY)));
        assert!(known_missing(Method::InvokeWrite) && known_missing(Method::QueryPort));
        assert_eq!(query_port_ioctl(fd, 1).map(drop), Err(Errno(libc::EPROTONOSUPPORT)));
        let resp = cmd::write(fd, ib_uverbs_alloc_pd::default()).unwrap();
        assert_eq!(resp.pd_handle, 0);
        let via_ioctl = AtomicBool::new(false);
        assert_eq!(doorbell(fd, 3, &via_ioctl), Ok(()));
        assert!(!via_ioctl.load(Ordering::Relaxed));
    }

    /// A pipe standing in for the command fd: (read end, write end).
    fn pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into our array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        (fds[0], fds[1])
    }

    fn read_all(fd: RawFd) -> Vec<u8> {
        let mut buf = [0u8; 256];
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        buf[..n.max(0) as usize].to_vec()
    }

    fn word(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn the_fast_doorbell_writes_one_whole_post_send() {
        let (r, w) = pipe();
        let via_ioctl = AtomicBool::new(false);
        doorbell(w, 0x42, &via_ioctl).unwrap();
        let b = read_all(r);
        assert_eq!(b.len(), 32);
        // Header: command, in_words, out_words (the 4-byte response).
        assert_eq!(word(&b, 0), w::IB_USER_VERBS_CMD_POST_SEND);
        assert_eq!((u16::from_ne_bytes([b[4], b[5]]), u16::from_ne_bytes([b[6], b[7]])), (8, 1));
        assert_ne!(u64::from_ne_bytes(b[8..16].try_into().unwrap()), 0, "a response address");
        assert_eq!((word(&b, 16), word(&b, 20), word(&b, 24), word(&b, 28)), (0x42, 0, 0, size_of::<ibv_send_wr>() as u32));
        // SAFETY: our fds.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn doorbell_and_arming_errors_are_returned_and_keep_write() {
        let via_ioctl = AtomicBool::new(false);
        assert_eq!(doorbell(-1, 1, &via_ioctl), Err(Errno(libc::EBADF)));
        assert_eq!(req_notify_cq(-1, 1, false, &via_ioctl), Err(Errno(libc::EBADF)));
        assert!(!via_ioctl.load(Ordering::Relaxed), "only EACCES switches to ioctl");
    }

    #[test]
    fn arming_a_cq_writes_req_notify_cq() {
        let (r, w) = pipe();
        let via_ioctl = AtomicBool::new(false);
        req_notify_cq(w, 7, true, &via_ioctl).unwrap();
        req_notify_cq(w, 8, false, &via_ioctl).unwrap();
        let b = read_all(r);
        assert_eq!(b.len(), 32);
        for (i, (handle, solicited)) in [(7, 1), (8, 0)].into_iter().enumerate() {
            let c = &b[i * 16..i * 16 + 16];
            assert_eq!(word(c, 0), w::IB_USER_VERBS_CMD_REQ_NOTIFY_CQ);
            // 16 bytes in, no response: as libibverbs' ibv_cmd_req_notify_cq.
            assert_eq!((u16::from_ne_bytes([c[4], c[5]]), u16::from_ne_bytes([c[6], c[7]])), (4, 0));
            assert_eq!((word(c, 8), word(c, 12)), (handle, solicited));
        }
        // SAFETY: our fds.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }

    #[test]
    fn doorbell_is_post_send_without_work_requests() {
        let r = doorbell_request(42);
        assert_eq!((r.qp_handle, r.wr_count, r.sge_count, r.response), (42, 0, 0, 0));
        assert_eq!(r.wqe_size as usize, size_of::<ibv_send_wr>());
    }
}
