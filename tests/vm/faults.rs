//! tests/guest/faults.sh: fault injection (RXE_RS_FAULTS, issue 13 part 1).
//! The same runs go through ours, which injects, and through the stock
//! librxe, which ignores the variable: the stock column of each table is the
//! run without faults.

use super::*;

/// The scenarios of tests/faults/faults.c, by the file label the suite gives
/// them, with the number of `fault injected:` lines ours must log (the
/// completion scenario's second line is its QP moved to the error state).
const SCENARIOS: &[(&str, usize)] = &[
    ("faults_post_send", 2),
    ("faults_recv", 2),
    ("faults_completion", 2),
    ("faults_qpn_filter", 0),
    ("faults_create", 3),
    ("faults_bad_spec", 0),
];

/// What the stock librxe gets where ours injects: the call as it goes
/// without a fault.
const STOCK_UNINJECTED: &[(&str, &str)] = &[
    ("post_send.call2", "ok"),
    ("post_send.call2_bad_wr", "null"),
    ("post_send.call4", "ok"),
    ("post_send.call4_bad_wr", "null"),
    ("post_send.posted", "6"),
    ("post_send.sends_completed", "6"),
    ("post_send.recvs_completed", "6"),
    ("recv.post_recv1", "ok"),
    ("recv.post_srq_recv2", "ok"),
    ("completion.completion1", "success"),
    ("completion.qp_state", "rts"),
    ("completion.completion2", "success"),
    ("create.reg_mr1", "ok"),
    ("create.create_cq1", "ok"),
    ("create.create_qp1", "ok"),
];

fn injected_lines(label: &str) -> usize {
    our_log(label).lines().filter(|l| l.contains("fault injected:")).count()
}

fn finished(label: &str) -> String {
    let text = read(&format!("{label}.txt"));
    assert!(text.contains("\nfinished\n") && text.lines().any(|l| l == "exit=0"), "{label} did not finish:\n{text}\n{}", read(&format!("{label}.err")));
    text
}

#[test]
fn each_fault_reaches_the_program_as_specified() {
    for (scenario, lines) in SCENARIOS {
        let (ours, stock) = (finished(&format!("{scenario}.ours")), finished(&format!("{scenario}.stock")));
        assert!(served_by_ours(&format!("{scenario}.ours")), "{scenario}: not served by rxe_rs");
        assert!(!our_log(&format!("{scenario}.stock")).contains("rxe_rs:"), "{scenario}: rxe_rs served the stock run");
        let (o, s) = (cases(&ours), cases(&stock));
        assert!(!o.is_empty(), "{scenario}: no cases through ours");
        let differs: Vec<(&str, &str)> = STOCK_UNINJECTED.iter().copied().filter(|(n, _)| o.iter().any(|c| c.name == *n)).collect();
        check_outcomes(out(), scenario, &o, &s, &differs);
        let got = injected_lines(&format!("{scenario}.ours"));
        assert_eq!(got, *lines, "{scenario}: {got} `fault injected` lines in our log, want {lines}:\n{}", our_log(&format!("{scenario}.ours")));
    }
}

#[test]
fn a_bad_specification_is_refused_naming_its_part_and_nothing_is_injected() {
    let log = our_log("faults_bad_spec.ours");
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("RXE_RS_FAULTS:")).collect();
    assert_eq!(refusals.len(), 1, "want one refusal line:\n{log}");
    assert!(refusals[0].contains("`every=0`") && refusals[0].contains("no fault will be injected"), "{}", refusals[0]);
    assert_eq!(injected_lines("faults_bad_spec.ours"), 0);
}

#[test]
fn a_seeded_probability_fails_the_same_calls_in_every_run() {
    let pattern = |label: &str| {
        let text = finished(label);
        let c = cases(&text).into_iter().find(|c| c.name == "probability.calls").expect("probability.calls");
        c.fields.get("pattern").cloned().expect("pattern=")
    };
    let (first, second) = (pattern("faults_probability1.ours"), pattern("faults_probability2.ours"));
    assert_eq!(first, second, "two runs with the same seed failed different calls");
    let failed = first.matches('x').count();
    assert_eq!(first.len(), 40, "{first}");
    assert!(!first.contains('?'), "a call failed with another errno: {first}");
    assert_eq!(injected_lines("faults_probability1.ours"), failed);
    for run in ["faults_probability1", "faults_probability2"] {
        let o = cases(&finished(&format!("{run}.ours")));
        for c in o.iter().filter(|c| c.name != "probability.calls") {
            assert_eq!(c.got, c.expect, "{run}: {}", c.name);
        }
        assert_eq!(pattern(&format!("{run}.stock")), ".".repeat(40), "{run}: stock failed a call");
    }
}
