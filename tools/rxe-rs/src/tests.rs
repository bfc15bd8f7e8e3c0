//! Each finding's logic on made-up facts: no root, no rxe, no network.

use crate::checks::*;
use crate::facts::*;

const PDIR: &str = "/usr/lib/x86_64-linux-gnu/libibverbs";
const STOCK_LIB: &str = "/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so";
const OUR_LIB: &str = "/usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav34.so";

fn gid4(index: u32, addr: &str, kind: &str) -> Gid {
    Gid { index, gid: ipv4_gid(addr).unwrap(), kind: kind.into(), ndev: "eth0".into() }
}

/// A working machine: rxe0 over eth0 (up, 192.0.2.1/24), rdma-core 44, our
/// package installed (only `driver rxe_rs` in /etc/libibverbs.d).
fn healthy() -> Facts {
    let mut f = Facts {
        kernel: Kernel {
            release: "6.1.0-test".into(),
            rxe_loaded: true,
            rxe_available: true,
            uverbs_loaded: true,
            ucm_loaded: true,
            ucm_available: true,
            uverbs: vec![Uverbs { node: "/dev/infiniband/uverbs0".into(), ibdev: "rxe0".into(), accessible: true }],
        },
        devices: vec![RxeDevice {
            name: "rxe0".into(),
            parent: Some("eth0".into()),
            ports: vec![Port {
                num: 1,
                state: "4: ACTIVE".into(),
                gids: vec![
                    Gid { index: 0, gid: "fe80:0000:0000:0000:5054:00ff:fe12:3456".into(), kind: "IB/RoCE v1".into(), ndev: "eth0".into() },
                    Gid { index: 1, gid: "fe80:0000:0000:0000:5054:00ff:fe12:3456".into(), kind: "RoCE v2".into(), ndev: "eth0".into() },
                    gid4(2, "192.0.2.1", "IB/RoCE v1"),
                    gid4(3, "192.0.2.1", "RoCE v2"),
                ],
                active_mtu: Some(1024),
            }],
        }],
        memlock: Memlock { soft: None, cap_ipc_lock: false },
        nft: Tool::Output("table inet filter { # handle 1\n\tchain input { # handle 1\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n".into()),
        iptables: Tool::Missing,
        verbs: Some(Verbs {
            path: "/usr/lib/x86_64-linux-gnu/libibverbs.so.1".into(),
            real: "/usr/lib/x86_64-linux-gnu/libibverbs.so.1.14.44.0".into(),
            release: Some("44.0".into()),
            abi: Some(34),
            provider_dir: PDIR.into(),
        }),
        driver_files: vec![
            DriverFile { path: "/etc/libibverbs.d/mlx5.driver".into(), drivers: vec!["mlx5".into()] },
            DriverFile { path: "/etc/libibverbs.d/rxe.driver".into(), drivers: vec!["rxe_rs".into()] },
        ],
        rdma_cm_dev: true,
        ..Default::default()
    };
    f.netdevs.insert("eth0".into(), Netdev { name: "eth0".into(), admin_up: true, operstate: "up".into(), loopback: false, mtu: 1500, ipv4: vec!["192.0.2.1/24".into()], ipv6: vec![] });
    f.netdevs.insert("lo".into(), Netdev { name: "lo".into(), admin_up: true, operstate: "unknown".into(), loopback: true, mtu: 65536, ipv4: vec!["127.0.0.1/8".into()], ipv6: vec![] });
    f.files.insert(STOCK_LIB.into(), true);
    f.files.insert(OUR_LIB.into(), true);
    f.routes.insert("192.0.2.1".into(), Route { local: Ok(()), peer: Some(("192.0.2.2".into(), Ok("192.0.2.1".into()))) });
    f
}

fn find<'a>(v: &'a [Finding], check: &str) -> Vec<&'a Finding> {
    v.iter().filter(|x| x.check == check).collect()
}

/// The one finding of `check`, which must have `status`, a message
/// containing `says` and (unless OK) a fix containing `fix`.
fn one(facts: &Facts, check: &str, status: Status, says: &str, fix: &str) -> Finding {
    let all = all(facts);
    let got = find(&all, check);
    assert_eq!(got.len(), 1, "{check}: {got:#?}\n{}", text(&all));
    let x = got[0].clone();
    assert_eq!(x.status, status, "{x:#?}");
    assert!(x.message.contains(says), "{check}: {:?} lacks {says:?}", x.message);
    if status == Status::Ok {
        assert!(x.fix.is_none(), "{x:#?}");
    } else {
        assert!(x.fix.as_deref().unwrap_or("").contains(fix), "{check}: fix {:?} lacks {fix:?}", x.fix);
    }
    x
}

#[test]
fn healthy_has_no_fail_and_no_warn() {
    let all = all(&healthy());
    assert!(all.iter().all(|x| x.status == Status::Ok), "{}", text(&all));
    for c in ["kernel.rdma_rxe", "kernel.ib_uverbs", "link.netdev", "netdev.up", "netdev.address", "port.state", "gid.roce_v2_ipv4", "mtu", "memlock", "firewall.udp4791", "verbs.library", "verbs.our_abi", "verbs.provider", "rdma_cm.resolve"] {
        assert_eq!(find(&all, c).len(), 1, "{c}: {}", text(&all));
    }
}

#[test]
fn gid_index_named_for_tools() {
    one(&healthy(), "gid.roce_v2_ipv4", Status::Ok, "index 3 (192.0.2.1): use ibv_rc_pingpong -g 3, perftest -x 3", "");
    let mut f = healthy();
    f.devices[0].ports[0].gids.retain(|g| g.index < 2);
    one(&f, "gid.roce_v2_ipv4", Status::Fail, "no IPv4 RoCE v2 GID", "ip addr add");
    assert_eq!(gid_ipv4("0000:0000:0000:0000:0000:ffff:c000:0201").as_deref(), Some("192.0.2.1"));
    assert_eq!(gid_ipv4("fe80:0000:0000:0000:5054:00ff:fe12:3456"), None);
}

#[test]
fn kernel_module_missing_or_not_loaded() {
    let mut f = healthy();
    f.kernel.rxe_loaded = false;
    one(&f, "kernel.rdma_rxe", Status::Fail, "not loaded", "modprobe rdma_rxe");
    f.kernel.rxe_available = false;
    one(&f, "kernel.rdma_rxe", Status::Fail, "no rdma_rxe module", "CONFIG_RDMA_RXE");
    let mut f = healthy();
    f.kernel.uverbs_loaded = false;
    one(&f, "kernel.ib_uverbs", Status::Fail, "not loaded", "modprobe ib_uverbs");
}

#[test]
fn uverbs_node_not_accessible() {
    let mut f = healthy();
    f.kernel.uverbs[0].accessible = false;
    one(&f, "link.uverbs", Status::Fail, "cannot be opened", "chmod 666 /dev/infiniband/uverbs0");
}

#[test]
fn no_rxe_link() {
    let mut f = healthy();
    f.devices.clear();
    one(&f, "link.none", Status::Fail, "no rxe link", "rdma link add rxe0 type rxe netdev eth0");
    // Nothing about devices, GIDs or rdma_cm then.
    let all = all(&f);
    assert!(find(&all, "gid.roce_v2_ipv4").is_empty() && find(&all, "rdma_cm.resolve").is_empty());
}

#[test]
fn link_on_a_down_netdev() {
    let mut f = healthy();
    f.netdevs.get_mut("eth0").unwrap().admin_up = false;
    f.devices[0].ports[0].state = "1: DOWN".into();
    one(&f, "netdev.up", Status::Fail, "eth0 (under rxe0) is down", "ip link set eth0 up");
    one(&f, "port.state", Status::Fail, "DOWN", "ip link set eth0 up");
    let mut f = healthy();
    f.netdevs.get_mut("eth0").unwrap().operstate = "down".into();
    one(&f, "netdev.up", Status::Fail, "no carrier", "eth0");
}

#[test]
fn netdev_without_an_address() {
    let mut f = healthy();
    f.netdevs.get_mut("eth0").unwrap().ipv4.clear();
    f.devices[0].ports[0].gids.retain(|g| gid_ipv4(&g.gid).is_none());
    f.routes.clear();
    one(&f, "netdev.address", Status::Fail, "no IPv4 address (no address at all)", "ip addr add 192.0.2.1/24 dev eth0");
    one(&f, "rdma_cm.resolve", Status::Fail, "cannot resolve rxe0", "ip addr add");
    one(&f, "gid.roce_v2_ipv4", Status::Fail, "no IPv4 RoCE v2 GID", "dev eth0");
}

#[test]
fn rxe_on_loopback() {
    let mut f = healthy();
    f.devices[0].parent = Some("lo".into());
    one(&f, "link.loopback", Status::Warn, "loopback netdev lo", "rdma link add rxe0 type rxe netdev eth0");
    // Beside rxe0 on eth0: delete it, nothing to add.
    let mut f = healthy();
    let mut lo = f.devices[0].clone();
    lo.name = "rxe_lo".into();
    lo.parent = Some("lo".into());
    f.devices.push(lo);
    let x = one(&f, "link.loopback", Status::Warn, "rxe_lo runs over the loopback netdev lo", "rdma link delete rxe_lo (rxe0 on eth0 serves the network)");
    assert!(!x.fix.unwrap().contains("link add"));
    let mut f = healthy();
    f.devices[0].parent = Some("gone0".into());
    one(&f, "link.netdev", Status::Fail, "does not exist", "rdma link delete rxe0");
}

#[test]
fn mtu_rule_and_mismatch() {
    assert_eq!(rxe_active_mtu(1500), 1024);
    assert_eq!(rxe_active_mtu(4200), 4096);
    assert_eq!(rxe_active_mtu(9000), 4096);
    assert_eq!(rxe_active_mtu(2144), 2048);
    assert_eq!(rxe_active_mtu(2143), 1024);
    assert_eq!(rxe_active_mtu(65536), 4096);
    one(&healthy(), "mtu", Status::Ok, "MTU 1500 -> active_mtu 1024", "");
    let mut f = healthy();
    f.devices[0].ports[0].active_mtu = Some(4096);
    one(&f, "mtu", Status::Warn, "active_mtu 4096 but netdev eth0 MTU 1500 gives 1024", "rdma link add rxe0");
    let mut f = healthy();
    f.netdevs.get_mut("eth0").unwrap().mtu = 300;
    one(&f, "mtu", Status::Fail, "too small", "mtu 1500");
    let mut f = healthy();
    f.devices[0].ports[0].active_mtu = None;
    one(&f, "mtu", Status::Ok, "derived", "");
}

#[test]
fn memlock_limits() {
    let m = |soft, cap| memlock(&Memlock { soft, cap_ipc_lock: cap });
    assert_eq!(m(None, false)[0].status, Status::Ok);
    let x = &m(Some(64 << 10), false)[0];
    assert_eq!(x.status, Status::Fail);
    assert!(x.message.contains("64 KiB") && x.fix.as_deref().unwrap().contains("ulimit -l unlimited"), "{x:?}");
    assert_eq!(m(Some(8 << 20), false)[0].status, Status::Warn);
    assert!(m(Some(8 << 20), false)[0].message.contains("8 MiB"));
    assert_eq!(m(Some(64 << 20), false)[0].status, Status::Ok);
    let x = &m(Some(64 << 10), true)[0];
    assert_eq!(x.status, Status::Ok);
    assert!(x.message.contains("CAP_IPC_LOCK"));
}

#[test]
fn port_expressions() {
    for yes in ["4791", "{ 53, 4791 }", "4000-5000", "4000:5000", "4790,4791", "{ 4791 }"] {
        assert!(covers_roce_port(yes), "{yes}");
    }
    for no in ["4790", "{ 53, 4792 }", "5000-6000", "47910", "ssh"] {
        assert!(!covers_roce_port(no), "{no}");
    }
}

const NFT_DROP: &str = "table inet filter { # handle 1
\tchain input { # handle 1
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport 4791 drop # handle 3
\t\tudp dport 4791 drop # handle 4
\t}
}
table ip other { # handle 2
\tchain out { # handle 1
\t\ttype filter hook output priority filter; policy accept;
\t\tudp dport { 53, 4791 } counter packets 0 bytes 0 reject # handle 7
\t\tudp dport 53 drop # handle 8
\t}
}
";

#[test]
fn nft_drop_rules_named_with_their_delete_command() {
    let (drops, policies) = parse_nft(NFT_DROP);
    assert!(policies.is_empty());
    let fixes: Vec<&str> = drops.iter().map(|d| d.fix.as_str()).collect();
    assert_eq!(fixes, ["nft delete rule inet filter input handle 4", "nft delete rule ip other out handle 7"]);
    let mut f = healthy();
    f.nft = Tool::Output(NFT_DROP.into());
    let all = all(&f);
    let fw = find(&all, "firewall.udp4791");
    assert_eq!(fw.len(), 2);
    assert!(fw.iter().all(|x| x.status == Status::Fail && x.message.contains("drops RoCE v2 traffic (UDP 4791)")));
}

#[test]
fn nft_policy_drop() {
    let t = "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  tcp dport 22 accept\n }\n}\n";
    assert_eq!(parse_nft(t).1.len(), 1);
    let t = "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  udp dport 4791 accept\n }\n}\n";
    assert!(parse_nft(t).1.is_empty());
    let mut f = healthy();
    f.nft = Tool::Output("table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n }\n}\n".into());
    one(&f, "firewall.udp4791", Status::Warn, "policy drop", "udp dport 4791 accept");
}

#[test]
fn iptables_drop_rules() {
    let t = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 4791 -j DROP\n-A INPUT -p tcp -m tcp --dport 4791 -j DROP\n-A OUTPUT -p udp -m multiport --dports 53,4791 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
    let (drops, policies) = parse_iptables(t);
    assert!(policies.is_empty());
    let fixes: Vec<&str> = drops.iter().map(|d| d.fix.as_str()).collect();
    assert_eq!(fixes, ["iptables -t filter -D INPUT -p udp -m udp --dport 4791 -j DROP", "iptables -t filter -D OUTPUT -p udp -m multiport --dports 53,4791 -j REJECT --reject-with icmp-port-unreachable"]);
    let t = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p udp --dport 4791 -j ACCEPT\nCOMMIT\n";
    assert!(parse_iptables(t).1.is_empty());
    let t = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
    assert_eq!(parse_iptables(t).1.len(), 1);
    let mut f = healthy();
    f.nft = Tool::Missing;
    f.iptables = Tool::Output("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -m udp --dport 4791 -j DROP\nCOMMIT\n".into());
    one(&f, "firewall.udp4791", Status::Fail, "-A INPUT -p udp -m udp --dport 4791 -j DROP", "iptables -t filter -D INPUT");
}

#[test]
fn firewall_tools_missing_or_refused() {
    let mut f = healthy();
    f.nft = Tool::Missing;
    one(&f, "firewall.udp4791", Status::Warn, "could not check", "nft");
    f.nft = Tool::Failed("Operation not permitted (you must be root)".into());
    one(&f, "firewall.udp4791", Status::Warn, "Operation not permitted", "root");
}

#[test]
fn libibverbs_abi_and_release() {
    let mut bytes = b"\x7fELF....ibv_open_device\0verbs_register_driver_34\0IBVERBS_PRIVATE_34\0".to_vec();
    assert_eq!(abi_from_bytes(&bytes), Some(34));
    bytes.extend_from_slice(b"verbs_register_driver_\0");
    assert_eq!(abi_from_bytes(&bytes), Some(34));
    assert_eq!(abi_from_bytes(b"nothing here"), None);
    assert_eq!(release_from_name("/usr/lib/x86_64-linux-gnu/libibverbs.so.1.14.44.0").as_deref(), Some("44.0"));
    assert_eq!(release_from_name("/x/libibverbs.so.1.15.65.0").as_deref(), Some("65.0"));
    one(&healthy(), "verbs.library", Status::Ok, "rdma-core 44.0), private ABI 34", "");
    let mut f = healthy();
    f.verbs = None;
    one(&f, "verbs.library", Status::Fail, "no libibverbs", "libibverbs1");
}

#[test]
fn driver_file_lines_and_library_names() {
    assert_eq!(parse_driver_file("# c\ndriver rxe\n\ndriver  /a/b/librxe_rs \n"), ["rxe", "/a/b/librxe_rs"]);
    assert_eq!(kind_of("rxe"), Kind::Stock);
    assert_eq!(kind_of("rxe_rs"), Kind::Ours);
    assert_eq!(kind_of("/w/driver-config/librxe_rs"), Kind::Ours);
    assert_eq!(kind_of("/usr/lib/libibverbs/librxe"), Kind::Stock);
    assert_eq!(kind_of("mlx5"), Kind::Other);
    assert_eq!(library_path("rxe_rs", 65, PDIR), format!("{PDIR}/librxe_rs-rdmav65.so"));
    assert_eq!(library_path("/w/driver-config/librxe_rs", 34, PDIR), "/w/driver-config/librxe_rs-rdmav34.so");
}

#[test]
fn stock_entry_winning() {
    let mut f = healthy();
    f.driver_files[1].drivers = vec!["rxe".into()];
    one(&f, "verbs.provider", Status::Fail, "the stock librxe will serve them", "apt install --reinstall rxe-rs");
    // From a checkout, with ours not installed: the variable is the fix.
    f.files.insert(OUR_LIB.into(), false);
    f.checkout_driver = Some("/w/driver-config/librxe_rs".into());
    f.files.insert("/w/driver-config/librxe_rs-rdmav34.so".into(), true);
    one(&f, "verbs.provider", Status::Fail, "stock librxe", "export RDMAV_DRIVERS=/w/driver-config/librxe_rs");
    // The variable set: ours is loaded first and wins.
    f.rdmav_drivers = Some("/w/driver-config/librxe_rs".into());
    one(&f, "verbs.provider", Status::Ok, "served by rxe-rs, /w/driver-config/librxe_rs-rdmav34.so (from RDMAV_DRIVERS)", "");
    one(&f, "verbs.rdmav_drivers", Status::Ok, "RDMAV_DRIVERS=/w/driver-config/librxe_rs", "");
}

#[test]
fn both_entries_or_none() {
    let mut f = healthy();
    f.driver_files.push(DriverFile { path: "/etc/libibverbs.d/stock.driver".into(), drivers: vec!["rxe".into()] });
    one(&f, "verbs.provider", Status::Warn, "directory's order", "mv /etc/libibverbs.d/stock.driver /etc/rxe-rs/rxe.driver.stock");
    let mut f = healthy();
    f.driver_files.truncate(1);
    one(&f, "verbs.provider", Status::Fail, "no rxe provider", "apt install --reinstall rxe-rs");
}

#[test]
fn our_entry_whose_library_is_gone() {
    let mut f = healthy();
    f.files.insert(OUR_LIB.into(), false);
    one(&f, "verbs.missing_library", Status::Fail, "does not exist", "install rxe-rs");
    one(&f, "verbs.provider", Status::Fail, "no rxe provider", "install rxe-rs");
}

#[test]
fn libibverbs_of_an_abi_we_do_not_serve() {
    let mut f = healthy();
    f.verbs.as_mut().unwrap().abi = Some(66);
    f.files.insert(format!("{PDIR}/librxe_rs-rdmav66.so"), true);
    one(&f, "verbs.our_abi", Status::Fail, "private ABI 66; rxe-rs serves 34, 57, 59, 64, 65", "");
    one(&f, "verbs.provider", Status::Fail, "no rxe provider", "");
}

#[test]
fn rdma_cm_resolution() {
    let mut f = healthy();
    f.rdma_cm_dev = false;
    f.kernel.ucm_loaded = false;
    one(&f, "rdma_cm.device", Status::Ok, "librdmacm has the kernel load it", "");
    f.kernel.ucm_available = false;
    one(&f, "rdma_cm.device", Status::Fail, "no rdma_ucm", "modprobe rdma_ucm");
    let mut f = healthy();
    f.routes.insert("192.0.2.1".into(), Route { local: Ok(()), peer: Some(("192.0.2.2".into(), Err("Network is unreachable".into()))) });
    one(&f, "rdma_cm.resolve", Status::Warn, "no route to 192.0.2.2", "ip route add 192.0.2.0/24 dev eth0");
    f.netdevs.get_mut("eth0").unwrap().admin_up = false;
    one(&f, "rdma_cm.resolve", Status::Fail, "netdev eth0 is down", "ip link set eth0 up");
    assert_eq!(subnet("10.1.2.3/8"), "10.0.0.0/8");
    let mut f = healthy();
    f.routes.insert("192.0.2.1".into(), Route { local: Err("Network is unreachable".into()), peer: None });
    one(&f, "rdma_cm.resolve", Status::Fail, "no route to 192.0.2.1", "ip link set eth0 up");
    let mut f = healthy();
    f.routes.insert("192.0.2.1".into(), Route { local: Ok(()), peer: Some(("192.0.2.2".into(), Ok("10.0.0.5".into()))) });
    one(&f, "rdma_cm.resolve", Status::Warn, "routed from 10.0.0.5", "ip route get 192.0.2.2");
    one(&healthy(), "rdma_cm.resolve", Status::Ok, "rping -s -a 192.0.2.1", "");
}

#[test]
fn json_output_is_machine_readable() {
    let mut f = healthy();
    f.devices.clear();
    let all = all(&f);
    let v: serde_json::Value = serde_json::from_str(&json(&all)).unwrap();
    assert_eq!(v["fail"], 1);
    let none = v["findings"].as_array().unwrap().iter().find(|x| x["check"] == "link.none").unwrap();
    assert_eq!(none["status"], "FAIL");
    assert_eq!(none["fix"], "rdma link add rxe0 type rxe netdev eth0");
    let ok = v["findings"].as_array().unwrap().iter().find(|x| x["check"] == "memlock").unwrap();
    assert!(ok.get("fix").is_none());
}

#[test]
fn text_output_has_a_fix_line_per_problem() {
    let mut f = healthy();
    f.netdevs.get_mut("eth0").unwrap().admin_up = false;
    let t = text(&all(&f));
    assert!(t.contains("FAIL netdev.up: [eth0] netdev eth0 (under rxe0) is down"), "{t}");
    assert!(t.contains("\n     fix: ip link set eth0 up\n"), "{t}");
    assert!(t.trim_end().ends_with("FAIL"), "{t}");
}

/// OUR_ABIS is the provider's list and the packages' (scripts/package.sh).
#[test]
fn our_abis_match_the_provider_and_the_packages() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let releases = std::fs::read_to_string(format!("{root}/provider/abi/releases.rs")).unwrap();
    let provider: Vec<u32> = releases.lines().filter_map(|l| l.trim().strip_prefix("PrivateAbi { number: ")).filter_map(|r| r.split(',').next()?.parse().ok()).collect();
    assert_eq!(provider, OUR_ABIS);
    let pkg = std::fs::read_to_string(format!("{root}/scripts/package.sh")).unwrap();
    let line = pkg.lines().find_map(|l| l.strip_prefix("abis=(")).unwrap();
    let packaged: Vec<u32> = line.trim_end_matches(')').split_whitespace().map(|a| a.parse().unwrap()).collect();
    assert_eq!(packaged, OUR_ABIS);
}
