//! libibverbs' private provider ABI, rdma-core 44 (`IBVERBS_PRIVATE_34`), x86_64.
//!
//! driver.h is not installed by Debian's libibverbs-dev, so these structs are
//! written by hand from rdma-core v44.0's libibverbs/driver.h. A layout
//! mistake here corrupts libibverbs' memory silently, so every size and field
//! offset is pinned by build-time assertions at the bottom; the expected numbers were taken
//! by compiling a probe against v44.0's driver.h on x86_64.

use super::sys::*;
use core::ffi::{c_char, c_int, c_uint, c_void};

/// `enum` values of `verbs_match_ent::kind`.
pub(crate) const VERBS_MATCH_SENTINEL: u8 = 0;
pub(crate) const VERBS_MATCH_MODALIAS: u8 = 2;
pub(crate) const VERBS_MATCH_DRIVER_ID: u8 = 3;

/// `enum ibv_mr_type` (driver.h).
pub(crate) const IBV_MR_TYPE_MR: u32 = 0;

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union verbs_match_ent_u {
    pub modalias: *const c_char,
    pub driver_id: u64,
}

/// One row of a provider's device match table, ended by an all-zero sentinel.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct verbs_match_ent {
    pub driver_data: *mut c_void,
    pub u: verbs_match_ent_u,
    pub vendor: u16,
    pub device: u16,
    pub kind: u8,
}

/// `struct list_node` from ccan/list.h.
#[repr(C)]
pub(crate) struct list_node {
    pub next: *mut list_node,
    pub prev: *mut list_node,
}

/// An rdma device libibverbs found in sysfs; owned by libibverbs.
#[repr(C)]
pub(crate) struct verbs_sysfs_dev {
    pub entry: list_node,
    pub provider_data: *mut c_void,
    pub match_: *const verbs_match_ent,
    pub flags: c_uint,
    pub sysfs_name: [c_char; 64],
    pub sysfs_cdev: libc::dev_t,
    pub ibdev_name: [c_char; 64],
    pub ibdev_path: [c_char; 256],
    pub modalias: [c_char; 512],
    pub node_guid: u64,
    pub driver_id: u32,
    pub node_type: ibv_node_type::Type,
    pub ibdev_idx: c_int,
    pub num_ports: u32,
    pub abi_ver: u32,
    pub time_created: libc::timespec,
}

/// What a provider registers with `verbs_register_driver_34`.
#[repr(C)]
pub(crate) struct verbs_device_ops {
    pub name: *const c_char,
    pub match_min_abi_version: u32,
    pub match_max_abi_version: u32,
    pub match_table: *const verbs_match_ent,
    pub static_providers: *const *const verbs_device_ops,
    pub match_device: Option<unsafe extern "C" fn(*mut verbs_sysfs_dev) -> bool>,
    pub alloc_context: Option<
        unsafe extern "C" fn(*mut ibv_device, c_int, *mut c_void) -> *mut verbs_context,
    >,
    pub import_context: Option<unsafe extern "C" fn(*mut ibv_device, c_int) -> *mut verbs_context>,
    pub alloc_device: Option<unsafe extern "C" fn(*mut verbs_sysfs_dev) -> *mut verbs_device>,
    pub uninit_device: Option<unsafe extern "C" fn(*mut verbs_device)>,
}

/// libibverbs' per-device object; the provider allocates it (with room for
/// its own fields after it) in `alloc_device`, libibverbs fills it in.
#[repr(C)]
pub(crate) struct verbs_device {
    pub device: ibv_device,
    pub ops: *const verbs_device_ops,
    pub refcount: c_int, // atomic_int
    pub entry: list_node,
    pub sysfs: *mut verbs_sysfs_dev,
    pub core_support: u64,
}

/// `struct verbs_mr`: what `reg_mr` really returns and `dereg_mr` receives.
#[repr(C)]
pub(crate) struct verbs_mr {
    pub ibv_mr: ibv_mr,
    pub mr_type: u32,
    pub access: c_int,
}

/// `struct verbs_cq`: a union of `ibv_cq` and `ibv_cq_ex`, whose prefix is an `ibv_cq`.
#[repr(C)]
pub(crate) struct verbs_cq {
    pub cq_ex: ibv_cq_ex,
}

/// `struct verbs_qp`: a union of `ibv_qp` and `ibv_qp_ex` (which starts with
/// its `ibv_qp`), then libibverbs' bookkeeping.
#[repr(C)]
pub(crate) struct verbs_qp {
    pub qp_ex: ibv_qp_ex,
    pub comp_mask: u32,
    pub xrcd: *mut c_void,
}

/// `verbs_qp::comp_mask` bit saying `qp_ex` is valid (ibv_qp_to_qp_ex checks it).
pub(crate) const VERBS_QP_EX: u32 = 1 << 1;

/// `struct verbs_srq`.
#[repr(C)]
pub(crate) struct verbs_srq {
    pub srq: ibv_srq,
    pub srq_type: ibv_srq_type::Type,
    pub xrcd: *mut c_void,
    pub cq: *mut ibv_cq,
    pub srq_num: u32,
}

/// A legacy command as libibverbs' ibv_cmd_* helpers take it
/// (kern-abi.h's DECLARE_CMD): header, then the kernel's request.
#[repr(C)]
pub(crate) struct LegacyCmd<C> {
    pub hdr: ib_uverbs_cmd_hdr,
    pub core: C,
}

/// An extended command as the helpers take it (DECLARE_CMD_EX).
#[repr(C)]
pub(crate) struct ExtendedCmd<C> {
    pub hdr: ib_uverbs_cmd_hdr,
    pub ex_hdr: ib_uverbs_ex_cmd_hdr,
    pub core: C,
}

/// A kernel response followed by rxe's driver response (DECLARE_DRV_CMD).
#[repr(C)]
#[derive(Default)]
pub(crate) struct DrvResp<R, D> {
    pub core: R,
    pub drv: D,
}

type Op<F> = Option<F>;

/// Every operation a provider can supply, sorted by name as driver.h keeps it.
/// `verbs_set_ops` copies the non-null ones into the context.
#[repr(C)]
#[derive(Default)]
pub(crate) struct verbs_context_ops {
    pub advise_mr: Op<unsafe extern "C" fn(*mut ibv_pd, ib_uverbs_advise_mr_advice::Type, u32, *mut ibv_sge, u32) -> c_int>,
    pub alloc_dm: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_alloc_dm_attr) -> *mut ibv_dm>,
    pub alloc_mw: Op<unsafe extern "C" fn(*mut ibv_pd, ibv_mw_type::Type) -> *mut ibv_mw>,
    pub alloc_null_mr: Op<unsafe extern "C" fn(*mut ibv_pd) -> *mut ibv_mr>,
    pub alloc_parent_domain: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_parent_domain_init_attr) -> *mut ibv_pd>,
    pub alloc_pd: Op<unsafe extern "C" fn(*mut ibv_context) -> *mut ibv_pd>,
    pub alloc_td: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_td_init_attr) -> *mut ibv_td>,
    pub async_event: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_async_event)>,
    pub attach_counters_point_flow: Op<unsafe extern "C" fn(*mut ibv_counters, *mut ibv_counter_attach_attr, *mut ibv_flow) -> c_int>,
    pub attach_mcast: Op<unsafe extern "C" fn(*mut ibv_qp, *const ibv_gid, u16) -> c_int>,
    pub bind_mw: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_mw, *mut ibv_mw_bind) -> c_int>,
    pub close_xrcd: Op<unsafe extern "C" fn(*mut ibv_xrcd) -> c_int>,
    pub cq_event: Op<unsafe extern "C" fn(*mut ibv_cq)>,
    pub create_ah: Op<unsafe extern "C" fn(*mut ibv_pd, *mut ibv_ah_attr) -> *mut ibv_ah>,
    pub create_counters: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_counters_init_attr) -> *mut ibv_counters>,
    pub create_cq: Op<unsafe extern "C" fn(*mut ibv_context, c_int, *mut ibv_comp_channel, c_int) -> *mut ibv_cq>,
    pub create_cq_ex: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_cq_init_attr_ex) -> *mut ibv_cq_ex>,
    pub create_flow: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_flow_attr) -> *mut ibv_flow>,
    pub create_flow_action_esp: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_flow_action_esp_attr) -> *mut ibv_flow_action>,
    pub create_qp: Op<unsafe extern "C" fn(*mut ibv_pd, *mut ibv_qp_init_attr) -> *mut ibv_qp>,
    pub create_qp_ex: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_qp_init_attr_ex) -> *mut ibv_qp>,
    pub create_rwq_ind_table: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_rwq_ind_table_init_attr) -> *mut ibv_rwq_ind_table>,
    pub create_srq: Op<unsafe extern "C" fn(*mut ibv_pd, *mut ibv_srq_init_attr) -> *mut ibv_srq>,
    pub create_srq_ex: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_srq_init_attr_ex) -> *mut ibv_srq>,
    pub create_wq: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_wq_init_attr) -> *mut ibv_wq>,
    pub dealloc_mw: Op<unsafe extern "C" fn(*mut ibv_mw) -> c_int>,
    pub dealloc_pd: Op<unsafe extern "C" fn(*mut ibv_pd) -> c_int>,
    pub dealloc_td: Op<unsafe extern "C" fn(*mut ibv_td) -> c_int>,
    pub dereg_mr: Op<unsafe extern "C" fn(*mut verbs_mr) -> c_int>,
    pub destroy_ah: Op<unsafe extern "C" fn(*mut ibv_ah) -> c_int>,
    pub destroy_counters: Op<unsafe extern "C" fn(*mut ibv_counters) -> c_int>,
    pub destroy_cq: Op<unsafe extern "C" fn(*mut ibv_cq) -> c_int>,
    pub destroy_flow: Op<unsafe extern "C" fn(*mut ibv_flow) -> c_int>,
    pub destroy_flow_action: Op<unsafe extern "C" fn(*mut ibv_flow_action) -> c_int>,
    pub destroy_qp: Op<unsafe extern "C" fn(*mut ibv_qp) -> c_int>,
    pub destroy_rwq_ind_table: Op<unsafe extern "C" fn(*mut ibv_rwq_ind_table) -> c_int>,
    pub destroy_srq: Op<unsafe extern "C" fn(*mut ibv_srq) -> c_int>,
    pub destroy_wq: Op<unsafe extern "C" fn(*mut ibv_wq) -> c_int>,
    pub detach_mcast: Op<unsafe extern "C" fn(*mut ibv_qp, *const ibv_gid, u16) -> c_int>,
    pub free_context: Op<unsafe extern "C" fn(*mut ibv_context)>,
    pub free_dm: Op<unsafe extern "C" fn(*mut ibv_dm) -> c_int>,
    pub get_srq_num: Op<unsafe extern "C" fn(*mut ibv_srq, *mut u32) -> c_int>,
    pub import_dm: Op<unsafe extern "C" fn(*mut ibv_context, u32) -> *mut ibv_dm>,
    pub import_mr: Op<unsafe extern "C" fn(*mut ibv_pd, u32) -> *mut ibv_mr>,
    pub import_pd: Op<unsafe extern "C" fn(*mut ibv_context, u32) -> *mut ibv_pd>,
    pub modify_cq: Op<unsafe extern "C" fn(*mut ibv_cq, *mut ibv_modify_cq_attr) -> c_int>,
    pub modify_flow_action_esp: Op<unsafe extern "C" fn(*mut ibv_flow_action, *mut ibv_flow_action_esp_attr) -> c_int>,
    pub modify_qp: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int) -> c_int>,
    pub modify_qp_rate_limit: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_rate_limit_attr) -> c_int>,
    pub modify_srq: Op<unsafe extern "C" fn(*mut ibv_srq, *mut ibv_srq_attr, c_int) -> c_int>,
    pub modify_wq: Op<unsafe extern "C" fn(*mut ibv_wq, *mut ibv_wq_attr) -> c_int>,
    pub open_qp: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_qp_open_attr) -> *mut ibv_qp>,
    pub open_xrcd: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_xrcd_init_attr) -> *mut ibv_xrcd>,
    pub poll_cq: Op<unsafe extern "C" fn(*mut ibv_cq, c_int, *mut ibv_wc) -> c_int>,
    pub post_recv: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> c_int>,
    pub post_send: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_send_wr, *mut *mut ibv_send_wr) -> c_int>,
    pub post_srq_ops: Op<unsafe extern "C" fn(*mut ibv_srq, *mut ibv_ops_wr, *mut *mut ibv_ops_wr) -> c_int>,
    pub post_srq_recv: Op<unsafe extern "C" fn(*mut ibv_srq, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> c_int>,
    pub query_device_ex: Op<unsafe extern "C" fn(*mut ibv_context, *const ibv_query_device_ex_input, *mut ibv_device_attr_ex, usize) -> c_int>,
    pub query_ece: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_ece) -> c_int>,
    pub query_port: Op<unsafe extern "C" fn(*mut ibv_context, u8, *mut ibv_port_attr) -> c_int>,
    pub query_qp: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int, *mut ibv_qp_init_attr) -> c_int>,
    pub query_qp_data_in_order: Op<unsafe extern "C" fn(*mut ibv_qp, ibv_wr_opcode::Type, u32) -> c_int>,
    pub query_rt_values: Op<unsafe extern "C" fn(*mut ibv_context, *mut ibv_values_ex) -> c_int>,
    pub query_srq: Op<unsafe extern "C" fn(*mut ibv_srq, *mut ibv_srq_attr) -> c_int>,
    pub read_counters: Op<unsafe extern "C" fn(*mut ibv_counters, *mut u64, u32, u32) -> c_int>,
    pub reg_dm_mr: Op<unsafe extern "C" fn(*mut ibv_pd, *mut ibv_dm, u64, usize, c_uint) -> *mut ibv_mr>,
    pub reg_dmabuf_mr: Op<unsafe extern "C" fn(*mut ibv_pd, u64, usize, u64, c_int, c_int) -> *mut ibv_mr>,
    pub reg_mr: Op<unsafe extern "C" fn(*mut ibv_pd, *mut c_void, usize, u64, c_int) -> *mut ibv_mr>,
    pub req_notify_cq: Op<unsafe extern "C" fn(*mut ibv_cq, c_int) -> c_int>,
    pub rereg_mr: Op<unsafe extern "C" fn(*mut verbs_mr, c_int, *mut ibv_pd, *mut c_void, usize, c_int) -> c_int>,
    pub resize_cq: Op<unsafe extern "C" fn(*mut ibv_cq, c_int) -> c_int>,
    pub set_ece: Op<unsafe extern "C" fn(*mut ibv_qp, *mut ibv_ece) -> c_int>,
    pub unimport_dm: Op<unsafe extern "C" fn(*mut ibv_dm)>,
    pub unimport_mr: Op<unsafe extern "C" fn(*mut ibv_mr)>,
    pub unimport_pd: Op<unsafe extern "C" fn(*mut ibv_pd)>,
}


/// Sizes and offsets from rdma-core v44.0's driver.h on x86_64, checked when
/// building: a wrong layout here fails the build instead of corrupting
/// libibverbs' memory at run time.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(size_of::<verbs_device_ops>() == 72);
    assert!(offset_of!(verbs_device_ops, name) == 0);
    assert!(offset_of!(verbs_device_ops, match_min_abi_version) == 8);
    assert!(offset_of!(verbs_device_ops, match_max_abi_version) == 12);
    assert!(offset_of!(verbs_device_ops, match_table) == 16);
    assert!(offset_of!(verbs_device_ops, static_providers) == 24);
    assert!(offset_of!(verbs_device_ops, match_device) == 32);
    assert!(offset_of!(verbs_device_ops, alloc_context) == 40);
    assert!(offset_of!(verbs_device_ops, import_context) == 48);
    assert!(offset_of!(verbs_device_ops, alloc_device) == 56);
    assert!(offset_of!(verbs_device_ops, uninit_device) == 64);
    assert!(size_of::<ibv_device>() == 664);
    assert!(size_of::<verbs_device>() == 712);
    assert!(offset_of!(verbs_device, device) == 0);
    assert!(offset_of!(verbs_device, ops) == 664);
    assert!(offset_of!(verbs_device, refcount) == 672);
    assert!(offset_of!(verbs_device, entry) == 680);
    assert!(offset_of!(verbs_device, sysfs) == 696);
    assert!(offset_of!(verbs_device, core_support) == 704);
    assert!(size_of::<verbs_match_ent>() == 24);
    assert!(offset_of!(verbs_match_ent, driver_data) == 0);
    assert!(offset_of!(verbs_match_ent, u) == 8);
    assert!(offset_of!(verbs_match_ent, vendor) == 16);
    assert!(offset_of!(verbs_match_ent, device) == 18);
    assert!(offset_of!(verbs_match_ent, kind) == 20);
    assert!(size_of::<verbs_sysfs_dev>() == 992);
    assert!(offset_of!(verbs_sysfs_dev, entry) == 0);
    assert!(offset_of!(verbs_sysfs_dev, provider_data) == 16);
    assert!(offset_of!(verbs_sysfs_dev, match_) == 24);
    assert!(offset_of!(verbs_sysfs_dev, flags) == 32);
    assert!(offset_of!(verbs_sysfs_dev, sysfs_name) == 36);
    assert!(offset_of!(verbs_sysfs_dev, sysfs_cdev) == 104);
    assert!(offset_of!(verbs_sysfs_dev, ibdev_name) == 112);
    assert!(offset_of!(verbs_sysfs_dev, ibdev_path) == 176);
    assert!(offset_of!(verbs_sysfs_dev, modalias) == 432);
    assert!(offset_of!(verbs_sysfs_dev, node_guid) == 944);
    assert!(offset_of!(verbs_sysfs_dev, driver_id) == 952);
    assert!(offset_of!(verbs_sysfs_dev, node_type) == 956);
    assert!(offset_of!(verbs_sysfs_dev, ibdev_idx) == 960);
    assert!(offset_of!(verbs_sysfs_dev, num_ports) == 964);
    assert!(offset_of!(verbs_sysfs_dev, abi_ver) == 968);
    assert!(offset_of!(verbs_sysfs_dev, time_created) == 976);
    assert!(size_of::<verbs_mr>() == 56);
    assert!(offset_of!(verbs_mr, ibv_mr) == 0);
    assert!(offset_of!(verbs_mr, mr_type) == 48);
    assert!(offset_of!(verbs_mr, access) == 52);
    // Public (verbs.h, via bindgen), but the provider embeds it, so pin it too.
    assert!(offset_of!(verbs_context, context) == size_of::<verbs_context>() - size_of::<ibv_context>());
    assert!(offset_of!(verbs_context, sz) == offset_of!(verbs_context, context) - 8);
    assert!(size_of::<verbs_context_ops>() == 608);
    // Every op in driver.h order, each one pointer after the previous.
    let offsets = [
        offset_of!(verbs_context_ops, advise_mr),
        offset_of!(verbs_context_ops, alloc_dm),
        offset_of!(verbs_context_ops, alloc_mw),
        offset_of!(verbs_context_ops, alloc_null_mr),
        offset_of!(verbs_context_ops, alloc_parent_domain),
        offset_of!(verbs_context_ops, alloc_pd),
        offset_of!(verbs_context_ops, alloc_td),
        offset_of!(verbs_context_ops, async_event),
        offset_of!(verbs_context_ops, attach_counters_point_flow),
        offset_of!(verbs_context_ops, attach_mcast),
        offset_of!(verbs_context_ops, bind_mw),
        offset_of!(verbs_context_ops, close_xrcd),
        offset_of!(verbs_context_ops, cq_event),
        offset_of!(verbs_context_ops, create_ah),
        offset_of!(verbs_context_ops, create_counters),
        offset_of!(verbs_context_ops, create_cq),
        offset_of!(verbs_context_ops, create_cq_ex),
        offset_of!(verbs_context_ops, create_flow),
        offset_of!(verbs_context_ops, create_flow_action_esp),
        offset_of!(verbs_context_ops, create_qp),
        offset_of!(verbs_context_ops, create_qp_ex),
        offset_of!(verbs_context_ops, create_rwq_ind_table),
        offset_of!(verbs_context_ops, create_srq),
        offset_of!(verbs_context_ops, create_srq_ex),
        offset_of!(verbs_context_ops, create_wq),
        offset_of!(verbs_context_ops, dealloc_mw),
        offset_of!(verbs_context_ops, dealloc_pd),
        offset_of!(verbs_context_ops, dealloc_td),
        offset_of!(verbs_context_ops, dereg_mr),
        offset_of!(verbs_context_ops, destroy_ah),
        offset_of!(verbs_context_ops, destroy_counters),
        offset_of!(verbs_context_ops, destroy_cq),
        offset_of!(verbs_context_ops, destroy_flow),
        offset_of!(verbs_context_ops, destroy_flow_action),
        offset_of!(verbs_context_ops, destroy_qp),
        offset_of!(verbs_context_ops, destroy_rwq_ind_table),
        offset_of!(verbs_context_ops, destroy_srq),
        offset_of!(verbs_context_ops, destroy_wq),
        offset_of!(verbs_context_ops, detach_mcast),
        offset_of!(verbs_context_ops, free_context),
        offset_of!(verbs_context_ops, free_dm),
        offset_of!(verbs_context_ops, get_srq_num),
        offset_of!(verbs_context_ops, import_dm),
        offset_of!(verbs_context_ops, import_mr),
        offset_of!(verbs_context_ops, import_pd),
        offset_of!(verbs_context_ops, modify_cq),
        offset_of!(verbs_context_ops, modify_flow_action_esp),
        offset_of!(verbs_context_ops, modify_qp),
        offset_of!(verbs_context_ops, modify_qp_rate_limit),
        offset_of!(verbs_context_ops, modify_srq),
        offset_of!(verbs_context_ops, modify_wq),
        offset_of!(verbs_context_ops, open_qp),
        offset_of!(verbs_context_ops, open_xrcd),
        offset_of!(verbs_context_ops, poll_cq),
        offset_of!(verbs_context_ops, post_recv),
        offset_of!(verbs_context_ops, post_send),
        offset_of!(verbs_context_ops, post_srq_ops),
        offset_of!(verbs_context_ops, post_srq_recv),
        offset_of!(verbs_context_ops, query_device_ex),
        offset_of!(verbs_context_ops, query_ece),
        offset_of!(verbs_context_ops, query_port),
        offset_of!(verbs_context_ops, query_qp),
        offset_of!(verbs_context_ops, query_qp_data_in_order),
        offset_of!(verbs_context_ops, query_rt_values),
        offset_of!(verbs_context_ops, query_srq),
        offset_of!(verbs_context_ops, read_counters),
        offset_of!(verbs_context_ops, reg_dm_mr),
        offset_of!(verbs_context_ops, reg_dmabuf_mr),
        offset_of!(verbs_context_ops, reg_mr),
        offset_of!(verbs_context_ops, req_notify_cq),
        offset_of!(verbs_context_ops, rereg_mr),
        offset_of!(verbs_context_ops, resize_cq),
        offset_of!(verbs_context_ops, set_ece),
        offset_of!(verbs_context_ops, unimport_dm),
        offset_of!(verbs_context_ops, unimport_mr),
        offset_of!(verbs_context_ops, unimport_pd),
    ];
    assert!(offsets.len() == 76);
    let mut i = 0;
    while i < offsets.len() {
        assert!(offsets[i] == i * 8, "a verbs_context_ops entry is out of place");
        i += 1;
    }
    assert!(offset_of!(verbs_context_ops, alloc_pd) == 40);
    assert!(offset_of!(verbs_context_ops, dereg_mr) == 224);
    assert!(offset_of!(verbs_context_ops, free_context) == 312);
    assert!(offset_of!(verbs_context_ops, query_device_ex) == 464);
    assert!(offset_of!(verbs_context_ops, query_port) == 480);
    assert!(offset_of!(verbs_context_ops, reg_mr) == 544);
    assert!(size_of::<ibv_qp>() == 160);
    assert!(size_of::<ibv_qp_ex>() == 352);
    assert!(size_of::<verbs_qp>() == 368);
    assert!(offset_of!(verbs_qp, comp_mask) == 352);
    assert!(offset_of!(verbs_qp, xrcd) == 360);
    assert!(offset_of!(ibv_qp_ex, qp_base) == 0);
    assert!(size_of::<ibv_cq>() == 128);
    assert!(size_of::<verbs_cq>() == 288);
    assert!(size_of::<ibv_srq>() == 128);
    assert!(size_of::<verbs_srq>() == 160);
    assert!(offset_of!(verbs_srq, srq_type) == 128);
    assert!(offset_of!(verbs_srq, xrcd) == 136);
    assert!(offset_of!(verbs_srq, cq) == 144);
    assert!(offset_of!(verbs_srq, srq_num) == 152);
    // ibv_cq_ex begins with the fields of ibv_cq.
    assert!(offset_of!(ibv_cq_ex, handle) == offset_of!(ibv_cq, handle));
    assert!(offset_of!(ibv_cq_ex, async_events_completed) == offset_of!(ibv_cq, async_events_completed));
};
