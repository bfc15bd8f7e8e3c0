//! Reads the machine into Facts: sysfs, /proc, /etc and getifaddrs
//! directly; shells out only to `nft` and `iptables-save` (their rule
//! sets have no simpler reader), and opens each rxe device once through
//! libibverbs (dlopen) for its port's active_mtu, which sysfs does not show.

use crate::checks;
use crate::facts::*;
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fs;
use std::path::Path;
use std::process::Command;

fn read(p: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn entries(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

pub fn gather(open_devices: bool) -> Facts {
    let mut facts = Facts { kernel: kernel(), netdevs: netdevs(), memlock: memlock(), ..Default::default() };
    facts.devices = devices();
    if open_devices {
        active_mtus(&mut facts.devices);
    }
    facts.nft = run("nft", &["-a", "list", "ruleset"]);
    facts.iptables = run("iptables-save", &[]);
    facts.verbs = verbs();
    facts.driver_files = entries("/etc/libibverbs.d")
        .into_iter()
        .map(|n| format!("/etc/libibverbs.d/{n}"))
        .filter(|p| Path::new(p).is_file())
        .map(|p| DriverFile { drivers: checks::parse_driver_file(&read(&p).unwrap_or_default()), path: p })
        .collect();
    facts.rdmav_drivers = std::env::var("RDMAV_DRIVERS").or_else(|_| std::env::var("IBV_DRIVERS")).ok().filter(|s| !s.is_empty());
    facts.checkout_driver = checkout_driver();
    if let Some(v) = &facts.verbs {
        if let Some(abi) = v.abi {
            for p in checks::paths_to_stat(&facts, abi, &v.provider_dir) {
                let exists = Path::new(&p).is_file();
                facts.files.insert(p, exists);
            }
        }
    }
    facts.rdma_cm_dev = Path::new("/dev/infiniband/rdma_cm").exists();
    for d in &facts.devices {
        let Some(nd) = d.parent.as_ref().and_then(|p| facts.netdevs.get(p)) else { continue };
        for a in &nd.ipv4 {
            facts.routes.insert(a.split('/').next().unwrap_or(a).to_string(), route(a));
        }
    }
    facts
}

fn kernel() -> Kernel {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = format!("/lib/modules/{release}");
    // A module's file is <dir>/<name>.ko, compressed or not.
    let names = |f: &str, m: &str| {
        let file = format!("/{m}.ko");
        read(format!("{modules}/{f}")).is_some_and(|t| t.lines().any(|l| l.split(':').next().unwrap_or("").contains(&file)))
    };
    let uverbs = entries("/dev/infiniband")
        .into_iter()
        .filter(|n| n.starts_with("uverbs"))
        .map(|n| {
            let node = format!("/dev/infiniband/{n}");
            let c = CString::new(node.clone()).unwrap_or_default();
            // SAFETY: c is a valid NUL-terminated path.
            let accessible = unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) } == 0;
            Uverbs { ibdev: read(format!("/sys/class/infiniband_verbs/{n}/ibdev")).unwrap_or_default(), node, accessible }
        })
        .collect();
    Kernel {
        rxe_loaded: Path::new("/sys/module/rdma_rxe").exists(),
        rxe_available: names("modules.dep", "rdma_rxe") || names("modules.builtin", "rdma_rxe"),
        uverbs_loaded: Path::new("/sys/module/ib_uverbs").exists(),
        ucm_loaded: Path::new("/sys/module/rdma_ucm").exists(),
        ucm_available: names("modules.dep", "rdma_ucm") || names("modules.builtin", "rdma_ucm"),
        uverbs,
        release,
    }
}

/// rxe devices: those with a `parent` attribute naming their netdev (rxe
/// has it; hardware devices have a `device` link instead), siw excluded.
fn devices() -> Vec<RxeDevice> {
    let base = Path::new("/sys/class/infiniband");
    entries(base)
        .into_iter()
        .filter(|n| base.join(n).join("parent").exists() && !n.starts_with("siw"))
        .map(|name| {
            let d = base.join(&name);
            let ports = entries(d.join("ports"))
                .into_iter()
                .filter_map(|p| p.parse::<u32>().ok())
                .map(|num| {
                    let pd = d.join("ports").join(num.to_string());
                    let gids = entries(pd.join("gids"))
                        .into_iter()
                        .filter_map(|i| i.parse::<u32>().ok())
                        .filter_map(|index| {
                            let gid = read(pd.join("gids").join(index.to_string()))?;
                            // Empty slots read as zeros, their types fail to read.
                            if gid.chars().all(|c| c == '0' || c == ':') {
                                return None;
                            }
                            let kind = read(pd.join("gid_attrs/types").join(index.to_string())).unwrap_or_default();
                            let ndev = read(pd.join("gid_attrs/ndevs").join(index.to_string())).unwrap_or_default();
                            Some(Gid { index, gid, kind, ndev })
                        })
                        .collect();
                    Port { num, state: read(pd.join("state")).unwrap_or_default(), gids, active_mtu: None }
                })
                .collect();
            RxeDevice { parent: read(d.join("parent")).filter(|p| !p.is_empty()), name, ports }
        })
        .collect()
}

fn netdevs() -> BTreeMap<String, Netdev> {
    let mut m = BTreeMap::new();
    for name in entries("/sys/class/net") {
        let d = Path::new("/sys/class/net").join(&name);
        let flags = read(d.join("flags")).and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok()).unwrap_or(0);
        let nd = Netdev {
            admin_up: flags & libc::IFF_UP as u32 != 0,
            loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
            operstate: read(d.join("operstate")).unwrap_or_default(),
            mtu: read(d.join("mtu")).and_then(|s| s.parse().ok()).unwrap_or(0),
            name: name.clone(),
            ..Default::default()
        };
        m.insert(name, nd);
    }
    addresses(&mut m);
    m
}

fn prefix_len(mask: &[u8]) -> u32 {
    mask.iter().map(|b| b.count_ones()).sum()
}

/// IPv4 and IPv6 addresses from getifaddrs.
fn addresses(m: &mut BTreeMap<String, Netdev>) {
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: ifa is an out-pointer getifaddrs fills; freed below.
    if unsafe { libc::getifaddrs(&mut ifa) } != 0 {
        return;
    }
    let mut cur = ifa;
    while !cur.is_null() {
        // SAFETY: cur is a node of the list getifaddrs returned, not yet freed.
        let i = unsafe { &*cur };
        cur = i.ifa_next;
        if i.ifa_addr.is_null() || i.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(i.ifa_name) }.to_string_lossy().into_owned();
        let Some(nd) = m.get_mut(&name) else { continue };
        // SAFETY: ifa_addr is non-null and points at a sockaddr of its family.
        let family = unsafe { (*i.ifa_addr).sa_family } as i32;
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in; so is its netmask when present.
            let (a, mask) = unsafe {
                let a = &*(i.ifa_addr as *const libc::sockaddr_in);
                let mask = if i.ifa_netmask.is_null() { 32 } else { prefix_len(&(*(i.ifa_netmask as *const libc::sockaddr_in)).sin_addr.s_addr.to_ne_bytes()) };
                (a.sin_addr.s_addr.to_ne_bytes(), mask)
            };
            nd.ipv4.push(format!("{}/{mask}", std::net::Ipv4Addr::from(a)));
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let a = unsafe { (*(i.ifa_addr as *const libc::sockaddr_in6)).sin6_addr.s6_addr };
            nd.ipv6.push(std::net::Ipv6Addr::from(a).to_string());
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(ifa) };
}

fn memlock() -> Memlock {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: r is a valid rlimit to fill.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    let soft = if !ok || r.rlim_cur == libc::RLIM_INFINITY { None } else { Some(r.rlim_cur) };
    // CAP_IPC_LOCK is bit 14 of CapEff.
    let cap_ipc_lock = read("/proc/self/status")
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_some_and(|caps| caps & (1 << 14) != 0);
    Memlock { soft, cap_ipc_lock }
}

/// Runs a tool; Missing when it is not installed.
fn run(tool: &str, args: &[&str]) -> Tool {
    match Command::new(tool).args(args).env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tool::Missing,
        Err(e) => Tool::Failed(e.to_string()),
        Ok(o) if !o.status.success() => Tool::Failed(format!("{}{}", String::from_utf8_lossy(&o.stderr), o.status)),
        Ok(o) => Tool::Output(String::from_utf8_lossy(&o.stdout).into_owned()),
    }
}

const LIB_DIRS: &[&str] = &["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/lib"];

/// The libibverbs.so.1 a program would load: LD_LIBRARY_PATH's first, then
/// the usual library directories.
fn verbs() -> Option<Verbs> {
    let env: Vec<String> = std::env::var("LD_LIBRARY_PATH").unwrap_or_default().split(':').filter(|s| !s.is_empty()).map(String::from).collect();
    let dir = env.iter().map(String::as_str).chain(LIB_DIRS.iter().copied()).find(|d| Path::new(d).join("libibverbs.so.1").exists())?;
    let path = format!("{dir}/libibverbs.so.1");
    let real = fs::canonicalize(&path).map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|_| path.clone());
    let abi = fs::read(&real).ok().and_then(|b| checks::abi_from_bytes(&b));
    let provider_dir = format!("{}/libibverbs", Path::new(&real).parent().map_or(dir.to_string(), |p| p.to_string_lossy().into_owned()));
    Some(Verbs { release: checks::release_from_name(&real), abi, provider_dir, path, real })
}

/// A checkout's driver-config/librxe_rs when this binary runs from its
/// target/<profile>/ (a developer's build).
fn checkout_driver() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let root = exe.parent()?.parent()?.parent()?;
    let d = root.join("driver-config/librxe_rs");
    root.join("driver-config/rxe_rs.driver").exists().then(|| d.to_string_lossy().into_owned())
}

/// A UDP connect() is a route look-up: to the address itself, and to a
/// peer in its subnet (whose source address tells the way out).
fn route(cidr: &str) -> Route {
    let (addr, prefix) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let ip: std::net::Ipv4Addr = addr.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let prefix: u32 = prefix.parse().unwrap_or(32);
    let connect = |to: std::net::Ipv4Addr| -> Result<String, String> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.connect((to, checks::ROCE_PORT as u16)).map_err(|e| e.to_string())?;
        Ok(s.local_addr().map_err(|e| e.to_string())?.ip().to_string())
    };
    let peer = (prefix <= 30).then(|| {
        let mask = u32::MAX << (32 - prefix);
        let net = u32::from(ip) & mask;
        let mut p = net + 1;
        if p == u32::from(ip) {
            p += 1;
        }
        let p = std::net::Ipv4Addr::from(p);
        (p.to_string(), connect(p))
    });
    Route { local: connect(ip).map(|_| ()), peer }
}

/// Each rxe port's active_mtu through libibverbs: sysfs does not show it.
/// Any failure leaves it None (the check then derives it).
fn active_mtus(devices: &mut [RxeDevice]) {
    type GetList = unsafe extern "C" fn(*mut i32) -> *mut *mut libc::c_void;
    type FreeList = unsafe extern "C" fn(*mut *mut libc::c_void);
    type GetName = unsafe extern "C" fn(*mut libc::c_void) -> *const libc::c_char;
    type Open = unsafe extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;
    type Close = unsafe extern "C" fn(*mut libc::c_void) -> i32;
    type QueryPort = unsafe extern "C" fn(*mut libc::c_void, u8, *mut u8) -> i32;
    if devices.is_empty() {
        return;
    }
    // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to
    // the prototype libibverbs.so.1 exports it with (IBVERBS_1.0/1.1, stable).
    unsafe {
        let h = libc::dlopen(c"libibverbs.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if h.is_null() {
            return;
        }
        let sym = |n: &CStr| libc::dlsym(h, n.as_ptr());
        let (gl, fl, gn, op, cl, qp) = (sym(c"ibv_get_device_list"), sym(c"ibv_free_device_list"), sym(c"ibv_get_device_name"), sym(c"ibv_open_device"), sym(c"ibv_close_device"), sym(c"ibv_query_port"));
        if [gl, fl, gn, op, cl, qp].iter().any(|p| p.is_null()) {
            return;
        }
        let (gl, fl, gn, op, cl, qp) = (
            std::mem::transmute::<*mut libc::c_void, GetList>(gl),
            std::mem::transmute::<*mut libc::c_void, FreeList>(fl),
            std::mem::transmute::<*mut libc::c_void, GetName>(gn),
            std::mem::transmute::<*mut libc::c_void, Open>(op),
            std::mem::transmute::<*mut libc::c_void, Close>(cl),
            std::mem::transmute::<*mut libc::c_void, QueryPort>(qp),
        );
        let mut n = 0;
        let list = gl(&mut n);
        if list.is_null() {
            return;
        }
        for i in 0..n.max(0) as usize {
            let dev = *list.add(i);
            let name = CStr::from_ptr(gn(dev)).to_string_lossy().into_owned();
            let Some(d) = devices.iter_mut().find(|d| d.name == name) else { continue };
            let ctx = op(dev);
            if ctx.is_null() {
                continue;
            }
            for p in &mut d.ports {
                // struct ibv_port_attr: state, max_mtu, active_mtu (enums,
                // 4 bytes each) first; the buffer is larger than any release's.
                let mut attr = [0u8; 256];
                if qp(ctx, p.num as u8, attr.as_mut_ptr()) == 0 {
                    let e = u32::from_ne_bytes([attr[8], attr[9], attr[10], attr[11]]);
                    // IBV_MTU_256 = 1 ... IBV_MTU_4096 = 5.
                    p.active_mtu = (1..=5).contains(&e).then(|| 128 << e);
                }
            }
            cl(ctx);
        }
        fl(list);
    }
}
