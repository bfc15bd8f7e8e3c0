//! Faults injected on demand, for testing applications' error paths
//! (RXE_RS_FAULTS; README, "Fault injection").
//!
//! The variable holds rules separated by `;`, each `verb:fault[:trigger]...`:
//!
//! | verb | faults |
//! |---|---|
//! | `post_send`, `post_recv`, `post_srq_recv` | `enomem`, `einval`: the call fails, nothing posted, bad_wr the first WR (for `ibv_wr_complete`, the batch is dropped) |
//! | `post_send`, `post_recv` | `event=<qp event>|port_err`: the call goes on, and an asynchronous event is queued: a QP event names the call's QP and moves it to the error state first |
//! | `poll_cq` | `status=<wc status>` (e.g. `retry_exc_err`): a successful completion comes back with that status, and its QP is moved to the error state, as a real fault leaves it; `ibv_poll_cq` and the extended polling alike |
//! | `poll_cq` | `event=<qp event>|cq_err|port_err`: the completion is returned, then the event is queued (a QP event for its QP, cq_err for its CQ) |
//! | `poll_cq` | `delay=<ms>`: no completion is returned before it has waited that long in the CQ (order kept; takes no trigger) |
//! | `reg_mr` | `enomem`, `efault` |
//! | `create_qp`, `create_cq` | `enomem` |
//!
//! Triggers, all of which must hold (none: every call): `nth=N` (the Nth
//! call only), `every=N` (calls N, 2N, ...), `after=N` (every call after the
//! first N), `p=P` with `seed=S` (each call with probability P, drawn from
//! the seed and the call's number, so a run repeats exactly), `limit=K` (at
//! most K injections), `qpn=N[,N...]` (only calls on those QP numbers; post
//! and poll verbs). Calls are counted per rule, among those its `qpn`
//! admits.
//!
//! Each injection writes one line, to the provider's log or, when that is
//! off, to stderr. A specification with any bad part is refused when the
//! library loads: one error line names the part, and nothing is injected. With the variable
//! unset each data-path call pays one load and a branch not taken.

use crate::abi::sys::{ibv_event_type, ibv_wc_status};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    PostSend,
    PostRecv,
    PostSrqRecv,
    PollCq,
    RegMr,
    CreateQp,
    CreateCq,
}

const VERBS: &[(&str, Verb)] = &[
    ("post_send", Verb::PostSend),
    ("post_recv", Verb::PostRecv),
    ("post_srq_recv", Verb::PostSrqRecv),
    ("poll_cq", Verb::PollCq),
    ("reg_mr", Verb::RegMr),
    ("create_qp", Verb::CreateQp),
    ("create_cq", Verb::CreateCq),
];

/// What an injection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The call fails with this errno.
    Errno(i32),
    /// The completion carries this `ibv_wc_status` instead of success.
    Status(u32),
    /// An asynchronous event is queued (crate::fault_events).
    Event(Event),
    /// Completions are held back this long (crate::fault_delay).
    Delay(std::time::Duration),
}

/// The asynchronous events that can be injected, and what each names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A QP event (`ibv_event_type`), for the call's QP, which is moved to
    /// the error state first (each of these leaves a QP there).
    Qp(u32),
    /// IBV_EVENT_CQ_ERR for the CQ polled.
    CqErr,
    /// IBV_EVENT_PORT_ERR for port 1 (rxe's one port).
    PortErr,
}

const EVENTS: &[(&str, Event)] = &[
    ("qp_fatal", Event::Qp(ibv_event_type::IBV_EVENT_QP_FATAL)),
    ("qp_req_err", Event::Qp(ibv_event_type::IBV_EVENT_QP_REQ_ERR)),
    ("qp_access_err", Event::Qp(ibv_event_type::IBV_EVENT_QP_ACCESS_ERR)),
    ("cq_err", Event::CqErr),
    ("port_err", Event::PortErr),
];

pub(crate) fn event_name(e: Event) -> &'static str {
    EVENTS.iter().find(|(_, x)| *x == e).map_or("?", |(n, _)| n)
}

/// The completion statuses an application can be handed, by the names of
/// `enum ibv_wc_status` without the IBV_WC_ prefix.
const STATUSES: &[(&str, u32)] = &[
    ("loc_len_err", ibv_wc_status::IBV_WC_LOC_LEN_ERR),
    ("loc_qp_op_err", ibv_wc_status::IBV_WC_LOC_QP_OP_ERR),
    ("loc_prot_err", ibv_wc_status::IBV_WC_LOC_PROT_ERR),
    ("wr_flush_err", ibv_wc_status::IBV_WC_WR_FLUSH_ERR),
    ("bad_resp_err", ibv_wc_status::IBV_WC_BAD_RESP_ERR),
    ("loc_access_err", ibv_wc_status::IBV_WC_LOC_ACCESS_ERR),
    ("rem_inv_req_err", ibv_wc_status::IBV_WC_REM_INV_REQ_ERR),
    ("rem_access_err", ibv_wc_status::IBV_WC_REM_ACCESS_ERR),
    ("rem_op_err", ibv_wc_status::IBV_WC_REM_OP_ERR),
    ("retry_exc_err", ibv_wc_status::IBV_WC_RETRY_EXC_ERR),
    ("rnr_retry_exc_err", ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR),
    ("rem_abort_err", ibv_wc_status::IBV_WC_REM_ABORT_ERR),
    ("fatal_err", ibv_wc_status::IBV_WC_FATAL_ERR),
    ("general_err", ibv_wc_status::IBV_WC_GENERAL_ERR),
];

pub(crate) fn status_name(status: u32) -> &'static str {
    STATUSES.iter().find(|(_, s)| *s == status).map_or("?", |(n, _)| n)
}

#[derive(Debug, Default, PartialEq)]
struct Trigger {
    nth: Option<u64>,
    every: Option<u64>,
    after: Option<u64>,
    /// Probability as a fraction of 2^64, and the seed.
    chance: Option<(u64, u64)>,
    limit: Option<u64>,
    qpns: Vec<u32>,
}

impl Trigger {
    /// Whether call number `n` (from 1) fires, before `limit`.
    fn fires(&self, n: u64) -> bool {
        self.nth.map_or(true, |k| n == k)
            && self.every.map_or(true, |k| n % k == 0)
            && self.after.map_or(true, |k| n > k)
            && self.chance.map_or(true, |(p, seed)| draw(seed, n) < p)
    }
}

/// A uniform 64-bit number from the seed and the call number (splitmix64):
/// the same calls fire in every run, whatever the threads' timing.
fn draw(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug)]
struct Rule {
    text: String,
    verb: Verb,
    fault: Fault,
    trigger: Trigger,
    calls: AtomicU64,
    fired: AtomicU64,
}

/// A part of the specification that cannot be used, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct BadSpec {
    pub part: String,
    pub why: String,
}

impl std::fmt::Display for BadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RXE_RS_FAULTS: `{}`: {}; no fault will be injected", self.part, self.why)
    }
}

fn bad(part: &str, why: impl Into<String>) -> BadSpec {
    BadSpec { part: part.to_string(), why: why.into() }
}

fn number(part: &str, value: &str) -> Result<u64, BadSpec> {
    let n = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    n.map_err(|_| bad(part, "not a number"))
}

fn positive(part: &str, value: &str) -> Result<u64, BadSpec> {
    match number(part, value)? {
        0 => Err(bad(part, "must be at least 1")),
        n => Ok(n),
    }
}

fn parse_fault(verb: Verb, part: &str) -> Result<Fault, BadSpec> {
    let errno = |allowed: &[(&str, i32)]| {
        allowed.iter().find(|(n, _)| part.eq_ignore_ascii_case(n)).map(|&(_, e)| Fault::Errno(e)).ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            bad(part, format!("this verb's faults are {}", names.join(", ")))
        })
    };
    if let Some(name) = part.strip_prefix("event=") {
        let allowed: &[&str] = match verb {
            Verb::PostSend | Verb::PostRecv => &["qp_fatal", "qp_req_err", "qp_access_err", "port_err"],
            Verb::PollCq => &["qp_fatal", "qp_req_err", "qp_access_err", "cq_err", "port_err"],
            _ => return Err(bad(part, "events are injected into post_send, post_recv and poll_cq")),
        };
        let name = name.to_ascii_lowercase();
        let name = name.strip_prefix("ibv_event_").unwrap_or(&name);
        return match EVENTS.iter().find(|(n, _)| *n == name && allowed.contains(n)) {
            Some(&(_, e)) => Ok(Fault::Event(e)),
            None => Err(bad(part, format!("this verb's events are {}", allowed.join(", ")))),
        };
    }
    if let Some(ms) = part.strip_prefix("delay=") {
        if verb != Verb::PollCq {
            return Err(bad(part, "only poll_cq's completions can be delayed"));
        }
        let ms = number(part, ms)?;
        if !(1..=60_000).contains(&ms) {
            return Err(bad(part, "a delay is 1 to 60000 milliseconds"));
        }
        return Ok(Fault::Delay(std::time::Duration::from_millis(ms)));
    }
    match verb {
        Verb::PostSend | Verb::PostRecv | Verb::PostSrqRecv => errno(&[("enomem", libc::ENOMEM), ("einval", libc::EINVAL)]),
        Verb::RegMr => errno(&[("enomem", libc::ENOMEM), ("efault", libc::EFAULT)]),
        Verb::CreateQp | Verb::CreateCq => errno(&[("enomem", libc::ENOMEM)]),
        Verb::PollCq => {
            let name = part.strip_prefix("status=").ok_or_else(|| bad(part, "poll_cq's faults are status=<completion status>, event=<event> and delay=<ms>"))?;
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("ibv_wc_").unwrap_or(&name);
            STATUSES.iter().find(|(n, _)| *n == name).map(|&(_, s)| Fault::Status(s)).ok_or_else(|| {
                let names: Vec<&str> = STATUSES.iter().map(|(n, _)| *n).collect();
                bad(part, format!("not a completion error status; one of {}", names.join(", ")))
            })
        }
    }
}

fn parse_rule(text: &str) -> Result<Rule, BadSpec> {
    let mut parts = text.split(':').map(str::trim);
    let verb_name = parts.next().unwrap_or("");
    let verb = VERBS.iter().find(|(n, _)| *n == verb_name).map(|&(_, v)| v).ok_or_else(|| {
        let names: Vec<&str> = VERBS.iter().map(|(n, _)| *n).collect();
        bad(verb_name, format!("not a verb faults can be injected into; one of {}", names.join(", ")))
    })?;
    let fault = parse_fault(verb, parts.next().ok_or_else(|| bad(text, "a fault must follow the verb"))?)?;
    let mut t = Trigger::default();
    let mut seed = 1;
    let mut p = None;
    for part in parts {
        if matches!(fault, Fault::Delay(_)) {
            return Err(bad(part, "a delay applies to every completion and takes no trigger"));
        }
        let (key, value) = part.split_once('=').ok_or_else(|| bad(part, "a trigger is key=value"))?;
        match key {
            "nth" => t.nth = Some(positive(part, value)?),
            "every" => t.every = Some(positive(part, value)?),
            "after" => t.after = Some(number(part, value)?),
            "limit" => t.limit = Some(number(part, value)?),
            "seed" => seed = number(part, value)?,
            "p" => {
                let v: f64 = value.parse().map_err(|_| bad(part, "not a probability"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(bad(part, "a probability is between 0 and 1"));
                }
                p = Some(v);
            }
            "qpn" => {
                if !matches!(verb, Verb::PostSend | Verb::PostRecv | Verb::PollCq) {
                    return Err(bad(part, "qpn applies to post_send, post_recv and poll_cq"));
                }
                for n in value.split(',') {
                    let n = number(part, n)?;
                    if n >= 1 << 24 {
                        return Err(bad(part, "a QP number has 24 bits"));
                    }
                    t.qpns.push(n as u32);
                }
            }
            _ => return Err(bad(part, "triggers are nth, every, after, p, seed, limit and qpn")),
        }
    }
    // p=1 must fire on every call: u64::MAX rather than 2^64, which overflows.
    t.chance = p.map(|p| (if p >= 1.0 { u64::MAX } else { (p * 2f64.powi(64)) as u64 }, seed));
    Ok(Rule { text: text.to_string(), verb, fault, trigger: t, calls: AtomicU64::new(0), fired: AtomicU64::new(0) })
}

fn parse(spec: &str) -> Result<Vec<Rule>, BadSpec> {
    spec.split(';').map(str::trim).filter(|r| !r.is_empty()).map(parse_rule).collect()
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static RULES: OnceLock<Vec<Rule>> = OnceLock::new();

/// Whether some rule can queue an asynchronous event: contexts then relay
/// the kernel's event file (crate::fault_events).
pub(crate) fn events_armed() -> bool {
    RULES.get().is_some_and(|rules| rules.iter().any(|r| matches!(r.fault, Fault::Event(_))))
}

/// How long completions are held back, if a rule says so.
pub(crate) fn delay() -> Option<std::time::Duration> {
    RULES.get()?.iter().find_map(|r| match r.fault {
        Fault::Delay(d) => Some(d),
        _ => None,
    })
}

/// Reads RXE_RS_FAULTS, once, when the library loads.
pub(crate) fn init() {
    let Some(spec) = std::env::var_os("RXE_RS_FAULTS") else { return };
    let rules = match parse(&spec.to_string_lossy()) {
        Ok(rules) => rules,
        Err(e) => {
            crate::log::init();
            ::log::error!("{e}");
            if !crate::log::enabled(::log::Level::Error) {
                eprintln!("rxe_rs: {e}");
            }
            return;
        }
    };
    if rules.is_empty() || RULES.set(rules).is_err() {
        return;
    }
    ACTIVE.store(true, Ordering::Release);
    crate::valgrind::want_slow_path();
}

/// Whether any rule is armed: the one check the data path pays.
#[inline(always)]
pub(crate) fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// The fault to inject into this call of `verb` (on QP `qpn`, where the verb
/// has one), if a rule fires; logs the injection.
#[cold]
pub(crate) fn check(verb: Verb, qpn: Option<u32>, what: &dyn Fn() -> String) -> Option<Fault> {
    check_rules(RULES.get()?, verb, qpn, what)
}

fn check_rules(rules: &[Rule], verb: Verb, qpn: Option<u32>, what: &dyn Fn() -> String) -> Option<Fault> {
    for (i, r) in rules.iter().enumerate() {
        // Delays are not per call (crate::fault_delay).
        if matches!(r.fault, Fault::Delay(_)) || r.verb != verb || !(r.trigger.qpns.is_empty() || qpn.is_some_and(|q| r.trigger.qpns.contains(&q))) {
            continue;
        }
        let n = r.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if !r.trigger.fires(n) {
            continue;
        }
        // The limit counts injections, so it is taken only when the rest fires.
        let fired = r.fired.fetch_add(1, Ordering::Relaxed);
        if r.trigger.limit.is_some_and(|k| fired >= k) {
            continue;
        }
        let injected = match r.fault {
            Fault::Errno(e) => format!("errno {e} ({})", std::io::Error::from_raw_os_error(e)),
            Fault::Status(s) => format!("completion status IBV_WC_{}", status_name(s).to_ascii_uppercase()),
            Fault::Event(e) => format!("asynchronous event IBV_EVENT_{}", event_name(e).to_ascii_uppercase()),
            Fault::Delay(_) => unreachable!("delays are not per call"),
        };
        say(&format!("fault injected: {injected} into {} (rule {} `{}`, call {n})", what(), i + 1, r.text));
        return Some(r.fault);
    }
    None
}

/// One line about an injection: to the provider's log, or to stderr when
/// the log is off (VERBS_LOG_LEVEL unset), so that an injection is never
/// silent.
pub(crate) fn say(line: &str) {
    if crate::log::enabled(::log::Level::Warn) {
        ::log::warn!("{line}");
    } else {
        eprintln!("rxe_rs: {line}");
    }
}

/// The QPs by number, kept only while faults are armed: an injected error
/// completion moves its QP to the error state, and poll_cq knows only the
/// number. Entries are the addresses of live ibv_qp; destroy_qp removes its
/// entry before the QP goes, under the same lock its use takes.
pub(crate) static QPS: Mutex<Vec<(u32, usize)>> = Mutex::new(Vec::new());

#[cfg(test)]
mod tests {
    use super::*;

    fn fired(spec: &str, verb: Verb, qpn: Option<u32>, calls: u64) -> Vec<u64> {
        let rules = parse(spec).unwrap();
        (1..=calls).filter(|_| check_rules(&rules, verb, qpn, &|| "test".into()).is_some()).collect()
    }

    #[test]
    fn triggers_fire_on_the_calls_they_name() {
        assert_eq!(fired("post_send:enomem:every=3", Verb::PostSend, None, 10), [3, 6, 9]);
        assert_eq!(fired("post_send:enomem:nth=4", Verb::PostSend, None, 10), [4]);
        assert_eq!(fired("post_send:enomem:after=8", Verb::PostSend, None, 10), [9, 10]);
        assert_eq!(fired("post_send:enomem:every=2:limit=2", Verb::PostSend, None, 10), [2, 4]);
        assert_eq!(fired("post_send:enomem", Verb::PostSend, None, 3), [1, 2, 3]);
        assert_eq!(fired("post_send:enomem", Verb::PostRecv, None, 3), Vec::<u64>::new());
        assert_eq!(fired("post_send:enomem:p=1", Verb::PostSend, None, 3), [1, 2, 3]);
        assert!(fired("post_send:enomem:p=0", Verb::PostSend, None, 100).is_empty());
    }

    #[test]
    fn probability_is_repeatable_and_near_its_value() {
        let a = fired("poll_cq:status=retry_exc_err:p=0.25:seed=7", Verb::PollCq, Some(1), 4000);
        let b = fired("poll_cq:status=retry_exc_err:p=0.25:seed=7", Verb::PollCq, Some(1), 4000);
        let c = fired("poll_cq:status=retry_exc_err:p=0.25:seed=8", Verb::PollCq, Some(1), 4000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!((800..1200).contains(&a.len()), "{}", a.len());
    }

    #[test]
    fn qpn_filters_and_counts_only_its_qps() {
        let rules = parse("post_recv:einval:qpn=0x11,0x12:every=2").unwrap();
        let mut hits = Vec::new();
        for (i, q) in [0x11, 0x20, 0x12, 0x20, 0x11].into_iter().enumerate() {
            if check_rules(&rules, Verb::PostRecv, Some(q), &|| "t".into()).is_some() {
                hits.push(i);
            }
        }
        // calls on 0x11/0x12 are numbered 1 (i=0), 2 (i=2), 3 (i=4).
        assert_eq!(hits, [2]);
    }

    #[test]
    fn faults_parse_per_verb() {
        let r = parse("reg_mr:efault; create_cq:ENOMEM ;poll_cq:status=IBV_WC_REM_ACCESS_ERR").unwrap();
        assert_eq!(r[0].fault, Fault::Errno(libc::EFAULT));
        assert_eq!(r[1].fault, Fault::Errno(libc::ENOMEM));
        assert_eq!(r[2].fault, Fault::Status(ibv_wc_status::IBV_WC_REM_ACCESS_ERR));
        assert!(parse("").unwrap().is_empty());
        let r = parse("post_send:event=qp_fatal;poll_cq:event=IBV_EVENT_CQ_ERR;post_recv:event=port_err:nth=2;poll_cq:delay=250").unwrap();
        assert_eq!(r[0].fault, Fault::Event(Event::Qp(ibv_event_type::IBV_EVENT_QP_FATAL)));
        assert_eq!(r[1].fault, Fault::Event(Event::CqErr));
        assert_eq!(r[2].fault, Fault::Event(Event::PortErr));
        assert_eq!(r[3].fault, Fault::Delay(std::time::Duration::from_millis(250)));
    }

    #[test]
    fn delays_fire_on_no_call() {
        assert!(fired("poll_cq:delay=5", Verb::PollCq, Some(1), 10).is_empty());
    }

    #[test]
    fn a_bad_part_is_named() {
        let part = |spec: &str| parse(spec).unwrap_err().part;
        assert_eq!(part("post_sned:enomem"), "post_sned");
        assert_eq!(part("post_send:efault"), "efault");
        assert_eq!(part("create_qp:einval"), "einval");
        assert_eq!(part("poll_cq:status=success"), "status=success");
        assert_eq!(part("poll_cq:enomem"), "enomem");
        assert_eq!(part("post_send:enomem:every=0"), "every=0");
        assert_eq!(part("post_send:enomem:every=x"), "every=x");
        assert_eq!(part("post_send:enomem:p=1.5"), "p=1.5");
        assert_eq!(part("post_send:enomem:often"), "often");
        assert_eq!(part("post_send:enomem:when=3"), "when=3");
        assert_eq!(part("reg_mr:enomem:qpn=3"), "qpn=3");
        assert_eq!(part("post_send:enomem:qpn=0x1000000"), "qpn=0x1000000");
        assert_eq!(part("post_send"), "post_send");
        assert_eq!(part("post_send:event=cq_err"), "event=cq_err");
        assert_eq!(part("reg_mr:event=qp_fatal"), "event=qp_fatal");
        assert_eq!(part("poll_cq:event=nope"), "event=nope");
        assert_eq!(part("post_send:delay=5"), "delay=5");
        assert_eq!(part("poll_cq:delay=0"), "delay=0");
        assert_eq!(part("poll_cq:delay=10:nth=2"), "nth=2");
        let e = parse("post_send:enomem;poll_cq:status=nope").unwrap_err();
        assert!(e.to_string().contains("`status=nope`") && e.to_string().contains("no fault will be injected"), "{e}");
    }
}
