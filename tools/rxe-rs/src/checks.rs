//! The doctor's judgement: pure functions from Facts to findings, each with
//! the command that fixes it. Nothing here touches the machine.

use crate::facts::*;
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Status {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable token naming the check (tests and scripts match on it).
    pub check: &'static str,
    /// What it is about: a device, netdev, file, or "" for the machine.
    pub subject: String,
    pub status: Status,
    pub message: String,
    /// The command (or edit) that fixes it; none for OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn f(check: &'static str, subject: &str, status: Status, message: String, fix: Option<String>) -> Finding {
    Finding { check, subject: subject.to_string(), status, message, fix }
}

/// The private ABIs our library serves (provider/abi/releases.rs'
/// PRIVATE_ABIS; scripts/package.sh installs one name per ABI; a test keeps
/// the three in step).
pub const OUR_ABIS: [u32; 5] = [34, 57, 59, 64, 65];

/// The RoCE v2 UDP port.
pub const ROCE_PORT: u32 = 4791;

/// What a typical registration needs: perftest's default buffers and small
/// UCX pools. Below FAIL_BELOW even ib_write_bw's defaults are refused.
const MEMLOCK_TYPICAL: u64 = 64 << 20;
const MEMLOCK_FAIL_BELOW: u64 = 1 << 20;

/// Every finding, in the order they are printed.
pub fn all(facts: &Facts) -> Vec<Finding> {
    let mut v = kernel(facts);
    v.extend(links(facts));
    v.extend(memlock(&facts.memlock));
    v.extend(firewall(&facts.nft, &facts.iptables));
    v.extend(libibverbs(facts));
    v.extend(rdma_cm(facts));
    v
}

// --- kernel

pub fn kernel(facts: &Facts) -> Vec<Finding> {
    let k = &facts.kernel;
    let mut v = Vec::new();
    v.push(if k.rxe_loaded {
        f("kernel.rdma_rxe", "rdma_rxe", Status::Ok, format!("rdma_rxe is loaded (kernel {})", k.release), None)
    } else if k.rxe_available {
        f("kernel.rdma_rxe", "rdma_rxe", Status::Fail, format!("rdma_rxe is available in kernel {} but not loaded", k.release), Some("modprobe rdma_rxe".into()))
    } else {
        f(
            "kernel.rdma_rxe",
            "rdma_rxe",
            Status::Fail,
            format!("kernel {} has no rdma_rxe module (CONFIG_RDMA_RXE)", k.release),
            Some("install a kernel built with CONFIG_RDMA_RXE=m (Debian's linux-image-amd64 has it), or run in a VM that has one".into()),
        )
    });
    if !k.uverbs_loaded {
        v.push(f("kernel.ib_uverbs", "ib_uverbs", Status::Fail, "ib_uverbs is not loaded: programs cannot reach any RDMA device".into(), Some("modprobe ib_uverbs".into())));
    } else if k.uverbs.is_empty() {
        // Without a device there is no node; link.none says what to do.
        v.push(f("kernel.ib_uverbs", "ib_uverbs", Status::Ok, "ib_uverbs is loaded (no /dev/infiniband/uverbs* until an RDMA device exists)".into(), None));
    } else {
        let nodes: Vec<&str> = k.uverbs.iter().map(|u| u.node.as_str()).collect();
        v.push(f("kernel.ib_uverbs", "ib_uverbs", Status::Ok, format!("ib_uverbs is loaded: {}", nodes.join(", ")), None));
    }
    v
}

// --- rxe links, netdevs, GIDs, MTU

/// The first netdev fit to carry rxe: up, not loopback, with an IPv4 address.
fn suggest_netdev(facts: &Facts) -> String {
    facts
        .netdevs
        .values()
        .find(|n| !n.loopback && n.admin_up && !n.ipv4.is_empty())
        .or_else(|| facts.netdevs.values().find(|n| !n.loopback))
        .map_or("<nic>".to_string(), |n| n.name.clone())
}

pub fn links(facts: &Facts) -> Vec<Finding> {
    let mut v = Vec::new();
    if facts.devices.is_empty() {
        let nic = suggest_netdev(facts);
        v.push(f(
            "link.none",
            "",
            Status::Fail,
            "no rxe link: no Soft-RoCE device exists".into(),
            Some(format!("rdma link add rxe0 type rxe netdev {nic}")),
        ));
        return v;
    }
    for d in &facts.devices {
        v.extend(device(facts, d));
    }
    v
}

fn device(facts: &Facts, d: &RxeDevice) -> Vec<Finding> {
    let mut v = Vec::new();
    let dev = d.name.as_str();
    let Some(nd_name) = &d.parent else {
        v.push(f("link.netdev", dev, Status::Fail, format!("{dev} has no netdev (its parent is gone)"), Some(format!("rdma link delete {dev}; rdma link add {dev} type rxe netdev {}", suggest_netdev(facts)))));
        return v;
    };
    let Some(nd) = facts.netdevs.get(nd_name) else {
        v.push(f("link.netdev", dev, Status::Fail, format!("{dev}'s netdev {nd_name} does not exist"), Some(format!("rdma link delete {dev}; rdma link add {dev} type rxe netdev {}", suggest_netdev(facts)))));
        return v;
    };
    v.push(f("link.netdev", dev, Status::Ok, format!("{dev} runs over netdev {nd_name}"), None));
    if !facts.kernel.uverbs.is_empty() {
        match facts.kernel.uverbs.iter().find(|u| u.ibdev == dev) {
            None => v.push(f("link.uverbs", dev, Status::Fail, format!("{dev} has no /dev/infiniband/uverbs* node"), Some("modprobe ib_uverbs".into()))),
            Some(u) if !u.accessible => v.push(f(
                "link.uverbs",
                dev,
                Status::Fail,
                format!("{} ({dev}) cannot be opened read-write by this user", u.node),
                Some(format!("chmod 666 {} (as root; for good, a udev rule: KERNEL==\"uverbs*\", MODE=\"0666\")", u.node)),
            )),
            Some(_) => {}
        }
    }
    if nd.loopback {
        v.push(f(
            "link.loopback",
            dev,
            Status::Warn,
            format!("{dev} runs over the loopback netdev {nd_name}: only programs on this machine can reach it, and its GIDs are loopback addresses"),
            Some(loopback_fix(facts, dev)),
        ));
    }
    if !nd.admin_up {
        v.push(f("netdev.up", nd_name, Status::Fail, format!("netdev {nd_name} (under {dev}) is down: {dev}'s port is down"), Some(format!("ip link set {nd_name} up"))));
    } else if nd.operstate == "down" || nd.operstate == "lowerlayerdown" || nd.operstate == "notpresent" {
        v.push(f("netdev.up", nd_name, Status::Fail, format!("netdev {nd_name} (under {dev}) is up but has no carrier (operstate {})", nd.operstate), Some(format!("connect {nd_name}'s link (ip link show {nd_name})"))));
    } else {
        v.push(f("netdev.up", nd_name, Status::Ok, format!("netdev {nd_name} is up (operstate {})", nd.operstate), None));
    }
    if nd.ipv4.is_empty() {
        let also = if nd.ipv6.is_empty() { "no address at all".to_string() } else { format!("only IPv6 ({})", nd.ipv6.join(", ")) };
        v.push(f(
            "netdev.address",
            nd_name,
            Status::Fail,
            format!("netdev {nd_name} (under {dev}) has no IPv4 address ({also}): no IPv4 RoCE v2 GID, and rdma_cm (rping, -R) cannot resolve it"),
            Some(format!("ip addr add 192.0.2.1/24 dev {nd_name} (an address of your network)")),
        ));
    } else {
        v.push(f("netdev.address", nd_name, Status::Ok, format!("netdev {nd_name} has {}", nd.ipv4.join(", ")), None));
    }
    for p in &d.ports {
        v.extend(port(dev, nd, p));
    }
    v
}

/// Delete a link on lo; make one on a real NIC unless another rxe link
/// already serves one (rxe takes one link per netdev).
fn loopback_fix(facts: &Facts, dev: &str) -> String {
    let real = facts.devices.iter().find(|d| d.name != dev && d.parent.as_ref().and_then(|p| facts.netdevs.get(p)).is_some_and(|n| !n.loopback));
    match real {
        Some(d) => format!("rdma link delete {dev} ({} on {} serves the network)", d.name, d.parent.as_deref().unwrap_or("")),
        None => format!("rdma link delete {dev}; rdma link add {dev} type rxe netdev {}", suggest_netdev(facts)),
    }
}

#[cfg(test)]
/// The GID the kernel makes for an IPv4 address: ::ffff:a.b.c.d, as sysfs prints it.
pub fn ipv4_gid(addr: &str) -> Option<String> {
    let ip: std::net::Ipv4Addr = addr.split('/').next()?.parse().ok()?;
    let o = ip.octets();
    Some(format!("0000:0000:0000:0000:0000:ffff:{:02x}{:02x}:{:02x}{:02x}", o[0], o[1], o[2], o[3]))
}

/// The IPv4 address of a v4-mapped GID.
pub fn gid_ipv4(gid: &str) -> Option<String> {
    let g = gid.strip_prefix("0000:0000:0000:0000:0000:ffff:")?;
    let (a, b) = g.split_once(':')?;
    let (a, b) = (u16::from_str_radix(a, 16).ok()?, u16::from_str_radix(b, 16).ok()?);
    Some(format!("{}.{}.{}.{}", a >> 8, a & 0xff, b >> 8, b & 0xff))
}

/// The active MTU rxe gives a netdev MTU: its largest IB MTU that fits
/// once the RoCE v2 headers (GRH, UDP, BTH, the largest extension headers
/// and ICRC: 96 bytes) are taken off, at most 4096, at least 256.
pub fn rxe_active_mtu(netdev_mtu: u32) -> u32 {
    let room = netdev_mtu.saturating_sub(40 + 8 + 12 + 4 + 28 + 4);
    [4096, 2048, 1024, 512, 256].into_iter().find(|m| room >= *m).unwrap_or(256)
}

fn port(dev: &str, nd: &Netdev, p: &Port) -> Vec<Finding> {
    let mut v = Vec::new();
    let subj = format!("{dev}/{}", p.num);
    if !p.state.ends_with("ACTIVE") {
        v.push(f("port.state", &subj, Status::Fail, format!("port {subj} is {} (it follows netdev {})", p.state, nd.name), Some(format!("ip link set {} up", nd.name))));
    } else {
        v.push(f("port.state", &subj, Status::Ok, format!("port {subj} is ACTIVE"), None));
    }
    // The GID table: the IPv4 RoCE v2 entry is what -g/-x/--gid need.
    let v4: Vec<&Gid> = p.gids.iter().filter(|g| g.kind == "RoCE v2" && gid_ipv4(&g.gid).is_some()).collect();
    let table: Vec<String> = p.gids.iter().map(|g| format!("{}={} ({}{})", g.index, gid_ipv4(&g.gid).unwrap_or_else(|| g.gid.clone()), g.kind, if g.ndev.is_empty() { String::new() } else { format!(", {}", g.ndev) })).collect();
    match v4.first() {
        Some(g) => v.push(f(
            "gid.roce_v2_ipv4",
            &subj,
            Status::Ok,
            format!(
                "IPv4 RoCE v2 GID is index {} ({}): use ibv_rc_pingpong -g {i}, perftest -x {i}, --gid-index {i}; table: {}",
                g.index,
                gid_ipv4(&g.gid).unwrap_or_default(),
                table.join("; "),
                i = g.index
            ),
            None,
        )),
        None => v.push(f(
            "gid.roce_v2_ipv4",
            &subj,
            Status::Fail,
            format!("no IPv4 RoCE v2 GID on {subj} (table: {}): tools given -g/-x of an IPv4 GID fail", if table.is_empty() { "empty".into() } else { table.join("; ") }),
            Some(format!("ip addr add 192.0.2.1/24 dev {} (the GID appears with the address)", nd.name)),
        )),
    }
    // MTU: what rxe makes of the netdev's, and what the port reports.
    let want = rxe_active_mtu(nd.mtu);
    let room = nd.mtu.saturating_sub(96);
    if room < 256 {
        v.push(f(
            "mtu",
            &subj,
            Status::Fail,
            format!("netdev {} MTU {} is too small for RoCE: a 256-byte packet with its 96 bytes of headers does not fit", nd.name, nd.mtu),
            Some(format!("ip link set {} mtu 1500", nd.name)),
        ));
    } else if let Some(active) = p.active_mtu.filter(|a| *a != want) {
        v.push(f(
            "mtu",
            &subj,
            Status::Warn,
            format!("port {subj} active_mtu {active} but netdev {} MTU {} gives {want}", nd.name, nd.mtu),
            Some(format!("rdma link delete {dev}; rdma link add {dev} type rxe netdev {}", nd.name)),
        ));
    } else {
        let seen = if p.active_mtu.is_some() { "" } else { " (derived: the device could not be opened)" };
        let more = if want < 4096 { format!("; for 4096 raise the netdev MTU to 4192 or more: ip link set {} mtu 4200", nd.name) } else { String::new() };
        v.push(f(
            "mtu",
            &subj,
            Status::Ok,
            format!("netdev {} MTU {} -> active_mtu {want}{seen}: programs must ask for at most {want} (ibv_rc_pingpong -m {want}){more}", nd.name, nd.mtu),
            None,
        ));
    }
    v
}

// --- memlock

pub fn kib(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b >> 10)
    }
}

pub fn memlock(m: &Memlock) -> Vec<Finding> {
    const FIX: &str = "ulimit -l unlimited (as root, in this shell), or for the user '<user> - memlock unlimited' in /etc/security/limits.d/rdma.conf and log in again; LimitMEMLOCK=infinity for a systemd service";
    let (st, msg) = match m.soft {
        None => (Status::Ok, "RLIMIT_MEMLOCK is unlimited".to_string()),
        Some(l) if m.cap_ipc_lock => (
            Status::Ok,
            format!("RLIMIT_MEMLOCK is {}, but this process has CAP_IPC_LOCK, which the kernel lets pin past it (programs run by other users do not)", kib(l)),
        ),
        Some(l) if l < MEMLOCK_FAIL_BELOW => (
            Status::Fail,
            format!("RLIMIT_MEMLOCK is {}: registrations larger than that fail with ENOMEM (a typical registration, perftest's buffers or UCX's pools, needs about {})", kib(l), kib(MEMLOCK_TYPICAL)),
        ),
        Some(l) if l < MEMLOCK_TYPICAL => (
            Status::Warn,
            format!("RLIMIT_MEMLOCK is {}: small tests work, larger registrations (perftest -a, UCX pools: about {}) fail with ENOMEM", kib(l), kib(MEMLOCK_TYPICAL)),
        ),
        Some(l) => (Status::Ok, format!("RLIMIT_MEMLOCK is {}", kib(l))),
    };
    let fix = (st != Status::Ok).then(|| FIX.to_string());
    vec![f("memlock", "", st, msg, fix)]
}

// --- firewall

/// Whether a port expression (`4791`, `4000-5000`, `4000:5000`, `{ 53, 4791 }`,
/// `4791,4792`) covers UDP 4791.
pub fn covers_roce_port(expr: &str) -> bool {
    expr.trim_matches(|c| c == '{' || c == '}' || c == ' ')
        .split([',', ' '])
        .filter(|s| !s.is_empty() && *s != "{" && *s != "}")
        .any(|item| {
            let item = item.trim_matches(|c| c == '{' || c == '}');
            match item.split_once(['-', ':']) {
                Some((a, b)) => matches!((a.parse::<u32>(), b.parse::<u32>()), (Ok(a), Ok(b)) if a <= ROCE_PORT && ROCE_PORT <= b),
                None => item.parse::<u32>() == Ok(ROCE_PORT),
            }
        })
}

/// The port expression after `dport` in an nft rule: a word, or a `{ ... }` set.
fn nft_dport(rule: &str) -> Option<String> {
    let i = rule.find("dport ")? + "dport ".len();
    let rest = &rule[i..];
    if rest.starts_with('{') {
        Some(rest[..rest.find('}')? + 1].to_string())
    } else {
        Some(rest.split_whitespace().next()?.to_string())
    }
}

/// A rule that drops UDP 4791, with the command that deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    pub rule: String,
    pub fix: String,
}

/// `nft -a list ruleset`: rules dropping or rejecting UDP 4791, and base
/// chains whose policy is drop with no rule accepting it.
pub fn parse_nft(text: &str) -> (Vec<DropRule>, Vec<String>) {
    let (mut family_table, mut chain) = (String::new(), String::new());
    let mut drops = Vec::new();
    let mut policies = Vec::new();
    let mut accepted = false;
    let mut policy_drop = false;
    let strip = |l: &str| l.split(" # handle").next().unwrap_or(l).trim().to_string();
    let close_chain = |chain: &str, ft: &str, accepted: bool, policy_drop: bool, policies: &mut Vec<String>| {
        if policy_drop && !accepted && !chain.is_empty() {
            policies.push(format!("nft chain {ft} {chain} has policy drop and no rule accepting UDP {ROCE_PORT}"));
        }
    };
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("table ") {
            family_table = strip(rest).trim_end_matches('{').trim().to_string();
        } else if let Some(rest) = l.strip_prefix("chain ") {
            close_chain(&chain, &family_table, accepted, policy_drop, &mut policies);
            chain = strip(rest).trim_end_matches('{').trim().to_string();
            accepted = false;
            policy_drop = false;
        } else if l.starts_with("type ") && l.contains("hook ") {
            policy_drop = l.contains("policy drop");
        } else if l.contains("dport ") {
            let Some(ports) = nft_dport(l) else { continue };
            // Only UDP matches (or any transport: `th dport`).
            let udp = l.contains("udp dport") || l.contains("th dport") || l.contains("l4proto udp");
            if !udp || !covers_roce_port(&ports) {
                continue;
            }
            let stripped = strip(l);
            let words: Vec<&str> = stripped.split_whitespace().map(|w| w.trim_end_matches(';')).collect();
            if words.contains(&"drop") || words.contains(&"reject") {
                let handle = l.rsplit_once("# handle ").map(|(_, h)| h.trim().to_string());
                let fix = match handle {
                    Some(h) => format!("nft delete rule {family_table} {chain} handle {h}"),
                    None => format!("nft -a list chain {family_table} {chain}, then nft delete rule {family_table} {chain} handle <N>"),
                };
                drops.push(DropRule { rule: format!("{family_table} {chain}: {}", strip(l)), fix });
            } else if words.contains(&"accept") {
                accepted = true;
            }
        }
    }
    close_chain(&chain, &family_table, accepted, policy_drop, &mut policies);
    (drops, policies)
}

/// `iptables-save`: -A rules that DROP or REJECT UDP 4791, and built-in
/// chains with policy DROP and no rule accepting it.
pub fn parse_iptables(text: &str) -> (Vec<DropRule>, Vec<String>) {
    let mut table = "filter".to_string();
    let mut drops = Vec::new();
    let mut drop_policies: Vec<(String, String)> = Vec::new();
    let mut accepting: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(p) = l.strip_prefix(':') {
            let mut w = p.split_whitespace();
            if let (Some(chain), Some("DROP")) = (w.next(), w.next()) {
                drop_policies.push((table.clone(), chain.to_string()));
            }
        } else if let Some(rule) = l.strip_prefix("-A ") {
            let w: Vec<&str> = rule.split_whitespace().collect();
            let after = |k: &str| w.iter().position(|x| *x == k).and_then(|i| w.get(i + 1)).copied();
            let udp = after("-p") == Some("udp");
            let port = after("--dport").or_else(|| after("--dports")).or_else(|| after("--destination-port"));
            if !udp || !port.is_some_and(covers_roce_port) {
                continue;
            }
            match after("-j") {
                Some("DROP") | Some("REJECT") => drops.push(DropRule {
                    rule: format!("*{table} -A {rule}"),
                    fix: format!("iptables -t {table} -D {rule}"),
                }),
                Some("ACCEPT") => accepting.push((table.clone(), w[0].to_string())),
                _ => {}
            }
        }
    }
    let policies = drop_policies
        .into_iter()
        .filter(|tc| !accepting.contains(tc))
        .map(|(t, c)| format!("iptables chain {c} (table {t}) has policy DROP and no rule accepting UDP {ROCE_PORT}"))
        .collect();
    (drops, policies)
}

pub fn firewall(nft: &Tool, iptables: &Tool) -> Vec<Finding> {
    let mut v = Vec::new();
    let mut checked = Vec::new();
    let mut unchecked = Vec::new();
    for (name, tool, parse, policy_fix) in [
        ("nft -a list ruleset", nft, parse_nft as fn(&str) -> (Vec<DropRule>, Vec<String>), format!("nft insert rule <family> <table> <chain> udp dport {ROCE_PORT} accept")),
        ("iptables-save", iptables, parse_iptables, format!("iptables -I INPUT -p udp --dport {ROCE_PORT} -j ACCEPT")),
    ] {
        match tool {
            Tool::Missing => unchecked.push(format!("{name}: not installed")),
            Tool::Failed(e) => unchecked.push(format!("{name} failed: {}", e.lines().next().unwrap_or("").trim())),
            Tool::Output(text) => {
                checked.push(name);
                let (drops, policies) = parse(text);
                for d in drops {
                    v.push(f("firewall.udp4791", name, Status::Fail, format!("a rule drops RoCE v2 traffic (UDP {ROCE_PORT}): {}", d.rule), Some(d.fix)));
                }
                for p in policies {
                    v.push(f("firewall.udp4791", name, Status::Warn, p, Some(policy_fix.clone())));
                }
            }
        }
    }
    if checked.is_empty() {
        v.push(f(
            "firewall.udp4791",
            "",
            Status::Warn,
            format!("could not check the firewall for UDP {ROCE_PORT} ({})", unchecked.join("; ")),
            Some("run as root with nft (nftables) or iptables-save installed".into()),
        ));
    } else if v.is_empty() {
        let note = if unchecked.is_empty() { String::new() } else { format!(" (not checked: {})", unchecked.join("; ")) };
        v.push(f("firewall.udp4791", "", Status::Ok, format!("no rule drops UDP {ROCE_PORT} ({}){note}", checked.join(", ")), None));
    }
    v
}

// --- libibverbs and which provider serves rxe devices

/// The private ABI a libibverbs exports `verbs_register_driver_<N>` for (its
/// bytes: the symbol name sits in .dynstr).
pub fn abi_from_bytes(bytes: &[u8]) -> Option<u32> {
    const SYM: &[u8] = b"verbs_register_driver_";
    bytes.windows(SYM.len()).enumerate().filter(|(_, w)| *w == SYM).find_map(|(i, _)| {
        let digits: Vec<u8> = bytes[i + SYM.len()..].iter().take_while(|b| b.is_ascii_digit()).copied().collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()
    })
}

/// The rdma-core release in a libibverbs file name: libibverbs.so.1.14.44.0 -> 44.0.
pub fn release_from_name(real: &str) -> Option<String> {
    let name = real.rsplit('/').next()?;
    let rest = name.strip_prefix("libibverbs.so.1.")?;
    let (_, rel) = rest.split_once('.')?;
    Some(rel.to_string())
}

/// The `driver <name>` lines of a driver file.
pub fn parse_driver_file(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("driver")).then(|| w.next().map(str::to_string)).flatten()
        })
        .collect()
}

/// Which rxe provider a driver name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Ours,
    Stock,
    Other,
}

pub fn kind_of(name: &str) -> Kind {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = if name.contains('/') { base.strip_prefix("lib").unwrap_or(base) } else { base };
    match base {
        "rxe_rs" => Kind::Ours,
        "rxe" => Kind::Stock,
        _ => Kind::Other,
    }
}

/// The file libibverbs loads for a driver name: a path gets
/// `-rdmav<ABI>.so` appended; a bare name is lib<name>-rdmav<ABI>.so in the
/// provider directory.
pub fn library_path(name: &str, abi: u32, provider_dir: &str) -> String {
    if name.contains('/') {
        format!("{name}-rdmav{abi}.so")
    } else {
        format!("{provider_dir}/lib{name}-rdmav{abi}.so")
    }
}

/// One rxe provider libibverbs will try, in its load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub kind: Kind,
    pub name: String,
    /// "RDMAV_DRIVERS" or the driver file naming it.
    pub origin: String,
    pub library: String,
    pub exists: bool,
}

/// The rxe providers (ours and the stock one) libibverbs will load, in
/// order: RDMAV_DRIVERS first, then the driver files (among which the order
/// is the directory's, which nobody fixes).
pub fn candidates(facts: &Facts, abi: u32, provider_dir: &str) -> Vec<Candidate> {
    let mut v = Vec::new();
    let mut add = |name: &str, origin: &str| {
        let kind = kind_of(name);
        if kind == Kind::Other {
            return;
        }
        let library = library_path(name, abi, provider_dir);
        let exists = facts.files.get(&library).copied().unwrap_or(false);
        v.push(Candidate { kind, name: name.to_string(), origin: origin.to_string(), library, exists });
    };
    if let Some(env) = &facts.rdmav_drivers {
        for name in env.split([':', ';']).filter(|s| !s.is_empty()) {
            add(name, "RDMAV_DRIVERS");
        }
    }
    for df in &facts.driver_files {
        for name in &df.drivers {
            add(name, &df.path);
        }
    }
    v
}

/// Every library path a driver entry can lead to, for gather.rs to stat.
pub fn paths_to_stat(facts: &Facts, abi: u32, provider_dir: &str) -> Vec<String> {
    let mut v: Vec<String> = candidates(facts, abi, provider_dir).into_iter().map(|c| c.library).collect();
    v.push(library_path("rxe_rs", abi, provider_dir));
    v.push(library_path("rxe", abi, provider_dir));
    if let Some(c) = &facts.checkout_driver {
        v.push(library_path(c, abi, provider_dir));
    }
    v
}

pub fn libibverbs(facts: &Facts) -> Vec<Finding> {
    let mut v = Vec::new();
    let Some(verbs) = &facts.verbs else {
        v.push(f("verbs.library", "libibverbs", Status::Fail, "no libibverbs.so.1 found".into(), Some("apt install libibverbs1 ibverbs-providers (dnf install libibverbs)".into())));
        return v;
    };
    let rel = verbs.release.clone().unwrap_or_else(|| "unknown".into());
    let Some(abi) = verbs.abi else {
        v.push(f("verbs.library", "libibverbs", Status::Fail, format!("{} (rdma-core {rel}) exports no verbs_register_driver_<N>: cannot tell its private ABI", verbs.real), None));
        return v;
    };
    v.push(f("verbs.library", "libibverbs", Status::Ok, format!("{} -> {} (rdma-core {rel}), private ABI {abi}, providers in {}", verbs.path, verbs.real, verbs.provider_dir), None));
    // The driver files and the variable.
    let files: Vec<String> = facts
        .driver_files
        .iter()
        .filter(|d| d.drivers.iter().any(|n| kind_of(n) != Kind::Other))
        .map(|d| format!("{}: driver {}", d.path, d.drivers.join(", ")))
        .collect();
    v.push(f(
        "verbs.driver_files",
        "/etc/libibverbs.d",
        Status::Ok,
        format!("{} driver files; rxe entries: {}", facts.driver_files.len(), if files.is_empty() { "none".into() } else { files.join("; ") }),
        None,
    ));
    if let Some(env) = &facts.rdmav_drivers {
        v.push(f("verbs.rdmav_drivers", "RDMAV_DRIVERS", Status::Ok, format!("RDMAV_DRIVERS={env}: loaded before the driver files (ignored by setuid programs)"), None));
    }
    let all = candidates(facts, abi, &verbs.provider_dir);
    for c in all.iter().filter(|c| !c.exists) {
        let st = if c.kind == Kind::Ours { Status::Fail } else { Status::Warn };
        v.push(f(
            "verbs.missing_library",
            &c.origin,
            st,
            format!("{} names `{}`, but {} does not exist: libibverbs warns \"couldn't load driver\" and skips it", c.origin, c.name, c.library),
            Some(if c.kind == Kind::Ours { our_fix(facts, abi, &verbs.provider_dir) } else { format!("remove the entry from {}", c.origin) }),
        ));
    }
    // Ours must be a file this libibverbs can load: its ABI served.
    let ours_usable = |c: &&Candidate| c.kind == Kind::Ours && c.exists && OUR_ABIS.contains(&abi);
    if !OUR_ABIS.contains(&abi) {
        v.push(f(
            "verbs.our_abi",
            "rxe_rs",
            Status::Fail,
            format!("this libibverbs has private ABI {abi}; rxe-rs serves {}: it cannot load ours", OUR_ABIS.map(|a| a.to_string()).join(", ")),
            Some("install a release of rxe-rs that serves this ABI, or a libibverbs of rdma-core 44 to 65".into()),
        ));
    } else if let Some(c) = all.iter().find(|c| c.kind == Kind::Ours && c.exists) {
        v.push(f("verbs.our_abi", "rxe_rs", Status::Ok, format!("our library {} is there for ABI {abi}, which it serves", c.library), None));
    }
    let usable: Vec<&Candidate> = all.iter().filter(|c| c.exists && (c.kind == Kind::Stock || ours_usable(c))).collect();
    let winner = usable.iter().find(|c| c.origin == "RDMAV_DRIVERS").copied().map(|c| (c, true));
    let served = match winner {
        Some((c, _)) => Some(c.kind),
        None => {
            let kinds: Vec<Kind> = usable.iter().map(|c| c.kind).collect();
            match (kinds.contains(&Kind::Ours), kinds.contains(&Kind::Stock)) {
                (true, false) => Some(Kind::Ours),
                (false, true) => Some(Kind::Stock),
                (true, true) => None,
                (false, false) => Some(Kind::Other),
            }
        }
    };
    let devs: Vec<&str> = facts.devices.iter().map(|d| d.name.as_str()).collect();
    let subject = if devs.is_empty() { "rxe devices".to_string() } else { devs.join(",") };
    let which = |k: Kind| usable.iter().find(|c| c.kind == k).map_or(String::new(), |c| format!("{} (from {})", c.library, c.origin));
    match served {
        Some(Kind::Ours) => v.push(f("verbs.provider", &subject, Status::Ok, format!("{subject}: served by rxe-rs, {}", which(Kind::Ours)), None)),
        Some(Kind::Stock) => v.push(f(
            "verbs.provider",
            &subject,
            Status::Fail,
            format!("{subject}: the stock librxe will serve them, {}; rxe-rs is not used", which(Kind::Stock)),
            Some(our_fix(facts, abi, &verbs.provider_dir)),
        )),
        None => v.push(f(
            "verbs.provider",
            &subject,
            Status::Warn,
            format!("{subject}: both rxe-rs ({}) and the stock librxe ({}) are in /etc/libibverbs.d; which serves depends on the directory's order", which(Kind::Ours), which(Kind::Stock)),
            Some(format!("move the stock entry out: mkdir -p /etc/rxe-rs && mv {} /etc/rxe-rs/rxe.driver.stock (the packages do this)", usable.iter().find(|c| c.kind == Kind::Stock).map_or("/etc/libibverbs.d/rxe.driver", |c| c.origin.as_str()))),
        )),
        Some(Kind::Other) => v.push(f(
            "verbs.provider",
            &subject,
            Status::Fail,
            format!("{subject}: no rxe provider will be loaded (no usable `driver rxe_rs` or `driver rxe` entry)"),
            Some(our_fix(facts, abi, &verbs.provider_dir)),
        )),
    }
    v
}

/// How to have ours serve: the entry when the library is installed, the
/// variable for a checkout, else the package.
fn our_fix(facts: &Facts, abi: u32, provider_dir: &str) -> String {
    let installed = library_path("rxe_rs", abi, provider_dir);
    if facts.files.get(&installed).copied().unwrap_or(false) {
        return "apt install --reinstall rxe-rs (or: mkdir -p /etc/rxe-rs && mv /etc/libibverbs.d/rxe.driver /etc/rxe-rs/rxe.driver.stock && echo 'driver rxe_rs' > /etc/libibverbs.d/rxe_rs.driver)".into();
    }
    if let Some(c) = &facts.checkout_driver {
        if facts.files.get(&library_path(c, abi, provider_dir)).copied().unwrap_or(false) {
            return format!("export RDMAV_DRIVERS={c}");
        }
    }
    "install rxe-rs (apt install ./rxe-rs_*.deb), or export RDMAV_DRIVERS=<checkout>/driver-config/librxe_rs after cargo build --release".into()
}

// --- rdma_cm

pub fn rdma_cm(facts: &Facts) -> Vec<Finding> {
    let mut v = Vec::new();
    if facts.devices.is_empty() {
        return v;
    }
    let k = &facts.kernel;
    if facts.rdma_cm_dev || k.ucm_loaded {
        v.push(f("rdma_cm.device", "rdma_ucm", Status::Ok, "rdma_ucm is loaded (/dev/infiniband/rdma_cm)".into(), None));
    } else if k.ucm_available {
        // librdmacm asks the kernel for the rdma_cm char device over
        // netlink, which loads rdma_ucm (its rdma-client alias).
        v.push(f("rdma_cm.device", "rdma_ucm", Status::Ok, "rdma_ucm is not loaded yet: librdmacm has the kernel load it on first use".into(), None));
    } else {
        v.push(f("rdma_cm.device", "rdma_ucm", Status::Fail, format!("kernel {} has no rdma_ucm: rping and every rdma_cm program fail", k.release), Some("install a kernel built with CONFIG_INFINIBAND_USER_ACCESS (rdma_ucm), or modprobe rdma_ucm".into())));
    }
    for d in &facts.devices {
        let Some(nd) = d.parent.as_ref().and_then(|p| facts.netdevs.get(p)) else { continue };
        if nd.ipv4.is_empty() {
            v.push(f(
                "rdma_cm.resolve",
                &d.name,
                Status::Fail,
                format!("rdma_cm cannot resolve {}: netdev {} has no IPv4 address for rping -a / rdma_resolve_addr", d.name, nd.name),
                Some(format!("ip addr add 192.0.2.1/24 dev {}", nd.name)),
            ));
            continue;
        }
        for a in &nd.ipv4 {
            let addr = a.split('/').next().unwrap_or(a);
            let Some(r) = facts.routes.get(addr) else { continue };
            match (&r.local, &r.peer) {
                (Err(e), _) => v.push(f("rdma_cm.resolve", &d.name, Status::Fail, format!("no route to {addr} ({e}): rdma_resolve_addr fails"), Some(format!("ip link set {} up", nd.name)))),
                // A down netdev has no routes: netdev.up names the fix.
                (Ok(()), Some((peer, Err(e)))) if !nd.admin_up => v.push(f(
                    "rdma_cm.resolve",
                    &d.name,
                    Status::Fail,
                    format!("{addr} resolves locally, but {peer} in its subnet does not ({e}): netdev {} is down", nd.name),
                    Some(format!("ip link set {} up", nd.name)),
                )),
                (Ok(()), Some((peer, Err(e)))) => v.push(f(
                    "rdma_cm.resolve",
                    &d.name,
                    Status::Warn,
                    format!("{addr} resolves locally, but there is no route to {peer} in its subnet ({e}): other hosts cannot be resolved"),
                    Some(format!("ip route add {} dev {}", subnet(a), nd.name)),
                )),
                (Ok(()), Some((peer, Ok(src)))) if src != addr => v.push(f(
                    "rdma_cm.resolve",
                    &d.name,
                    Status::Warn,
                    format!("{addr} resolves, but {peer} in its subnet is routed from {src}, not through {}", nd.name),
                    Some(format!("ip route get {peer}; fix the route so that it leaves by {}", nd.name)),
                )),
                _ => v.push(f("rdma_cm.resolve", &d.name, Status::Ok, format!("{addr} ({}) resolves for rdma_cm: rping -s -a {addr} / rping -c -a {addr}", nd.name), None)),
            }
        }
    }
    v
}

/// The network of an address: 192.0.2.1/24 -> 192.0.2.0/24.
pub fn subnet(cidr: &str) -> String {
    let (a, p) = cidr.split_once('/').unwrap_or((cidr, "32"));
    match (a.parse::<std::net::Ipv4Addr>(), p.parse::<u32>()) {
        (Ok(ip), Ok(p)) if p <= 32 => {
            let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
            format!("{}/{p}", std::net::Ipv4Addr::from(u32::from(ip) & mask))
        }
        _ => cidr.to_string(),
    }
}

// --- output

pub fn text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for x in findings {
        let subj = if x.subject.is_empty() { String::new() } else { format!("[{}] ", x.subject) };
        let _ = writeln!(s, "{:<4} {}: {subj}{}", x.status.word(), x.check, x.message);
        if let Some(fix) = &x.fix {
            let _ = writeln!(s, "     fix: {fix}");
        }
    }
    let n = |st| findings.iter().filter(|x| x.status == st).count();
    let _ = writeln!(s, "{} OK, {} WARN, {} FAIL", n(Status::Ok), n(Status::Warn), n(Status::Fail));
    s
}

#[derive(Serialize)]
pub struct Report<'a> {
    pub findings: &'a [Finding],
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

pub fn json(findings: &[Finding]) -> String {
    let n = |st| findings.iter().filter(|x| x.status == st).count();
    let r = Report { findings, ok: n(Status::Ok), warn: n(Status::Warn), fail: n(Status::Fail) };
    serde_json::to_string_pretty(&r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
