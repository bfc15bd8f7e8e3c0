//! tests/guest/doctor.sh: `rxe-rs doctor` on the healthy set-up, then on one
//! broken set-up per finding (no rxe link, its netdev down, the netdev
//! without an address, memlock 64 KiB, the stock driver entry winning, rxe
//! on lo, an nftables DROP rule for UDP 4791), each restored after. Every
//! broken one must be named (FAIL, or WARN for lo) with its fix and exit 1
//! when it FAILs; the healthy one, and the one after every restore, exit 0
//! with no FAIL. Each report is printed.

use super::*;

/// One doctor run: its text report, exit status and --json output.
struct Run {
    name: String,
    text: String,
    rc: String,
    json: String,
}

fn run(name: &str) -> Run {
    let r = Run {
        name: name.to_string(),
        text: read(&format!("doctor/{name}.txt")),
        rc: read(&format!("doctor/{name}.rc")).trim().to_string(),
        json: read(&format!("doctor/{name}.json")),
    };
    eprintln!("== doctor {name} (exit {})\n{}", r.rc, r.text);
    r
}

impl Run {
    /// The finding line `<STATUS> <check>: ...` and its fix line, if any.
    fn finding(&self, status: &str, check: &str) -> (String, Option<String>) {
        let lines: Vec<&str> = self.text.lines().collect();
        let prefix = format!("{status:<4} {check}: ");
        let i = lines.iter().position(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{}: no {prefix:?} line:\n{}", self.name, self.text));
        let fix = lines.get(i + 1).and_then(|l| l.trim_start().strip_prefix("fix: ")).map(str::to_string);
        (lines[i].to_string(), fix)
    }

    /// A FAIL (or WARN) finding whose line says `says` and whose fix says `fix`.
    fn named(&self, status: &str, check: &str, says: &str, fix: &str) {
        let (line, got) = self.finding(status, check);
        assert!(line.contains(says), "{}: {line:?} lacks {says:?}", self.name);
        let got = got.unwrap_or_else(|| panic!("{}: {check} has no fix line", self.name));
        assert!(got.contains(fix), "{}: fix {got:?} lacks {fix:?}", self.name);
    }

    fn fails(&self) -> usize {
        self.text.lines().filter(|l| l.starts_with("FAIL ")).count()
    }

    /// The text and JSON runs agree on the number of FAILs.
    fn json_agrees(&self) {
        let want = format!("\"fail\": {}", self.fails());
        assert!(self.json.contains(&want), "{}: --json lacks {want}:\n{}", self.name, self.json);
        assert!(self.json.trim_start().starts_with('{') && self.json.trim_end().ends_with('}'), "{}: --json is not one object", self.name);
    }

    fn healthy(&self) {
        assert_eq!(self.rc, "0", "{}: exit {}:\n{}", self.name, self.rc, self.text);
        assert_eq!(self.fails(), 0, "{}: FAIL lines:\n{}", self.name, self.text);
        self.json_agrees();
        self.finding("OK", "kernel.rdma_rxe");
        self.finding("OK", "netdev.up");
        self.finding("OK", "netdev.address");
        self.finding("OK", "mtu");
        self.finding("OK", "rdma_cm.device");
        self.finding("OK", "rdma_cm.resolve");
        let (gid, _) = self.finding("OK", "gid.roce_v2_ipv4");
        assert!(gid.contains("(192.0.2.1): use ibv_rc_pingpong -g "), "{gid}");
        let (p, _) = self.finding("OK", "verbs.provider");
        assert!(p.contains("served by rxe-rs"), "{p}");
    }

    /// A FAIL case: exit status 1.
    fn failed(&self) {
        assert_eq!(self.rc, "1", "{}: exit {}:\n{}", self.name, self.rc, self.text);
        assert!(self.fails() > 0);
        self.json_agrees();
    }
}

fn note(name: &str) -> String {
    read(&format!("doctor/{name}.note"))
}

#[test]
fn healthy_set_up_passes() {
    run("healthy").healthy();
}

#[test]
fn restored_set_up_passes() {
    run("restored").healthy();
}

#[test]
fn no_rxe_link() {
    let r = run("no_link");
    r.failed();
    r.named("FAIL", "link.none", "no rxe link", "rdma link add rxe0 type rxe netdev ");
    // Its fix, run by the suite, brought rxe0 back.
    assert!(!note("no_link").contains("not back"), "{}", note("no_link"));
}

#[test]
fn link_on_a_down_netdev() {
    let r = run("netdev_down");
    r.failed();
    r.named("FAIL", "netdev.up", "is down", "ip link set ");
    r.named("FAIL", "port.state", "DOWN", "up");
    r.named("FAIL", "rdma_cm.resolve", "is down", "ip link set ");
    assert!(!note("netdev_down").contains("not back"), "{}", note("netdev_down"));
}

#[test]
fn netdev_without_an_address() {
    let r = run("no_address");
    r.failed();
    r.named("FAIL", "netdev.address", "has no IPv4 address", "ip addr add ");
    r.named("FAIL", "gid.roce_v2_ipv4", "no IPv4 RoCE v2 GID", "ip addr add ");
    r.named("FAIL", "rdma_cm.resolve", "cannot resolve rxe0", "ip addr add ");
}

#[test]
fn memlock_64_kib() {
    let r = run("memlock");
    r.failed();
    r.named("FAIL", "memlock", "RLIMIT_MEMLOCK is 64 KiB", "ulimit -l unlimited");
    // As root the same limit is no problem: CAP_IPC_LOCK, and said so.
    let root = run("memlock_root");
    let (line, _) = root.finding("OK", "memlock");
    assert!(line.contains("64 KiB") && line.contains("CAP_IPC_LOCK"), "{line}");
}

#[test]
fn stock_driver_entry_winning() {
    let r = run("stock_wins");
    r.failed();
    r.named("FAIL", "verbs.provider", "the stock librxe will serve them", "RDMAV_DRIVERS=");
}

#[test]
fn rxe_on_lo() {
    let n = note("loopback");
    eprintln!("{n}");
    let r = run("loopback");
    if n.contains(": accepted") {
        r.named("WARN", "link.loopback", "loopback netdev lo", "rdma link delete rxe_lo (rxe0 on ");
    } else {
        // The kernel refused the link: nothing to name, rxe0 still healthy.
        assert!(n.contains(": refused"), "{n}");
        r.healthy();
    }
}

#[test]
fn nftables_drop_rule_for_udp_4791() {
    let r = run("firewall");
    r.failed();
    r.named("FAIL", "firewall.udp4791", "udp dport 4791 drop", "nft delete rule inet rxe_doctor input handle ");
    // The suite ran that fix: the chain listed after it has no rule left.
    let n = note("firewall");
    let after = n.rsplit("chain input").next().unwrap_or("");
    assert!(!after.contains("dport 4791"), "the fix left the rule:\n{n}");
}

/// rdma_cm.device is OK without rdma_ucm loaded because librdmacm has the
/// kernel load it on first use: an rping server did.
#[test]
fn rdma_ucm_loads_on_demand() {
    let n = note("rdma_ucm");
    eprintln!("{n}");
    assert!(n.contains("after_rping=loaded"), "{n}");
    if n.contains("before=absent") {
        let (line, _) = run("restored").finding("OK", "rdma_cm.device");
        assert!(line.contains("librdmacm has the kernel load it"), "{line}");
    }
}
