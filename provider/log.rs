//! Logging with rdma-core's knobs: `VERBS_LOG_LEVEL` (0 none, 1 error, 2 warn,
//! 3 info, 4 debug; unset means none) and `VERBS_LOG_FILE` (appended to).
//!
//! Every line starts with `rxe_rs: ` so it can be told apart from libibverbs'
//! own and other providers' lines. Logging runs inside someone else's process,
//! so it is built to never hurt it:
//!
//! * `VERBS_LOG_LEVEL` is read with `getenv`, like libibverbs does, and parsed
//!   like its `strtol(env, NULL, 0)`.
//! * `VERBS_LOG_FILE` is read with `secure_getenv`: a setuid/setgid process
//!   ignores it, so nobody can make a privileged program append to a file of
//!   their choosing. Such a process logs to stderr, as if no file were named.
//! * A level without a file writes to stderr (libibverbs' release builds drop
//!   the messages instead; asking for messages should show them).
//! * The file is opened `O_APPEND|O_NOFOLLOW|O_CLOEXEC`, created with mode
//!   0600, plus `O_NONBLOCK|O_NOCTTY` so a FIFO without a reader or a terminal
//!   can neither hang nor adopt the process. If it cannot be opened (a symlink
//!   is refused; a process that dropped privileges may lack permission), one
//!   line on stderr says why and the messages go to stderr, as libibverbs
//!   does with its own.
//! * Lines are formatted into a fixed stack buffer (no heap: an out-of-memory
//!   process must not abort over a log line), truncated with `...`, control
//!   characters blanked so a message cannot forge lines, and written with one
//!   `write(2)` so concurrent lines do not interleave (1 KiB is below
//!   `PIPE_BUF`, so this holds for pipes too). SIGPIPE from a closed stderr
//!   pipe is swallowed and errno is left as the caller had it.
//! * Each call site gets a burst of [`BURST`] lines, then one line per
//!   [`INTERVAL_NS`]; the next line let through after drops is preceded by a
//!   line counting them. A caller retrying in a tight loop costs a hash and a
//!   few atomic operations per dropped line.

#[cfg(any(debug_assertions, test))]
use core::cell::Cell;
use core::ffi::{c_char, c_int, CStr};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// Longest line written, newline included.
pub(crate) const LINE_MAX: usize = 1024;
/// The log target of data-path lines (post and doorbell refusals): only
/// these are rate-limited, per call site.
pub(crate) const HOT: &str = "rxe_rs::hot";
/// Lines a call site may log back to back before being limited.
pub(crate) const BURST: u64 = 10;
/// Once limited, a call site gets one line per this many nanoseconds.
pub(crate) const INTERVAL_NS: u64 = 500_000_000;

const PREFIX: &str = "rxe_rs: ";

// ---------------------------------------------------------------------------
// Queue-lock depth: logging while a queue spin lock is held stalls every other
// thread spinning on it for the length of a write(2). The lock guards count
// here so debug builds catch it. Release builds count nothing: in a shared
// library each thread-local access is a call to __tls_get_addr, two per lock
// on every post and poll, for a check only debug builds make.

#[cfg(debug_assertions)]
thread_local! {
    static QUEUE_LOCKS: Cell<u32> = const { Cell::new(0) };
}

/// Called by a queue lock guard after taking the lock.
#[inline(always)]
pub(crate) fn enter_queue_lock() {
    // try_with: never panic, even while the thread's locals are torn down.
    #[cfg(debug_assertions)]
    let _ = QUEUE_LOCKS.try_with(|d| d.set(d.get().wrapping_add(1)));
}

/// Called by a queue lock guard after releasing the lock.
#[inline(always)]
pub(crate) fn leave_queue_lock() {
    #[cfg(debug_assertions)]
    let _ = QUEUE_LOCKS.try_with(|d| {
        debug_assert!(d.get() > 0, "leave_queue_lock without enter_queue_lock");
        d.set(d.get().saturating_sub(1));
    });
}

/// How many queue locks this thread holds (as reported by the guards; 0 in
/// release builds, which do not count).
#[inline]
pub(crate) fn queue_lock_depth() -> u32 {
    #[cfg(debug_assertions)]
    return QUEUE_LOCKS.try_with(Cell::get).unwrap_or(0);
    #[cfg(not(debug_assertions))]
    0
}

// ---------------------------------------------------------------------------
// Truncating line buffer.

/// Appended when a line did not fit.
const TAIL: &[u8] = b"...\n";

/// A line being formatted on the stack. Writes beyond the room are dropped
/// (never an error, so no `Display` impl ever sees a failure) and the line
/// then ends in `...`.
struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> LineBuf<N> {
    /// Bytes of text that fit, keeping room for [`TAIL`]; fails to compile
    /// for a buffer too small to hold it.
    const ROOM: usize = {
        assert!(N > TAIL.len());
        N - TAIL.len()
    };

    fn new() -> Self {
        LineBuf { buf: [0; N], len: 0, truncated: false }
    }

    /// Appends raw bytes (used for file names, which need not be UTF-8).
    fn push_bytes(&mut self, bytes: &[u8]) {
        let room = Self::ROOM - self.len;
        let n = if bytes.len() > room {
            self.truncated = true;
            room
        } else {
            bytes.len()
        };
        self.copy(&bytes[..n]);
    }

    /// Appends text, cutting only at a character boundary.
    fn push_str(&mut self, s: &str) {
        let room = Self::ROOM - self.len;
        if s.len() <= room {
            self.copy(s.as_bytes());
            return;
        }
        self.truncated = true;
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.copy(&s.as_bytes()[..cut]);
    }

    /// Copies in bytes known to fit, blanking control characters: a message
    /// must not be able to start a line of its own or drive a terminal.
    /// They are ASCII, so blanking keeps UTF-8 valid.
    fn copy(&mut self, bytes: &[u8]) {
        let dst = &mut self.buf[self.len..self.len + bytes.len()];
        for (d, &b) in dst.iter_mut().zip(bytes) {
            *d = if (b < 0x20 && b != b'\t') || b == 0x7f { b' ' } else { b };
        }
        self.len += bytes.len();
    }

    /// The finished line: the text, then `...\n` or `\n`.
    fn finish(&mut self) -> &[u8] {
        let tail: &[u8] = if self.truncated { TAIL } else { b"\n" };
        self.buf[self.len..self.len + tail.len()].copy_from_slice(tail);
        &self.buf[..self.len + tail.len()]
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !self.truncated {
            self.push_str(s);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Per-call-site rate limiting.

const SLOTS: usize = 128;
/// Slots tried after a site's home slot is taken by another site.
const PROBES: usize = 8;

/// One call site's budget. `tat` is the generic cell rate algorithm's
/// "theoretical arrival time": a line at `now` passes when the budget it
/// implies, `max(tat, now) + interval - now`, stays within the burst. One
/// atomic word, so deciding needs no lock.
struct Slot {
    /// The site's key, 0 while free.
    key: AtomicU64,
    tat: AtomicU64,
    dropped: AtomicU64,
}

impl Slot {
    fn new() -> Self {
        Slot { key: AtomicU64::new(0), tat: AtomicU64::new(0), dropped: AtomicU64::new(0) }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Drop,
    /// Log the line; first report `suppressed` dropped lines, from this
    /// site, or from several sites when `shared` (the table was full).
    Pass {
        suppressed: u64,
        shared: bool,
    },
}

struct RateLimiter {
    slots: [Slot; SLOTS],
    /// For sites that found no slot of their own: they share one budget.
    overflow: Slot,
    burst: u64,
    interval_ns: u64,
}

impl RateLimiter {
    fn new(burst: u64, interval_ns: u64) -> Self {
        RateLimiter { slots: core::array::from_fn(|_| Slot::new()), overflow: Slot::new(), burst, interval_ns }
    }

    /// The slot for site `key` (non-zero), claiming a free one on first use.
    fn slot(&self, key: u64) -> (&Slot, bool) {
        let home = (key ^ (key >> 29)) as usize;
        for i in 0..PROBES {
            let slot = &self.slots[(home + i) % SLOTS];
            match slot.key.load(Ordering::Relaxed) {
                k if k == key => return (slot, false),
                0 => match slot.key.compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return (slot, false),
                    Err(k) if k == key => return (slot, false),
                    Err(_) => {}
                },
                _ => {}
            }
        }
        (&self.overflow, true)
    }

    /// Decides whether a line from site `key` at time `now` (ns) is written.
    fn check(&self, key: u64, now: u64) -> Verdict {
        let (slot, shared) = self.slot(key.max(1));
        let limit = self.burst.saturating_mul(self.interval_ns);
        let mut tat = slot.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            if next - now > limit {
                slot.dropped.fetch_add(1, Ordering::Relaxed);
                return Verdict::Drop;
            }
            match slot.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => tat = seen,
            }
        }
        Verdict::Pass { suppressed: slot.dropped.swap(0, Ordering::Relaxed), shared }
    }
}

/// FNV-1a over the call site's file (or module) and line.
fn site_key(site: &[u8], line: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in site.iter().chain(&line.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

// ---------------------------------------------------------------------------
// Writing.

fn errno_location() -> *mut c_int {
    // SAFETY: no preconditions; returns this thread's errno.
    unsafe { libc::__errno_location() }
}

/// Writes `line` to `fd` with one write(2) (more only after a short write),
/// without raising SIGPIPE in the host and without changing errno.
fn write_line(fd: c_int, line: &[u8]) {
    // SAFETY: errno_location() points at this thread's errno.
    let saved_errno = unsafe { *errno_location() };
    // SAFETY: zeroed sigset_t values are valid storage; sigemptyset and
    // sigaddset initialise `pipe` before use, and the old mask is written by
    // pthread_sigmask before it is restored.
    let (mut pipe, mut pending, mut old): (libc::sigset_t, libc::sigset_t, libc::sigset_t) =
        unsafe { (core::mem::zeroed(), core::mem::zeroed(), core::mem::zeroed()) };
    // SAFETY: all pointers are to live local sigset_t values. Blocking
    // SIGPIPE is per thread and undone below, so a closed pipe yields EPIPE
    // instead of killing a host that never ignored SIGPIPE.
    let blocked = unsafe {
        libc::sigemptyset(&mut pipe);
        libc::sigaddset(&mut pipe, libc::SIGPIPE);
        libc::sigpending(&mut pending);
        libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old) == 0
    };
    // SAFETY: `pending` was filled by sigpending above.
    let was_pending = unsafe { libc::sigismember(&pending, libc::SIGPIPE) } == 1;

    let mut rest = line;
    let mut broken_pipe = false;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; write reads at most rest.len() bytes.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
            continue;
        }
        // SAFETY: as above.
        let err = unsafe { *errno_location() };
        if n < 0 && err == libc::EINTR {
            continue;
        }
        broken_pipe = n < 0 && err == libc::EPIPE;
        // Anything else (EAGAIN on a full pipe, ENOSPC...): drop the line
        // rather than wait.
        break;
    }

    if blocked {
        if broken_pipe && !was_pending {
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: `pipe` is initialised; a null siginfo is allowed. This
            // takes the SIGPIPE our write raised so it is not delivered on
            // unblocking.
            unsafe { libc::sigtimedwait(&pipe, core::ptr::null_mut(), &zero) };
        }
        // SAFETY: `old` holds the mask pthread_sigmask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut()) };
    }
    // SAFETY: as above.
    unsafe { *errno_location() = saved_errno };
}

/// Where lines go.
enum Sink {
    Nowhere,
    Stderr,
    File(OwnedFd),
}

impl Sink {
    fn fd(&self) -> Option<c_int> {
        match self {
            Sink::Nowhere => None,
            Sink::Stderr => Some(libc::STDERR_FILENO),
            Sink::File(fd) => Some(fd.as_raw_fd()),
        }
    }
}

/// Opens (creating, mode 0600) the log file for appending. Refuses a symlink
/// as the last component (ELOOP). Returns the errno on failure.
fn open_log_file(path: &CStr) -> Result<OwnedFd, c_int> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    loop {
        // SAFETY: `path` is NUL-terminated; the mode is the variadic third
        // argument O_CREAT requires.
        let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600 as libc::c_uint) };
        if fd >= 0 {
            // SAFETY: open just returned this descriptor; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        // SAFETY: errno_location() points at this thread's errno.
        let err = unsafe { *errno_location() };
        if err != libc::EINTR {
            return Err(err);
        }
    }
}

/// Says on `fd` why the log file could not be opened.
fn complain(fd: c_int, path: &CStr, err: c_int) {
    let mut line = LineBuf::<LINE_MAX>::new();
    line.push_str(PREFIX);
    line.push_str("cannot open VERBS_LOG_FILE ");
    line.push_bytes(path.to_bytes());
    line.push_str(": ");
    if err == libc::ELOOP {
        line.push_str("it is a symbolic link, which is refused");
    } else {
        let mut msg = [0 as c_char; 128];
        // SAFETY: `msg` is writable for its length; the XSI strerror_r
        // NUL-terminates on success and touches no shared state.
        if unsafe { libc::strerror_r(err, msg.as_mut_ptr(), msg.len()) } == 0 {
            // SAFETY: strerror_r succeeded, so `msg` holds a C string.
            line.push_bytes(unsafe { CStr::from_ptr(msg.as_ptr()) }.to_bytes());
        } else {
            let _ = fmt::write(&mut line, format_args!("errno {err}"));
        }
    }
    line.push_str("; logging to stderr");
    write_line(fd, line.finish());
}

// ---------------------------------------------------------------------------
// The logger.

struct VerbsLogger {
    level: LevelFilter,
    sink: Sink,
    limiter: RateLimiter,
    /// Nanoseconds from a monotonic clock; a parameter so tests can drive it.
    clock: fn() -> u64,
}

impl VerbsLogger {
    /// Builds the logger for `level`, writing to `file` if named, else to
    /// stderr. A file that cannot be opened turns logging off, with one line
    /// on `complain_fd` saying why.
    fn new(level: LevelFilter, file: Option<&CStr>, complain_fd: c_int, clock: fn() -> u64) -> Self {
        let (level, sink) = match (level, file) {
            (LevelFilter::Off, _) => (LevelFilter::Off, Sink::Nowhere),
            (_, None) => (level, Sink::Stderr),
            (_, Some(path)) => match open_log_file(path) {
                Ok(fd) => (level, Sink::File(fd)),
                // As libibverbs does, a file that cannot be opened (a
                // symlink, no permission after a privilege drop) leaves
                // the messages on stderr, where they were asked to show.
                Err(err) => {
                    complain(complain_fd, path, err);
                    (level, Sink::Stderr)
                }
            },
        };
        VerbsLogger { level, sink, limiter: RateLimiter::new(BURST, INTERVAL_NS), clock }
    }

    fn from_env() -> Self {
        let level = with_env(c"VERBS_LOG_LEVEL", false, |v| level_from_bytes(v.map(CStr::to_bytes)));
        with_env(c"VERBS_LOG_FILE", true, |file| VerbsLogger::new(level, file, libc::STDERR_FILENO, monotonic_ns))
    }
}

impl Log for VerbsLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level && metadata.target().starts_with("rxe_rs")
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        debug_assert_eq!(queue_lock_depth(), 0, "rxe_rs logged while holding a queue lock");
        let Some(fd) = self.sink.fd() else { return };
        let site = record.file().or(record.module_path()).unwrap_or(record.target());
        let line_no = record.line().unwrap_or(0);
        // Only the data path can repeat a line in a tight loop (a sender
        // retrying on ENOMEM); a control-path refusal costs a syscall and
        // each says something of its own.
        let (suppressed, shared) = if record.target() == HOT {
            let Verdict::Pass { suppressed, shared } = self.limiter.check(site_key(site.as_bytes(), line_no), (self.clock)()) else {
                return;
            };
            (suppressed, shared)
        } else {
            (0, false)
        };
        if suppressed > 0 {
            let mut note = LineBuf::<256>::new();
            let _ = if shared {
                fmt::write(&mut note, format_args!("{PREFIX}(suppressed {suppressed} lines from busy call sites)"))
            } else {
                fmt::write(&mut note, format_args!("{PREFIX}(suppressed {suppressed} similar lines from {site}:{line_no})"))
            };
            write_line(fd, note.finish());
        }
        let mut line = LineBuf::<LINE_MAX>::new();
        line.push_str(PREFIX);
        let _ = fmt::write(&mut line, *record.args());
        write_line(fd, line.finish());
    }

    fn flush(&self) {}
}

// ---------------------------------------------------------------------------
// Configuration.

extern "C" {
    /// glibc and musl; the libc crate does not declare it.
    fn secure_getenv(name: *const c_char) -> *mut c_char;
}

/// Calls `f` with the environment variable `name`, read with
/// `secure_getenv` when `secure`. The value points into the environment, so
/// it is only lent to `f` rather than returned.
fn with_env<R>(name: &CStr, secure: bool, f: impl FnOnce(Option<&CStr>) -> R) -> R {
    // SAFETY: `name` is NUL-terminated. Both functions return null or a
    // pointer into the environment, valid until the environment is modified
    // (which, as in C, the host must not do concurrently with library init).
    let value = unsafe {
        if secure {
            secure_getenv(name.as_ptr())
        } else {
            libc::getenv(name.as_ptr())
        }
    };
    // SAFETY: non-null values are NUL-terminated environment strings.
    f((!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }))
}

/// Maps `VERBS_LOG_LEVEL`'s numbers onto `log`'s levels (tests' entry).
#[cfg(test)]
fn level_from_env(value: Option<&str>) -> LevelFilter {
    level_from_bytes(value.map(str::as_bytes))
}

fn level_from_bytes(value: Option<&[u8]>) -> LevelFilter {
    match value.map_or(0, parse_c_integer) {
        i64::MIN..=0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        _ => LevelFilter::Debug,
    }
}

/// Parses like C's `strtol(s, NULL, 0)`: leading blanks, a sign, then
/// decimal, 0x hex or leading-0 octal digits up to the first non-digit;
/// saturating on overflow; 0 when there are no digits.
fn parse_c_integer(s: &[u8]) -> i64 {
    let mut i = s.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let rest = &s[i..];
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &rest[2..]),
        [b'0', ..] => (8, rest),
        _ => (10, rest),
    };
    let mut value: i64 = 0;
    for &c in digits {
        let Some(d) = char::from(c).to_digit(radix) else { break };
        value = value.saturating_mul(i64::from(radix)).saturating_add(i64::from(d));
    }
    if neg {
        -value
    } else {
        value
    }
}

static LOGGER: OnceLock<VerbsLogger> = OnceLock::new();

/// Installs the logger once per process (the first device match or context
/// open calls it).
pub(crate) fn init() {
    let logger = LOGGER.get_or_init(VerbsLogger::from_env);
    // Our copy of the `log` crate is private to this library, so this only
    // fails when already done.
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.level);
    }
}

/// True when messages of `level` would be written: lets callers skip costly
/// diagnosis nobody will read.
pub(crate) fn enabled(level: Level) -> bool {
    level <= log::max_level()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    #[test]
    fn levels_follow_rdma_core_numbers() {
        assert_eq!(level_from_env(None), LevelFilter::Off);
        assert_eq!(level_from_env(Some("0")), LevelFilter::Off);
        assert_eq!(level_from_env(Some("1")), LevelFilter::Error);
        assert_eq!(level_from_env(Some("2")), LevelFilter::Warn);
        assert_eq!(level_from_env(Some("3")), LevelFilter::Info);
        assert_eq!(level_from_env(Some("4")), LevelFilter::Debug);
        assert_eq!(level_from_env(Some("0x3")), LevelFilter::Info);
        assert_eq!(level_from_env(Some("junk")), LevelFilter::Off);
    }

    #[test]
    fn levels_parse_like_strtol() {
        assert_eq!(parse_c_integer(b"  3abc"), 3);
        assert_eq!(parse_c_integer(b"\t+2 "), 2);
        assert_eq!(parse_c_integer(b"-1"), -1);
        assert_eq!(parse_c_integer(b"010"), 8);
        assert_eq!(parse_c_integer(b"09"), 0);
        assert_eq!(parse_c_integer(b"0x"), 0);
        assert_eq!(parse_c_integer(b"0xg"), 0);
        assert_eq!(parse_c_integer(b"0X1f"), 31);
        assert_eq!(parse_c_integer(b""), 0);
        assert_eq!(parse_c_integer(b"99999999999999999999999"), i64::MAX);
        assert_eq!(level_from_env(Some("-99999999999999999999999")), LevelFilter::Off);
        assert_eq!(level_from_env(Some("7")), LevelFilter::Debug);
    }

    // --- rate limiter ---

    const T: u64 = INTERVAL_NS;

    fn passes(limiter: &RateLimiter, key: u64, now: u64, n: usize) -> usize {
        (0..n).filter(|_| limiter.check(key, now) != Verdict::Drop).count()
    }

    #[test]
    fn limiter_allows_a_burst_then_drops() {
        let l = RateLimiter::new(BURST, T);
        assert_eq!(l.check(7, 1_000), Verdict::Pass { suppressed: 0, shared: false });
        assert_eq!(passes(&l, 7, 1_000, 100), BURST as usize - 1);
    }

    #[test]
    fn limiter_reports_drops_and_recovers() {
        let l = RateLimiter::new(BURST, T);
        assert_eq!(passes(&l, 7, 0, 1234 + BURST as usize), BURST as usize);
        // Less than an interval later: still limited.
        assert_eq!(l.check(7, T / 2), Verdict::Drop);
        // One interval on, one line, carrying the count of all drops so far.
        assert_eq!(l.check(7, T), Verdict::Pass { suppressed: 1235, shared: false });
        assert_eq!(l.check(7, T), Verdict::Drop);
        assert_eq!(l.check(7, 2 * T), Verdict::Pass { suppressed: 1, shared: false });
        // Quiet for a long while: the full burst is back.
        assert_eq!(passes(&l, 7, 1_000 * T, 100), BURST as usize);
    }

    #[test]
    fn limiter_tight_loop_gets_a_few_lines_per_second() {
        let l = RateLimiter::new(BURST, T);
        let mut passed = 0;
        let mut now = 0;
        // Ten seconds of a retry every microsecond.
        while now < 10_000_000_000 {
            passed += usize::from(l.check(42, now) != Verdict::Drop);
            now += 1_000;
        }
        assert_eq!(passed, BURST as usize + 19);
    }

    #[test]
    fn limiter_sites_are_independent() {
        let l = RateLimiter::new(BURST, T);
        let a = site_key(b"provider/qp.rs", 210);
        let b = site_key(b"provider/qp.rs", 211);
        assert_ne!(a, b);
        assert_eq!(passes(&l, a, 0, 50), BURST as usize);
        assert_eq!(passes(&l, b, 0, 50), BURST as usize);
        assert_eq!(l.check(b, T), Verdict::Pass { suppressed: 40, shared: false });
    }

    #[test]
    fn limiter_shares_a_budget_once_the_table_is_full() {
        let l = RateLimiter::new(BURST, T);
        for site in 0..(SLOTS as u64 * 8) {
            l.check(site_key(b"x.rs", site as u32), 0);
        }
        let free = l.slots.iter().filter(|s| s.key.load(Ordering::Relaxed) == 0).count();
        assert_eq!(free, 0);
        // Some sites ended up in the overflow slot; its burst is shared.
        assert!(l.overflow.tat.load(Ordering::Relaxed) > 0);
    }

    // --- line buffer ---

    fn text<const N: usize>(line: &mut LineBuf<N>) -> String {
        String::from_utf8(line.finish().to_vec()).expect("valid UTF-8")
    }

    #[test]
    fn line_fits() {
        let mut l = LineBuf::<32>::new();
        fmt::write(&mut l, format_args!("{PREFIX}{} {}", 1, "two")).unwrap();
        assert_eq!(text(&mut l), "rxe_rs: 1 two\n");
    }

    #[test]
    fn long_line_is_truncated_with_ellipsis() {
        let mut l = LineBuf::<LINE_MAX>::new();
        l.push_str(PREFIX);
        for i in 0..10_000 {
            fmt::write(&mut l, format_args!("{i} ")).unwrap();
        }
        let s = text(&mut l);
        assert_eq!(s.len(), LINE_MAX);
        assert!(s.starts_with("rxe_rs: 0 1 2 "));
        assert!(s.ends_with("...\n"));
    }

    #[test]
    fn truncation_respects_utf8_boundaries() {
        // Each width of character against each cut position.
        for ch in ["é", "€", "😀"] {
            for pad in 0..8 {
                let mut l = LineBuf::<16>::new();
                l.push_str(&"a".repeat(pad));
                for _ in 0..10 {
                    fmt::write(&mut l, format_args!("{ch}")).unwrap();
                }
                let s = text(&mut l);
                assert!(s.len() <= 16 && s.len() > 16 - ch.len(), "{s:?}");
                assert!(s.ends_with("...\n"));
            }
        }
    }

    #[test]
    fn control_characters_are_blanked() {
        let mut l = LineBuf::<64>::new();
        fmt::write(&mut l, format_args!("a\nrxe_rs: forged\r\x1b[2J\tz\x7f")).unwrap();
        assert_eq!(text(&mut l), "a rxe_rs: forged  [2J\tz \n");
    }

    #[test]
    fn exactly_full_line_is_not_marked() {
        let mut l = LineBuf::<8>::new();
        l.push_str("abcd");
        assert_eq!(text(&mut l), "abcd\n");
        let mut l = LineBuf::<8>::new();
        l.push_str("abcde");
        assert_eq!(text(&mut l), "abcd...\n");
    }

    // --- files ---

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("rxe_rs-log-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn c_path(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn log_file_is_created_private_and_close_on_exec() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("create");
        let path = dir.0.join("log");
        let fd = open_log_file(&c_path(&path)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // SAFETY: fd is open; F_GETFD reads its descriptor flags.
        let fd_flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // SAFETY: as above, for the file status flags.
        let fl_flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl_flags & libc::O_APPEND, libc::O_APPEND);
        assert_eq!(fl_flags & libc::O_ACCMODE, libc::O_WRONLY);
    }

    #[test]
    fn log_file_is_appended_to() {
        let dir = TempDir::new("append");
        let path = dir.0.join("log");
        std::fs::write(&path, "old\n").unwrap();
        let fd = open_log_file(&c_path(&path)).unwrap();
        write_line(fd.as_raw_fd(), b"new\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\nnew\n");
    }

    #[test]
    fn log_file_symlink_is_refused_and_logging_is_off() {
        let dir = TempDir::new("symlink");
        let target = dir.0.join("target");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(open_log_file(&c_path(&link)).err(), Some(libc::ELOOP));
        assert!(!target.exists());

        let (mine, theirs) = seqpacket_pair();
        let logger = VerbsLogger::new(LevelFilter::Debug, Some(&c_path(&link)), theirs.as_raw_fd(), fake_clock);
        assert_eq!(logger.level, LevelFilter::Debug);
        assert_eq!(logger.sink.fd(), Some(libc::STDERR_FILENO));
        let msg = recv_all(&mine);
        assert_eq!(msg.len(), 1);
        assert!(msg[0].starts_with("rxe_rs: cannot open VERBS_LOG_FILE "), "{msg:?}");
        assert!(msg[0].ends_with("link: it is a symbolic link, which is refused; logging to stderr\n"), "{msg:?}");
        assert!(!target.exists());
    }

    #[test]
    fn log_file_fifo_without_reader_does_not_hang() {
        let dir = TempDir::new("fifo");
        let path = c_path(&dir.0.join("fifo"));
        // SAFETY: `path` is NUL-terminated.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        assert_eq!(open_log_file(&path).err(), Some(libc::ENXIO));
    }

    #[test]
    fn level_off_opens_nothing_and_no_file_means_stderr() {
        let dir = TempDir::new("off");
        let path = dir.0.join("log");
        let off = VerbsLogger::new(LevelFilter::Off, Some(&c_path(&path)), -1, fake_clock);
        assert!(off.sink.fd().is_none());
        assert!(!path.exists());
        let stderr = VerbsLogger::new(LevelFilter::Warn, None, -1, fake_clock);
        assert_eq!(stderr.sink.fd(), Some(libc::STDERR_FILENO));
    }

    // --- the logger end to end ---

    thread_local! {
        static NOW: Cell<u64> = const { Cell::new(0) };
    }

    fn fake_clock() -> u64 {
        NOW.with(Cell::get)
    }

    /// A socket pair that keeps message boundaries: each write(2) arrives as
    /// one message, so counting messages counts writes.
    fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: socketpair just created both; nothing else owns them.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Every message waiting on `fd`, one string per write.
    fn recv_all(fd: &OwnedFd) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n <= 0 {
                return out;
            }
            out.push(String::from_utf8(buf[..n as usize].to_vec()).unwrap());
        }
    }

    fn socket_logger(level: LevelFilter) -> (VerbsLogger, OwnedFd) {
        let (mine, theirs) = seqpacket_pair();
        let logger = VerbsLogger { level, sink: Sink::File(theirs), limiter: RateLimiter::new(BURST, T), clock: fake_clock };
        (logger, mine)
    }

    /// Logs as a data-path `log::warn!(target: HOT, ...)` at `file:line` would.
    fn emit(logger: &VerbsLogger, level: Level, line: u32, args: fmt::Arguments<'_>) {
        logger.log(&Record::builder().args(args).level(level).target(HOT).file(Some("provider/qp.rs")).line(Some(line)).build());
    }

    #[test]
    fn control_path_lines_are_not_rate_limited() {
        NOW.with(|n| n.set(1_000));
        let (logger, rx) = socket_logger(LevelFilter::Debug);
        for i in 0..3 * BURST {
            logger.log(&Record::builder().args(format_args!("reg_mr: refused {i}")).level(Level::Error).target("rxe_rs::mr").file(Some("provider/mr.rs")).line(Some(7)).build());
        }
        assert_eq!(recv_all(&rx).len(), 3 * BURST as usize);
    }

    #[test]
    fn each_line_is_one_write() {
        let (logger, rx) = socket_logger(LevelFilter::Info);
        emit(&logger, Level::Error, 1, format_args!("first {}", 1));
        emit(&logger, Level::Info, 2, format_args!("{}", "x".repeat(5000)));
        emit(&logger, Level::Debug, 3, format_args!("filtered out"));
        let got = recv_all(&rx);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], "rxe_rs: first 1\n");
        assert_eq!(got[1].len(), LINE_MAX);
        assert!(got[1].starts_with("rxe_rs: xxx") && got[1].ends_with("xx...\n"));
    }

    #[test]
    fn other_targets_are_ignored() {
        let (logger, rx) = socket_logger(LevelFilter::Debug);
        logger.log(&Record::builder().args(format_args!("not ours")).level(Level::Error).target("other").build());
        assert!(recv_all(&rx).is_empty());
    }

    #[test]
    fn dropped_lines_are_counted_in_one_notice() {
        NOW.with(|n| n.set(1_000));
        let (logger, rx) = socket_logger(LevelFilter::Debug);
        for i in 0..1000 {
            emit(&logger, Level::Debug, 210, format_args!("post_send: ENOMEM, retry {i}"));
        }
        emit(&logger, Level::Error, 99, format_args!("another site"));
        let got = recv_all(&rx);
        assert_eq!(got.len(), BURST as usize + 1);
        assert_eq!(got[0], "rxe_rs: post_send: ENOMEM, retry 0\n");
        assert_eq!(got[BURST as usize], "rxe_rs: another site\n");

        NOW.with(|n| n.set(1_000 + T));
        emit(&logger, Level::Debug, 210, format_args!("post_send: ENOMEM, retry again"));
        let got = recv_all(&rx);
        assert_eq!(got, ["rxe_rs: (suppressed 990 similar lines from provider/qp.rs:210)\n", "rxe_rs: post_send: ENOMEM, retry again\n"]);
    }

    #[test]
    fn logging_preserves_errno() {
        let (logger, _rx) = socket_logger(LevelFilter::Debug);
        // SAFETY: errno_location() points at this thread's errno.
        unsafe { *errno_location() = libc::ENOMEM };
        emit(&logger, Level::Error, 5, format_args!("x"));
        // SAFETY: as above.
        assert_eq!(unsafe { *errno_location() }, libc::ENOMEM);
    }

    #[test]
    fn closed_pipe_raises_no_sigpipe() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just created both; nothing else owns them.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        drop(rd);
        // The test harness ignores SIGPIPE; a host may not. With the default
        // action an escaped SIGPIPE would kill this test process.
        // SAFETY: installs a standard disposition, restored below; no other
        // test writes to a broken pipe.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        write_line(wr.as_raw_fd(), b"rxe_rs: nobody reads this\n");
        // SAFETY: zeroed storage is a valid sigset_t for sigpending to fill.
        let mut pending: libc::sigset_t = unsafe { core::mem::zeroed() };
        // SAFETY: `pending` is a live sigset_t.
        let still_pending = unsafe {
            libc::sigpending(&mut pending);
            libc::sigismember(&pending, libc::SIGPIPE)
        };
        // SAFETY: restores the disposition saved above.
        unsafe { libc::signal(libc::SIGPIPE, old) };
        assert_eq!(still_pending, 0);
    }

    // --- no heap on the logging path ---

    /// Counts this thread's allocations while `COUNTING` is set.
    struct CountingAlloc;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static ALLOCS: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: every call is forwarded unchanged to the system allocator; the
    // thread locals touched are const-initialised without destructors, so
    // they never allocate.
    unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
            if COUNTING.try_with(Cell::get).unwrap_or(false) {
                let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
            }
            // SAFETY: the caller's contract is System's.
            unsafe { std::alloc::System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
            // SAFETY: the caller's contract is System's.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    #[test]
    fn logging_does_not_allocate() {
        NOW.with(|n| n.set(5));
        let (logger, rx) = socket_logger(LevelFilter::Debug);
        let long = "é".repeat(2000);
        ALLOCS.with(|n| n.set(0));
        COUNTING.with(|c| c.set(true));
        for i in 0..50u32 {
            emit(&logger, Level::Warn, 7, format_args!("queue full ({} slots), wr_id {i:#x} {long}", 64));
        }
        NOW.with(|n| n.set(5 + T));
        emit(&logger, Level::Warn, 7, format_args!("after {}", "drops"));
        COUNTING.with(|c| c.set(false));
        assert_eq!(ALLOCS.with(Cell::get), 0);
        assert_eq!(recv_all(&rx).len(), BURST as usize + 2);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn queue_lock_depth_counts() {
        assert_eq!(queue_lock_depth(), 0);
        enter_queue_lock();
        enter_queue_lock();
        assert_eq!(queue_lock_depth(), 2);
        leave_queue_lock();
        leave_queue_lock();
        assert_eq!(queue_lock_depth(), 0);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "holding a queue lock")]
    fn logging_under_a_queue_lock_is_caught_in_debug_builds() {
        let (logger, _rx) = socket_logger(LevelFilter::Debug);
        enter_queue_lock();
        emit(&logger, Level::Error, 1, format_args!("under lock"));
    }
}
