//! Completions held back (RXE_RS_FAULTS `poll_cq:delay=<ms>`): none is
//! handed to the application before it has waited that long in its CQ.
//!
//! The kernel writes no time into a completion, so the provider notes when
//! it first saw the ring's producer index move: each such mark covers the
//! entries up to that index, and they ripen together. Order is kept, within
//! a QP and across QPs. At most [`MAX_MARKS`] marks per CQ: when the table
//! is full a newer entry waits for the next free mark, so it is held longer,
//! never shorter.
//!
//! Both ways of polling see only ripe entries; `ibv_req_notify_cq` arms,
//! then returns only once every held entry has ripened, so that an
//! application driven by completion events (which the kernel raised when
//! the entries arrived, not when they ripen, and raises none for those that
//! arrived before the arm) finds them all when it polls after arming.

use crate::cq::Cq;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const MAX_MARKS: usize = 256;

/// One CQ's marks: (producer index, when first seen), oldest first.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    marks: VecDeque<(u32, Instant)>,
    mask: u32,
    /// Whether the injection's log line was written for this CQ.
    said: bool,
}

impl Marks {
    /// Notes the ring's indices at `now`; returns how many entries from the
    /// consumer index are ripe, and when the last held one ripens.
    pub(crate) fn observe(&mut self, cons: u32, prod: u32, mask: u32, now: Instant, delay: Duration) -> (u32, Option<Instant>) {
        if mask != self.mask {
            // A resized ring: old marks index another ring. Its entries start
            // their wait again.
            self.marks.clear();
            self.mask = mask;
        }
        let pending = |index: u32| index.wrapping_sub(cons) & mask;
        // Marks the consumer reached or passed are done: passed, the mark
        // lies further from it than the producer does.
        let backlog = pending(prod);
        while self.marks.front().is_some_and(|&(p, _)| pending(p) == 0 || pending(p) > backlog) {
            self.marks.pop_front();
        }
        if backlog != 0 && self.marks.back().map_or(true, |&(p, _)| p != prod) && self.marks.len() < MAX_MARKS {
            self.marks.push_back((prod, now));
        }
        let mut ripe = 0;
        let mut last = None;
        for &(p, seen) in &self.marks {
            if seen + delay <= now {
                ripe = pending(p);
            } else {
                last = Some(seen + delay);
            }
        }
        let marked = self.marks.back().map_or(0, |&(p, _)| pending(p));
        if backlog > marked {
            // Entries past a full table: marked once a mark frees up.
            last = Some(now + delay);
        }
        (ripe, last)
    }
}

/// Every CQ's marks, by CQ address; only while a delay rule is armed.
static HELD: Mutex<Vec<(usize, Marks)>> = Mutex::new(Vec::new());

/// The marks of `cq`, locked: a poll decides and takes its entries under
/// this lock, so two polling threads cannot both take the same ripe count.
pub(crate) struct Held {
    all: MutexGuard<'static, Vec<(usize, Marks)>>,
    at: usize,
}

impl Held {
    pub(crate) fn of(cq: &Cq) -> Held {
        let key = cq as *const Cq as usize;
        let mut all = HELD.lock().unwrap_or_else(|e| e.into_inner());
        let at = match all.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                all.push((key, Marks::default()));
                all.len() - 1
            }
        };
        Held { all, at }
    }

    fn marks(&mut self) -> &mut Marks {
        &mut self.all[self.at].1
    }

    /// How many of `cq`'s entries may be handed out now, and when the last
    /// held one ripens. Logs, once per CQ, that its completions are held.
    pub(crate) fn ripe(&mut self, cq: &Cq, delay: Duration) -> (u32, Option<Instant>) {
        let Some((cons, prod, mask)) = cq.indices() else { return (u32::MAX, None) };
        let out = self.marks().observe(cons, prod, mask, Instant::now(), delay);
        if out.1.is_some() && !self.marks().said {
            self.marks().said = true;
            crate::fault::say(&format!("fault injected: completions of CQ {:p} are held back {} ms (RXE_RS_FAULTS delay)", cq, delay.as_millis()));
        }
        out
    }

}

/// Extended polling: how many more entries each CQ's current poll may
/// expose, by CQ address. Touched only by the thread holding that CQ's poll
/// lock (between start_poll and end_poll), and never held while taking a
/// poll lock: HELD is taken before a poll lock, this one after.
static BUDGETS: Mutex<Vec<(usize, u32)>> = Mutex::new(Vec::new());

pub(crate) fn set_budget(cq: &Cq, n: u32) {
    let key = cq as *const Cq as usize;
    let mut all = BUDGETS.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter_mut().find(|(k, _)| *k == key) {
        Some((_, b)) => *b = n,
        None => all.push((key, n)),
    }
}

/// Takes one from the extended poll's budget; false when it is spent.
pub(crate) fn spend(cq: &Cq) -> bool {
    let key = cq as *const Cq as usize;
    let mut all = BUDGETS.lock().unwrap_or_else(|e| e.into_inner());
    match all.iter_mut().find(|(k, _)| *k == key) {
        Some((_, b)) if *b > 0 => {
            *b -= 1;
            true
        }
        _ => false,
    }
}

/// Forgets a CQ that is being destroyed.
pub(crate) fn forget(cq: usize) {
    HELD.lock().unwrap_or_else(|e| e.into_inner()).retain(|(k, _)| *k != cq);
    BUDGETS.lock().unwrap_or_else(|e| e.into_inner()).retain(|(k, _)| *k != cq);
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(100);
    const MASK: u32 = 7;

    #[test]
    fn entries_ripen_after_the_delay_in_order() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut m = Marks::default();
        // Two entries arrive; nothing is ripe until 100 ms after seen.
        assert_eq!(m.observe(0, 2, MASK, ms(0), D), (0, Some(ms(100))));
        // A third arrives at 50 ms: its own mark.
        assert_eq!(m.observe(0, 3, MASK, ms(50), D), (0, Some(ms(150))));
        assert_eq!(m.observe(0, 3, MASK, ms(100), D), (2, Some(ms(150))));
        // One of the two was taken.
        assert_eq!(m.observe(1, 3, MASK, ms(120), D), (1, Some(ms(150))));
        // A fourth at 130 ms: the last one ripens at 230.
        assert_eq!(m.observe(1, 4, MASK, ms(130), D), (1, Some(ms(230))));
        assert_eq!(m.observe(2, 4, MASK, ms(140), D), (0, Some(ms(230))));
        assert_eq!(m.observe(2, 4, MASK, ms(230), D), (2, None));
        assert_eq!(m.observe(4, 4, MASK, ms(240), D), (0, None));
        assert!(m.marks.is_empty());
    }

    #[test]
    fn indices_wrap_around_the_ring() {
        let t0 = Instant::now();
        let mut m = Marks::default();
        assert_eq!(m.observe(6, 1, MASK, t0, D), (0, Some(t0 + D)));
        assert_eq!(m.observe(6, 1, MASK, t0 + D, D), (3, None));
    }

    #[test]
    fn a_resized_ring_starts_the_wait_again() {
        let t0 = Instant::now();
        let mut m = Marks::default();
        m.observe(0, 2, MASK, t0, D);
        assert_eq!(m.observe(0, 2, 15, t0 + D, D), (0, Some(t0 + D + D)));
    }

    #[test]
    fn a_full_table_holds_newer_entries_longer_never_shorter() {
        let t0 = Instant::now();
        let mut m = Marks::default();
        let mask = 1023;
        for i in 1..=MAX_MARKS as u32 + 10 {
            m.observe(0, i, mask, t0 + Duration::from_millis(i as u64), D);
        }
        // The entries past the last mark are not ripe when it is.
        let last = t0 + Duration::from_millis(MAX_MARKS as u64) + D;
        assert_eq!(m.observe(0, MAX_MARKS as u32 + 10, mask, last, D), (MAX_MARKS as u32, Some(last + D)));
    }
}
