//! The safety cases (tests/safety/*.c, run by tests/guest/safety.sh
//! through each provider). Every line is
//! `case <name> expect=<token> got=<token> [key=value ...]`; tokens are ok,
//! errno=<n>, signal=<n>, timeout (and setup-failed, bad-completions).
//!
//! Through ours: no crash or hang, got == expect for every case, and where
//! the program checked it, bad_wr at the bad WR and nothing posted. Through
//! stock: recorded, never a failure by itself (librxe crashes on several of
//! these); where it did not crash, ours gives the same token unless the case
//! is one of the documented deliberate improvements.

use super::{our_log, out, read, served_by_ours};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;

#[derive(Debug)]
struct Outcome {
    expect: String,
    got: String,
    fields: BTreeMap<String, String>,
}

/// The case lines of one run, in order.
fn outcomes(text: &str) -> Vec<(String, Outcome)> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("case ")?.split_whitespace();
            let name = words.next()?.to_string();
            let fields: BTreeMap<String, String> =
                words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let o = Outcome { expect: fields.get("expect")?.clone(), got: fields.get("got")?.clone(), fields };
            Some((name, o))
        })
        .collect()
}

fn crashed(token: &str) -> bool {
    token.starts_with("signal=") || token == "timeout"
}

/// Checks one program's pair of runs (`<file>.stock.txt`, `<file>.ours.txt`)
/// and returns the failures; prints the table stock | ours.
fn check(file: &str, required: &[&str], improvements: &[&str]) -> Vec<String> {
    let stock_text = read(&format!("{file}.stock.txt"));
    let ours_text = read(&format!("{file}.ours.txt"));
    let stock: BTreeMap<String, Outcome> = outcomes(&stock_text).into_iter().collect();
    let ours_list = outcomes(&ours_text);
    let ours: BTreeMap<&str, &Outcome> = ours_list.iter().map(|(n, o)| (n.as_str(), o)).collect();
    let mut failures = Vec::new();
    let mut fail = |s: String| failures.push(format!("{file}: {s}"));

    if !ours_text.lines().any(|l| l == "exit=0") {
        fail(format!("the program did not finish through ours:\n{ours_text}"));
    }
    if !served_by_ours(&format!("{file}.ours")) {
        fail("the 'ours' run was not served by rxe_rs".into());
    }
    if our_log(&format!("{file}.stock")).contains("rxe_rs:") {
        fail("rxe_rs served the 'stock' run".into());
    }
    for name in required {
        if !stock.contains_key(*name) {
            fail(format!("case {name} missing through stock"));
        }
        if !ours.contains_key(*name) {
            fail(format!("case {name} missing through ours"));
        }
    }
    for name in stock.keys() {
        if !ours.contains_key(name.as_str()) {
            fail(format!("case {name} ran through stock but not through ours"));
        }
    }

    let mut table = format!("{file}\n{:<36} {:<12} {:<14} {:<14}\n", "case", "expect", "stock", "ours");
    for (name, o) in &ours_list {
        let s = stock.get(name);
        let _ = writeln!(table, "{name:<36} {:<12} {:<14} {:<14}", o.expect, s.map_or("missing", |s| s.got.as_str()), o.got);
        if o.got == "setup-failed" || s.is_some_and(|s| s.got == "setup-failed") {
            fail(format!("{name}: the harness could not build the case: {o:?} / stock {s:?}"));
            continue;
        }
        if crashed(&o.got) {
            fail(format!("{name}: ours crashed or hung: got={} (at={})", o.got, o.fields.get("at").map_or("?", |s| s)));
            continue;
        }
        if o.got != o.expect {
            fail(format!("{name}: ours got {} but must give {} ({:?})", o.got, o.expect, o.fields));
        }
        if let Some(s) = s {
            if s.expect != o.expect {
                fail(format!("{name}: the program expects {} through stock but {} through ours", s.expect, o.expect));
            }
            // (When ours misses its expectation, that failure above says enough.)
            if !crashed(&s.got) && s.got != o.got && o.got == o.expect && !improvements.contains(&name.as_str()) {
                fail(format!("{name}: stock gives {} and did not crash; ours gives {}", s.got, o.got));
            }
        }
        // What the program saw around a refused or accepted post.
        let field = |k: &str| o.fields.get(k).map(String::as_str);
        if o.expect.starts_with("errno=") && o.got == o.expect {
            if let Some(b) = field("bad_wr") {
                if b != "it" {
                    fail(format!("{name}: refused, but bad_wr is {b}, not the bad WR"));
                }
            }
            if let Some(p) = field("posted") {
                if p != "no" {
                    fail(format!("{name}: refused, but posted={p} (the good WR after it: good={:?})", field("good")));
                }
            }
        }
        if o.expect == "ok" && o.got == "ok" {
            if let Some(p) = field("posted") {
                if p != "yes" {
                    fail(format!("{name}: accepted, but its completion never came (posted={p})"));
                }
            }
        }
    }
    eprintln!("{table}");
    let _ = fs::write(out().join(format!("{file}.table.txt")), &table);
    failures
}

fn assert_none(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn safety_bad_inputs_never_crash_ours() {
    let required = [
        "inline_wrap_send",
        "inline_list_wrap_wr",
        "inline_list_over_limit_wr",
        "unbind_type1_bind_mw",
        "unbind_type2_wr_bind_mw",
        "ud_rdma_write",
        "ud_rdma_read",
        "ud_atomic_fetch_add",
        "send_sg_list_null",
        "send_sg_list_null_num_sge0",
        "recv_sg_list_null",
        "srq_recv_sg_list_null",
        "send_num_sge_huge",
        "send_num_sge_negative",
        "recv_num_sge_huge",
        "recv_num_sge_negative",
    ];
    // Deliberate differences where librxe does not crash: it posts a NULL
    // sg_list as is, and copies an inline list past its slot when each
    // buffer fits but their sum does not.
    let improvements = ["send_sg_list_null", "recv_sg_list_null", "srq_recv_sg_list_null", "inline_list_over_limit_wr"];
    let mut failures = check("safety_bad_inputs", &required, &improvements);
    // The two unbinds must reach the kernel and complete (with whatever status it gives).
    let ours = outcomes(&read("safety_bad_inputs.ours.txt"));
    for (name, o) in &ours {
        if name.starts_with("unbind_") && o.got == "ok" && o.fields.get("wc").map_or(true, |w| w == "none") {
            failures.push(format!("{name}: no completion for the unbind: {:?}", o.fields));
        }
    }
    assert_none(failures);
}

fn privdrop(lim: &str) {
    let required = [
        "fork_child_alloc_pd",
        "fork_child_reg_mr",
        "fork_child_dereg_mr",
        "alloc_pd",
        "query_device",
        "query_port",
        "reg_mr_4KiB",
        "reg_mr_64KiB",
        "reg_mr_1MiB",
        "reg_mr_access_RW_without_LW",
        "alloc_mw_type1",
        "alloc_mw_type2",
        "create_cq",
        "create_qp",
        "modify_qp",
        "post_recv",
        "post_send",
        "completions",
        "destroy_qp",
        "destroy_cq",
        "dereg_mr_pair",
        "dealloc_pd",
    ];
    // librxe rings the send doorbell with write(2), which the kernel refuses
    // after a change of credentials (EACCES); ours must not.
    let improvements = ["post_send", "completions"];
    let mut failures = check(&format!("safety_privdrop_{lim}"), &required, &improvements);
    // The kernel's memlock answers, independently of the program's own expectations.
    let ours: BTreeMap<String, Outcome> = outcomes(&read(&format!("safety_privdrop_{lim}.ours.txt"))).into_iter().collect();
    let want: &[(&str, &str)] = match lim {
        "0" => &[("reg_mr_4KiB", "errno=1"), ("reg_mr_1MiB", "errno=1"), ("reg_mr_access_RW_without_LW", "errno=22")],
        _ => &[("reg_mr_4KiB", "ok"), ("reg_mr_64KiB", "ok"), ("reg_mr_1MiB", "errno=12"), ("reg_mr_access_RW_without_LW", "errno=22")],
    };
    for (case, token) in want {
        if ours.get(*case).map(|o| o.expect.as_str()) != Some(*token) {
            failures.push(format!("memlock {lim}: {case} must expect {token}: {:?}", ours.get(*case)));
        }
    }
    assert_none(failures);
}

#[test]
fn safety_privdrop_memlock_0() {
    privdrop("0");
}

#[test]
fn safety_privdrop_memlock_65536() {
    privdrop("65536");
}
