//! Happens-before annotations for valgrind's helgrind.
//!
//! helgrind sees pthread locks, not a lock made of an atomic swap: without
//! these, every access to a ring's state under our [`SpinLock`] from two
//! threads would look like a race to it, and a real race in our code would
//! hide among them. Only under helgrind: under memcheck or callgrind (whose
//! instruction counts tests/bench reports) and outside valgrind a lock
//! operation pays one load and a branch not taken. The client request
//! itself is a sequence of instructions that does nothing on a real CPU.
//!
//! [`SpinLock`]: crate::queue::SpinLock

use std::sync::atomic::{AtomicBool, Ordering};

/// Set once, by the library's constructor, when running under helgrind.
static UNDER_HELGRIND: AtomicBool = AtomicBool::new(false);

/// Set once, by the library's constructor, when some data-path call needs
/// more than its fast path: under helgrind (annotated locks) or with faults
/// armed (RXE_RS_FAULTS). The hot entries read this one byte and branch to
/// their general paths, which check each reason on their own.
static SLOW_PATH: AtomicBool = AtomicBool::new(false);

// Request codes from valgrind.h and helgrind.h (stable across releases:
// they are compiled into every annotated program).
const HG_GET_ABITS: u64 = 0x4847_012e;
const HG_USERSO_SEND_PRE: u64 = 0x4847_0121;
const HG_USERSO_RECV_POST: u64 = 0x4847_0122;
const HG_ARANGE_MAKE_UNTRACKED: u64 = 0x4847_0127;

/// valgrind's client request: under valgrind, the tool handles `request`
/// with `args` and the result comes back; elsewhere `default` does.
#[inline(never)]
fn client_request(default: u64, request: u64, arg1: u64, arg2: u64, arg3: u64) -> u64 {
    let block: [u64; 6] = [request, arg1, arg2, arg3, 0, 0];
    let result: u64;
    // SAFETY: the four rotations of rdi add up to 128 bits and leave it as
    // it was, and `xchg rbx, rbx` changes nothing: on a real CPU the
    // sequence has no effect. valgrind recognises it and reads the six words
    // at rax (alive for the whole asm), writing its answer to rdx.
    unsafe {
        std::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            inout("rdx") default => result,
            in("rax") block.as_ptr(),
            out("rdi") _,
            options(nostack, readonly, preserves_flags),
        );
    }
    result
}

/// What helgrind's address-bits query answers anywhere else: outside
/// valgrind the default comes back, and other tools leave it unanswered.
const NOT_HELGRIND: u64 = -2i64 as u64;

/// Called once, before any lock is used: asks helgrind a question only it
/// answers (how many of one byte's addresses are addressable).
pub(crate) fn detect() {
    let byte = 0u8;
    let answer = client_request(NOT_HELGRIND, HG_GET_ABITS, core::ptr::addr_of!(byte) as u64, 0, 1);
    let helgrind = answer != NOT_HELGRIND;
    UNDER_HELGRIND.store(helgrind, Ordering::Relaxed);
    if helgrind {
        want_slow_path();
    }
}

/// Sends every data-path call through its general path from now on; called
/// once at load (before any verb), by [`detect`] and by `fault::init`.
pub(crate) fn want_slow_path() {
    SLOW_PATH.store(true, Ordering::Relaxed);
}

/// Whether the data-path entries must take their general paths (helgrind
/// or fault injection): one load and a branch not taken otherwise.
#[inline(always)]
pub(crate) fn slow_path() -> bool {
    SLOW_PATH.load(Ordering::Relaxed)
}

/// Whether the program runs under helgrind: the locks then take their
/// annotated paths.
#[inline(always)]
pub(crate) fn active() -> bool {
    UNDER_HELGRIND.load(Ordering::Relaxed)
}

/// The lock word at `lock` (`len` bytes) is about to be taken: helgrind is
/// told not to check the word itself, whose accesses are atomic by design.
#[cold]
pub(crate) fn acquiring(lock: *const u8, len: usize) {
    client_request(0, HG_ARANGE_MAKE_UNTRACKED, lock as u64, len as u64, 0);
}

/// The lock at `lock` was just taken: what the last holder did under it
/// happens before what this thread does now.
#[cold]
pub(crate) fn acquired(lock: *const u8) {
    client_request(0, HG_USERSO_RECV_POST, lock as u64, 0, 0);
}

/// The lock at `lock` is about to be released.
#[cold]
pub(crate) fn releasing(lock: *const u8) {
    client_request(0, HG_USERSO_SEND_PRE, lock as u64, 0, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_a_no_op_outside_valgrind() {
        // cargo test does not run under valgrind: the default comes back.
        assert_eq!(client_request(7, HG_GET_ABITS, 0, 0, 1), 7);
        detect();
        assert!(!active());
        let word = 0u8;
        acquiring(&word, 1);
        acquired(&word);
        releasing(&word);
    }
}
