//! The sandbox's logic without a VM: kernel choice on a fake /boot and
//! /lib/modules, arguments, the driver line, the NIC plan, vng's arguments
//! and the exit-status plumbing.

use crate::sandbox::*;
use crate::sandbox_kernel::*;
use crate::{Cli, Cmd};
use clap::Parser;
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh directory under the target's temp dir.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rxe-rs-sandbox-test.{}.{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn touch(p: &Path, text: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A kernel `release` under `root` (boot/, lib/modules/), with rxe or not.
fn kernel(root: &Path, release: &str, rxe: bool) {
    touch(&root.join(format!("boot/vmlinuz-{release}")), "");
    let dep = if rxe { "kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko.xz: kernel/drivers/infiniband/core/ib_core.ko.xz\n" } else { "kernel/fs/ext4/ext4.ko: \n" };
    touch(&root.join(format!("lib/modules/{release}/modules.dep")), dep);
}

fn places(root: &Path, running: &str) -> Places {
    Places { boot: root.join("boot"), modules: root.join("lib/modules"), cache: root.join("cache"), running: running.into() }
}

#[test]
fn the_running_kernel_is_chosen_when_it_has_rxe() {
    let r = scratch("running");
    kernel(&r, "6.1.0-57-amd64", true);
    kernel(&r, "6.12.95+deb12-amd64", true);
    match choose(&places(&r, "6.1.0-57-amd64")) {
        Choice::Found(k, why) => {
            assert_eq!(k, r.join("boot/vmlinuz-6.1.0-57-amd64"));
            assert!(why.contains("running kernel"), "{why}");
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn else_the_newest_in_boot_with_rxe() {
    let r = scratch("newest");
    kernel(&r, "6.18.44-fc", false);
    kernel(&r, "6.1.0-57-amd64", true);
    kernel(&r, "6.12.95+deb12-amd64", true);
    kernel(&r, "7.3.4+deb13-amd64", false);
    // A vmlinuz without modules at all does not count.
    touch(&r.join("boot/vmlinuz-9.0.0"), "");
    match choose(&places(&r, "6.18.44-fc")) {
        Choice::Found(k, why) => {
            assert_eq!(k, r.join("boot/vmlinuz-6.12.95+deb12-amd64"));
            assert!(why.contains("6.18.44-fc) has no rdma_rxe"), "{why}");
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn else_a_kernel_downloaded_earlier_else_a_download() {
    let r = scratch("cache");
    kernel(&r, "6.18.44-fc", false);
    assert_eq!(choose(&places(&r, "6.18.44-fc")), Choice::Download);
    kernel(&r.join("cache/linux-image-6.1.0-40-amd64/root"), "6.1.0-40-amd64", true);
    kernel(&r.join("cache/linux-image-6.1.0-9-amd64/root"), "6.1.0-9-amd64", true);
    match choose(&places(&r, "6.18.44-fc")) {
        Choice::Found(k, why) => {
            assert_eq!(k, r.join("cache/linux-image-6.1.0-40-amd64/root/boot/vmlinuz-6.1.0-40-amd64"));
            assert!(why.contains("downloaded earlier"), "{why}");
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn rxe_is_found_as_a_module_file_or_built_in() {
    let r = scratch("has_rxe");
    assert!(!has_rxe(&r.join("none")));
    touch(&r.join("file/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko.zst"), "");
    assert!(has_rxe(&r.join("file")));
    touch(&r.join("builtin/modules.builtin"), "kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko\n");
    assert!(has_rxe(&r.join("builtin")));
    // Only the module's own entry counts, not a dependency naming it.
    touch(&r.join("dep/modules.dep"), "kernel/x/other.ko: kernel/y/rdma_rxe_helper.ko\n");
    assert!(!has_rxe(&r.join("dep")));
}

#[test]
fn kernel_versions_sort_as_numbers() {
    let mut v = vec!["6.12.95+deb12-amd64", "6.1.0-57-amd64", "7.3.4+deb13-amd64", "6.1.0-9-amd64"];
    v.sort_by_key(|r| version_key(r));
    assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.12.95+deb12-amd64", "7.3.4+deb13-amd64"]);
}

#[test]
fn debian_download_facts_are_read_from_the_machine_files() {
    let os = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
    assert_eq!(os_release_field(os, "ID").as_deref(), Some("debian"));
    assert_eq!(os_release_field(os, "VERSION_CODENAME").as_deref(), Some("bookworm"));
    let sources = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nSigned-By: /k1.gpg\n\n\
                   Types: deb\n# a comment\nURIs: http://mirror/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k2.gpg\n";
    assert_eq!(debian_source(sources, "bookworm"), Some(("http://mirror/debian".into(), "/k2.gpg".into())));
    assert_eq!(debian_source(sources, "trixie"), None);
    let depends = "linux-image-amd64\n  Depends: linux-image-6.1.0-28-amd64\n  Recommends: firmware\n";
    assert_eq!(first_image_dependency(depends).as_deref(), Some("linux-image-6.1.0-28-amd64"));
    assert_eq!(first_image_dependency("linux-image-amd64\n"), None);
}

fn parse(args: &[&str]) -> Result<SandboxArgs, clap::Error> {
    let cli = Cli::try_parse_from(["rxe-rs", "sandbox"].iter().chain(args))?;
    match cli.command {
        Cmd::Sandbox(a) => Ok(*a),
        _ => panic!("not the sandbox"),
    }
}

#[test]
fn arguments() {
    let a = parse(&["--devices", "2", "--hosts", "2", "--timeout", "60", "--", "sh", "-c", "exit 7"]).unwrap();
    assert_eq!((a.devices, a.hosts, a.timeout), (2, 2, Some(60)));
    assert_eq!(a.command, ["sh", "-c", "exit 7"]);
    // The command's own options stay the command's.
    let a = parse(&["--", "ibv_rc_pingpong", "-g", "1", "--verbose"]).unwrap();
    assert!(!a.verbose);
    assert_eq!(a.command.len(), 4);
    let a = parse(&["--", "ibv_devinfo"]).unwrap();
    assert_eq!((a.devices, a.hosts, a.stock, a.no_kvm), (1, 1, false, false));
    // The command comes after `--`.
    assert!(parse(&["ibv_devinfo"]).is_err());
    assert!(parse(&["--devices", "0", "--", "true"]).is_err());
    assert!(parse(&["--devices", "17", "--", "true"]).is_err());
    assert!(parse(&["--hosts", "3", "--", "true"]).is_err());
    assert!(parse(&["--stock", "--provider", "/x", "--", "true"]).is_err());
    assert!(parse(&["--kernel", "/k", "--download-kernel", "--", "true"]).is_err());
    assert_eq!(main(parse(&[]).unwrap()), 2, "no command: a usage error");
}

#[test]
fn the_driver_line() {
    let r = scratch("driver");
    let links = r.join("priv/provider");
    let none: [&Path; 0] = [];
    let args = |provider: Option<PathBuf>, stock: bool| SandboxArgs { provider, stock, ..Default::default() };

    let d = choose_driver(&args(None, true), &links, None, &none).unwrap();
    assert_eq!(d.line, "driver rxe");

    // A stem, as driver-config/ has it.
    touch(&r.join("cfg/librxe_rs-rdmav34.so"), "");
    let d = choose_driver(&args(Some(r.join("cfg/librxe_rs")), false), &links, None, &none).unwrap();
    assert_eq!((d.line, d.link), (format!("driver {}", r.join("cfg/librxe_rs").display()), None));
    // One of its -rdmav<N>.so names: the stem.
    let d = choose_driver(&args(Some(r.join("cfg/librxe_rs-rdmav34.so")), false), &links, None, &none).unwrap();
    assert_eq!(d.line, format!("driver {}", r.join("cfg/librxe_rs").display()));
    // A plain library: linked under each ABI's name in the private directory.
    touch(&r.join("build/librxe_rs.so"), "");
    let d = choose_driver(&args(Some(r.join("build/librxe_rs.so")), false), &links, None, &none).unwrap();
    assert_eq!((d.line, d.link), (format!("driver {}", links.join("librxe_rs").display()), Some(r.join("build/librxe_rs.so"))));
    assert!(choose_driver(&args(Some(r.join("nothing")), false), &links, None, &none).unwrap_err().contains("no such library"));

    // No --provider: the build tree beside rxe-rs, then the installed one.
    let installed = r.join("usr/lib/x86_64-linux-gnu/libibverbs");
    touch(&installed.join("librxe_rs-rdmav34.so"), "");
    let d = choose_driver(&args(None, false), &links, Some(&r.join("build")), &[&installed]).unwrap();
    assert_eq!(d.link, Some(r.join("build/librxe_rs.so")));
    let d = choose_driver(&args(None, false), &links, Some(&r.join("usr/bin")), &[&r.join("usr/lib64/libibverbs"), &installed]).unwrap();
    assert_eq!((d.line.as_str(), d.link), ("driver rxe_rs", None));
    let e = choose_driver(&args(None, false), &links, Some(&r.join("usr/bin")), &[&r.join("usr/lib64/libibverbs")]).unwrap_err();
    assert!(e.contains("install the rxe-rs package") && e.contains("--provider") && e.contains("--stock"), "{e}");

    assert_eq!(abi_stem("/a/librxe_rs-rdmav65.so"), Some("/a/librxe_rs"));
    assert_eq!(abi_stem("/a/librxe_rs-rdmav.so"), None);
    assert_eq!(abi_stem("/a/librxe_rs.so"), None);
}

#[test]
fn each_device_has_its_own_nic_and_subnet() {
    let a = nics(3, 0);
    assert_eq!(a.iter().map(|n| n.addr.as_str()).collect::<Vec<_>>(), ["192.0.2.1/24", "198.18.1.1/24", "198.18.2.1/24"]);
    assert_eq!(a[0].mac, "52:54:00:00:02:01");
    assert_eq!((peer_of(0).as_str(), peer_of(1).as_str()), ("192.0.2.2", "192.0.2.1"));
    let b = nics(1, 1);
    assert_eq!((b[0].addr.as_str(), b[0].mac.as_str()), ("192.0.2.2/24", "52:54:00:00:02:02"));
    let alone = qemu_nic_opts(&a, 0, 1);
    assert_eq!(alone.matches("hubport").count(), 3);
    assert!(alone.contains("hubid=100 ") && alone.contains("hubid=102 ") && alone.contains("mac=52:54:00:00:04:01"), "{alone}");
    assert!(qemu_nic_opts(&nics(2, 0), 0, 2).contains("socket,id=rxenet1,listen=127.0.0.1:10001"));
    assert!(qemu_nic_opts(&nics(2, 1), 1, 2).contains("socket,id=rxenet0,connect=127.0.0.1:10000"));
}

#[test]
fn vng_arguments() {
    let vm = Vm {
        kernel: "/boot/vmlinuz-6.1.0-57-amd64".into(),
        kvm: false,
        memory: "2G".into(),
        cpus: 2,
        name: "rxe-rs-sandbox".into(),
        rwdirs: vec!["/tmp/priv".into(), "/home/u/src".into()],
        cwd: "/home/u/src".into(),
        qemu_opts: "-netdev hubport,id=rxenet0,hubid=100".into(),
        exec: "/usr/bin/rxe-rs sandbox --guest /tmp/priv/a/spec.json".into(),
        console: false,
    };
    let a: Vec<String> = vng_args(&vm).iter().map(|s| s.to_string_lossy().into_owned()).collect();
    for want in ["--disable-kvm", "--rwdir=/tmp/priv", "--rwdir=/home/u/src", "--cwd=/home/u/src", "--no-dhcp", "--qemu-opts=-netdev hubport,id=rxenet0,hubid=100"] {
        assert!(a.contains(&want.to_string()), "{want} missing from {a:?}");
    }
    assert!(!a.contains(&"--verbose".to_string()));
    assert!(a.windows(2).any(|w| w[0] == "--append" && w[1] == "tsc=reliable"), "emulation keeps the TSC: {a:?}");
    assert_eq!(a[a.len() - 2..], ["--exec".to_string(), vm.exec.clone()]);
    let a = vng_args(&Vm { kvm: true, console: true, ..vm });
    assert!(!a.contains(&"--disable-kvm".into()) && a.contains(&"--verbose".into()));
    assert!(!a.contains(&"--append".into()), "KVM guests keep the kernel's own clock choice");
    assert_eq!(shell_quote("/usr/bin/rxe-rs"), "/usr/bin/rxe-rs");
    assert_eq!(shell_quote("/tmp/it's here"), "'/tmp/it'\\''s here'");
    assert_eq!(shell_quote(""), "''");
}

#[test]
fn exit_status_plumbing() {
    use std::process::Command;
    let status = |s: &str| Command::new("sh").args(["-c", s]).status().unwrap();
    assert_eq!(exit_code(status("exit 7")), 7);
    assert_eq!(exit_code(status("kill -TERM $$")), 128 + 15);

    let d = scratch("outcome");
    assert!(guest_outcome(&d).unwrap_err().contains("did not start"));
    touch(&d.join("started"), "");
    assert!(guest_outcome(&d).unwrap_err().contains("stopped before"));
    touch(&d.join("setup-error"), "rdma link add rxe0 failed\n");
    assert!(guest_outcome(&d).unwrap_err().contains("rdma link add rxe0 failed"));
    touch(&d.join("status"), "7\n");
    assert_eq!(guest_outcome(&d), Ok(7));
    touch(&d.join("status"), "junk");
    assert!(guest_outcome(&d).is_err());
}

#[test]
fn the_environment_passed_in() {
    let vars = [("PATH", "/usr/bin"), ("HOME", "/root"), ("DISPLAY", ":0"), ("SSH_AUTH_SOCK", "/s"), ("LISTEN_FDS", "3"), ("RXE_RS_HOST", "b"), ("VERBS_LOG_LEVEL", "3")];
    let env = guest_env(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["PATH", "HOME", "VERBS_LOG_LEVEL"]);
}

#[test]
fn wires_consoles_and_noise() {
    let tcp = "  sl  local_address rem_address   st\n   0: 0100007F:2710 00000000:0000 0A 00000000:00000000\n   1: 0100007F:2711 0100007F:9C40 01 0\n";
    assert!(listening(tcp, 10000));
    assert!(!listening(tcp, 10001), "established, not listening");
    assert!(!listening(tcp, 10002));
    assert_eq!(console_path(Path::new("/o/vm-%h.log"), Some("a")), Path::new("/o/vm-a.log"));
    assert_eq!(console_path(Path::new("/o/vm.log"), Some("b")), Path::new("/o/vm.log.b"));
    assert_eq!(console_path(Path::new("/o/vm.log"), None), Path::new("/o/vm.log"));
    assert!(is_noise("qemu-system-x86_64: warning: hub 100 is not connected to host network\n"));
    assert!(!is_noise("ibv_devinfo: warning: something\n"));
}
