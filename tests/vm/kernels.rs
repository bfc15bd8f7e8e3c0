//! The tests of the other kernels' boots: Debian's 6.12 (bookworm-backports)
//! and 7.x (trixie-backports), unpacked by tests/kernels/fetch.sh, each booted
//! once by `kernel_out` (tests/vm.rs) with KERNEL_SUITES (tests/guest/subset.sh)
//! and, on 7.x, pyverbs, through the stock librxe and ours. The checks are
//! those of the host kernel's boot, given that kernel's results directory.
//! What differs between kernels comes from what the kernel reports: mr_cases
//! expects ODP registrations to work where ibv_query_device_ex reports ODP,
//! ibv_rc_pingpong -o must pass where devinfo shows RC ODP and fail through
//! both providers where not, and where the kernel has a choice (flags it may
//! take or refuse) ours must get what the stock librxe got.

use super::datapath_suite::{check_edge, check_programs, check_pyverbs, check_served};
use super::core_suite::{check_devinfo, check_mr_cases, check_mr_refusal_causes};
use super::*;

/// Whether the kernel's rxe reports on-demand paging for RC sends and
/// receives, as ibv_devinfo -v shows it through the stock librxe.
fn kernel_reports_rc_odp(dir: &Path) -> bool {
    let devinfo = read_in(dir, "devinfo.stock.txt");
    let section = |name: &str| -> Vec<String> {
        devinfo
            .lines()
            .skip_while(|l| l.trim() != format!("{name}:"))
            .skip(1)
            .take_while(|l| !l.trim().ends_with(':'))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let general = section("general_odp_caps");
    let rc = section("rc_odp_caps");
    general.iter().any(|c| c == "ODP_SUPPORT") && ["SUPPORT_SEND", "SUPPORT_RECV"].iter().all(|c| rc.iter().any(|r| r == c))
}

/// One module of tests per kernel (filter with `kernels::k7::`).
macro_rules! kernel_tests {
    ($module:ident, $kernel:literal) => {
        mod $module {
            use super::*;

            fn dir() -> &'static Path {
                kernel_out($kernel)
            }

            #[test]
            fn booted_that_kernel_and_every_suite_ran() {
                let want = stamp($kernel, "kernel").unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(read_in(dir(), "kernel.txt").trim(), want, "the guest ran another kernel");
                let progress = read_in(dir(), "progress.txt");
                for suite in suites_of($kernel) {
                    assert!(progress.contains(&format!("suite {suite} end ")), "suite {suite} did not finish:\n{progress}");
                }
            }

            #[test]
            fn devinfo_is_identical_through_both_providers() {
                check_devinfo(dir());
            }

            #[test]
            fn registration_outcomes_are_what_the_kernel_decides() {
                check_mr_cases(dir());
            }

            #[test]
            fn every_refused_registration_logs_its_cause() {
                check_mr_refusal_causes(dir());
            }

            /// rc/uc/ud/srq pingpong, rc -o (ODP), 10 perftest runs, rping, ucmatose.
            #[test]
            fn every_program_passes_through_both_providers() {
                // Without ODP in the kernel's rxe, ibv_rc_pingpong -o must fail
                // through both (the program checks the device's ODP caps).
                let fail = if kernel_reports_rc_odp(dir()) { &[][..] } else { &["pingpong_rc_odp"][..] };
                check_programs(dir(), 17, fail);
            }

            #[test]
            fn data_path_runs_were_served_by_the_provider_they_name() {
                check_served(dir());
            }

            #[test]
            fn edge_cases_and_threads() {
                check_edge(dir());
            }
        }
    };
}

kernel_tests!(k6_12, "6.12");
kernel_tests!(k7, "7");

mod k7_only {
    use super::*;

    /// 7.x's rxe has on-demand paging: ibv_rc_pingpong -o must have run, and
    /// passed through both (every_program_passes_through_both_providers).
    #[test]
    fn the_kernel_reports_odp_and_rc_pingpong_odp_ran() {
        let dir = kernel_out("7");
        assert!(kernel_reports_rc_odp(dir), "7.x's rxe should report RC ODP:\n{}", read_in(dir, "devinfo.stock.txt"));
        let v = verdicts(dir);
        for p in ["stock", "ours"] {
            assert!(v.contains_key(&("pingpong_rc_odp".to_string(), p.to_string())), "pingpong_rc_odp did not run through {p}");
        }
    }

    #[test]
    fn pyverbs_suite_passes_everything_librxe_passes() {
        check_pyverbs(kernel_out("7"));
    }
}
