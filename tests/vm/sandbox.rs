//! `rxe-rs sandbox` (tools/rxe-rs/src/sandbox.rs) as a user runs it: the
//! release build of rxe-rs, whose default provider is the librxe_rs.so
//! beside it, on this machine whose own kernel has no rdma_rxe. The two
//! examples of the README exactly, an exit status passed through, two rxe
//! devices, and two hosts on one wire. Four boots (the last of two VMs),
//! one VM at a time (vm_turn).
//!
//! Each run's stdout, stderr and exit status are kept in
//! target/vmtest/sandbox/<case>/, the directory it ran in (shared with the
//! VM); with RXE_RS_VM_RESULTS set, the last run's are re-checked instead.

use super::{repo, tail, vm_turn};

use std::fs;
use std::path::PathBuf;
use std::process::Command;

struct Run {
    dir: PathBuf,
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `rxe-rs sandbox <args>` in target/vmtest/sandbox/<case>, or reads
/// what the last run there left.
fn sandbox(case: &str, args: &[&str], env: &[(&str, String)]) -> Run {
    let dir = repo().join("target/vmtest/sandbox").join(case);
    if std::env::var_os("RXE_RS_VM_RESULTS").is_none() {
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let _turn = vm_turn();
        let out = Command::new(repo().join("target/release/rxe-rs"))
            .arg("sandbox")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // cargo's, for its own libraries: the sandbox passes the
            // caller's environment on, and in the guest every program
            // would search these host directories over 9p (ten times the
            // cost of a program start under emulation).
            .env_remove("LD_LIBRARY_PATH")
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run target/release/rxe-rs (cargo build --release): {e}"));
        fs::write(dir.join("stdout"), &out.stdout).unwrap();
        fs::write(dir.join("stderr"), &out.stderr).unwrap();
        fs::write(dir.join("status"), format!("{}\n", out.status.code().unwrap_or(-1))).unwrap();
    }
    let read = |n: &str| fs::read_to_string(dir.join(n)).unwrap_or_else(|e| panic!("{}/{n}: {e}", dir.display()));
    let status = read("status").trim().parse().unwrap();
    Run { stdout: read("stdout"), stderr: read("stderr"), status, dir }
}

impl Run {
    fn show(&self) -> String {
        format!("exit status {}\n--- stdout:\n{}\n--- stderr:\n{}", self.status, tail(&self.dir.join("stdout"), 40), tail(&self.dir.join("stderr"), 40))
    }
}

/// The README's first example: rxe0 is there, its port active, and ours
/// served it (its log line, written where the VM's command was told to).
#[test]
fn example_devinfo() {
    let log = repo().join("target/vmtest/sandbox/devinfo/verbs.log");
    let r = sandbox("devinfo", &["--", "ibv_devinfo"], &[("VERBS_LOG_LEVEL", "3".into()), ("VERBS_LOG_FILE", log.display().to_string())]);
    assert_eq!(r.status, 0, "{}", r.show());
    assert!(r.stdout.contains("hca_id:\trxe0") && r.stdout.contains("PORT_ACTIVE"), "{}", r.show());
    let verbs = fs::read_to_string(r.dir.join("verbs.log")).unwrap_or_default();
    assert!(verbs.contains("rxe0: context opened by rxe_rs"), "ours did not serve rxe0; its log:\n{verbs}\n{}", r.show());
    // The kernel's console stays out of the command's output.
    assert!(!r.stderr.contains("Linux version") && !r.stdout.contains("Linux version"), "{}", r.show());
}

/// The README's second example: a server and a client on rxe0, both done.
#[test]
fn example_rc_pingpong() {
    let r = sandbox("pingpong", &["--", "sh", "-c", "ibv_rc_pingpong -g 1 & sleep 1; ibv_rc_pingpong -g 1 localhost"], &[]);
    assert_eq!(r.status, 0, "{}", r.show());
    assert_eq!(r.stdout.lines().filter(|l| l.contains("bytes in") && l.contains("seconds")).count(), 2, "{}", r.show());
}

/// The command's exit status is the sandbox's, and with --devices 2 each
/// device is there on its own NIC and subnet.
#[test]
fn exit_status_and_two_devices() {
    let r = sandbox("devices", &["--devices", "2", "--", "sh", "-c", "ibv_devices; ip -br addr; exit 7"], &[]);
    assert_eq!(r.status, 7, "{}", r.show());
    for dev in ["rxe0", "rxe1"] {
        assert!(r.stdout.lines().any(|l| l.split_whitespace().next() == Some(dev)), "no {dev}: {}", r.show());
    }
    assert!(r.stdout.contains("192.0.2.1/24") && r.stdout.contains("198.18.1.1/24"), "{}", r.show());
}

/// --hosts 2: the server on a, the client on b, across the wire to
/// 192.0.2.1 (the client retries until a's server listens).
#[test]
fn two_hosts_client_and_server() {
    let script = r#"if [ "$RXE_RS_HOST" = a ]; then exec ibv_rc_pingpong -g 1 -n 100; fi
for i in $(seq 30); do ibv_rc_pingpong -g 1 -n 100 "$RXE_RS_PEER" && exit 0; sleep 1; done; exit 1"#;
    let r = sandbox("hosts", &["--hosts", "2", "--", "sh", "-c", script], &[]);
    assert_eq!(r.status, 0, "{}", r.show());
    for (host, peer) in [("a", "192.0.2.2"), ("b", "192.0.2.1")] {
        let lines: Vec<&str> = r.stdout.lines().filter_map(|l| l.strip_prefix(&format!("[{host}] "))).collect();
        assert!(lines.iter().any(|l| l.contains("remote address") && l.contains(&format!("::ffff:{peer}"))), "host {host}: {}", r.show());
        assert!(lines.iter().any(|l| l.contains("bytes in")), "host {host}: {}", r.show());
    }
}
