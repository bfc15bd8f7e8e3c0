//! Integration tests against the real kernel: Debian 12's 6.1 kernel with its
//! in-tree rdma_rxe, booted once under qemu by tests/run-vm.sh. Inside, every
//! program runs through the stock librxe and through ours, each alone (see
//! tests/guest/common.sh); the tests below compare the two.
//!
//! Needs root, the packages scripts/install-deps.sh installs, and a release
//! build of the provider (scripts/test.sh does all three). Without them these
//! tests fail: they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[path = "vm/safety.rs"]
mod safety;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The results directory of the one VM boot, made on first use.
/// RXE_RS_VM_RESULTS=<dir> re-checks the results of an earlier boot instead.
fn out() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = OUT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RXE_RS_VM_RESULTS") {
            return Ok(PathBuf::from(dir));
        }
        let out = repo().join("target/vmtest/out");
        let status = Command::new("bash")
            .arg(repo().join("tests/run-vm.sh"))
            .arg(&out)
            .args(["core", "datapath", "safety"])
            .status()
            .map_err(|e| format!("cannot run tests/run-vm.sh: {e}"))?;
        if !status.success() {
            return Err(format!(
                "the VM run failed ({status}); see {}/vm.log. It needs root, qemu, vng and \
                 Debian's kernel (bash scripts/install-deps.sh) and `cargo build --release`",
                out.display()
            ));
        }
        Ok(out)
    });
    match result {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

fn read(name: &str) -> String {
    let path = out().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `case <name>: <outcome>` lines of a program's output.
fn case_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("case ")).collect()
}

fn case_map(text: &str) -> BTreeMap<String, String> {
    case_lines(text)
        .into_iter()
        .filter_map(|l| l.strip_prefix("case ")?.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Rows of cases.txt: (case, provider) -> (verdict, rest of the line).
fn verdicts() -> BTreeMap<(String, String), (String, String)> {
    read("cases.txt")
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != "CASE" {
                return None;
            }
            let (name, provider, verdict) = (f.next()?, f.next()?, f.next()?);
            let rest: Vec<&str> = f.collect();
            Some(((name.to_string(), provider.to_string()), (verdict.to_string(), rest.join(" "))))
        })
        .collect()
}

/// Our provider's log for a run: it proves ours served it.
fn our_log(label: &str) -> String {
    fs::read_to_string(out().join("log").join(format!("{label}.rxe_rs.log"))).unwrap_or_default()
}

fn served_by_ours(label: &str) -> bool {
    our_log(label).contains("context opened by rxe_rs")
}

/// Whether ours matched the device (also for programs that open no context).
fn matched_by_ours(label: &str) -> bool {
    our_log(label).contains("rxe0: device matched by rxe_rs")
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- Provider core: queries and memory registration

#[test]
fn devinfo_is_identical_through_both_providers() {
    let stock = read("devinfo.stock.txt");
    let ours = read("devinfo.ours.txt");
    assert!(stock.contains("hca_id:\trxe0"), "stock ibv_devinfo failed:\n{stock}");
    assert!(stock.contains("GID[  1]"), "devinfo -v output is incomplete:\n{stock}");
    assert_eq!(stock, ours, "ibv_devinfo -v differs between the stock librxe and ours");
    assert_eq!(read("devices.stock.txt"), read("devices.ours.txt"));
    assert!(served_by_ours("devinfo.ours"), "our devinfo run was not served by rxe_rs");
}

#[test]
fn each_run_was_served_by_the_provider_it_names() {
    assert!(matched_by_ours("devices.ours"), "ibv_devices: ours did not match rxe0");
    for label in ["devinfo", "mr_cases"] {
        assert!(matched_by_ours(&format!("{label}.ours")), "{label}: ours did not match rxe0");
        assert!(served_by_ours(&format!("{label}.ours")), "{label}: ours did not serve the 'ours' run");
    }
    for label in ["devinfo", "devices", "mr_cases"] {
        assert!(!our_log(&format!("{label}.stock")).contains("rxe_rs:"), "{label}: rxe_rs served the 'stock' run");
    }
}

#[test]
fn readme_way_rdmav_drivers_selects_ours() {
    let text = read("rdmav_drivers.txt");
    assert!(text.contains("rxe0"), "ibv_devinfo via RDMAV_DRIVERS failed:\n{text}");
    assert!(served_by_ours("rdmav_drivers"), "RDMAV_DRIVERS did not make rxe_rs serve rxe0");
}

#[test]
fn registration_outcomes_are_identical() {
    let stock = read("mr_cases.stock.txt");
    let ours = read("mr_cases.ours.txt");
    assert!(read("mr_cases.stock.err").contains("exit=0"), "mr_cases failed through stock");
    assert!(read("mr_cases.ours.err").contains("exit=0"), "mr_cases failed through ours: {}", read("mr_cases.ours.err"));
    let (s, o) = (case_lines(&stock), case_lines(&ours));
    assert!(s.len() >= 60, "too few cases ran through stock ({}):\n{stock}", s.len());
    assert_eq!(s, o, "registration outcomes differ");
}

#[test]
fn registration_outcomes_are_what_the_kernel_decides() {
    let m = case_map(&read("mr_cases.ours.txt"));
    let is = |case: &str, want: &str| {
        let got = m.get(case).unwrap_or_else(|| panic!("case {case} missing"));
        assert!(got.starts_with(want), "{case}: got {got}, want {want}");
    };
    for size in ["1B", "4KiB", "64KiB", "1MiB", "16MiB", "256MiB"] {
        is(&format!("size_{size}_aligned"), "ok");
        is(&format!("size_{size}_offset123"), "ok");
    }
    is("access_RW_without_LW", "errno=22 EINVAL");
    is("access_RA_without_LW", "errno=22 EINVAL");
    is("access_LW_RW_RR_RA_MWB", "ok");
    is("access_LW_unknown_bit15", "errno=22 EINVAL");
    assert!(!m["access_LW_ON_DEMAND"].starts_with("ok"), "ODP must be refused: rxe has no ODP");
    is("access_LW_RELAXED_ORDERING", "ok");
    is("iova_same_page_offset", "ok");
    is("iova_different_page_offset", "errno=22 EINVAL");
    is("length0_aligned", "errno=22 EINVAL");
    is("unmapped", "errno=14 EFAULT");
    is("readonly_with_LW", "errno=14 EFAULT");
    is("readonly_without_LW", "ok");
    is("many_1000_one_page", "made=1000 distinct_lkeys=yes distinct_rkeys=yes dereg_ok=1000");
    is("alloc_mw_type1", "ok dealloc=ok");
    is("alloc_mw_type2", "ok dealloc=ok");
}

#[test]
fn every_refused_registration_logs_its_cause() {
    let cases = case_map(&read("mr_cases.ours.txt"));
    let log = our_log("mr_cases.ours");
    let reasons: Vec<&str> = log.lines().filter(|l| l.contains("reg_mr: refused with")).collect();
    let refused: Vec<(&String, &String)> = cases.iter().filter(|(_, v)| v.starts_with("errno=")).collect();
    assert_eq!(reasons.len(), refused.len(), "one log line per refusal expected;\nrefused: {refused:?}\nlog:\n{log}");
    // Each refusal's line names its cause, in order of the cases.
    let expect = [
        ("access_RW_without_LW", "without IBV_ACCESS_LOCAL_WRITE"),
        ("access_LW_ON_DEMAND", "not supported by this device"),
        ("access_LW_unknown_bit15", "not supported"),
        ("iova_different_page_offset", "page offset"),
        ("length0_aligned", "length 0"),
        ("unmapped", "unmapped"),
        ("readonly_with_LW", "read-only"),
    ];
    for (case, words) in expect {
        assert!(cases[case].starts_with("errno="), "{case} was not refused");
        assert!(reasons.iter().any(|l| l.contains(words)), "no log line says '{words}' for {case}:\n{log}");
    }
}

#[test]
fn unprivileged_memlock_limits() {
    for lim in ["0", "65536"] {
        let stock = read(&format!("mr_unpriv_{lim}.stock.txt"));
        let ours = read(&format!("mr_unpriv_{lim}.ours.txt"));
        assert_eq!(case_lines(&stock), case_lines(&ours), "memlock {lim}: outcomes differ");
        assert_eq!(case_lines(&ours).len(), 3, "memlock {lim}: cases missing:\n{ours}");
    }
    let zero = read("mr_unpriv_0.ours.txt");
    assert_eq!(case_map(&zero)["unpriv_4KiB"], "errno=1 EPERM");
    assert!(zero.contains("RLIMIT_MEMLOCK is 0") && zero.contains("ulimit -l"), "{zero}");
    let small = read("mr_unpriv_65536.ours.txt");
    let m = case_map(&small);
    assert_eq!(m["unpriv_4KiB"], "ok");
    assert_eq!(m["unpriv_64KiB"], "ok");
    assert_eq!(m["unpriv_1MiB"], "errno=12 ENOMEM");
    assert!(small.contains("would exceed RLIMIT_MEMLOCK of 64 KiB"), "{small}");
}

#[test]
fn demo_prints_keys_and_a_logged_refusal() {
    let demo = read("reg_demo.txt");
    assert!(demo.contains("exit=0"), "{demo}");
    assert!(demo.contains("67108864"), "{demo}");
    assert!(demo.contains("rxe_rs: rxe0: reg_mr: refused with EINVAL"), "{demo}");
}

// ---- The data path

#[test]
fn every_program_passes_through_both_providers() {
    let v = verdicts();
    let names: BTreeSet<&String> = v.keys().map(|(n, _)| n).collect();
    // 5 rdma-core examples, 37 perftest runs, 5 rdma_cm tools (tests/guest/datapath.sh).
    assert!(names.len() >= 47, "too few data-path cases ran: {}", names.len());
    let mut failures = String::new();
    for name in &names {
        for p in ["stock", "ours"] {
            match v.get(&((*name).clone(), p.to_string())) {
                Some((verdict, _)) if verdict == "PASS" => {}
                other => {
                    let log = |ext: &str| tail(&out().join("log").join(format!("{name}.{p}.{ext}")), 8);
                    let _ = writeln!(
                        failures,
                        "{name} through {p}: {other:?}\n--- server\n{}\n--- client/output\n{}{}\n",
                        log("srv"),
                        log("cli"),
                        log("out"),
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "data-path failures:\n{failures}");
    // Only perftest's failed clock calibration is retried (tests/guest/common.sh);
    // many of those mean the machine is too loaded for these figures to mean much.
    let retried: Vec<String> = v
        .iter()
        .filter(|(_, (_, rest))| rest.split_whitespace().any(|w| w.starts_with("attempts=") && w != "attempts=1"))
        .map(|((n, p), (_, rest))| format!("{n} ({p}, {rest})"))
        .collect();
    eprintln!("data-path cases retried after perftest's clock calibration failed: {retried:?}");
    assert!(retried.len() <= 10, "too many cases needed another attempt: {retried:?}");
}

#[test]
fn data_path_runs_were_served_by_the_provider_they_name() {
    for (name, p) in verdicts().keys() {
        let label = format!("{name}.{p}");
        match p.as_str() {
            "ours" => assert!(served_by_ours(&label), "{label}: not served by rxe_rs"),
            _ => assert!(!our_log(&label).contains("rxe_rs:"), "{label}: rxe_rs served a stock run"),
        }
    }
}

#[test]
fn edge_cases_and_threads() {
    let stock = read("edge.stock.txt");
    let ours = read("edge.ours.txt");
    assert!(ours.contains("exit=0"), "edge failed through ours:\n{ours}");
    let m = case_map(&ours);
    let want = [
        ("too_many_sges", "ret=EINVAL bad_wr=second completions=1 errors=0"),
        ("inline_too_long", "ret=EINVAL bad_wr=second completions=1 errors=0"),
        ("atomic_misaligned", "ret=EINVAL bad_wr=second completions=1 errors=0"),
        ("full_send_queue", "ret=ENOMEM bad_wr=later posted_completed=all errors=0"),
        ("full_recv_queue", "ret=ENOMEM bad_wr=later"),
        ("recv_too_many_sges", "ret=EINVAL bad_wr=it"),
        // Ours refuses before touching the ring (librxe: bad_wr null, WQE left posted).
        ("send_in_init", "ret=EINVAL bad_wr=it"),
        // librxe reports a stale entry here (its end_poll overruns the producer).
        ("cq_ex_polling", "entries=5 in_order=yes bytes=60 then_empty=yes"),
        ("cq_resize", "ret=0 cqe_at_least_8192=yes kept=10 errors=0"),
        ("srq_modify_query", "limit=0 resize=0 query=0 max_wr_at_least_256=yes limit_is_4=yes posted_after_resize=200"),
        ("memory_windows", "bind1=0 bind2=0 read_type1=1 read_type2=1 local_inv=1 read_after_inv_fails=1 bind_errors=0"),
        ("threads", "sends_completed=2000 recvs_completed=2000 errors=0"),
    ];
    for (case, expected) in want {
        assert_eq!(m.get(case).map(String::as_str), Some(expected), "edge case {case}\nours:\n{ours}\nstock:\n{stock}");
    }
    // Everything else matches librxe line for line.
    let s = case_map(&stock);
    for (case, outcome) in &m {
        if case != "send_in_init" && case != "cq_ex_polling" {
            assert_eq!(s.get(case), Some(outcome), "edge case {case} differs from librxe");
        }
    }
}

/// Outcomes of one pyverbs run (unittest -v): test id -> first word of its
/// outcome ("ok", "FAIL", "ERROR", "skipped", ...). A test with a docstring
/// prints its id on one line and "<docstring> ... <outcome>" on the next.
fn pyverbs_outcomes(text: &str) -> BTreeMap<String, String> {
    let is_id = |s: &str| s.starts_with("test") && s.contains(" (") && s.ends_with(')');
    let mut outcomes = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let (head, outcome) = match line.split_once(" ... ") {
            Some((h, o)) => (h.trim(), Some(o)),
            None => (line.trim(), None),
        };
        if is_id(head) {
            current = Some(head.to_string());
        }
        if let (Some(outcome), Some(id)) = (outcome, current.as_ref()) {
            let word = outcome.split_whitespace().next().unwrap_or("").trim_end_matches(':');
            outcomes.insert(id.clone(), word.to_string());
            current = None;
        }
    }
    outcomes
}

fn count(m: &BTreeMap<String, String>, what: &str) -> usize {
    m.values().filter(|v| v.as_str() == what).count()
}

#[test]
fn pyverbs_suite_passes_everything_librxe_passes() {
    let stock_text = read("pyverbs.stock.txt");
    let ours_text = read("pyverbs.ours.txt");
    let stock = pyverbs_outcomes(&stock_text);
    let ours = pyverbs_outcomes(&ours_text);
    let summary = |m: &BTreeMap<String, String>| {
        format!(
            "{} tests: {} ok, {} FAIL, {} ERROR, {} skipped",
            m.len(),
            count(m, "ok"),
            count(m, "FAIL"),
            count(m, "ERROR"),
            count(m, "skipped")
        )
    };
    let report = format!("pyverbs through stock: {}\npyverbs through ours:  {}\n", summary(&stock), summary(&ours));
    let _ = fs::write(out().join("pyverbs-summary.txt"), &report);
    eprintln!("{report}");
    let ran = |text: &str| text.lines().find_map(|l| l.strip_prefix("Ran ")?.split_whitespace().next()?.parse::<usize>().ok());
    assert_eq!(ran(&stock_text), Some(stock.len()), "parsed outcomes do not match the suite's own count (stock)");
    assert_eq!(ran(&ours_text), Some(ours.len()), "parsed outcomes do not match the suite's own count (ours)");
    assert!(stock.len() >= 200, "the pyverbs suite did not run through stock:\n{}", tail(&out().join("pyverbs.stock.txt"), 20));
    assert_eq!(stock.len(), ours.len(), "different test counts\n{report}");
    let regressions: Vec<String> = stock
        .iter()
        .filter(|(_, v)| v.as_str() == "ok")
        .filter(|(t, _)| ours.get(*t).map(String::as_str) != Some("ok"))
        .map(|(t, _)| format!("{t}: {}", ours.get(t).map(String::as_str).unwrap_or("missing")))
        .collect();
    assert!(regressions.is_empty(), "tests passing with librxe but not with ours:\n{}\n{report}", regressions.join("\n"));
    assert!(count(&ours, "ok") >= count(&stock, "ok"), "{report}");
}

// The packages are tested by tests/packaging/run.sh (part of scripts/test.sh).
