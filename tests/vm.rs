//! Integration tests against the real kernel: Debian 12's 6.1 kernel with its
//! in-tree rdma_rxe, booted once under qemu by tests/run-vm.sh (through
//! `rxe-rs sandbox`, which tests/vm/sandbox.rs tests itself). Inside, every
//! program runs through the stock librxe and through ours, each alone (see
//! tests/guest/common.sh); the tests below compare the two.
//!
//! Not part of plain `cargo test` (which runs only the hermetic tests): this
//! target needs the `vm-tests` feature (Cargo.toml), and scripts/test.sh runs
//!
//!     cargo test --release --features vm-tests --test vm
//!
//! That needs root, the packages scripts/install-deps.sh installs, and a
//! release build of the provider (`cargo build --release`); without them the
//! tests fail: they never skip. RXE_RS_VM_RESULTS=<dir> re-checks the results
//! of an earlier boot instead of booting.
//!
//! Debian's 6.12 and 7.x kernels (tests/kernels/fetch.sh) are booted too, one
//! boot each, after or before this one (one VM at a time), with a subset of
//! the suites (KERNELS, tests/vm/kernels.rs); RXE_RS_VM_RESULTS=<dir> re-checks
//! their results in <dir>-6.12 and <dir>-7.
//!
//! The C programs print their own expectations beside each case
//! (`case <name> expect=<token> got=<token>`); the tests here compare tokens.
//!
//! Each guest suite's tests sit in a module named after it (filter with
//! `cargo test ... --test vm core_suite::`). core and datapath are below;
//! other suite modules live in tests/vm/<suite>.rs, included here with
//! `#[path = "vm/<suite>.rs"] mod <suite>_suite;`, and use the helpers here
//! through `use super::*`. The suites to boot are listed once, in SUITES.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The guest suites the one boot runs, in order: `<suite>` is the function
/// `<suite>_suite` of a tests/guest/*.sh file. The only list of them.
// stress and doctor last: they delete rxe0 and make it again.
const SUITES: &[&str] = &["core", "datapath", "safety", "releases", "features", "load", "faults", "stress", "doctor"];

/// The guest suites each other kernel's boot runs, in order (as SUITES).
const KERNEL_SUITES: &[&str] = &["subset", "features"];

/// The other kernels, by the name tests/kernels/fetch.sh gives them, with
/// the suites their boot runs besides KERNEL_SUITES. pyverbs (3 to 4
/// minutes a provider) runs on 7.x only, where the kernel's rxe differs most,
/// to keep the two boots within the test command's time.
const KERNELS: &[(&str, &[&str])] = &[("6.12", &[]), ("7", &["pyverbs"])];

#[path = "vm/safety.rs"]
mod safety;

#[path = "vm/releases.rs"]
mod releases;

#[path = "vm/stress.rs"]
mod stress;

#[path = "vm/features.rs"]
mod features;

#[path = "vm/twohost.rs"]
mod twohost;

#[path = "vm/load.rs"]
mod load;

#[path = "vm/faults.rs"]
mod faults;

#[path = "vm/doctor.rs"]
mod doctor;

#[path = "vm/sandbox.rs"]
mod sandbox;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Held while a boot of ours runs (tests/vm/twohost.rs takes it too for its
/// two VMs): the emulated CPUs are not shared between our guests.
fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    static ONE_VM: Mutex<()> = Mutex::new(());
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

/// Boots one VM with tests/run-vm.sh (the host's kernel, or `kernel`, a
/// vmlinuz) running `suites`, results in `out`. One VM at a time: the boots
/// of the different kernels take turns, so that perftest's timing on an
/// emulated CPU is not shared with another guest of ours.
fn boot(out: &Path, kernel: Option<&Path>, suites: &[&str]) -> Result<(), String> {
    let _turn = vm_turn();
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/run-vm.sh")).arg(out).args(suites);
    if let Some(k) = kernel {
        cmd.env("RXE_RS_KERNEL", k);
    }
    let status = cmd.status().map_err(|e| format!("cannot run tests/run-vm.sh: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the VM run failed ({status}); see {}/vm.log. It needs root, qemu, vng and \
             Debian's kernel (bash scripts/install-deps.sh) and `cargo build --release`",
            out.display()
        ));
    }
    Ok(())
}

/// The results directory of the one boot of the host's kernel, made on first
/// use. RXE_RS_VM_RESULTS=<dir> re-checks the results of an earlier boot
/// instead (and <dir>-<kernel> those of the other kernels, tests/vm/kernels.rs).
fn out() -> &'static Path {
    static OUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = OUT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RXE_RS_VM_RESULTS") {
            return Ok(PathBuf::from(dir));
        }
        let out = repo().join("target/vmtest/out");
        boot(&out, None, SUITES)?;
        Ok(out)
    });
    match result {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

/// The suites `kernel`'s boot runs.
fn suites_of(kernel: &str) -> Vec<&'static str> {
    let (_, extra) = KERNELS.iter().find(|(k, _)| *k == kernel).unwrap_or_else(|| panic!("no kernel {kernel} in KERNELS"));
    KERNEL_SUITES.iter().chain(extra.iter()).copied().collect()
}

/// The stamp tests/kernels/fetch.sh wrote for `kernel`, and the value of its
/// `# <key>: ` line.
fn stamp(kernel: &str, key: &str) -> Result<String, String> {
    let path = repo().join("target/kernels").join(kernel).join("versions.txt");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}; run bash tests/kernels/fetch.sh", path.display()))?;
    let prefix = format!("# {key}: ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no '{prefix}' line", path.display()))
}

/// The results directory of the one boot of `kernel` (a name in KERNELS),
/// made on first use: target/vmtest/out-<kernel>, or with RXE_RS_VM_RESULTS
/// set, <that dir>-<kernel>.
fn kernel_out(kernel: &str) -> &'static Path {
    static OUTS: [OnceLock<Result<PathBuf, String>>; KERNELS.len()] = [const { OnceLock::new() }; KERNELS.len()];
    let i = KERNELS.iter().position(|(k, _)| *k == kernel).unwrap_or_else(|| panic!("no kernel {kernel} in KERNELS"));
    let result = OUTS[i].get_or_init(|| {
        if let Some(dir) = std::env::var_os("RXE_RS_VM_RESULTS") {
            let mut dir = dir;
            dir.push(format!("-{kernel}"));
            return Ok(PathBuf::from(dir));
        }
        let vmlinuz = repo().join("target/kernels").join(kernel).join(stamp(kernel, "vmlinuz")?);
        let out = repo().join(format!("target/vmtest/out-{kernel}"));
        boot(&out, Some(&vmlinuz), &suites_of(kernel))?;
        Ok(out)
    });
    match result {
        Ok(out) => out,
        Err(e) => panic!("{e}"),
    }
}

fn read(name: &str) -> String {
    read_in(out(), name)
}

fn read_in(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One `case <name> expect=<token> got=<token> [<key>=<value>...]` line of a
/// test program's output.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    expect: String,
    got: String,
    /// Further fields, e.g. mr_cases' `expect_cause`.
    fields: BTreeMap<String, String>,
}

/// The case lines of a program's output, in the order printed.
fn cases(text: &str) -> Vec<Case> {
    let mut seen = BTreeSet::new();
    text.lines()
        .filter_map(|l| l.strip_prefix("case "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap_or_default().to_string();
            let mut fields: BTreeMap<String, String> = words
                .map(|w| {
                    let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("not <key>=<token>: {w} in: case {l}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let mut take = |k: &str| fields.remove(k).unwrap_or_else(|| panic!("no {k}= in: case {l}"));
            let (expect, got) = (take("expect"), take("got"));
            assert!(seen.insert(name.clone()), "case {name} printed twice");
            Case { name, expect, got, fields }
        })
        .collect()
}

fn case_map(cases: &[Case]) -> BTreeMap<&str, &Case> {
    cases.iter().map(|c| (c.name.as_str(), c)).collect()
}

/// Checks one program's outcomes through both providers. Ours must get what
/// each case expects; the stock librxe must get the same, except for the cases
/// `stock_differs` names, where it must get the token given there instead
/// (a documented, deliberate difference). An expect of tokens joined by '|'
/// leaves the kernel the choice: either is right, and ours must get what
/// stock got (stock hands the request to the kernel). Writes the table of outcomes
/// (case, expect, ours, stock) to <dir>/outcomes.<label>.txt and prints it.
fn check_outcomes(dir: &Path, label: &str, ours: &[Case], stock: &[Case], stock_differs: &[(&str, &str)]) {
    let (o, s) = (case_map(ours), case_map(stock));
    let mut table = format!("{:<44} {:<22} {:<22} {}\n", "case", "expect", "ours", "stock");
    let mut wrong = String::new();
    for name in o.keys().chain(s.keys()).collect::<BTreeSet<_>>() {
        let (oc, sc) = (o.get(name).copied(), s.get(name).copied());
        let expect = oc.or(sc).map_or("", |c| c.expect.as_str());
        fn got(c: Option<&Case>) -> &str {
            c.map_or("missing", |c| c.got.as_str())
        }
        let _ = writeln!(table, "{name:<44} {expect:<22} {:<22} {}", got(oc), got(sc));
        let allows = |expect: &str, got: &str| expect.split('|').any(|t| t == got);
        if !allows(expect, got(oc)) {
            let _ = writeln!(wrong, "{name}: ours got {}, expected {expect}", got(oc));
        }
        let differs = stock_differs.iter().find(|(n, _)| n == name);
        let stock_expect = differs.map_or(expect, |(_, t)| t);
        if !allows(stock_expect, got(sc)) {
            let _ = writeln!(wrong, "{name}: stock got {}, expected {stock_expect}", got(sc));
        }
        if expect.contains('|') && differs.is_none() && got(oc) != got(sc) {
            let _ = writeln!(wrong, "{name}: the kernel's choice, but ours got {} and stock {}", got(oc), got(sc));
        }
        if let (Some(oc), Some(sc)) = (oc, sc) {
            if oc.expect != sc.expect {
                let _ = writeln!(wrong, "{name}: the two runs expect different things ({} and {})", oc.expect, sc.expect);
            }
        }
    }
    for (name, _) in stock_differs {
        if !o.contains_key(name) {
            let _ = writeln!(wrong, "{name}: a documented difference, but the case did not run");
        }
    }
    let _ = fs::write(dir.join(format!("outcomes.{label}.txt")), &table);
    eprintln!("{label}:\n{table}");
    assert!(wrong.is_empty(), "{label}: outcomes not as expected:\n{wrong}\n{table}");
}

/// Rows of <dir>/cases.txt: (case, provider) -> (verdict, rest of the line).
fn verdicts(dir: &Path) -> BTreeMap<(String, String), (String, String)> {
    read_in(dir, "cases.txt")
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
    our_log_in(out(), label)
}

fn our_log_in(dir: &Path, label: &str) -> String {
    fs::read_to_string(dir.join("log").join(format!("{label}.rxe_rs.log"))).unwrap_or_default()
}

fn served_by_ours(label: &str) -> bool {
    served_by_ours_in(out(), label)
}

fn served_by_ours_in(dir: &Path, label: &str) -> bool {
    our_log_in(dir, label).contains("context opened by rxe_rs")
}

/// Whether ours matched the device (also for programs that open no context).
fn matched_by_ours(label: &str) -> bool {
    our_log(label).contains("rxe0: device matched by rxe_rs")
}

/// The value of the first `<key>=<token>` word in a line (a token: letters,
/// digits, '-' and '_').
fn token<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}=");
    let mut from = 0;
    while let Some(i) = line[from..].find(&pat) {
        let at = from + i;
        let starts_word = at == 0 || !line[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let rest = &line[at + pat.len()..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
        if starts_word && end > 0 {
            return Some(&rest[..end]);
        }
        from = at + pat.len();
    }
    None
}

/// Our provider's memory-registration refusals in `text` (log lines), in
/// order: the `cause=<token>` each carries, or "(no cause token)".
fn refusal_causes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("rxe_rs: ") && l.contains(" reg_mr: ") && (l.contains("cause=") || l.contains("refused")))
        .map(|l| token(l, "cause").unwrap_or("(no cause token)").to_string())
        .collect()
}

/// Checks that ours logged exactly one refusal per case it refused, in order,
/// each with the cause token the case expects (its `expect_cause`).
fn check_refusal_causes(label: &str, ours: &[Case], log: &str) {
    let refused: Vec<&Case> = ours.iter().filter(|c| c.got.starts_with("errno=")).collect();
    let causes = refusal_causes(log);
    let want: Vec<String> = refused
        .iter()
        .map(|c| c.fields.get("expect_cause").cloned().unwrap_or_else(|| format!("(none expected for {})", c.name)))
        .collect();
    let pairs: Vec<String> = refused.iter().zip(&causes).map(|(c, cause)| format!("{}: cause={cause}", c.name)).collect();
    assert_eq!(
        causes.len(),
        refused.len(),
        "{label}: one logged refusal per refused case expected\nrefused: {:?}\nlog:\n{log}",
        refused.iter().map(|c| &c.name).collect::<Vec<_>>()
    );
    assert_eq!(causes, want, "{label}: logged causes (in case order) differ from the expected ones:\n{}\nlog:\n{log}", pairs.join("\n"));
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn every_suite_ran() {
    let progress = read("progress.txt");
    for suite in SUITES {
        assert!(progress.contains(&format!("suite {suite} end ")), "suite {suite} did not finish:\n{progress}");
    }
}

// The suites' tests, one module per suite. Larger suite modules live in
// tests/vm/<suite>.rs, included with #[path] (see `mod safety` above).

/// tests/guest/core.sh: queries and memory registration.
mod core_suite {
    use super::*;

    #[test]
    fn devinfo_is_identical_through_both_providers() {
        check_devinfo(out());
    }

    /// core_devinfo's files in `dir`: ibv_devinfo -v and ibv_devices.
    pub(crate) fn check_devinfo(dir: &Path) {
        let stock = read_in(dir, "devinfo.stock.txt");
        let ours = read_in(dir, "devinfo.ours.txt");
        assert!(stock.contains("hca_id:\trxe0"), "stock ibv_devinfo failed:\n{stock}");
        assert!(stock.contains("GID[  1]"), "devinfo -v output is incomplete:\n{stock}");
        assert_eq!(stock, ours, "ibv_devinfo -v differs between the stock librxe and ours");
        assert_eq!(read_in(dir, "devices.stock.txt"), read_in(dir, "devices.ours.txt"));
        assert!(served_by_ours_in(dir, "devinfo.ours"), "our devinfo run was not served by rxe_rs");
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

    /// tests/programs/mr_cases.c states what the kernel decides for each case.
    #[test]
    fn registration_outcomes_are_what_the_kernel_decides() {
        check_mr_cases(out());
    }

    pub(crate) fn check_mr_cases(dir: &Path) {
        let err = |p: &str| read_in(dir, &format!("mr_cases.{p}.err"));
        assert!(err("stock").contains("exit=0"), "mr_cases failed through stock: {}", err("stock"));
        assert!(err("ours").contains("exit=0"), "mr_cases failed through ours: {}", err("ours"));
        let (ours, stock) = (cases(&read_in(dir, "mr_cases.ours.txt")), cases(&read_in(dir, "mr_cases.stock.txt")));
        assert!(stock.len() >= 60, "too few cases ran through stock ({})", stock.len());
        check_outcomes(dir, "mr_cases", &ours, &stock, &[]);
    }

    #[test]
    fn every_refused_registration_logs_its_cause() {
        check_mr_refusal_causes(out());
    }

    pub(crate) fn check_mr_refusal_causes(dir: &Path) {
        let ours = cases(&read_in(dir, "mr_cases.ours.txt"));
        // The log goes to the run's log file; stderr if the provider could not open it.
        let log = our_log_in(dir, "mr_cases.ours") + &read_in(dir, "mr_cases.ours.err");
        check_refusal_causes("mr_cases", &ours, &log);
    }

    /// mr_cases --unprivileged, as nobody with RLIMIT_MEMLOCK 0 and 64 KiB.
    #[test]
    fn unprivileged_memlock_limits() {
        for (lim, refusals) in [("0", 3), ("65536", 1)] {
            let label = format!("mr_unpriv_{lim}");
            let ours_text = read(&format!("{label}.ours.txt"));
            let (ours, stock) = (cases(&ours_text), cases(&read(&format!("{label}.stock.txt"))));
            assert_eq!(ours.len(), 5, "{label}: cases missing:\n{ours_text}");
            check_outcomes(out(), &label, &ours, &stock, &[]);
            // As nobody, ours may not be able to open the log file: then it logs to stderr (in the .txt).
            let log = our_log(&format!("{label}.ours")) + &ours_text;
            assert_eq!(refusal_causes(&log).len(), refusals, "{label}: refusals:\n{log}");
            check_refusal_causes(&label, &ours, &log);
        }
    }

    #[test]
    fn demo_prints_keys_and_a_logged_refusal() {
        let demo = read("reg_demo.txt");
        assert!(demo.contains("exit=0"), "{demo}");
        assert!(demo.contains("67108864"), "{demo}");
        assert_eq!(refusal_causes(&demo), ["remote-without-local-write"], "{demo}");
    }
}

/// tests/guest/datapath.sh: real programs through each provider.
mod datapath_suite {
    use super::*;

    #[test]
    fn every_program_passes_through_both_providers() {
        // 5 rdma-core examples, 37 perftest runs, 5 rdma_cm tools (tests/guest/datapath.sh).
        check_programs(out(), 47, &[]);
    }

    /// Every case of <dir>/cases.txt (at least `at_least` of them) passes
    /// through both providers, except those in `fail_in_both`, which must fail
    /// through both (what the kernel refuses).
    pub(crate) fn check_programs(dir: &Path, at_least: usize, fail_in_both: &[&str]) {
        let v = verdicts(dir);
        let names: BTreeSet<&String> = v.keys().map(|(n, _)| n).collect();
        assert!(names.len() >= at_least, "too few data-path cases ran: {}", names.len());
        let mut failures = String::new();
        for name in &names {
            let want = if fail_in_both.contains(&name.as_str()) { "FAIL" } else { "PASS" };
            for p in ["stock", "ours"] {
                match v.get(&((*name).clone(), p.to_string())) {
                    Some((verdict, _)) if verdict == want => {}
                    other => {
                        let log = |ext: &str| tail(&dir.join("log").join(format!("{name}.{p}.{ext}")), 8);
                        let _ = writeln!(
                            failures,
                            "{name} through {p}: {other:?}, expected {want}\n--- server\n{}\n--- client/output\n{}{}\n",
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
        check_served(out());
    }

    /// Every run of <dir>/cases.txt was served by the provider it names.
    pub(crate) fn check_served(dir: &Path) {
        for (name, p) in verdicts(dir).keys() {
            let label = format!("{name}.{p}");
            match p.as_str() {
                "ours" => assert!(served_by_ours_in(dir, &label), "{label}: not served by rxe_rs"),
                _ => assert!(!our_log_in(dir, &label).contains("rxe_rs:"), "{label}: rxe_rs served a stock run"),
            }
        }
    }

    #[test]
    fn edge_cases_and_threads() {
        check_edge(out());
    }

    pub(crate) fn check_edge(dir: &Path) {
        let ours_text = read_in(dir, "edge.ours.txt");
        let stock_text = read_in(dir, "edge.stock.txt");
        assert!(ours_text.contains("exit=0"), "edge failed through ours:\n{ours_text}");
        assert!(stock_text.contains("exit=0"), "edge failed through stock:\n{stock_text}");
        let (ours, stock) = (cases(&ours_text), cases(&stock_text));
        assert!(ours.len() >= 40, "too few edge cases ran through ours ({}):\n{ours_text}", ours.len());
        // README, "Known differences from the C librxe": what librxe gets instead.
        let stock_differs = [
            // It posts the WQE and fails at the doorbell, bad_wr NULL; ours refuses
            // before touching the ring, bad_wr at the WR.
            ("send_in_init.bad_wr", "null"),
            // Its end_poll moves the consumer index past the producer, so the next
            // start_poll on the empty CQ reports a stale entry; ours returns ENOENT.
            ("cq_ex_polling.then_empty", "no"),
        ];
        check_outcomes(dir, "edge", &ours, &stock, &stock_differs);
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
        check_pyverbs(out());
    }

    pub(crate) fn check_pyverbs(dir: &Path) {
        let stock_text = read_in(dir, "pyverbs.stock.txt");
        let ours_text = read_in(dir, "pyverbs.ours.txt");
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
        let ran = |text: &str| text.lines().find_map(|l| l.strip_prefix("Ran ")?.split_whitespace().next()?.parse::<usize>().ok());
        assert_eq!(ran(&stock_text), Some(stock.len()), "parsed outcomes do not match the suite's own count (stock)");
        assert_eq!(ran(&ours_text), Some(ours.len()), "parsed outcomes do not match the suite's own count (ours)");
        assert!(stock.len() >= 200, "the pyverbs suite did not run through stock:\n{}", tail(&dir.join("pyverbs.stock.txt"), 20));
        assert_eq!(stock.len(), ours.len(), "different test counts\n{report}");
        // A test whose outcome races the kernel (PYVERBS_RACY in
        // tests/guest/datapath.sh) was run again through both providers when
        // ours missed it; it counts against ours only if ours passed the
        // reruns less often than stock beyond chance.
        let reruns = fs::read_to_string(dir.join("pyverbs.reruns.txt")).unwrap_or_default();
        let mut races = Vec::new();
        let mut regressions = Vec::new();
        for (t, _) in stock.iter().filter(|(_, v)| v.as_str() == "ok") {
            let outcome = ours.get(t).map(String::as_str).unwrap_or("missing");
            if outcome == "ok" {
                continue;
            }
            match rerun_counts(&reruns, t) {
                Some(c) if fewer_passes_p(c.ours_ok, c.stock_ok, c.runs) >= RACE_ALPHA => races.push(format!("{t}: {outcome}, then {c}")),
                Some(c) => regressions.push(format!("{t}: {outcome}, then {c}")),
                None => regressions.push(format!("{t}: {outcome}")),
            }
        }
        let report = if races.is_empty() { report } else { format!("{report}races, at chance on reruns:\n{}\n", races.join("\n")) };
        eprintln!("{report}");
        let _ = fs::write(dir.join("pyverbs-summary.txt"), &report);
        assert!(regressions.is_empty(), "tests passing with librxe but not with ours:\n{}\n{report}", regressions.join("\n"));
        assert!(count(&ours, "ok") + races.len() >= count(&stock, "ok"), "{report}");
    }

    /// A rerun's pass counts fall short for ours when Fisher's exact test
    /// (one-sided) puts chance below this. With 20 runs each it flags ours
    /// at 13 of 20 where stock passed all 20, or at none where stock passed 7.
    const RACE_ALPHA: f64 = 0.01;

    #[derive(Debug, PartialEq)]
    pub(crate) struct RerunCounts {
        pub runs: u32,
        pub stock_ok: u32,
        pub ours_ok: u32,
    }

    impl std::fmt::Display for RerunCounts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "passed {} of {} reruns through ours, {} of {} through stock", self.ours_ok, self.runs, self.stock_ok, self.runs)
        }
    }

    /// One test's reruns from pyverbs.reruns.txt ("<id> <provider>
    /// ok|fail|skipped" lines), if it has the same number through both.
    pub(crate) fn rerun_counts(text: &str, test: &str) -> Option<RerunCounts> {
        let mut runs = [0u32; 2];
        let mut ok = [0u32; 2];
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(id), Some(p), Some(outcome)) = (f.next(), f.next(), f.next()) else { continue };
            // Ids in pyverbs_outcomes are "name (package.module.Class.name)".
            if !test.ends_with(&format!("({id})")) {
                continue;
            }
            let i = match p {
                "stock" => 0,
                "ours" => 1,
                _ => continue,
            };
            runs[i] += 1;
            ok[i] += u32::from(outcome == "ok");
        }
        (runs[0] > 0 && runs[0] == runs[1]).then(|| RerunCounts { runs: runs[0], stock_ok: ok[0], ours_ok: ok[1] })
    }

    /// The chance that ours passes `ours_ok` or fewer of `runs` when both
    /// providers pass alike and `ours_ok + stock_ok` passes fell in all:
    /// the lower tail of the hypergeometric (Fisher's exact test).
    pub(crate) fn fewer_passes_p(ours_ok: u32, stock_ok: u32, runs: u32) -> f64 {
        fn choose(n: u32, k: u32) -> u128 {
            if k > n {
                return 0;
            }
            (0..k.min(n - k)).fold(1u128, |acc, i| acc * u128::from(n - i) / u128::from(i + 1))
        }
        let passes = ours_ok + stock_ok;
        let total = choose(2 * runs, runs) as f64;
        (0..=ours_ok).map(|x| (choose(passes, x) * choose(2 * runs - passes, runs - x)) as f64).sum::<f64>() / total
    }

    #[test]
    fn fishers_test_tells_a_race_from_a_regression() {
        // Equal counts, or ours ahead: chance.
        assert!(fewer_passes_p(15, 15, 20) > 0.5);
        assert!((fewer_passes_p(20, 5, 20) - 1.0).abs() < 1e-12);
        // Always failing where stock always passes.
        assert!(fewer_passes_p(0, 20, 20) < 1e-10);
        // The documented edges of RACE_ALPHA.
        assert!(fewer_passes_p(13, 20, 20) < RACE_ALPHA);
        assert!(fewer_passes_p(14, 20, 20) >= RACE_ALPHA);
        assert!(fewer_passes_p(0, 7, 20) < RACE_ALPHA);
        assert!(fewer_passes_p(0, 6, 20) >= RACE_ALPHA);
        let text = "tests.test_cq.CQTest.test_resize_cq stock ok\ntests.test_cq.CQTest.test_resize_cq ours fail\n\
                    tests.test_cq.CQTest.test_resize_cq stock fail\ntests.test_cq.CQTest.test_resize_cq ours ok\n\
                    tests.test_cq.CQTest.test_resize_cq stock skipped\ntests.test_cq.CQTest.test_resize_cq ours ok\n";
        let id = "test_resize_cq (tests.test_cq.CQTest.test_resize_cq)";
        assert_eq!(rerun_counts(text, id), Some(RerunCounts { runs: 3, stock_ok: 1, ours_ok: 2 }));
        assert_eq!(rerun_counts(text, "test_other (tests.x.Y.test_other)"), None);
        assert_eq!(rerun_counts("tests.a.B.c stock ok\n", "c (tests.a.B.c)"), None, "reruns through one provider only");
    }
}

/// The other kernels' boots (KERNELS).
#[path = "vm/kernels.rs"]
mod kernels;

// The packages are tested by tests/packaging/run.sh (part of scripts/test.sh).
