//! Two hosts on one wire (tests/twohost/run.sh): two VMs, each with its own
//! rxe0 on a NIC, the NICs joined by a qemu socket netdev (TCP on 127.0.0.1
//! in a network namespace of the run's own).
//! Host a (192.0.2.1) runs the servers, host b (192.0.2.2) the clients, in
//! four pairings named `<server>-<client>`: stock-stock (the reference),
//! ours-ours, ours-stock and stock-ours. Unlike the one-VM suites, nothing
//! loops back inside rxe: ARP, address handles to a remote GID and UDP/4791
//! go over the wire.
//!
//! The two VMs boot once, on first use, separately from the main VM (their
//! results go to target/vmtest/twohost). RXE_RS_TWOHOST_RESULTS=<dir>
//! re-checks the results of an earlier run instead; so does
//! RXE_RS_VM_RESULTS (re-checking the main boot), with the last run's
//! target/vmtest/twohost.

use super::{repo, tail, vm_turn};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The cases, as tests/twohost/guest.sh names them, and the RoCE packets each
/// must carry at least, from host a to host b and from b to a (protocol
/// minima: retransmissions and acknowledgements only add to them).
const CASES: [(&str, u64, u64); 7] = [
    // 100 round trips of 4096 bytes: 4 packets of the 1024-byte MTU each way.
    ("rc_pingpong", 400, 400),
    // 100 round trips of one datagram.
    ("ud_pingpong", 100, 100),
    // 100 messages of 64 KiB from b (64 packets each), one acknowledgement each.
    ("send_bw", 100, 6400),
    ("write_bw", 100, 6400),
    // 100 reads of 2 bytes: a request from b, a response from a.
    ("read_lat", 100, 100),
    // 10 iterations: the client sends twice and answers a read; the server
    // reads, writes and sends twice.
    ("rping", 40, 30),
    // 10 datagrams from b's sender to the group a has joined.
    ("mckey", 0, 10),
];

const PAIRINGS: [&str; 4] = ["stock-stock", "ours-ours", "ours-stock", "stock-ours"];

/// Each host's MAC (tests/twohost/run.sh) and the peer's.
const MAC: [(&str, &str); 2] = [("a", "52:54:00:00:02:02"), ("b", "52:54:00:00:02:01")];

/// The results directory of the one two-VM run, made on first use.
fn dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("RXE_RS_TWOHOST_RESULTS") {
            return Ok(PathBuf::from(dir));
        }
        let dir = repo().join("target/vmtest/twohost");
        if std::env::var_os("RXE_RS_VM_RESULTS").is_some() {
            return Ok(dir);
        }
        let _turn = vm_turn();
        let status = Command::new("bash")
            .arg(repo().join("tests/twohost/run.sh"))
            .arg(&dir)
            .status()
            .map_err(|e| format!("cannot run tests/twohost/run.sh: {e}"))?;
        if !status.success() {
            return Err(format!(
                "the two-VM run failed ({status}); see {0}/vm-a.log, {0}/vm-b.log and {0}/a|b/setup.txt. \
                 It needs root, qemu, vng and Debian's kernel (bash scripts/install-deps.sh) and `cargo build --release`",
                dir.display()
            ));
        }
        Ok(dir)
    });
    match result {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn read(name: &str) -> String {
    let path = dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `<key>=<value>` words of a line.
fn fields(words: &[&str]) -> BTreeMap<String, String> {
    words.iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One CASE line of cases.txt.
#[derive(Debug)]
struct Verdict {
    pass: bool,
    seconds: String,
    fields: BTreeMap<String, String>,
}

/// (case, pairing) -> its CASE line.
fn verdicts() -> BTreeMap<(String, String), Verdict> {
    read("cases.txt")
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.strip_prefix("CASE ")?.split_whitespace().collect();
            let v = Verdict { pass: *w.get(2)? == "PASS", seconds: w.get(3)?.to_string(), fields: fields(&w[4..]) };
            Some(((w[0].to_string(), w[1].to_string()), v))
        })
        .collect()
}

/// The STAT line of a case's last attempt on one host (`role`): its counter
/// deltas and the peer's MAC after the run.
fn stat(role: &str, name: &str, pairing: &str, attempt: &str) -> Option<BTreeMap<String, String>> {
    read(&format!("stats.{role}.txt")).lines().find_map(|l| {
        let w: Vec<&str> = l.strip_prefix("STAT ")?.split_whitespace().collect();
        let f = fields(w.get(2..)?);
        (w[0] == name && w[1] == pairing && f.get("attempt").map(String::as_str) == Some(attempt)).then_some(f)
    })
}

fn attempts(v: &BTreeMap<(String, String), Verdict>, name: &str, pairing: &str) -> String {
    v.get(&(name.to_string(), pairing.to_string())).and_then(|c| c.fields.get("attempts").cloned()).unwrap_or_else(|| "1".into())
}

fn number(f: &BTreeMap<String, String>, key: &str) -> u64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no number {key}= in {f:?}"))
}

fn our_log(label: &str) -> String {
    fs::read_to_string(dir().join("log").join(format!("{label}.rxe_rs.log"))).unwrap_or_default()
}

#[test]
fn every_case_passes_in_every_pairing() {
    for role in ["a", "b"] {
        assert_eq!(read(&format!("{role}/finished")).trim(), "ok", "host {role} did not finish");
    }
    let v = verdicts();
    let mut table = format!("{:<12} {:<12} {:<5} {:>5} {}\n", "case", "pairing", "", "secs", "rc / attempts");
    let mut failures = String::new();
    for pairing in PAIRINGS {
        for (name, ..) in CASES {
            let Some(c) = v.get(&(name.to_string(), pairing.to_string())) else {
                let _ = writeln!(failures, "{name} {pairing}: did not run");
                continue;
            };
            let (rc, att) = (c.fields.get("rc").map_or("?", String::as_str), c.fields.get("attempts").map_or("?", String::as_str));
            let _ = writeln!(table, "{name:<12} {pairing:<12} {:<5} {:>5} rc={rc} attempts={att}", if c.pass { "PASS" } else { "FAIL" }, c.seconds);
            if !c.pass {
                let log = |end: &str| tail(&dir().join("log").join(format!("{name}.{pairing}.{end}")), 8);
                let _ = writeln!(failures, "{name} {pairing}: rc={rc}\n--- server (a)\n{}\n--- client (b)\n{}\n", log("srv"), log("cli"));
            }
        }
    }
    assert_eq!(v.len(), CASES.len() * PAIRINGS.len(), "unexpected CASE lines:\n{}", read("cases.txt"));
    let _ = fs::write(dir().join("table.txt"), &table);
    eprintln!("two hosts, one wire ({}):\n{table}", read("wire.txt").trim());
    assert!(failures.is_empty(), "two-host failures:\n{failures}\n{table}");
    // Only perftest's failed clock calibration is retried (tests/twohost/guest.sh).
    let retried: Vec<String> = v.iter().filter(|(_, c)| c.fields.get("attempts").is_some_and(|a| a != "1")).map(|((n, p), _)| format!("{n} {p}")).collect();
    assert!(retried.len() <= 3, "too many cases needed another attempt: {retried:?}");
}

/// A `context opened by rxe_rs` line in an end's log proves ours served it;
/// none at all from rxe_rs, that the stock librxe did.
#[test]
fn each_end_was_served_by_the_provider_its_pairing_names() {
    let mut wrong = Vec::new();
    for pairing in PAIRINGS {
        let (server, client) = pairing.split_once('-').unwrap();
        for (name, ..) in CASES {
            for (end, provider) in [("srv", server), ("cli", client)] {
                let log = our_log(&format!("{name}.{pairing}.{end}"));
                let ok = match provider {
                    "ours" => log.contains("context opened by rxe_rs"),
                    _ => !log.contains("rxe_rs:"),
                };
                if !ok {
                    wrong.push(format!("{name} {pairing} {end}: not served by {provider}; its log:\n{log}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every run's RoCE packets were counted by rxe0 on both hosts, at least the
/// protocol's minimum in each direction, and went through the NICs.
#[test]
fn traffic_crossed_the_wire() {
    let v = verdicts();
    let mut table = format!(
        "{:<12} {:<12} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}\n",
        "case", "pairing", "a sent", "b rcvd", "b sent", "a rcvd", "retry", "ooseq"
    );
    let mut wrong = Vec::new();
    for pairing in PAIRINGS {
        for (name, a_to_b, b_to_a) in CASES {
            let att = attempts(&v, name, pairing);
            let (Some(a), Some(b)) = (stat("a", name, pairing, &att), stat("b", name, pairing, &att)) else {
                wrong.push(format!("{name} {pairing}: no counters from both hosts (attempt {att})"));
                continue;
            };
            let n = number;
            let _ = writeln!(
                table,
                "{name:<12} {pairing:<12} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}",
                n(&a, "rxe_sent"),
                n(&b, "rxe_rcvd"),
                n(&b, "rxe_sent"),
                n(&a, "rxe_rcvd"),
                n(&a, "rxe_retry") + n(&b, "rxe_retry"),
                n(&a, "rxe_out_of_seq") + n(&b, "rxe_out_of_seq"),
            );
            let mut need = |host: &str, f: &BTreeMap<String, String>, key: &str, min: u64| {
                if n(f, key) < min {
                    wrong.push(format!("{name} {pairing}: host {host} {key}={} < {min}", n(f, key)));
                }
            };
            need("a", &a, "rxe_sent", a_to_b);
            need("b", &b, "rxe_rcvd", a_to_b);
            need("b", &b, "rxe_sent", b_to_a);
            need("a", &a, "rxe_rcvd", b_to_a);
            // Every packet rxe sent left through the NIC, and the peer's came
            // in through it (rxe's own count of received packets also holds
            // what it loops back: a multicast sender receives its own).
            need("a", &a, "nic_tx", n(&a, "rxe_sent"));
            need("b", &b, "nic_tx", n(&b, "rxe_sent"));
            need("a", &a, "nic_rx", b_to_a);
            need("b", &b, "nic_rx", a_to_b);
        }
    }
    let _ = fs::write(dir().join("traffic.txt"), &table);
    eprintln!("RoCE packets per run (rxe0's counters on each host):\n{table}");
    assert!(wrong.is_empty(), "{}\n{table}", wrong.join("\n"));
}

/// Neither host knew the other before the first run; the neighbour tables
/// are flushed before every run, and after each the peer's MAC is there
/// again: resolved by ARP (mckey sends to a group's MAC and resolves nothing).
#[test]
fn each_run_resolved_its_peer_by_arp() {
    let v = verdicts();
    let mut wrong = Vec::new();
    for (role, peer_mac) in MAC {
        let setup = read(&format!("{role}/setup.txt"));
        assert!(setup.lines().any(|l| l == "neigh_before=none"), "host {role} knew its peer before any run:\n{setup}");
        for pairing in PAIRINGS {
            for (name, ..) in CASES.iter().filter(|(n, ..)| *n != "mckey") {
                let got = stat(role, name, pairing, &attempts(&v, name, pairing)).and_then(|f| f.get("peer_mac").cloned());
                if got.as_deref() != Some(peer_mac) {
                    wrong.push(format!("{name} {pairing}: host {role} has {got:?} for its peer, not {peer_mac}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The figures line under perftest's `#bytes` header in a client's output.
fn perftest_figures(text: &str) -> Option<Vec<f64>> {
    let mut lines = text.lines().skip_while(|l| !l.trim_start().starts_with("#bytes"));
    lines.next()?;
    let nums: Option<Vec<f64>> = lines.next()?.split_whitespace().map(|w| w.parse().ok()).collect();
    nums.filter(|n| n.len() >= 5)
}

/// ibv_*_pingpong's `... = <x> usec/iter` figure.
fn pingpong_usec(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.ends_with("usec/iter"))?;
    line.split_whitespace().rev().nth(1)?.parse().ok()
}

/// perftest's bandwidth and latency figures, and the pingpongs' time per
/// iteration, of every pairing (emulated: only their order of magnitude and
/// the comparison within one run mean anything).
#[test]
fn figures_are_recorded() {
    let v = verdicts();
    let mut table = format!("{:<12} {:<12} {:>14} {}\n", "case", "pairing", "figure", "unit (as the tool prints it)");
    let mut wrong = Vec::new();
    for (name, ..) in CASES {
        for pairing in PAIRINGS {
            let text = read(&format!("log/{name}.{pairing}.cli"));
            let figure = match name {
                "send_bw" | "write_bw" => perftest_figures(&text).map(|n| (n[3], "MB/s BW average")),
                "read_lat" => perftest_figures(&text).map(|n| (n[4], "usec t_typical")),
                "rc_pingpong" | "ud_pingpong" => pingpong_usec(&text).map(|u| (u, "usec/iter")),
                _ => continue,
            };
            let pass = v.get(&(name.to_string(), pairing.to_string())).is_some_and(|c| c.pass);
            match figure {
                Some((x, unit)) if x > 0.0 => {
                    let _ = writeln!(table, "{name:<12} {pairing:<12} {x:>14.2} {unit}");
                }
                _ if pass => wrong.push(format!("{name} {pairing}: passed but printed no figure:\n{text}")),
                _ => {
                    let _ = writeln!(table, "{name:<12} {pairing:<12} {:>14} (failed)", "-");
                }
            }
        }
    }
    let _ = fs::write(dir().join("figures.txt"), &table);
    eprintln!("figures across the wire:\n{table}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
