//! The other kernels: Debian's 6.12 (bookworm-backports) and 7.x
//! (trixie-backports), unpacked by tests/kernels/fetch.sh and booted one at a
//! time (`boot`), each once, running KERNEL_SUITES through the stock librxe
//! and ours: the subset of tests/guest/subset.sh, and pyverbs on 7.x. The
//! checks are the host kernel's (the helpers of tests/vm.rs, given that
//! kernel's results directory); what differs between kernels comes from what
//! the kernel reports (mr_cases derives its ODP expectation from
//! ibv_query_device_ex, ibv_rc_pingpong -o must pass where devinfo shows ODP),
//! and ours must do what the stock librxe does.
//!
//! Results land in target/vmtest/out-<kernel>; with RXE_RS_VM_RESULTS=<dir>
//! set, <dir>-<kernel> is re-checked instead of booting.

use super::datapath_suite::{check_edge, check_programs, check_pyverbs, check_served};
use super::core_suite::{check_devinfo, check_mr_cases, check_mr_refusal_causes};
use super::*;

/// The guest suites each other kernel's boot runs, in order (as SUITES).
const KERNEL_SUITES: &[&str] = &["subset"];

/// The other kernels, by the name tests/kernels/fetch.sh gives them, with
/// the suites their boot runs besides KERNEL_SUITES. pyverbs (3 to 4
/// minutes a provider) runs on 7.x only, where the kernel's rxe differs most,
/// to keep the two boots within the test command's time.
const KERNELS: &[(&str, &[&str])] = &[("6.12", &[]), ("7", &["pyverbs"])];

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

/// The results directory of `kernel`'s one boot, made on first use.
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
