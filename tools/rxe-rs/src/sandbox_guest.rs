//! The sandbox inside the VM (`rxe-rs sandbox --guest <spec>`, run as root
//! by vng): loads rdma_rxe, puts each NIC's address on it and an rxe device
//! over it, lets only the chosen provider serve (its driver file alone
//! mounted over /etc/libibverbs.d), runs the command as the caller, and
//! writes its exit status where the host reads it.

use crate::sandbox::{exit_code, Spec, EXIT_SANDBOX};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn main(spec_path: &Path) -> i32 {
    let spec: Spec = match fs::read_to_string(spec_path).map_err(|e| e.to_string()).and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rxe-rs sandbox: {}: {e}", spec_path.display());
            return EXIT_SANDBOX;
        }
    };
    let _ = fs::write(spec.dir.join("started"), "");
    let netdevs = match setup(&spec) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("rxe-rs sandbox: in the VM: {e}");
            let _ = fs::write(spec.dir.join("setup-error"), &e);
            return EXIT_SANDBOX;
        }
    };
    let _ = fs::write(spec.dir.join("up"), "");
    if let Some(peer_up) = &spec.peer_up {
        // Boots take different times: the command starts on both hosts
        // once both are set up.
        let deadline = Instant::now() + Duration::from_secs(600);
        while !peer_up.exists() {
            if Instant::now() > deadline {
                let e = "the other host did not come up within 600 s";
                eprintln!("rxe-rs sandbox: host {}: {e}", spec.host);
                let _ = fs::write(spec.dir.join("setup-error"), e);
                return EXIT_SANDBOX;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        log(&spec, "the other host is up");
    }
    let code = match command(&spec, &netdevs) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rxe-rs sandbox: {e}");
            127
        }
    };
    let _ = fs::write(spec.dir.join("status"), format!("{code}\n"));
    code
}

fn log(spec: &Spec, m: &str) {
    if spec.verbose {
        eprintln!("rxe-rs sandbox: host {}: {m}", spec.host);
    }
}

fn run(spec: &Spec, args: &[&str]) -> Result<(), String> {
    log(spec, &args.join(" "));
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!("{} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The netdev with MAC `mac`.
fn netdev_with(mac: &str) -> Option<String> {
    fs::read_dir("/sys/class/net").ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let addr = fs::read_to_string(e.path().join("address")).ok()?;
        addr.trim().eq_ignore_ascii_case(mac).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

fn wait_until(secs: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// rxe<i> on NIC i. Returns the netdevs in device order.
fn setup(spec: &Spec) -> Result<Vec<String>, String> {
    run(spec, &["modprobe", "rdma_rxe"])?;
    // Since 7.x rdma_rxe no longer pulls in the verbs device files.
    run(spec, &["modprobe", "ib_uverbs"])?;
    // /dev/infiniband/rdma_cm, for the rdma_cm tools; not every kernel has it.
    let _ = run(spec, &["modprobe", "rdma_ucm"]);
    let mut netdevs = Vec::new();
    for (i, nic) in spec.nics.iter().enumerate() {
        let dev = netdev_with(&nic.mac).ok_or_else(|| format!("no NIC with MAC {} in the VM", nic.mac))?;
        let rxe = format!("rxe{i}");
        run(spec, &["ip", "link", "set", &dev, "up"])?;
        run(spec, &["ip", "addr", "add", &nic.addr, "dev", &dev])?;
        if i == 0 {
            // rdma_cm's multicast tools need a route for the group.
            let _ = run(spec, &["ip", "route", "add", "224.0.0.0/4", "dev", &dev]);
        }
        run(spec, &["rdma", "link", "add", &rxe, "type", "rxe", "netdev", &dev])?;
        let state = format!("/sys/class/infiniband/{rxe}/ports/1/state");
        if !wait_until(30, || fs::read_to_string(&state).is_ok_and(|s| s.contains("ACTIVE"))) {
            return Err(format!("{rxe}'s port did not become ACTIVE ({state}: {})", fs::read_to_string(&state).unwrap_or_default().trim()));
        }
        log(spec, &format!("{rxe} on {dev} ({}), port ACTIVE", nic.addr));
        netdevs.push(dev);
    }
    let uverbs = || fs::read_dir("/dev/infiniband").map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("uverbs")).count()).unwrap_or(0);
    if !wait_until(10, || uverbs() >= spec.nics.len()) {
        return Err(format!("/dev/infiniband has {} uverbs device(s), not {}", uverbs(), spec.nics.len()));
    }
    // The command runs as the caller, who must open the devices.
    if let Ok(d) = fs::read_dir("/dev/infiniband") {
        for e in d.filter_map(|e| e.ok()) {
            let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o666));
        }
    }
    only_our_driver(spec)?;
    // Registrations pin memory: the caller is not limited in a throwaway VM.
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
    Ok(netdevs)
}

/// A mount namespace of the command's own (the VM is throwaway, but the
/// command may look at the VM's other processes) where /etc/libibverbs.d
/// is the spec's driver directory: only that provider serves rxe.
fn only_our_driver(spec: &Spec) -> Result<(), String> {
    let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| format!("{}: a NUL in the path", p.display()));
    let (src, dst) = (c(&spec.driver_dir)?, c(Path::new("/etc/libibverbs.d"))?);
    // SAFETY: NUL-terminated paths that outlive the calls; null for the
    // arguments mount ignores with these flags.
    let failed = unsafe {
        libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
            || libc::mount(src.as_ptr(), dst.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0
    };
    if failed {
        return Err(format!("mounting {} over /etc/libibverbs.d: {}", spec.driver_dir.display(), std::io::Error::last_os_error()));
    }
    log(spec, &format!("/etc/libibverbs.d: {}", fs::read_to_string(spec.driver_dir.join("sandbox.driver")).unwrap_or_default().trim()));
    Ok(())
}

fn command(spec: &Spec, netdevs: &[String]) -> Result<i32, String> {
    let (prog, rest) = spec.argv.split_first().ok_or("no command")?;
    let mut cmd = Command::new(prog);
    cmd.args(rest).env_clear().envs(spec.env.iter().cloned()).current_dir(&spec.cwd);
    cmd.env("RXE_RS_SANDBOX", "1").env("RXE_RS_HOST", &spec.host).env("RXE_RS_NETDEVS", netdevs.join(" "));
    if let Some(peer) = &spec.peer {
        cmd.env("RXE_RS_PEER", peer);
    }
    if spec.uid != 0 {
        cmd.uid(spec.uid).gid(spec.gid);
    }
    log(spec, &format!("running {}", spec.argv.join(" ")));
    let status = cmd.status().map_err(|e| format!("cannot run {prog}: {e}"))?;
    Ok(exit_code(status))
}
