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
    // cq_err, qp_fatal and its QP moved to the error state, port_err.
    ("faults_events", 4),
    ("faults_ex_status", 2),
    // One line for each CQ whose completions were held: three CQs polled.
    ("faults_delay", 3),
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
    ("events.event1", "none"),
    ("events.event2", "none"),
    ("events.qp_state", "rts"),
    ("events.completion2", "success"),
    ("events.event3", "none"),
    ("ex_status.first", "success"),
    ("delay.poll_cq_held_300ms", "no"),
    ("delay.ex_poll_held_300ms", "no"),
    ("delay.events_held_300ms", "no"),
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

/// The delays each provider measured, for the closing note.
#[test]
fn delayed_completions_are_held_at_least_their_delay() {
    let figures = |label: &str| {
        let c = cases(&finished(label)).into_iter().find(|c| c.name == "delay.figures").expect("delay.figures");
        ["poll_cq_ms", "ex_poll_ms", "events_ms"].map(|k| c.fields.get(k).cloned().unwrap_or_default())
    };
    let (o, s) = (figures("faults_delay.ours"), figures("faults_delay.stock"));
    let table = format!("post to completion (ms)   poll_cq  ex_poll  events
ours (delay=300)          {:>7}  {:>7}  {:>6}
stock (no delay)          {:>7}  {:>7}  {:>6}
", o[0], o[1], o[2], s[0], s[1], s[2]);
    let _ = fs::write(out().join("faults-delay.txt"), &table);
    eprintln!("{table}");
    for ms in &o {
        let ms: f64 = ms.parse().unwrap_or(0.0);
        assert!((300.0..5000.0).contains(&ms), "a delayed completion took {ms} ms:
{table}");
    }
}

/// An application driven by completion events, with its completions
/// delayed: it still completes, each exchange held back.
#[test]
fn an_event_driven_application_completes_with_delayed_completions() {
    let (ours, stock) = ("faults_app_rc_pingpong_delay.ours", "faults_app_rc_pingpong_delay.stock");
    for l in [ours, stock] {
        assert_eq!(app_field(l, "cli_exit"), "0", "{l}: client:\n{}", read(&format!("{l}.cli")));
        assert_eq!(app_field(l, "srv_exit"), "0", "{l}: server:\n{}", read(&format!("{l}.srv")));
    }
    assert!(served_by_ours(ours), "not served by rxe_rs");
    // "<n> iters in <s> seconds = <u> usec/iter": 10 exchanges, each waiting
    // at least one delayed completion of 100 ms.
    let usec = |l: &str| -> f64 {
        let cli = read(&format!("{l}.cli"));
        let line = cli.lines().find(|x| x.contains("usec/iter")).unwrap_or_else(|| panic!("{l}: no usec/iter:\n{cli}")).to_string();
        line.split_whitespace().rev().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{l}: {line}"))
    };
    let (o, s) = (usec(ours), usec(stock));
    eprintln!("rc_pingpong -e, 10 iterations: ours with delay=100: {o} usec/iter; stock without: {s} usec/iter");
    assert!(o >= 100_000.0, "ours with 100 ms delays took {o} usec/iter");
}

/// `<key>=<value>` of a faults_app run's summary line.
fn app_field(label: &str, key: &str) -> String {
    let text = read(&format!("{label}.txt"));
    token(&text, key).unwrap_or_else(|| panic!("{label}.txt has no {key}=: {text}")).to_string()
}

/// Real applications with a fault injected into their client: through ours
/// the client reports the injected error as it would a real one and stops;
/// through stock (no injection) client and server succeed.
#[test]
fn applications_report_the_injected_faults() {
    // (application, what its client prints for the fault, whether its server
    // must end by itself: rping's sees the disconnect; the others wait for
    // a peer that gave up, until their timeout)
    let apps = [
        ("rc_pingpong", &["Failed status transport retry counter exceeded (12)"][..], false),
        ("send_bw", &["Completion with error at client", "Failed status 10"][..], false),
        ("rping", &["post send error 12"][..], true),
    ];
    let mut table = format!("{:<12} {:>10} {:>10} {:>10} {:>10}\n", "application", "stock cli", "stock srv", "ours cli", "ours srv");
    let mut wrong = String::new();
    for (app, says, server_ends) in apps {
        let (ours, stock) = (format!("faults_app_{app}.ours"), format!("faults_app_{app}.stock"));
        let f = |l: &str, k: &str| app_field(l, k);
        let _ = writeln!(table, "{app:<12} {:>10} {:>10} {:>10} {:>10}", f(&stock, "cli_exit"), f(&stock, "srv_exit"), f(&ours, "cli_exit"), f(&ours, "srv_exit"));
        if f(&stock, "cli_exit") != "0" || f(&stock, "srv_exit") != "0" {
            let _ = writeln!(wrong, "{app} through stock (no fault) failed:\n{}\n{}", read(&format!("{stock}.cli")), read(&format!("{stock}.srv")));
        }
        let cli = read(&format!("{ours}.cli"));
        let cli_exit = f(&ours, "cli_exit");
        if cli_exit == "0" || cli_exit == "124" {
            let _ = writeln!(wrong, "{app} through ours: the client exited {cli_exit}, want a failure of its own:\n{cli}");
        }
        for s in says {
            if !cli.contains(s) {
                let _ = writeln!(wrong, "{app} through ours: the client did not print `{s}`:\n{cli}");
            }
        }
        if server_ends && f(&ours, "srv_exit") == "124" {
            let _ = writeln!(wrong, "{app} through ours: the server hung after the client's fault");
        }
        if injected_lines(&ours) == 0 {
            let _ = writeln!(wrong, "{app} through ours: no `fault injected` line in the log");
        }
        if our_log(&stock).contains("rxe_rs:") {
            let _ = writeln!(wrong, "{app}: rxe_rs served the stock run");
        }
    }
    let _ = fs::write(out().join("faults-apps.txt"), &table);
    eprintln!("{table}");
    assert!(wrong.is_empty(), "{wrong}\n{table}");
}
