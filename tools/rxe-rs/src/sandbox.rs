//! `rxe-rs sandbox -- <command>`: runs a command in a throwaway VM (virtme-ng
//! and qemu) whose kernel has rdma_rxe, with rxe0 up on a NIC wired to
//! nothing outside, rxe-rs alone serving it, and the current directory
//! shared read-write. The exit status is the command's.
//!
//! The host side (here) picks a kernel (sandbox_kernel.rs), writes a spec
//! into a private directory the guest sees read-write, and boots vng whose
//! guest runs `rxe-rs sandbox --guest <spec>` (sandbox_guest.rs: the same
//! binary, since the guest sees the host's filesystem), which sets up rxe,
//! runs the command and writes its exit status back.

use crate::sandbox_kernel::{self, Choice, Places};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit status of the sandbox itself failing (refusal, boot failure),
/// as `docker run` uses it; 124 is a timeout, as timeout(1) uses it.
pub const EXIT_SANDBOX: i32 = 125;
pub const EXIT_TIMEOUT: i32 = 124;

/// The private ABIs one rxe-rs library serves: a plain .so given as
/// --provider is linked under each one's name.
use crate::checks::OUR_ABIS as ABIS;

#[derive(Args, Debug, Default, Clone)]
pub struct SandboxArgs {
    /// The kernel image to boot (its modules are found beside it as
    /// virtme-ng does: the first directory above it holding lib/modules).
    /// Default: the running kernel if it has rdma_rxe, else the newest in
    /// /boot that has, else one downloaded from the distribution.
    #[arg(long, value_name = "VMLINUZ")]
    pub kernel: Option<PathBuf>,
    /// Boot the distribution's kernel package (downloaded once into
    /// $XDG_CACHE_HOME/rxe-rs/kernels) even if this machine has a kernel
    /// with rdma_rxe.
    #[arg(long, conflicts_with = "kernel")]
    pub download_kernel: bool,
    /// The provider serving the rxe devices: a library (librxe_rs.so,
    /// librxe_rs-rdmav34.so) or the stem libibverbs appends
    /// -rdmav<ABI>.so to. Default: the librxe_rs.so beside this rxe-rs (a
    /// build tree), else the installed one.
    #[arg(long, value_name = "PATH")]
    pub provider: Option<PathBuf>,
    /// Serve the rxe devices with the stock librxe instead.
    #[arg(long, conflicts_with = "provider")]
    pub stock: bool,
    /// rxe devices rxe0..rxe<N-1>, each on its own NIC and subnet.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub devices: u8,
    /// Two VMs on one wire: the command runs on both, with RXE_RS_HOST=a|b
    /// and RXE_RS_PEER the other's address (a is 192.0.2.1, b 192.0.2.2).
    #[arg(long, value_name = "1|2", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub hosts: u8,
    /// Each VM's memory (qemu -m). Default 2G.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Each VM's CPUs. Default 2, or 1 each with --hosts 2.
    #[arg(long, value_name = "N")]
    pub cpus: Option<u16>,
    /// Stop the VM(s) after this many seconds; exit status 124.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Use software emulation even where KVM works.
    #[arg(long)]
    pub no_kvm: bool,
    /// Say on stderr what is chosen and done, one line each.
    #[arg(long, short)]
    pub verbose: bool,
    /// Boot with the kernel's messages on and write them there, with the
    /// command's stderr between them (the terminal then gets its stdout
    /// only). With --hosts 2, %h in the name is the host (else .a/.b is
    /// appended).
    #[arg(long, value_name = "FILE")]
    pub console: Option<PathBuf>,
    /// (inside the VM) Set up rxe from this spec and run its command.
    #[arg(long, hide = true, value_name = "SPEC")]
    pub guest: Option<PathBuf>,
    /// The command and its arguments.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// One NIC of a guest: found there by its MAC.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub mac: String,
    /// This host's address with its prefix length.
    pub addr: String,
}

/// What the guest side does, written by the host as JSON.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Spec {
    pub host: String,
    pub peer: Option<String>,
    pub nics: Vec<Nic>,
    /// Mounted over /etc/libibverbs.d: only the chosen provider's driver file.
    pub driver_dir: PathBuf,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    /// This host's private directory (started, status, up markers).
    pub dir: PathBuf,
    /// Appears when the other host is set up (--hosts 2).
    pub peer_up: Option<PathBuf>,
    pub verbose: bool,
}

/// Host `h` (0 = a, 1 = b) of `hosts`: its NICs, one per rxe device. rxe0
/// is on 192.0.2.0/24 (TEST-NET-1, as the test bed has always used), the
/// others each on their own 198.18.<i>.0/24 (the benchmarking range): no
/// address that could be routed anywhere. The MACs are the ones
/// tests/twohost has always had (52:54:00:00:02:01 for a's rxe0).
pub fn nics(devices: u8, h: u8) -> Vec<Nic> {
    (0..devices)
        .map(|i| Nic {
            mac: format!("52:54:00:00:{:02x}:{:02x}", 2 + i, h + 1),
            addr: if i == 0 { format!("192.0.2.{}/24", h + 1) } else { format!("198.18.{i}.{}/24", h + 1) },
        })
        .collect()
}

/// The other host's rxe0 address, as nics() gives it.
pub fn peer_of(h: u8) -> String {
    nics(1, 1 - h)[0].addr.trim_end_matches("/24").to_string()
}

pub fn host_name(h: u8) -> &'static str {
    ["a", "b"][usize::from(h)]
}

/// The TCP port of device `i`'s wire between two hosts (inside the run's
/// own network namespace, so it cannot clash with anything).
pub fn wire_port(i: usize) -> u16 {
    10000 + i as u16
}

/// qemu options giving host `h` its NICs: alone, each NIC on a hub of its
/// own that nothing else is on; with two hosts, device i's NICs joined by
/// a socket netdev over TCP (a listens, b connects).
pub fn qemu_nic_opts(nics: &[Nic], h: u8, hosts: u8) -> String {
    nics.iter()
        .enumerate()
        .map(|(i, n)| {
            let netdev = match (hosts, h) {
                (1, _) => format!("hubport,id=rxenet{i},hubid={}", 100 + i),
                (_, 0) => format!("socket,id=rxenet{i},listen=127.0.0.1:{}", wire_port(i)),
                _ => format!("socket,id=rxenet{i},connect=127.0.0.1:{}", wire_port(i)),
            };
            format!("-netdev {netdev} -device virtio-net-pci,netdev=rxenet{i},mac={}", n.mac)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes `s` for the shell that runs vng's --exec.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// How one VM is booted.
#[derive(Debug, Clone)]
pub struct Vm {
    pub kernel: PathBuf,
    pub kvm: bool,
    pub memory: String,
    pub cpus: u16,
    pub name: String,
    pub rwdirs: Vec<PathBuf>,
    pub cwd: PathBuf,
    pub qemu_opts: String,
    pub exec: String,
    pub console: bool,
}

/// Kernel options added when the VM runs under software emulation (see
/// vng_args).
pub const EMULATION_KERNEL_ARGS: &str = "tsc=reliable";

/// vng's arguments for `vm`.
pub fn vng_args(vm: &Vm) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--run".into(), vm.kernel.clone().into()];
    if !vm.kvm {
        a.push("--disable-kvm".into());
        // Under software emulation the clocksource watchdog sees the TSC
        // skew against the HPET, sometimes minutes in, and marks it
        // unstable; the kernel then patches sched_clock's static branch
        // while the other CPU runs it, and under qemu's emulation that
        // patching can oops (int3 in sched_clock_cpu) and panic the guest
        // in the middle of the command. The emulated TSC is monotonic and
        // steady, so it is told to trust it.
        a.push("--append".into());
        a.push(EMULATION_KERNEL_ARGS.into());
    }
    if vm.console {
        a.push("--verbose".into());
    }
    for (k, v) in [("--memory", vm.memory.clone()), ("--cpus", vm.cpus.to_string()), ("--name", vm.name.clone())] {
        a.push(k.into());
        a.push(v.into());
    }
    // The guest set-up needs root; the command itself runs as the caller.
    a.extend(["--user".into(), "root".into(), "--no-dhcp".into()]);
    for d in &vm.rwdirs {
        let mut o = OsString::from("--rwdir=");
        o.push(d);
        a.push(o);
    }
    let mut cwd = OsString::from("--cwd=");
    cwd.push(&vm.cwd);
    a.push(cwd);
    a.push(format!("--qemu-opts={}", vm.qemu_opts).into());
    a.push("--exec".into());
    a.push(vm.exec.clone().into());
    a
}

/// The provider choice, as the driver file's line says it, and the library
/// to link under each ABI's name when a plain .so was given.
#[derive(Debug, PartialEq, Eq)]
pub struct Driver {
    pub line: String,
    pub link: Option<PathBuf>,
    pub why: String,
}

/// `lib` without its `-rdmav<N>.so` suffix, if it has one.
pub fn abi_stem(lib: &str) -> Option<&str> {
    let (stem, abi) = lib.strip_suffix(".so")?.rsplit_once("-rdmav")?;
    (!abi.is_empty() && abi.bytes().all(|b| b.is_ascii_digit())).then_some(stem)
}

/// Chooses the driver line. `links` is where a plain .so gets its ABI
/// names (the guest's private directory); `beside_exe` the directory of
/// this rxe-rs; `installed` the provider directories of the distributions.
pub fn choose_driver(args: &SandboxArgs, links: &Path, beside_exe: Option<&Path>, installed: &[&Path]) -> Result<Driver, String> {
    if args.stock {
        return Ok(Driver { line: "driver rxe".into(), link: None, why: "--stock: the stock librxe".into() });
    }
    let linked = |lib: &Path, why: String| {
        let name = lib.file_stem().and_then(|s| s.to_str()).unwrap_or("librxe_rs");
        Driver { line: format!("driver {}", links.join(name).display()), link: Some(lib.to_path_buf()), why }
    };
    if let Some(p) = &args.provider {
        let p = std::path::absolute(p).map_err(|e| format!("--provider {}: {e}", p.display()))?;
        let s = p.to_string_lossy().into_owned();
        if p.is_file() {
            if let Some(stem) = abi_stem(&s) {
                return Ok(Driver { line: format!("driver {stem}"), link: None, why: format!("--provider {s}") });
            }
            return Ok(linked(&p, format!("--provider {s}, linked under each private ABI's name")));
        }
        if ABIS.iter().any(|abi| Path::new(&format!("{s}-rdmav{abi}.so")).is_file()) {
            return Ok(Driver { line: format!("driver {s}"), link: None, why: format!("--provider {s} (a stem)") });
        }
        return Err(format!("--provider {s}: no such library, nor {s}-rdmav<ABI>.so"));
    }
    if let Some(lib) = beside_exe.map(|d| d.join("librxe_rs.so")).filter(|l| l.is_file()) {
        let why = format!("{} (beside this rxe-rs)", lib.display());
        return Ok(linked(&lib, why));
    }
    if let Some(dir) = installed.iter().find(|d| d.join("librxe_rs-rdmav34.so").is_file()) {
        return Ok(Driver { line: "driver rxe_rs".into(), link: None, why: format!("the installed {}", dir.join("librxe_rs-rdmav34.so").display()) });
    }
    Err("no rxe-rs provider to serve the devices: install the rxe-rs package, give --provider <librxe_rs.so>, or --stock for the stock librxe".into())
}

/// The caller's environment as the command gets it in the guest: all of
/// it but what names this machine's session (display, agents, terminal
/// multiplexers, systemd's sockets), which means nothing there.
pub fn guest_env(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, String)> {
    const DROP: &[&str] = &[
        "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_RUNTIME_DIR", "XDG_SESSION_ID", "DBUS_SESSION_BUS_ADDRESS", "SSH_AUTH_SOCK",
        "SSH_AGENT_PID", "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "TMUX", "TMUX_PANE", "STY", "INVOCATION_ID", "JOURNAL_STREAM",
        "NOTIFY_SOCKET", "OLDPWD", "PWD", "SHLVL", "_",
    ];
    vars.filter(|(k, _)| !DROP.contains(&k.as_str()) && !k.starts_with("LISTEN_") && !k.starts_with("RXE_RS_SANDBOX") && k != "RXE_RS_HOST" && k != "RXE_RS_PEER")
        .collect()
}

/// The exit status a shell would report for a child's `status`.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// What the guest left in its directory: the command's exit status, or why
/// there is none.
pub fn guest_outcome(dir: &Path) -> Result<i32, String> {
    if let Ok(s) = fs::read_to_string(dir.join("status")) {
        return s.trim().parse().map_err(|_| format!("the guest wrote an unreadable exit status: {s:?}"));
    }
    if let Ok(e) = fs::read_to_string(dir.join("setup-error")) {
        return Err(format!("setting up rxe in the VM failed: {}", e.trim()));
    }
    if dir.join("started").exists() {
        return Err("the VM stopped before the command finished".into());
    }
    Err("the VM did not start the command (its kernel did not boot, or vng failed)".into())
}

/// Whether KVM really runs a VM here. /dev/kvm may exist where
/// KVM_CREATE_VM fails (a container), and where it succeeds qemu may still
/// abort setting up the vCPU (nested KVM refusing an MSR of `-cpu host`, as
/// vng asks for): so after the ioctl, qemu itself starts a paused machine
/// the way vng would and is told to quit (a tenth of a second).
pub fn kvm_works() -> Result<(), String> {
    const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
    // SAFETY: a NUL-terminated path; the fds are ours and closed here.
    let created = unsafe {
        let fd = libc::open(c"/dev/kvm".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(format!("/dev/kvm: {}", std::io::Error::last_os_error()));
        }
        let vm = libc::ioctl(fd, KVM_CREATE_VM, 0);
        if vm >= 0 {
            libc::close(vm);
        }
        libc::close(fd);
        vm >= 0
    };
    if !created {
        return Err("/dev/kvm cannot create a VM".into());
    }
    let probe = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-M", "microvm", "-nodefaults", "-display", "none", "-S", "-monitor", "stdio", "-serial", "none", "-m", "64"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut probe = probe.map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    if let Some(mut stdin) = probe.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let out = probe.wait_with_output().map_err(|e| format!("qemu-system-x86_64: {e}"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        let last = why.lines().rfind(|l| !l.contains("warning:")).unwrap_or("").trim().to_string();
        return Err(format!("/dev/kvm creates VMs but qemu cannot run one under it ({}: {last})", out.status));
    }
    Ok(())
}

/// A signal asking the sandbox to stop (SIGINT, SIGTERM, SIGHUP), 0 if none.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
}

/// The pids descending from `pid` (vng's python, qemu, virtiofsd), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|p| {
                    let stat = fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
                    // The ppid is the second field after the parenthesised name.
                    let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
                    Some((p, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found
}

fn kill_tree(pid: u32) {
    for p in descendants(pid).into_iter().rev() {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
}

/// Whether something listens on TCP `port` (from /proc/net/tcp: state 0A),
/// without connecting to it: qemu's socket netdev would take a probe for
/// its peer.
pub fn listening(proc_net_tcp: &str, port: u16) -> bool {
    proc_net_tcp.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[3] == "0A" && f[1].rsplit_once(':').is_some_and(|(_, p)| u16::from_str_radix(p, 16) == Ok(port))
    })
}

struct Ctx {
    args: SandboxArgs,
    log: Box<dyn Fn(&str) + Send + Sync>,
}

fn log_fn(verbose: bool) -> Box<dyn Fn(&str) + Send + Sync> {
    Box::new(move |m: &str| {
        if verbose {
            eprintln!("rxe-rs sandbox: {m}");
        }
    })
}

/// The sandbox's entry point: returns the exit status to exit with.
pub fn main(args: SandboxArgs) -> i32 {
    if let Some(spec) = &args.guest {
        return crate::sandbox_guest::main(spec);
    }
    if args.command.is_empty() {
        eprintln!("rxe-rs sandbox: no command: rxe-rs sandbox [options] -- <command> [args]");
        return 2;
    }
    let ctx = Ctx { log: log_fn(args.verbose), args };
    match run(&ctx) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rxe-rs sandbox: {e}");
            EXIT_SANDBOX
        }
    }
}

/// What must be installed for the sandbox to boot, as one message.
fn missing_tools() -> Option<String> {
    let mut missing = Vec::new();
    if sandbox_kernel::which("vng").is_none() {
        missing.push("vng (virtme-ng): pip install virtme-ng");
    }
    if sandbox_kernel::which("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86_64: apt install qemu-system-x86 (Fedora: dnf install qemu-system-x86-core)");
    }
    (!missing.is_empty()).then(|| format!("rxe-rs sandbox boots a VM and needs {}", missing.join(", and ")))
}

fn kernel(ctx: &Ctx) -> Result<PathBuf, String> {
    let log = &ctx.log;
    if let Some(k) = &ctx.args.kernel {
        if !k.is_file() {
            return Err(format!("--kernel {}: no such file", k.display()));
        }
        log(&format!("kernel: {} (--kernel)", k.display()));
        return Ok(std::path::absolute(k).unwrap_or_else(|_| k.clone()));
    }
    let cache = sandbox_kernel::cache_dir();
    if !ctx.args.download_kernel {
        let running = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let places = Places { boot: "/boot".into(), modules: "/lib/modules".into(), cache: cache.clone(), running };
        if let Choice::Found(k, why) = sandbox_kernel::choose(&places) {
            log(&format!("kernel: {} ({why})", k.display()));
            return Ok(k);
        }
        log("kernel: none on this machine has rdma_rxe: downloading the distribution's");
    } else {
        let places = Places { boot: "/nonexistent".into(), modules: "/nonexistent".into(), cache: cache.clone(), running: String::new() };
        if let Choice::Found(k, _) = sandbox_kernel::choose(&places) {
            log(&format!("kernel: {} (--download-kernel: downloaded earlier into {})", k.display(), cache.display()));
            return Ok(k);
        }
    }
    let k = sandbox_kernel::download(&cache, &|m| log(m))?;
    log(&format!("kernel: {} (downloaded)", k.display()));
    Ok(k)
}

fn private_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("rxe-rs-sandbox.{}.{nanos:x}{n}", std::process::id()));
        if fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    Err(format!("cannot make a private directory in {}", base.display()))
}

/// Removes the private directory when the run ends, however it ends.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(ctx: &Ctx) -> Result<i32, String> {
    let args = &ctx.args;
    let log = &ctx.log;
    if let Some(m) = missing_tools() {
        return Err(m);
    }
    let kernel = kernel(ctx)?;
    let kvm = if args.no_kvm {
        log("KVM: not used (--no-kvm): software emulation (slower)");
        false
    } else {
        match kvm_works() {
            Ok(()) => {
                log("KVM: qemu runs VMs under /dev/kvm: hardware virtualization");
                true
            }
            Err(why) => {
                log(&format!("KVM: {why}: software emulation (--disable-kvm; slower)"));
                false
            }
        }
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this rxe-rs: {e}"))?;
    let priv_dir = private_dir()?;
    let _cleanup = Cleanup(priv_dir.clone());
    let installed = [Path::new("/usr/lib/x86_64-linux-gnu/libibverbs"), Path::new("/usr/lib64/libibverbs"), Path::new("/usr/lib/libibverbs")];
    let links = priv_dir.join("provider");
    let driver = choose_driver(args, &links, exe.parent(), &installed)?;
    log(&format!("provider: {} ({})", driver.line, driver.why));
    if let Some(lib) = &driver.link {
        fs::create_dir_all(&links).map_err(|e| format!("{}: {e}", links.display()))?;
        let stem = lib.file_stem().and_then(|s| s.to_str()).unwrap_or("librxe_rs");
        for abi in ABIS {
            std::os::unix::fs::symlink(lib, links.join(format!("{stem}-rdmav{abi}.so"))).map_err(|e| format!("{}: {e}", links.display()))?;
        }
    }
    let driver_dir = priv_dir.join("drv");
    fs::create_dir_all(&driver_dir).map_err(|e| format!("{}: {e}", driver_dir.display()))?;
    fs::write(driver_dir.join("sandbox.driver"), format!("{}\n", driver.line)).map_err(|e| format!("{}: {e}", driver_dir.display()))?;

    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let env = guest_env(std::env::vars());
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let argv: Vec<String> = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let hosts = args.hosts;
    let mut vms = Vec::new();
    for h in 0..hosts {
        let name = host_name(h);
        let dir = priv_dir.join(name);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let nics = nics(args.devices, h);
        let spec = Spec {
            host: name.into(),
            peer: (hosts == 2).then(|| peer_of(h)),
            nics: nics.clone(),
            driver_dir: driver_dir.clone(),
            cwd: cwd.clone(),
            env: env.clone(),
            argv: argv.clone(),
            uid,
            gid,
            dir: dir.clone(),
            peer_up: (hosts == 2).then(|| priv_dir.join(host_name(1 - h)).join("up")),
            verbose: args.verbose,
        };
        let spec_path = dir.join("spec.json");
        fs::write(&spec_path, serde_json::to_string_pretty(&spec).unwrap_or_default()).map_err(|e| format!("{}: {e}", spec_path.display()))?;
        // The root directory is not shared read-write: that would be the
        // host. The private directory comes second: the current directory
        // may hold it (/tmp), and vng mounts them in order.
        let mut rwdirs = Vec::new();
        if cwd != Path::new("/") {
            rwdirs.push(cwd.clone());
        }
        rwdirs.push(priv_dir.clone());
        let vm = Vm {
            kernel: kernel.clone(),
            kvm,
            memory: args.memory.clone().unwrap_or_else(|| "2G".into()),
            cpus: args.cpus.unwrap_or(if hosts == 2 { 1 } else { 2 }),
            name: if hosts == 2 { format!("rxe-rs-sandbox-{name}") } else { "rxe-rs-sandbox".into() },
            rwdirs,
            cwd: cwd.clone(),
            qemu_opts: qemu_nic_opts(&nics, h, hosts),
            exec: format!("{} sandbox --guest {}", shell_quote(&exe.to_string_lossy()), shell_quote(&spec_path.to_string_lossy())),
            console: args.console.is_some(),
        };
        vms.push((vm, dir));
    }
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
    if hosts == 1 {
        one_host(ctx, &vms[0].0, &vms[0].1)
    } else {
        two_hosts(ctx, &vms)
    }
}


/// The console file of host `host`: with two hosts, %h replaced, else
/// .<host> appended.
pub fn console_path(file: &Path, host: Option<&str>) -> PathBuf {
    match host {
        None => file.to_path_buf(),
        Some(h) => {
            let s = file.to_string_lossy();
            if s.contains("%h") {
                PathBuf::from(s.replace("%h", h))
            } else {
                PathBuf::from(format!("{s}.{h}"))
            }
        }
    }
}

/// qemu's complaints about our hubs having no host side: by design.
pub fn is_noise(line: &str) -> bool {
    line.contains("warning: hub ") && (line.contains("is not connected to host network") || line.contains("has no NICs"))
}

/// Where one VM's stream goes: the terminal (prefixed with the host's name
/// with two hosts), or the console file.
struct Sink {
    to: Arc<Mutex<Box<dyn Write + Send>>>,
    prefix: String,
    panicked: Arc<AtomicBool>,
    /// Copied as it comes: no prefix, no filter.
    raw: bool,
}

fn pump(mut from: impl Read + Send + 'static, sink: Sink) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if sink.raw {
            // As it comes, so that a prompt or a progress line shows.
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = from.read(&mut buf) {
                let mut to = sink.to.lock().unwrap_or_else(|e| e.into_inner());
                let _ = to.write_all(&buf[..n]);
                let _ = to.flush();
            }
            return;
        }
        let mut reader = BufReader::new(&mut from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if text.contains("Kernel panic") {
                sink.panicked.store(true, Ordering::SeqCst);
            }
            if is_noise(&text) {
                continue;
            }
            let mut to = sink.to.lock().unwrap_or_else(|e| e.into_inner());
            let _ = to.write_all(sink.prefix.as_bytes());
            let _ = to.write_all(&line);
            let _ = to.flush();
        }
    })
}

fn open_console(path: &Path) -> Result<Box<dyn Write + Send>, String> {
    fs::File::create(path).map(|f| Box::new(f) as Box<dyn Write + Send>).map_err(|e| format!("--console {}: {e}", path.display()))
}

struct Booted {
    child: Child,
    pumps: Vec<std::thread::JoinHandle<()>>,
    panicked: Arc<AtomicBool>,
}

/// Starts vng for `vm`, its stdout to `stdout` (None: inherited) and its
/// stderr to `stderr`.
fn boot(ctx: &Ctx, vm: &Vm, stdout: Option<Sink>, stderr: Sink, stdin_null: bool) -> Result<Booted, String> {
    let args = vng_args(vm);
    (ctx.log)(&format!("boot: vng {}", args.iter().map(|a| shell_quote(&a.to_string_lossy())).collect::<Vec<_>>().join(" ")));
    let mut cmd = Command::new("vng");
    cmd.args(&args).stderr(Stdio::piped());
    if stdout.is_some() {
        cmd.stdout(Stdio::piped());
    }
    if stdin_null {
        cmd.stdin(Stdio::null());
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run vng: {e}"))?;
    let panicked = stderr.panicked.clone();
    let mut pumps = vec![pump(child.stderr.take().expect("piped"), stderr)];
    if let Some(s) = stdout {
        pumps.push(pump(child.stdout.take().expect("piped"), s));
    }
    Ok(Booted { child, pumps, panicked })
}

/// Why the VMs stopped early.
enum Stopped {
    No,
    Timeout,
    /// By this signal to the sandbox: exit as a shell reports it, 128 + it.
    Signal(i32),
}

/// Waits for the booted VMs, stopping them on --timeout or a signal.
fn wait_all(ctx: &Ctx, booted: &mut [Booted], started: Instant) -> Result<Stopped, String> {
    let deadline = ctx.args.timeout.map(|t| started + Duration::from_secs(t));
    let mut timed_out = false;
    loop {
        let mut running = false;
        for b in booted.iter_mut() {
            if b.child.try_wait().map_err(|e| format!("waiting for vng: {e}"))?.is_none() {
                running = true;
            }
        }
        if !running {
            break;
        }
        let sig = STOP_SIGNAL.load(Ordering::SeqCst);
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        if sig != 0 || (late && !timed_out) {
            timed_out |= late;
            for b in booted.iter() {
                kill_tree(b.child.id());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for b in booted.iter_mut() {
        for p in b.pumps.drain(..) {
            let _ = p.join();
        }
    }
    let sig = STOP_SIGNAL.load(Ordering::SeqCst);
    Ok(if sig != 0 {
        eprintln!("rxe-rs sandbox: stopped the VM(s) on signal {sig}");
        Stopped::Signal(sig)
    } else if timed_out {
        eprintln!("rxe-rs sandbox: stopped the VM(s) after --timeout {} s", ctx.args.timeout.unwrap_or(0));
        Stopped::Timeout
    } else {
        Stopped::No
    })
}

/// The exit status for VMs stopped early.
fn stopped_code(s: &Stopped) -> Option<i32> {
    match s {
        Stopped::No => None,
        Stopped::Timeout => Some(EXIT_TIMEOUT),
        Stopped::Signal(sig) => Some(128 + sig),
    }
}

fn one_host(ctx: &Ctx, vm: &Vm, dir: &Path) -> Result<i32, String> {
    let started = Instant::now();
    // A kernel that panics while booting, before the guest ran anything
    // (under emulation 6.12 now and then hits an int3 oops patching its own
    // code), is booted once more; the first console is kept as <file>.boot1.
    for attempt in 1..=2 {
        let stderr_to: Box<dyn Write + Send> = match &ctx.args.console {
            Some(f) => open_console(f)?,
            None => Box::new(std::io::stderr()),
        };
        let panicked = Arc::new(AtomicBool::new(false));
        let sink = Sink { to: Arc::new(Mutex::new(stderr_to)), prefix: String::new(), panicked: panicked.clone(), raw: false };
        // vng's stdout goes through a pipe of ours too: qemu reopens it by
        // /proc/self/fd/1 with O_TRUNC, which would empty a file it was
        // redirected to, and write over what came before.
        let stdout = Sink { to: Arc::new(Mutex::new(Box::new(std::io::stdout()))), prefix: String::new(), panicked, raw: true };
        let mut booted = [boot(ctx, vm, Some(stdout), sink, false)?];
        let stopped = wait_all(ctx, &mut booted, started)?;
        let status = booted[0].child.wait().map_err(|e| format!("waiting for vng: {e}"))?;
        (ctx.log)(&format!("the VM ended after {:.0} s (vng: {status})", started.elapsed().as_secs_f64()));
        if let Some(code) = stopped_code(&stopped) {
            return Ok(code);
        }
        if attempt == 1 && !dir.join("started").exists() && booted[0].panicked.load(Ordering::SeqCst) {
            eprintln!("rxe-rs sandbox: the kernel panicked before the guest started; booting again");
            if let Some(f) = &ctx.args.console {
                let _ = fs::rename(f, format!("{}.boot1", f.display()));
            }
            continue;
        }
        return guest_outcome(dir);
    }
    unreachable!("the second boot returns")
}

/// Puts this process in a network namespace of its own with only lo up,
/// where the wire's TCP port cannot clash with anything and nothing
/// outside sees it. qemu leaves Nagle on and the peer's delayed
/// acknowledgements held every message of several frames for about 40 ms:
/// quickack on the route to 127.0.0.1 removes that.
fn private_network() -> Result<(), String> {
    // SAFETY: unshare has no memory preconditions; only this thread (the
    // one that spawns vng) moves, and its children inherit the namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("--hosts 2 needs a network namespace of its own (run as root): {}", std::io::Error::last_os_error()));
    }
    for ip in [
        &["link", "set", "lo", "up"][..],
        &["route", "replace", "local", "127.0.0.1", "dev", "lo", "table", "local", "proto", "kernel", "scope", "host", "src", "127.0.0.1", "quickack", "1"],
    ] {
        let ok = Command::new("ip").args(ip).status().is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("ip {} failed in the private network namespace", ip.join(" ")));
        }
    }
    Ok(())
}

fn two_hosts(ctx: &Ctx, vms: &[(Vm, PathBuf)]) -> Result<i32, String> {
    private_network()?;
    (ctx.log)(&format!("wire: {} TCP connection(s) on 127.0.0.1 in a private network namespace (a listens, b connects)", ctx.args.devices));
    let started = Instant::now();
    let stdout: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(std::io::stdout())));
    let stderr: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(std::io::stderr())));
    let mut booted = Vec::new();
    for (h, (vm, _)) in vms.iter().enumerate() {
        let name = host_name(h as u8);
        if h == 1 {
            // b connects to the wires a listens on.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !(0..usize::from(ctx.args.devices)).all(|i| listening(&fs::read_to_string("/proc/net/tcp").unwrap_or_default(), wire_port(i))) {
                if Instant::now() > deadline || booted.iter_mut().any(|b: &mut Booted| b.child.try_wait().ok().flatten().is_some()) {
                    for b in &booted {
                        kill_tree(b.child.id());
                    }
                    return Err("host a's qemu never listened on the wire".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let panicked = Arc::new(AtomicBool::new(false));
        let err_to = match &ctx.args.console {
            Some(f) => Arc::new(Mutex::new(open_console(&console_path(f, Some(name)))?)),
            None => stderr.clone(),
        };
        let prefix = format!("[{name}] ");
        let out = Sink { to: stdout.clone(), prefix: prefix.clone(), panicked: panicked.clone(), raw: false };
        let err = Sink { to: err_to, prefix: if ctx.args.console.is_some() { String::new() } else { prefix }, panicked, raw: false };
        booted.push(boot(ctx, vm, Some(out), err, true)?);
    }
    let stopped = wait_all(ctx, &mut booted, started)?;
    (ctx.log)(&format!("the VMs ended after {:.0} s", started.elapsed().as_secs_f64()));
    if let Some(code) = stopped_code(&stopped) {
        return Ok(code);
    }
    let mut codes = Vec::new();
    for (h, (_, dir)) in vms.iter().enumerate() {
        match guest_outcome(dir) {
            Ok(c) => codes.push(c),
            Err(e) => return Err(format!("host {}: {e}", host_name(h as u8))),
        }
    }
    (ctx.log)(&format!("exit status: a {}, b {}", codes[0], codes[1]));
    Ok(codes.into_iter().find(|c| *c != 0).unwrap_or(0))
}
