//! The uverbs command layer: one command per call on the context's command
//! fd, answered in place by the kernel, turned into `Result<_, Errno>`.
//!
//! Commands go through the ioctl interface's INVOKE_WRITE method
//! ([`crate::uverbs_ioctl`]), which keeps working after the process changes
//! credentials; `write(2)`, which the kernel then refuses with EACCES, is the
//! fallback for kernels without it. The framing below is that of `write(2)`.
//!
//! Legacy commands are `ib_uverbs_cmd_hdr` + core request (+ driver request);
//! the kernel writes the core response (+ driver response) to the address in the
//! request's `response` field. `in_words` counts 4-byte words *including* the
//! header; `out_words` counts the response's 4-byte words.
//! Extended commands add `ib_uverbs_ex_cmd_hdr` (which carries the response
//! address) and count 8-byte words, core and driver parts separately.

use crate::abi::sys::*;
use crate::uverbs_ioctl::{self, as_bytes, as_bytes_mut, Plain};
use core::ffi::c_int;
use core::fmt;
use core::mem::size_of;
use std::os::fd::RawFd;

/// A positive errno value, as the verbs API returns and sets them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub c_int);

impl Errno {
    pub(crate) fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }

    /// Symbolic name (`EINVAL`), for log lines people can search for.
    pub(crate) fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EIO => "EIO",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOSPC => "ENOSPC",
            libc::ENOSYS => "ENOSYS",
            libc::EOPNOTSUPP => "EOPNOTSUPP",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            libc::ENOTTY => "ENOTTY",
            libc::E2BIG => "E2BIG",
            libc::ERANGE => "ERANGE",
            _ => "errno",
        }
    }

    /// Makes this the thread's `errno`, for entry points that report failure
    /// by returning NULL.
    pub(crate) fn set(self) {
        // SAFETY: __errno_location always returns this thread's errno slot.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The C library's text, through a stack buffer: log lines must not
        // allocate (they are written when memory may be short).
        let mut buf = [0 as core::ffi::c_char; 128];
        // SAFETY: the XSI strerror_r writes at most buf.len() bytes, NUL included.
        let ok = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr(), buf.len()) } == 0;
        // SAFETY: on success the buffer holds a NUL-terminated string.
        let text = if ok { unsafe { core::ffi::CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap_or("?") } else { "unknown error" };
        write!(f, "{} ({text})", self.name())
    }
}

pub(crate) type Result<T> = core::result::Result<T, Errno>;

/// The one check of a libibverbs `ibv_cmd_*` helper's return: 0, or an
/// errno (positive as they return it, or negated).
pub(crate) fn checked(ret: c_int) -> Result<()> {
    match ret {
        0 => Ok(()),
        r if r > 0 => Err(Errno(r)),
        r => Err(Errno(r.checked_neg().unwrap_or(libc::EIO))),
    }
}

/// libibverbs' rule for destroy commands: with RDMAV_ALLOW_DISASSOC_DESTROY
/// set, EIO (the device went away) counts as destroyed.
pub(crate) fn destroy_outcome(res: Result<()>) -> Result<()> {
    static ALLOW_DISASSOC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    match res {
        Err(Errno(libc::EIO))
            if *ALLOW_DISASSOC.get_or_init(|| {
                std::env::var_os("RDMAV_ALLOW_DISASSOC_DESTROY").is_some()
                    || std::env::var_os("MLX4_DEVICE_FATAL_CLEANUP").is_some()
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A legacy (non-extended) uverbs write command.
///
/// # Safety
/// `Self` must be the kernel's request struct for `ID` (from the uapi header),
/// and `Resp` its response struct (or `()` when the command has none).
pub(crate) unsafe trait WriteCmd: Plain {
    const ID: u32;
    type Resp: Default + Plain;
    /// Stores where the kernel must write the response.
    fn set_response(&mut self, _addr: u64) {}
}

/// An extended uverbs write command (`IB_USER_VERBS_CMD_FLAG_EXTENDED`).
///
/// # Safety
/// As for [`WriteCmd`]; both sizes must be multiples of 8.
pub(crate) unsafe trait WriteCmdEx: Plain {
    const ID: u32;
    type Resp: Default + Plain;
}

// uapi command structs are integers and explicit reserved fields only.
macro_rules! write_cmd {
    ($req:ty => $resp:ty, $id:expr) => {
        // SAFETY: uapi structs (see above).
        unsafe impl Plain for $req {}
        // SAFETY: as above.
        unsafe impl Plain for $resp {}
        // SAFETY: each use below pairs a uapi request struct with its number and response.
        unsafe impl WriteCmd for $req {
            const ID: u32 = $id;
            type Resp = $resp;
            fn set_response(&mut self, addr: u64) {
                self.response = addr;
            }
        }
    };
    ($req:ty, $id:expr) => {
        // SAFETY: uapi struct (see above).
        unsafe impl Plain for $req {}
        // SAFETY: as above, for commands without a response.
        unsafe impl WriteCmd for $req {
            const ID: u32 = $id;
            type Resp = ();
        }
    };
}

use ib_uverbs_write_cmds as w;
write_cmd!(ib_uverbs_get_context => ib_uverbs_get_context_resp, w::IB_USER_VERBS_CMD_GET_CONTEXT);
write_cmd!(ib_uverbs_query_device => ib_uverbs_query_device_resp, w::IB_USER_VERBS_CMD_QUERY_DEVICE);
write_cmd!(ib_uverbs_query_port => ib_uverbs_query_port_resp, w::IB_USER_VERBS_CMD_QUERY_PORT);
write_cmd!(ib_uverbs_alloc_pd => ib_uverbs_alloc_pd_resp, w::IB_USER_VERBS_CMD_ALLOC_PD);
write_cmd!(ib_uverbs_dealloc_pd, w::IB_USER_VERBS_CMD_DEALLOC_PD);
write_cmd!(ib_uverbs_reg_mr => ib_uverbs_reg_mr_resp, w::IB_USER_VERBS_CMD_REG_MR);
write_cmd!(ib_uverbs_dereg_mr, w::IB_USER_VERBS_CMD_DEREG_MR);
write_cmd!(ib_uverbs_alloc_mw => ib_uverbs_alloc_mw_resp, w::IB_USER_VERBS_CMD_ALLOC_MW);
write_cmd!(ib_uverbs_dealloc_mw, w::IB_USER_VERBS_CMD_DEALLOC_MW);
// With no WRs, POST_SEND is rxe's send doorbell.
write_cmd!(ib_uverbs_post_send => ib_uverbs_post_send_resp, w::IB_USER_VERBS_CMD_POST_SEND);

// SAFETY: uapi structs (see above).
unsafe impl Plain for ib_uverbs_ex_query_device {}
// SAFETY: as above.
unsafe impl Plain for ib_uverbs_ex_query_device_resp {}
// SAFETY: the uapi's extended QUERY_DEVICE request and response (16 and 8-byte multiples).
unsafe impl WriteCmdEx for ib_uverbs_ex_query_device {
    // The extended QUERY_DEVICE reuses the legacy command number.
    const ID: u32 = w::IB_USER_VERBS_CMD_QUERY_DEVICE;
    type Resp = ib_uverbs_ex_query_device_resp;
}

#[repr(C)]
struct Framed<H, C, D> {
    hdr: H,
    core: C,
    driver: D,
}

/// Extended commands: the ex header, then the core request.
#[repr(C)]
struct ExCore<C> {
    ex_hdr: ib_uverbs_ex_cmd_hdr,
    core: C,
}

#[repr(C)]
#[derive(Default)]
struct Answer<R, D> {
    core: R,
    driver: D,
}

/// Header words for a legacy command of `req_len` bytes (header included)
/// with a response of `resp_len` bytes.
fn legacy_words(req_len: usize, resp_len: usize) -> (u16, u16) {
    debug_assert!(req_len % 4 == 0 && resp_len % 4 == 0);
    ((req_len / 4) as u16, (resp_len / 4) as u16)
}

fn write_all(fd: RawFd, buf: *const u8, len: usize) -> Result<()> {
    // SAFETY: buf points to `len` initialized bytes owned by the caller.
    let n = unsafe { libc::write(fd, buf.cast(), len) };
    if n < 0 {
        return Err(Errno::last());
    }
    // The kernel consumes a command whole or not at all.
    if n as usize != len {
        return Err(Errno(libc::EIO));
    }
    Ok(())
}

/// Runs a legacy command with provider-specific request `drv_in` and response
/// `DOut` (use `()` for none); returns the core and driver responses.
/// INVOKE_WRITE by ioctl, or write(2) where the kernel lacks it.
pub(crate) fn write_with<C: WriteCmd, DIn: Plain, DOut: Plain + Default>(
    fd: RawFd,
    core: C,
    drv_in: DIn,
) -> Result<(C::Resp, DOut)> {
    let mut resp = C::Resp::default();
    let mut drv_out = DOut::default();
    let sent = uverbs_ioctl::invoke_write(
        fd,
        C::ID,
        as_bytes(&core),
        as_bytes_mut(&mut resp),
        as_bytes(&drv_in),
        as_bytes_mut(&mut drv_out),
    );
    match sent {
        Ok(()) => Ok((resp, drv_out)),
        Err(e) if uverbs_ioctl::falls_back(e) => syscall_write_with(fd, core, drv_in),
        Err(e) => Err(e),
    }
}

fn syscall_write_with<C: WriteCmd, DIn, DOut: Default>(
    fd: RawFd,
    mut core: C,
    drv_in: DIn,
) -> Result<(C::Resp, DOut)> {
    let mut answer = Answer::<C::Resp, DOut>::default();
    core.set_response(&mut answer as *mut _ as u64);
    let mut req = Framed {
        hdr: ib_uverbs_cmd_hdr::default(),
        core,
        driver: drv_in,
    };
    let resp_len = if size_of::<C::Resp>() == 0 { 0 } else { size_of::<Answer<C::Resp, DOut>>() };
    let (in_words, out_words) = legacy_words(size_of_val(&req), resp_len);
    req.hdr = ib_uverbs_cmd_hdr { command: C::ID, in_words, out_words };
    write_all(fd, &req as *const _ as *const u8, size_of_val(&req))?;
    Ok((answer.core, answer.driver))
}

/// Runs a legacy command with no provider-specific data.
pub(crate) fn write<C: WriteCmd>(fd: RawFd, core: C) -> Result<C::Resp> {
    write_with::<C, (), ()>(fd, core, ()).map(|(resp, ())| resp)
}

/// Runs an extended command with no provider-specific data: INVOKE_WRITE by
/// ioctl, or write(2) where the kernel lacks it.
pub(crate) fn write_ex<C: WriteCmdEx>(fd: RawFd, core: C) -> Result<C::Resp> {
    let mut resp = C::Resp::default();
    match uverbs_ioctl::invoke_write_ex(fd, C::ID, as_bytes(&core), as_bytes_mut(&mut resp)) {
        Ok(()) => Ok(resp),
        Err(e) if uverbs_ioctl::falls_back(e) => syscall_write_ex(fd, core),
        Err(e) => Err(e),
    }
}

fn syscall_write_ex<C: WriteCmdEx>(fd: RawFd, core: C) -> Result<C::Resp> {
    const { assert!(size_of::<C>() % 8 == 0 && size_of::<C::Resp>() % 8 == 0) };
    let mut resp = C::Resp::default();
    let req = Framed {
        hdr: ib_uverbs_cmd_hdr {
            command: IB_USER_VERBS_CMD_FLAG_EXTENDED | C::ID,
            in_words: (size_of::<C>() / 8) as u16,
            out_words: (size_of::<C::Resp>() / 8) as u16,
        },
        core: ExCore {
            ex_hdr: ib_uverbs_ex_cmd_hdr {
                response: &mut resp as *mut _ as u64,
                provider_in_words: 0,
                provider_out_words: 0,
                cmd_hdr_reserved: 0,
            },
            core,
        },
        driver: (),
    };
    write_all(fd, &req as *const _ as *const u8, size_of_val(&req))?;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_framing_counts_header_in_words() {
        // REG_MR: 8-byte header + 40-byte request, 12-byte response.
        assert_eq!(size_of::<ib_uverbs_reg_mr>(), 40);
        assert_eq!(size_of::<ib_uverbs_reg_mr_resp>(), 12);
        let req = Framed { hdr: ib_uverbs_cmd_hdr::default(), core: ib_uverbs_reg_mr::default(), driver: () };
        assert_eq!(legacy_words(size_of_val(&req), size_of::<Answer<ib_uverbs_reg_mr_resp, ()>>()), (12, 3));
    }

    #[test]
    fn extended_header_is_what_the_kernel_reads_first() {
        // The ex header directly follows the 8-byte command header.
        let req = Framed {
            hdr: ib_uverbs_cmd_hdr::default(),
            core: ExCore { ex_hdr: ib_uverbs_ex_cmd_hdr::default(), core: ib_uverbs_ex_query_device::default() },
            driver: (),
        };
        assert_eq!(size_of_val(&req), 8 + 16 + 8);
    }

    #[test]
    fn helper_returns() {
        assert_eq!(checked(0), Ok(()));
        assert_eq!(checked(libc::EBUSY), Err(Errno(libc::EBUSY)));
        assert_eq!(checked(-libc::EINVAL), Err(Errno(libc::EINVAL)));
        assert_eq!(checked(c_int::MIN), Err(Errno(libc::EIO)));
    }

    #[test]
    fn errno_text_comes_from_the_c_library() {
        assert_eq!(Errno(libc::EINVAL).to_string(), "EINVAL (Invalid argument)");
        assert_eq!(Errno(libc::EACCES).to_string(), "EACCES (Permission denied)");
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno(libc::EINVAL).name(), "EINVAL");
        assert_eq!(format!("{:?}", Errno(libc::ENOMEM)), "ENOMEM(12)");
    }
}
