//! The kernel features of newer rxe (tests/programs/features.c, run by
//! tests/guest/features.sh): ATOMIC WRITE and RDMA FLUSH (Linux 6.2), 2 GiB
//! messages (6.12), on-demand paging MRs and ibv_advise_mr (7.x). The
//! program prints what the device reports (`info` lines) and derives each
//! case's expectation from it; here ours must get every expectation and the
//! stock librxe the same, except for the differences `stock_differs` names.
//!
//! The checks take the results directory of one boot, so the same checks
//! serve every kernel the VM boots.

use super::*;

/// What the device reported, from features.c's `info <key>=<value>` lines.
#[derive(Debug, Clone, PartialEq)]
struct Device {
    /// The booted kernel's release (uname -r).
    kernel: String,
    atomic_write: bool,
    flush_global: bool,
    flush_persistent: bool,
    odp: bool,
    max_msg_sz: u64,
}

fn info<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("info {key}=");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))
}

fn device(label: &str, text: &str) -> Device {
    let yes = |k: &str| match info(text, k) {
        Some("yes") => true,
        Some("no") => false,
        other => panic!("{label}: no `info {k}=yes|no` line ({other:?}):\n{text}"),
    };
    let max_msg_sz = info(text, "max_msg_sz").and_then(|v| v.parse().ok());
    Device {
        kernel: info(text, "kernel").unwrap_or_else(|| panic!("{label}: no `info kernel=<release>` line:\n{text}")).to_string(),
        atomic_write: yes("atomic_write"),
        flush_global: yes("flush_global"),
        flush_persistent: yes("flush_persistent"),
        odp: yes("odp"),
        max_msg_sz: max_msg_sz.unwrap_or_else(|| panic!("{label}: no `info max_msg_sz=<n>` line:\n{text}")),
    }
}

/// One run of the program: <out>/features.<release>.<provider>.txt.
struct Run {
    label: String,
    text: String,
    cases: Vec<Case>,
}

fn load(out: &Path, release: &str, provider: &str) -> Run {
    let label = format!("features.{release}.{provider}");
    let path = out.join(format!("{label}.txt"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = cases(&text);
    Run { label, text, cases }
}

/// The rdma-core releases the suite runs, the case prefixes each runs, and
/// how many cases that is at least.
const RUNS: [(&str, &[&str], usize); 3] = [
    ("host", &["atomic_write.", "odp.", "msg_size."], 15),
    ("trixie", &["flush."], 7),
    ("sid", &["odp.advise_mr"], 2),
];

/// Where the stock librxe of `release` deliberately or necessarily answers
/// differently from a provider that does what the device reports and refuses
/// the rest, on a device `dev`: (case, the token stock gets instead).
fn stock_differs(release: &str, dev: &Device) -> Vec<(&'static str, String)> {
    let mut d: Vec<(&'static str, String)> = Vec::new();
    if release == "host" && !dev.atomic_write {
        // rdma-core 44's librxe accepts IBV_QP_EX_WITH_ATOMIC_WRITE whatever
        // the device reports; the kernel then fails the WR (opcode 15 unknown
        // to it), and the QP goes to the error state.
        d.push(("atomic_write.create_qp", "ok".into()));
        d.push(("atomic_write.8_bytes", STOCK_UNKNOWN_OPCODE.into()));
        d.push(("atomic_write.misaligned", STOCK_UNKNOWN_OPCODE.into()));
    }
    if release == "trixie" && !(dev.flush_global || dev.flush_persistent) {
        // Likewise rdma-core 56.1's librxe and IBV_QP_EX_WITH_FLUSH (opcode 14).
        d.push(("flush.create_qp", "ok".into()));
        for case in ["flush.global_range", "flush.global_mr", "flush.persistent_mr_without_access", "flush.global_qp_without_access"] {
            d.push((case, STOCK_UNKNOWN_OPCODE.into()));
        }
    }
    if release == "host" && dev.max_msg_sz < 1 << 31 {
        // librxe posts a message longer than the port's max_msg_sz, and a
        // kernel whose limit is below 2 GiB (6.1: 8 MiB) executes it; a
        // provider that keeps to the device's limit refuses it at post.
        d.push(("msg_size.max_plus_1", "ok".into()));
    }
    if release == "host" && dev.odp {
        // rdma-core 44's librxe has no advise_mr (libibverbs answers for it).
        d.push(("odp.advise_mr_prefetch", "errno=EOPNOTSUPP".into()));
        d.push(("odp.advise_mr_prefetch_write", "errno=EOPNOTSUPP".into()));
    }
    d
}

/// What the kernel's rxe does with a WR of an opcode it does not execute.
const STOCK_UNKNOWN_OPCODE: &str = "status=IBV_WC_LOC_QP_OP_ERR";

/// Where a kernel's rxe itself gets a case wrong, whichever provider posts
/// it: (case, the token both providers get instead). Pinned to the kernel
/// releases where it was seen, so a fixed kernel shows up as a failure here.
fn kernel_bugs(dev: &Device) -> Vec<(&'static str, String)> {
    let mut d: Vec<(&'static str, String)> = Vec::new();
    if dev.kernel.starts_with("7.3.4+") {
        // Debian's 7.3.4: rxe's copy to and from an ODP MR (rxe_odp_mr_copy)
        // ignores the offset within the page: every packet of a message lands
        // at (or is read from) the start of its page, so all data past the
        // first packet, and a UD payload after its 40-byte GRH, is wrong.
        // Atomics on ODP MRs compute the offset and are right.
        for case in ["odp.rc_send_recv", "odp.rc_write", "odp.rc_read", "odp.srq_recv", "odp.ud_send_recv"] {
            d.push((case, "data-mismatch".into()));
        }
    }
    d
}

/// Compares one release's pair of runs; returns the failures and writes the
/// table (case, expect, ours, stock) to <out>/outcomes.features.<release>.txt.
fn compare(out: &Path, release: &str, ours: &Run, stock: &Run, differs: &[(&'static str, String)], bugs: &[(&'static str, String)]) -> Vec<String> {
    let (o, s) = (case_map(&ours.cases), case_map(&stock.cases));
    let mut table = format!("{:<40} {:<30} {:<30} {}\n", "case", "expect", "ours", "stock");
    let mut wrong = Vec::new();
    for name in o.keys().chain(s.keys()).collect::<BTreeSet<_>>() {
        let (oc, sc) = (o.get(name).copied(), s.get(name).copied());
        let got = |c: Option<&Case>| c.map_or("missing".to_string(), |c| c.got.clone());
        let expect = oc.or(sc).map_or("", |c| c.expect.as_str());
        let _ = writeln!(table, "{name:<40} {expect:<30} {:<30} {}", got(oc), got(sc));
        let named = |list: &[(&'static str, String)]| list.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
        let bug = named(bugs);
        let ours_expect = bug.as_deref().unwrap_or(expect);
        if got(oc) != ours_expect {
            let at = oc.and_then(|c| c.fields.get("at")).map_or("", |s| s.as_str());
            wrong.push(format!("{release} {name}: ours got {} (at {at}), expected {ours_expect}", got(oc)));
        }
        let stock_expect = named(differs).or(bug).unwrap_or_else(|| expect.to_string());
        let stock_expect = stock_expect.as_str();
        if got(sc) != stock_expect {
            let at = sc.and_then(|c| c.fields.get("at")).map_or("", |s| s.as_str());
            wrong.push(format!("{release} {name}: stock got {} (at {at}), expected {stock_expect}", got(sc)));
        }
        if let (Some(oc), Some(sc)) = (oc, sc) {
            if oc.expect != sc.expect {
                wrong.push(format!("{release} {name}: the two runs expect different things ({} and {})", oc.expect, sc.expect));
            }
        }
    }
    for (name, _) in differs {
        if !o.contains_key(name) {
            wrong.push(format!("{release} {name}: a documented difference, but the case did not run"));
        }
    }
    for (name, token) in bugs {
        if o.contains_key(name) {
            let _ = writeln!(table, "(known kernel bug: {name} gets {token} through both providers)");
        }
    }
    let _ = fs::write(out.join(format!("outcomes.features.{release}.txt")), &table);
    eprintln!("features under {release}'s rdma-core ({}):\n{table}", out.display());
    wrong
}

/// Which provider served a run: ours logs `context opened by rxe_rs`; for the
/// releases' runs, the librxe file the loader opened.
fn served(out: &Path, release: &str, provider: &str, run: &Run) -> Vec<String> {
    let mut wrong = Vec::new();
    let log = fs::read_to_string(out.join("log").join(format!("{}.rxe_rs.log", run.label))).unwrap_or_default();
    match provider {
        "ours" if !log.contains("context opened by rxe_rs") => wrong.push(format!("{}: not served by rxe_rs", run.label)),
        "stock" if log.contains("rxe_rs:") => wrong.push(format!("{}: rxe_rs served a stock run", run.label)),
        _ => {}
    }
    if release != "host" {
        let loaded = info_line(&run.text, "loaded=").unwrap_or_default();
        let files: Vec<&str> = loaded.split(',').filter(|f| !f.is_empty()).collect();
        let want = match provider {
            "ours" => "/driver-config/librxe_rs-rdmav".to_string(),
            _ => format!("/target/releases/{release}/root/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav"),
        };
        if files.len() != 1 || !files[0].contains(&want) {
            wrong.push(format!("{}: the loader opened {files:?}, not one {want}*.so", run.label));
        }
    }
    wrong
}

fn info_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(prefix))
}

/// Every check of one boot's features suite.
pub(super) fn check_features(out: &Path) {
    let mut wrong = Vec::new();
    let mut dev: Option<Device> = None;
    for (release, prefixes, min_cases) in RUNS {
        let (ours, stock) = (load(out, release, "ours"), load(out, release, "stock"));
        for run in [&ours, &stock] {
            if info_line(&run.text, "exit=") != Some("0") {
                wrong.push(format!("{}: the program did not finish (exit={:?}):\n{}", run.label, info_line(&run.text, "exit="), run.text));
                continue;
            }
            if run.cases.len() < min_cases {
                wrong.push(format!("{}: {} cases ran, at least {min_cases} expected", run.label, run.cases.len()));
            }
            if let Some(c) = run.cases.iter().find(|c| !prefixes.iter().any(|p| c.name.starts_with(p))) {
                wrong.push(format!("{}: case {} is not one of {prefixes:?}", run.label, c.name));
            }
            if release == "trixie" && info(&run.text, "flush_cases") != Some("built") {
                wrong.push(format!("{}: the flush cases were not built in", run.label));
            }
            // Every run sees the same device.
            let d = device(&run.label, &run.text);
            match &dev {
                Some(first) if *first != d => wrong.push(format!("{}: device {d:?}, another run saw {first:?}", run.label)),
                Some(_) => {}
                None => dev = Some(d),
            }
        }
        for (p, run) in [("ours", &ours), ("stock", &stock)] {
            wrong.extend(served(out, release, p, run));
        }
        if let Some(d) = &dev {
            wrong.extend(compare(out, release, &ours, &stock, &stock_differs(release, d), &kernel_bugs(d)));
        }
    }
    eprintln!("device: {dev:?}");
    assert!(wrong.is_empty(), "features ({}): {} failure(s):\n{}", out.display(), wrong.len(), wrong.join("\n"));
}

/// The default boot: Debian 12's 6.1, which has none of these features.
#[test]
fn features_follow_the_device_on_6_1() {
    check_features(out());
}

/// Debian's 6.12 (bookworm-backports): atomic write, flush, 2 GiB messages.
#[test]
fn features_follow_the_device_on_6_12() {
    check_features(kernel_out("6.12"));
}

/// Debian's 7.x (trixie-backports): on-demand paging and advise_mr as well.
#[test]
fn features_follow_the_device_on_7() {
    check_features(kernel_out("7"));
}
