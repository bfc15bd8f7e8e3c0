//! Property tests of the WQE checks and builders (provider/wqe.rs) and of
//! receive posting (provider/recv.rs): every accepted work request is
//! written inside its slot, as the kernel sizes it, with the lengths and
//! bytes it describes; every refused one is refused for the right reason
//! and writes nothing.
//!
//! Slots sit between two guard regions of a known pattern in one 64-byte
//! aligned arena, so a write past either end of a slot is seen even where
//! slice bounds would not catch it (a builder handed a raw pointer).

use crate::abi::sys::*;
use crate::cmd::Errno;
use crate::queue::{Producer, Ring};
use crate::recv::RecvQueue;
use crate::wqe::{self, Refusal, SendLimits, UdAddress, RECV_HEADER, SEND_HEADER};
use core::mem::size_of;
use core::ptr;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use ibv_wr_opcode as op;

const SGE: usize = size_of::<ibv_sge>();
/// Guard bytes on each side of a slot; a multiple of 64 keeps the slot aligned.
const GUARD: usize = 256;
/// Largest slot the strategies below can ask for (max_sge 32, max_inline 1024).
const MAX_SLOT: usize = 2048;
/// Largest max_inline the strategies generate; inline sources are this long
/// plus room for the per-SGE offsets.
const MAX_INLINE: u32 = 1024;
const SRC_SKEW: usize = 64;

/// Cases per property: enough to reach the edges, few enough that the whole
/// file runs in a few seconds in release.
const CASES: u32 = 1000;

fn config() -> ProptestConfig {
    // No regression files: this module owns no directory to write them to.
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// One slot with guards, aligned as ring slots are.
#[repr(C, align(64))]
struct Arena([u8; GUARD + MAX_SLOT + GUARD]);

fn guard_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(151) ^ 0x3c
}

const DIRTY: u8 = 0xa5;

impl Arena {
    /// Guards patterned, the first `slot_len` bytes after the front guard dirty.
    fn new(slot_len: usize) -> Box<Arena> {
        assert!(slot_len <= MAX_SLOT);
        let mut a = Box::new(Arena([0; GUARD + MAX_SLOT + GUARD]));
        for (i, b) in a.0.iter_mut().enumerate() {
            *b = guard_byte(i);
        }
        a.0[GUARD..GUARD + slot_len].fill(DIRTY);
        a
    }

    fn slot(&mut self, slot_len: usize) -> &mut [u8] {
        &mut self.0[GUARD..GUARD + slot_len]
    }

    /// Every byte outside the slot still holds the guard pattern.
    fn guards_intact(&self, slot_len: usize) -> Result<(), TestCaseError> {
        for (i, &b) in self.0.iter().enumerate() {
            if (GUARD..GUARD + slot_len).contains(&i) {
                continue;
            }
            prop_assert_eq!(b, guard_byte(i), "guard byte at arena offset {} (slot is {}..{})", i, GUARD, GUARD + slot_len);
        }
        Ok(())
    }
}

/// Slot bytes as the kernel sizes a send queue's slots: rounded up to a power of two, at least 64.
fn send_slot_len(max_sge: u32, max_inline: u32) -> usize {
    wqe::send_slot_needed(max_sge, max_inline).max(64).next_power_of_two() as usize
}

fn recv_slot_len(max_sge: u32) -> usize {
    wqe::recv_slot_needed(max_sge).max(64).next_power_of_two() as usize
}

/// Readable bytes inline SGEs and buffers point into.
fn source() -> Vec<u8> {
    (0..MAX_INLINE as usize + SRC_SKEW).map(|i| (i as u8).wrapping_mul(29).wrapping_add(7)).collect()
}

/// Where entry `i` of an inline list starts in [`source`]: lists overlap but
/// start at different places, so a copy out of order is seen.
fn skew(i: usize) -> usize {
    (i * 13) % SRC_SKEW
}

fn sge_bytes(sges: &[ibv_sge]) -> Vec<u8> {
    sges.iter().flat_map(|s| [&s.addr.to_ne_bytes()[..], &s.length.to_ne_bytes(), &s.lkey.to_ne_bytes()].concat()).collect()
}

// ---- strategies ----

/// SGE lengths: the edges of u32 (where sums wrap), small ones, and anything.
fn len32() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => prop_oneof![
            Just(0u32),
            Just(1),
            Just(0x7fff_ffff),
            Just(0x8000_0000),
            Just(u32::MAX - 1),
            Just(u32::MAX)
        ],
        6 => 0u32..=64,
        1 => 0u32..=MAX_INLINE + 1,
        1 => any::<u32>(),
    ]
}

/// Buffer lengths of `ibv_data_buf`, whose usize sums can wrap.
fn len_usize() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop_oneof![
            Just(0usize),
            Just(1),
            Just(usize::MAX),
            Just(usize::MAX - 1),
            Just(usize::MAX / 2 + 1),
            Just(isize::MAX as usize),
            Just(u32::MAX as usize),
            Just(u32::MAX as usize + 1)
        ],
        4 => 0usize..=64,
        1 => 0usize..=MAX_INLINE as usize + 1,
        1 => any::<usize>(),
    ]
}

fn max_sge() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(4), Just(32), 0u32..=32]
}

fn max_inline() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(64), Just(256), Just(MAX_INLINE), 0u32..=MAX_INLINE]
}

/// num_sge over all of i32, weighted to the interesting range around the limit.
fn num_sge(max_sge: u32) -> impl Strategy<Value = i32> {
    let max = max_sge as i32;
    prop_oneof![
        12 => 0..=max,
        2 => -2..=max + 2,
        1 => Just(max + 1),
        1 => prop_oneof![Just(i32::MIN), Just(-1), Just(i32::MAX)],
        1 => any::<i32>(),
    ]
}

/// Every opcode verbs defines (and a few past them), and any u32.
fn opcode() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..=9, 1 => 10u32..=16, 1 => Just(u32::MAX), 1 => any::<u32>()]
}

fn qp_type() -> impl Strategy<Value = u32> {
    prop_oneof![Just(ibv_qp_type::IBV_QPT_RC), Just(ibv_qp_type::IBV_QPT_UC), Just(ibv_qp_type::IBV_QPT_UD)]
}

/// How an inline case's last SGE is adjusted: left alone, or made to bring
/// the total exactly to max_inline or just over it.
#[derive(Clone, Copy, Debug)]
enum Tweak {
    None,
    AtLimit,
    OverLimit,
}

fn tweak() -> impl Strategy<Value = Tweak> {
    prop_oneof![2 => Just(Tweak::None), 1 => Just(Tweak::AtLimit), 1 => Just(Tweak::OverLimit)]
}

/// Sets the last of `lens` so that the total is max_inline (+1), when the others leave room.
fn apply_tweak<T: Copy + TryFrom<u64> + TryInto<u64>>(lens: &mut [T], max_inline: u32, t: Tweak) {
    let target = match t {
        Tweak::None => return,
        Tweak::AtLimit => max_inline as u64,
        Tweak::OverLimit => max_inline as u64 + 1,
    };
    let Some((last, rest)) = lens.split_last_mut() else {
        return;
    };
    let others = rest.iter().map(|&l| l.try_into().unwrap_or(u64::MAX)).fold(0u64, u64::saturating_add);
    if let Some(v) = target.checked_sub(others).and_then(|v| T::try_from(v).ok()) {
        *last = v;
    }
}

// ---- check_send and write_send ----

#[derive(Clone, Debug)]
struct SendCase {
    max_sge: u32,
    max_inline: u32,
    qp_type: u32,
    opcode: u32,
    num_sge: i32,
    null_list: bool,
    lens: Vec<u32>,
    addrs: Vec<u64>,
    inline: bool,
    other_flags: u32,
    tweak: Tweak,
    remote: u64,
    imm: u32,
    mw_null: bool,
    mr_null: bool,
    bind_length: u64,
    wr_id: u64,
    ssn: u32,
}

fn send_case() -> impl Strategy<Value = SendCase> {
    (max_sge(), max_inline()).prop_flat_map(|(max_sge, max_inline)| {
        let n = max_sge as usize + 2;
        (
            (Just(max_sge), Just(max_inline), qp_type(), opcode(), num_sge(max_sge), prop::bool::weighted(0.15)),
            (prop::collection::vec(len32(), n), prop::collection::vec(any::<u64>(), n), any::<bool>(), any::<u32>(), tweak()),
            (
                prop_oneof![any::<u64>().prop_map(|a| a & !7), any::<u64>()],
                prop_oneof![3 => Just(0u32), 1 => any::<u32>()],
                prop::bool::weighted(0.2),
                any::<bool>(),
                prop_oneof![Just(0u64), any::<u64>()],
                any::<u64>(),
                any::<u32>(),
            ),
        )
            .prop_map(
                |(
                    (max_sge, max_inline, qp_type, opcode, num_sge, null_list),
                    (lens, addrs, inline, other_flags, tweak),
                    (remote, imm, mw_null, mr_null, bind_length, wr_id, ssn),
                )| SendCase {
                    max_sge,
                    max_inline,
                    qp_type,
                    opcode,
                    num_sge,
                    null_list,
                    lens,
                    addrs,
                    inline,
                    other_flags,
                    tweak,
                    remote,
                    imm,
                    mw_null,
                    mr_null,
                    bind_length,
                    wr_id,
                    ssn,
                },
            )
    })
}

fn known_opcode(o: u32) -> bool {
    matches!(
        o,
        op::IBV_WR_RDMA_WRITE
            | op::IBV_WR_RDMA_WRITE_WITH_IMM
            | op::IBV_WR_SEND
            | op::IBV_WR_SEND_WITH_IMM
            | op::IBV_WR_RDMA_READ
            | op::IBV_WR_ATOMIC_CMP_AND_SWP
            | op::IBV_WR_ATOMIC_FETCH_AND_ADD
            | op::IBV_WR_LOCAL_INV
            | op::IBV_WR_BIND_MW
            | op::IBV_WR_SEND_WITH_INV
    )
}

/// What check_send must answer, written from the rules rather than the code.
fn expected_send(c: &SendCase, lens: &[u32]) -> Result<(), Refusal> {
    if c.num_sge < 0 || c.num_sge as u32 > c.max_sge {
        return Err(Refusal::TooManySges { num_sge: c.num_sge, max: c.max_sge });
    }
    if c.num_sge > 0 && c.null_list {
        return Err(Refusal::NullSgList { num_sge: c.num_sge });
    }
    // FLUSH (14) and ATOMIC_WRITE (15) only through ibv_wr_flush / ibv_wr_atomic_write.
    if matches!(c.opcode, 14 | 15) {
        return Err(Refusal::OnlyThroughWrApi(c.opcode));
    }
    if !known_opcode(c.opcode) {
        return Err(Refusal::UnknownOpcode(c.opcode));
    }
    if c.qp_type == ibv_qp_type::IBV_QPT_UD && !matches!(c.opcode, op::IBV_WR_SEND | op::IBV_WR_SEND_WITH_IMM) {
        return Err(Refusal::OpcodeNotForTransport { opcode: c.opcode, qp_type: c.qp_type });
    }
    let total: u64 = lens.iter().map(|&l| l as u64).sum();
    if c.inline && total > c.max_inline as u64 {
        return Err(Refusal::InlineTooLong { length: total, max: c.max_inline });
    }
    if total > u32::MAX as u64 {
        return Err(Refusal::LengthOverflow);
    }
    if matches!(c.opcode, op::IBV_WR_ATOMIC_CMP_AND_SWP | op::IBV_WR_ATOMIC_FETCH_AND_ADD) && (total < 8 || c.remote & 7 != 0) {
        return Err(Refusal::AtomicMisaligned { length: total as u32, remote: c.remote });
    }
    if c.opcode == op::IBV_WR_BIND_MW {
        if total != 0 || c.num_sge != 0 || c.imm != 0 {
            return Err(Refusal::BindMwExtras);
        }
        if c.mw_null {
            return Err(Refusal::BindMwNoWindow);
        }
        if c.mr_null && c.bind_length != 0 {
            return Err(Refusal::BindMwWithoutMr { length: c.bind_length });
        }
    }
    Ok(())
}

fn run_send(mut c: SendCase) -> Result<(), TestCaseError> {
    let src = source();
    // The entries the list really holds: num_sge of them when that is a
    // plausible count (so an accepted WR is backed by real memory), fewer
    // when it is out of range (then it must be refused unread).
    let held = (c.num_sge.max(0) as usize).min(c.max_sge as usize + 2);
    let live = if (0..=c.max_sge as i64).contains(&(c.num_sge as i64)) { c.num_sge as usize } else { 0 };
    if c.inline {
        apply_tweak(&mut c.lens[..live], c.max_inline, c.tweak);
    }
    let mut sges: Vec<ibv_sge> = (0..held)
        .map(|i| ibv_sge {
            // Inline SGEs point into `src`; an accepted inline list totals at
            // most max_inline, so each stays inside it.
            addr: if c.inline { src[skew(i)..].as_ptr() as u64 } else { c.addrs[i] },
            length: c.lens[i],
            lkey: c.addrs[i] as u32,
        })
        .collect();

    // SAFETY: all-zero is a valid ibv_send_wr (integers and null pointers).
    let mut wr: ibv_send_wr = unsafe { core::mem::zeroed() };
    // SAFETY: all-zero is a valid ibv_mw and ibv_mr (integers and null pointers).
    let (mw, mut mr): (ibv_mw, ibv_mr) = unsafe { (core::mem::zeroed(), core::mem::zeroed()) };
    mr.lkey = 0x4d52;
    wr.wr_id = c.wr_id;
    wr.opcode = c.opcode;
    wr.num_sge = c.num_sge;
    wr.sg_list = if c.null_list { ptr::null_mut() } else { sges.as_mut_ptr() };
    wr.send_flags = (c.other_flags & !ibv_send_flags::IBV_SEND_INLINE) | if c.inline { ibv_send_flags::IBV_SEND_INLINE } else { 0 };
    wr.__bindgen_anon_1.imm_data = c.imm;
    if c.opcode == op::IBV_WR_BIND_MW {
        wr.__bindgen_anon_2.bind_mw = ibv_send_wr__bindgen_ty_4__bindgen_ty_1 {
            mw: if c.mw_null { ptr::null_mut() } else { &mw as *const ibv_mw as *mut ibv_mw },
            rkey: 0x77,
            bind_info: ibv_mw_bind_info {
                mr: if c.mr_null { ptr::null_mut() } else { &mut mr },
                addr: c.remote,
                length: c.bind_length,
                mw_access_flags: 0,
            },
        };
    } else {
        wr.wr.atomic = ibv_send_wr__bindgen_ty_2__bindgen_ty_2 { remote_addr: c.remote, compare_add: 1, swap: 2, rkey: 0x55 };
    }
    let lim = SendLimits { max_sge: c.max_sge, max_inline: c.max_inline, qp_type: c.qp_type, max_msg: 0 };

    // SAFETY: sg_list is null or holds `held` entries, which is num_sge
    // whenever num_sge is in 0..=max_sge (the only counts check_send may
    // read); the bind's window and MR are live locals.
    let got = unsafe { wqe::check_send(&wr, &lim) };
    let lens = &c.lens[..live];
    let total: u64 = lens.iter().map(|&l| l as u64).sum();
    let want = expected_send(&c, lens);
    prop_assert_eq!(got.as_ref().err().copied(), want.err(), "check_send of {:?}", c);
    let Ok(checked) = got else { return Ok(()) };

    // Accepted: the rules hold, stated directly.
    prop_assert!(c.num_sge >= 0 && c.num_sge as u32 <= c.max_sge);
    prop_assert!(c.num_sge == 0 || !c.null_list);
    prop_assert!(total <= u32::MAX as u64);
    prop_assert!(!c.inline || total <= c.max_inline as u64);
    prop_assert!(c.qp_type != ibv_qp_type::IBV_QPT_UD || matches!(c.opcode, op::IBV_WR_SEND | op::IBV_WR_SEND_WITH_IMM));
    prop_assert_eq!((checked.length as u64, checked.sges.len(), checked.inline), (total, live, c.inline));

    let slot_len = send_slot_len(c.max_sge, c.max_inline);
    let mut arena = Arena::new(slot_len);
    let ud = (c.qp_type == ibv_qp_type::IBV_QPT_UD).then_some(UdAddress { remote_qpn: 1, remote_qkey: 2, ah_num: 3 });
    // SAFETY: an accepted inline list totals at most max_inline bytes, so
    // each SGE's `length` bytes from its `addr` lie inside `src`.
    unsafe { wqe::write_send(arena.slot(slot_len), &wr, &checked, ud, c.ssn) };
    arena.guards_intact(slot_len)?;

    let slot = arena.slot(slot_len);
    let h = wqe::send_wqe(slot);
    prop_assert_eq!((h.wr.wr_id, h.wr.opcode, h.wr.send_flags, h.ssn), (c.wr_id, c.opcode, wr.send_flags, c.ssn));
    prop_assert_eq!((h.dma.length as u64, h.dma.resid as u64, h.dma.num_sge, h.dma.cur_sge), (total, total, live as u32, 0));
    let payload = &slot[SEND_HEADER..];
    if c.inline {
        let want: Vec<u8> = lens.iter().enumerate().flat_map(|(i, &l)| src[skew(i)..skew(i) + l as usize].iter().copied()).collect();
        prop_assert_eq!(&payload[..want.len()], &want[..], "inline bytes");
    } else {
        let want = sge_bytes(&sges[..live]);
        prop_assert_eq!(&payload[..want.len()], &want[..], "SGE list");
    }
    Ok(())
}

// ---- set_inline (ibv_wr_set_inline_data_list) ----

#[derive(Clone, Debug)]
struct InlineCase {
    max_sge: u32,
    max_inline: u32,
    lens: Vec<usize>,
    tweak: Tweak,
}

fn inline_case() -> impl Strategy<Value = InlineCase> {
    (max_sge(), max_inline(), prop::collection::vec(len_usize(), 0..=6), tweak())
        .prop_map(|(max_sge, max_inline, lens, tweak)| InlineCase { max_sge, max_inline, lens, tweak })
}

fn run_inline(mut c: InlineCase) -> Result<(), TestCaseError> {
    apply_tweak(&mut c.lens, c.max_inline, c.tweak);
    let src = source();
    let bufs: Vec<ibv_data_buf> =
        c.lens.iter().enumerate().map(|(i, &length)| ibv_data_buf { addr: src[skew(i)..].as_ptr() as *mut _, length }).collect();
    // The model: copy while the running total stays within max_inline.
    let (mut copied, mut n_copied, mut refused) = (0usize, 0usize, false);
    for &l in &c.lens {
        match copied.checked_add(l) {
            Some(t) if t <= c.max_inline as usize => {
                copied = t;
                n_copied += 1;
            }
            _ => {
                refused = true;
                break;
            }
        }
    }

    let lim = SendLimits { max_sge: c.max_sge, max_inline: c.max_inline, qp_type: ibv_qp_type::IBV_QPT_RC, max_msg: 0 };
    let slot_len = send_slot_len(c.max_sge, c.max_inline);
    let mut arena = Arena::new(slot_len);
    wqe::start_send(arena.slot(slot_len), 5, op::IBV_WR_SEND, 0, 0);
    let header_before = arena.slot(slot_len)[..SEND_HEADER].to_vec();
    // SAFETY: every buffer the running total admits (at most max_inline
    // bytes in all) lies inside `src`; longer ones must be refused unread.
    let got = unsafe { wqe::set_inline(arena.slot(slot_len), &bufs, &lim) };
    arena.guards_intact(slot_len)?;

    let slot = arena.slot(slot_len);
    let want: Vec<u8> = c.lens[..n_copied].iter().enumerate().flat_map(|(i, &l)| src[skew(i)..skew(i) + l].iter().copied()).collect();
    prop_assert_eq!(want.len(), copied);
    prop_assert_eq!(&slot[SEND_HEADER..SEND_HEADER + copied], &want[..], "copied prefix");
    if refused {
        prop_assert_eq!(got, Err(Errno(libc::ENOSPC)), "{:?}", c);
        // Nothing past what was copied before the refusal; nothing at all
        // when the first buffer is refused.
        prop_assert!(slot[SEND_HEADER + copied..].iter().all(|&b| b == DIRTY), "payload written past the refusal");
        prop_assert_eq!(&slot[..SEND_HEADER], &header_before[..], "header changed by a refused list");
    } else {
        prop_assert_eq!(got, Ok(()), "{:?}", c);
        let h = wqe::send_wqe(slot);
        prop_assert_eq!((h.dma.length as usize, h.dma.resid as usize, h.dma.num_sge), (copied, copied, 0));
        prop_assert!(slot[SEND_HEADER + copied..].iter().all(|&b| b == DIRTY), "payload written past the data");
    }
    Ok(())
}

// ---- set_sge_list and set_sge ----

#[derive(Clone, Debug)]
struct SgeListCase {
    max_sge: u32,
    max_inline: u32,
    count: usize,
    lens: Vec<u32>,
    addrs: Vec<u64>,
}

fn sge_list_case() -> impl Strategy<Value = SgeListCase> {
    (max_sge(), max_inline()).prop_flat_map(|(max_sge, max_inline)| {
        let n = max_sge as usize + 3;
        (
            Just(max_sge),
            Just(max_inline),
            prop_oneof![3 => 0..=n, 1 => Just(max_sge as usize), 1 => Just(max_sge as usize + 1)],
            prop::collection::vec(len32(), n),
            prop::collection::vec(any::<u64>(), n),
        )
            .prop_map(|(max_sge, max_inline, count, lens, addrs)| SgeListCase { max_sge, max_inline, count, lens, addrs })
    })
}

fn run_sge_list(c: SgeListCase) -> Result<(), TestCaseError> {
    let sges: Vec<ibv_sge> = (0..c.count).map(|i| ibv_sge { addr: c.addrs[i], length: c.lens[i], lkey: i as u32 }).collect();
    let total: u64 = sges.iter().map(|s| s.length as u64).sum();
    let lim = SendLimits { max_sge: c.max_sge, max_inline: c.max_inline, qp_type: ibv_qp_type::IBV_QPT_RC, max_msg: 0 };
    let slot_len = send_slot_len(c.max_sge, c.max_inline);
    let mut arena = Arena::new(slot_len);
    wqe::start_send(arena.slot(slot_len), 5, op::IBV_WR_SEND, 0, 0);
    let before = arena.slot(slot_len).to_vec();
    let got = wqe::set_sge_list(arena.slot(slot_len), &sges, &lim);
    arena.guards_intact(slot_len)?;
    let slot = arena.slot(slot_len);
    if c.count > c.max_sge as usize {
        prop_assert_eq!(got, Err(Errno(libc::ENOSPC)));
    } else if total > u32::MAX as u64 {
        prop_assert_eq!(got, Err(Errno(libc::EINVAL)));
    } else {
        prop_assert_eq!(got, Ok(()));
        let h = wqe::send_wqe(slot);
        prop_assert_eq!((h.dma.length as u64, h.dma.resid as u64, h.dma.num_sge), (total, total, c.count as u32));
        let want = sge_bytes(&sges);
        prop_assert_eq!(&slot[SEND_HEADER..SEND_HEADER + want.len()], &want[..]);
        prop_assert_eq!(&slot[SEND_HEADER + want.len()..], &before[SEND_HEADER + want.len()..]);
        return Ok(());
    }
    prop_assert_eq!(slot, &before[..], "a refused list changed the slot");
    Ok(())
}

fn run_sge(max_sge: u32, max_inline: u32, lkey: u32, addr: u64, length: u32) -> Result<(), TestCaseError> {
    // ibv_wr_set_sge writes one SGE whatever max_sge is (as librxe does);
    // even max_sge 0 leaves room for it, the header (208 bytes) being
    // rounded up to a 256-byte slot.
    let slot_len = send_slot_len(max_sge, max_inline);
    let mut arena = Arena::new(slot_len);
    wqe::start_send(arena.slot(slot_len), 5, op::IBV_WR_SEND, 0, 0);
    let before = arena.slot(slot_len).to_vec();
    wqe::set_sge(arena.slot(slot_len), lkey, addr, length);
    arena.guards_intact(slot_len)?;
    let slot = arena.slot(slot_len);
    if length == 0 {
        prop_assert_eq!(slot, &before[..], "a zero-length SGE means no data");
    } else {
        let h = wqe::send_wqe(slot);
        prop_assert_eq!((h.dma.length, h.dma.resid, h.dma.num_sge), (length, length, 1));
        let want = sge_bytes(&[ibv_sge { addr, length, lkey }]);
        prop_assert_eq!(&slot[SEND_HEADER..SEND_HEADER + SGE], &want[..]);
        prop_assert_eq!(&slot[SEND_HEADER + SGE..], &before[SEND_HEADER + SGE..]);
    }
    Ok(())
}

// ---- RecvQueue::post over a heap ring ----

#[derive(Clone, Debug)]
struct RecvWr {
    wr_id: u64,
    num_sge: i32,
    null_list: bool,
    lens: Vec<u32>,
}

#[derive(Clone, Debug)]
struct RecvCase {
    max_sge: u32,
    slots: u32,
    start: u32,
    wrs: Vec<RecvWr>,
}

fn recv_case() -> impl Strategy<Value = RecvCase> {
    (prop_oneof![Just(0u32), Just(1), 0u32..=8], prop_oneof![Just(4u32), Just(8)]).prop_flat_map(|(max_sge, slots)| {
        let wr = (any::<u64>(), num_sge(max_sge), prop::bool::weighted(0.1), prop::collection::vec(len32(), max_sge as usize + 2))
            .prop_map(|(wr_id, num_sge, null_list, lens)| RecvWr { wr_id, num_sge, null_list, lens });
        (Just(max_sge), Just(slots), 0..slots, prop::collection::vec(wr, 0..=slots as usize + 2))
            .prop_map(|(max_sge, slots, start, wrs)| RecvCase { max_sge, slots, start, wrs })
    })
}

/// Fills `n` slots with a pattern through the producer, publishes them and
/// lets the "kernel" consume them: leaves the ring empty, its indices `n`
/// further on, and those slots dirty.
fn churn(ring: &Ring, n: u32, round: u32) {
    {
        // SAFETY: the test is the ring's only producer.
        let mut p = unsafe { Producer::new(ring) };
        for k in 0..n {
            let slot = p.reserve().expect("room in an empty ring");
            for (j, b) in slot.iter_mut().enumerate() {
                *b = (j as u8).wrapping_mul(11) ^ (k as u8).wrapping_mul(37) ^ (round as u8).wrapping_mul(101) ^ 0x5a;
            }
            p.commit();
        }
    }
    ring.sim_consume(n);
}

fn run_recv(c: RecvCase) -> Result<(), TestCaseError> {
    let slot_len = recv_slot_len(c.max_sge);
    let mut q = RecvQueue { ring: Ring::heap(c.slots, slot_len), max_sge: c.max_sge };
    let usable = c.slots - 1;
    churn(&q.ring, usable, 0);
    churn(&q.ring, usable, 1); // every slot dirty now
    churn(&q.ring, c.start % usable, 2); // and the producer somewhere in the ring
    let snapshot: Vec<Vec<u8>> = (0..c.slots).map(|i| q.ring.sim_slot(i).to_vec()).collect();
    let p0 = q.ring.producer_index();

    let mut sg_lists: Vec<Vec<ibv_sge>> = c
        .wrs
        .iter()
        .map(|w| {
            let held = (w.num_sge.max(0) as usize).min(c.max_sge as usize + 2);
            (0..held).map(|i| ibv_sge { addr: 0x1000 * i as u64, length: w.lens[i], lkey: i as u32 }).collect()
        })
        .collect();
    let mut wrs: Vec<ibv_recv_wr> = c
        .wrs
        .iter()
        .zip(sg_lists.iter_mut())
        .map(|(w, sg)| ibv_recv_wr {
            wr_id: w.wr_id,
            next: ptr::null_mut(),
            sg_list: if w.null_list { ptr::null_mut() } else { sg.as_mut_ptr() },
            num_sge: w.num_sge,
        })
        .collect();
    for i in (1..wrs.len()).rev() {
        let next: *mut ibv_recv_wr = &mut wrs[i];
        wrs[i - 1].next = next;
    }
    let head: *mut ibv_recv_wr = wrs.first_mut().map_or(ptr::null_mut(), |w| w as *mut _);

    // The model: WRs go in order until the ring is full or one is malformed.
    let mut want: Result<(), (Refusal, usize)> = Ok(());
    for (i, w) in c.wrs.iter().enumerate() {
        let r = if i as u32 == usable {
            Some(Refusal::QueueFull { slots: c.slots - 1 })
        } else if w.num_sge < 0 || w.num_sge as u32 > c.max_sge {
            Some(Refusal::TooManySges { num_sge: w.num_sge, max: c.max_sge })
        } else if w.num_sge > 0 && w.null_list {
            Some(Refusal::NullSgList { num_sge: w.num_sge })
        } else {
            None
        };
        if let Some(r) = r {
            want = Err((r, i));
            break;
        }
    }
    let published = match want {
        Ok(()) => c.wrs.len(),
        Err((_, i)) => i,
    };

    // SAFETY: a list of live local WRs, each list null or holding num_sge
    // entries whenever num_sge is in 0..=max_sge (the only counts post reads).
    let got = unsafe { q.post(head) };
    match (got, want) {
        (Ok(()), Ok(())) => {}
        (Err((r, bad)), Err((wr, i))) => {
            prop_assert_eq!(r, wr);
            prop_assert_eq!(bad, &mut wrs[i] as *mut ibv_recv_wr, "bad_wr is the refused WR");
            let errno = if matches!(r, Refusal::QueueFull { .. }) { libc::ENOMEM } else { libc::EINVAL };
            prop_assert_eq!(r.errno(), Errno(errno));
        }
        (got, want) => prop_assert!(false, "post gave {:?}, expected {:?}", got.map_err(|(r, _)| r), want),
    }
    prop_assert_eq!(q.ring.sim_pending() as usize, published, "exactly the WRs before the bad one are published");

    for i in 0..c.slots {
        let slot = q.ring.sim_slot(i);
        let k = i.wrapping_sub(p0) & (c.slots - 1);
        if (k as usize) < published {
            let w = &c.wrs[k as usize];
            let sges = &sg_lists[k as usize][..w.num_sge as usize];
            // SAFETY: the slot holds a receive WQE header (integers only), 64-byte aligned.
            let h = unsafe { &*slot.as_ptr().cast::<rxe_recv_wqe>() };
            let sum = sges.iter().fold(0u32, |s, g| s.wrapping_add(g.length));
            prop_assert_eq!((h.wr_id, h.dma.length, h.dma.resid, h.dma.num_sge), (w.wr_id, sum, sum, sges.len() as u32));
            let bytes = sge_bytes(sges);
            prop_assert_eq!(&slot[RECV_HEADER..RECV_HEADER + bytes.len()], &bytes[..]);
            prop_assert_eq!(
                &slot[RECV_HEADER + bytes.len()..],
                &snapshot[i as usize][RECV_HEADER + bytes.len()..],
                "slot {} written past its SGEs",
                i
            );
        } else {
            prop_assert_eq!(slot, &snapshot[i as usize][..], "slot {} is not one a published WR owns but was written", i);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// check_send never panics and accepts exactly the valid WRs; write_send
    /// of an accepted one stays inside a kernel-sized slot and writes the
    /// lengths, counts and bytes the WR describes.
    #[test]
    fn send_checks_and_writes(c in send_case()) {
        run_send(c)?;
    }

    /// ibv_wr_set_inline_data_list: wrapping lengths are refused with
    /// ENOSPC, nothing is written past the slot, and a refused first buffer
    /// writes nothing.
    #[test]
    fn inline_lists_stay_in_the_slot(c in inline_case()) {
        run_inline(c)?;
    }

    /// ibv_wr_set_sge_list: more than max_sge entries is ENOSPC, a total past
    /// u32 is EINVAL, and nothing is written past the slot.
    #[test]
    fn sge_lists_stay_in_the_slot(c in sge_list_case()) {
        run_sge_list(c)?;
    }

    /// ibv_wr_set_sge: one SGE, inside the slot.
    #[test]
    fn one_sge_stays_in_the_slot(max_sge in max_sge(), max_inline in max_inline(), lkey in any::<u32>(), addr in any::<u64>(), length in len32()) {
        run_sge(max_sge, max_inline, lkey, addr, length)?;
    }

    /// RecvQueue::post: WRs are published up to the first bad one (or a
    /// full ring), with the right errno and bad_wr, and only their slots are
    /// written.
    #[test]
    fn recv_posts_stay_in_their_slots(c in recv_case()) {
        run_recv(c)?;
    }
}

/// The strategies reach the cases the properties are about.
#[test]
fn slot_sizes_are_powers_of_two_within_the_arena() {
    assert_eq!(send_slot_len(0, 0), 64.max(SEND_HEADER.next_power_of_two()));
    assert!(send_slot_len(32, MAX_INLINE) <= MAX_SLOT);
    assert!(recv_slot_len(8) <= 512);
}
