//! What the doctor knows about the machine, gathered once (gather.rs) and
//! then judged by pure functions (checks.rs), so that every finding's logic
//! is tested without root, a kernel module or a network.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub kernel: Kernel,
    /// The rxe devices, from /sys/class/infiniband.
    pub devices: Vec<RxeDevice>,
    /// Every netdev, by name.
    pub netdevs: BTreeMap<String, Netdev>,
    pub memlock: Memlock,
    /// `nft -a list ruleset`.
    pub nft: Tool,
    /// `iptables-save`.
    pub iptables: Tool,
    /// None: no libibverbs.so.1 found.
    pub verbs: Option<Verbs>,
    /// The files of /etc/libibverbs.d and the providers they name.
    pub driver_files: Vec<DriverFile>,
    /// RDMAV_DRIVERS (or its old name IBV_DRIVERS), as set.
    pub rdmav_drivers: Option<String>,
    /// Which library files exist: every path a driver entry leads to.
    pub files: BTreeMap<String, bool>,
    /// A checkout's driver-config/librxe_rs beside this binary, if there is one
    /// (suggested in fixes).
    pub checkout_driver: Option<String>,
    /// /dev/infiniband/rdma_cm exists.
    pub rdma_cm_dev: bool,
    /// Route look-ups for the rxe netdevs' IPv4 addresses, by address.
    pub routes: BTreeMap<String, Route>,
}

#[derive(Debug, Clone, Default)]
pub struct Kernel {
    pub release: String,
    /// /sys/module/rdma_rxe exists.
    pub rxe_loaded: bool,
    /// modules.dep or modules.builtin of the running kernel names rdma_rxe.
    pub rxe_available: bool,
    pub uverbs_loaded: bool,
    /// rdma_ucm (/dev/infiniband/rdma_cm) loaded, and in the kernel's modules.
    pub ucm_loaded: bool,
    pub ucm_available: bool,
    /// /dev/infiniband/uverbs*: (node, the ib device it serves, readable and writable by us).
    pub uverbs: Vec<Uverbs>,
}

#[derive(Debug, Clone, Default)]
pub struct Uverbs {
    pub node: String,
    pub ibdev: String,
    pub accessible: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RxeDevice {
    pub name: String,
    /// The netdev under it (sysfs `parent`).
    pub parent: Option<String>,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Default)]
pub struct Port {
    pub num: u32,
    /// sysfs `state`, e.g. "4: ACTIVE".
    pub state: String,
    /// The non-empty GID entries.
    pub gids: Vec<Gid>,
    /// The port's active MTU in bytes, from ibv_query_port; None when the
    /// device could not be opened.
    pub active_mtu: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gid {
    pub index: u32,
    /// As sysfs prints it: 8 groups of 4 hex digits.
    pub gid: String,
    /// "RoCE v2" or "IB/RoCE v1".
    pub kind: String,
    pub ndev: String,
}

#[derive(Debug, Clone, Default)]
pub struct Netdev {
    pub name: String,
    /// IFF_UP.
    pub admin_up: bool,
    /// sysfs operstate: "up", "down", "unknown" (lo, dummy)...
    pub operstate: String,
    pub loopback: bool,
    pub mtu: u32,
    /// "a.b.c.d/prefix".
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Memlock {
    /// The soft limit in bytes; None = unlimited.
    pub soft: Option<u64>,
    /// CAP_IPC_LOCK in the effective set: the kernel then ignores the limit.
    pub cap_ipc_lock: bool,
}

/// A command the doctor ran.
#[derive(Debug, Clone, Default)]
pub enum Tool {
    #[default]
    Missing,
    /// It ran and failed (e.g. not root): what it said.
    Failed(String),
    Output(String),
}

#[derive(Debug, Clone, Default)]
pub struct Verbs {
    /// libibverbs.so.1 as found, and the file it resolves to.
    pub path: String,
    pub real: String,
    /// rdma-core release, from the file name (libibverbs.so.1.14.44.0: 44.0).
    pub release: Option<String>,
    /// From the verbs_register_driver_<N> symbol it exports.
    pub abi: Option<u32>,
    /// Where it looks for lib<name>-rdmav<N>.so: <its directory>/libibverbs.
    pub provider_dir: String,
}

#[derive(Debug, Clone, Default)]
pub struct DriverFile {
    pub path: String,
    /// The names after `driver` on its lines.
    pub drivers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// A UDP socket could connect to the address itself (a local route).
    pub local: Result<(), String>,
    /// The peer address tried in the same subnet, and the source address the
    /// kernel picked for it (None: no route).
    pub peer: Option<(String, Result<String, String>)>,
}
