//! libibverbs' private provider ABI in the rdma-core releases after 44, x86_64:
//! what differs from the ABI 34 layout of [`super::private`] (rdma-core v44.0).
//!
//! Not wired yet: nothing here is used until the provider picks a layout when
//! libibverbs loads it (issue 9). Every struct is written from libibverbs/driver.h
//! and verbs.h at the tags named in its doc comment, and pinned by build-time
//! assertions whose numbers were printed by a C probe (`sizeof`/`offsetof` of
//! every member) compiled against each tag's headers after `cmake
//! -DNO_MAN_PAGES=1 -DNO_PYVERBS=1` and `ninja ibverbs` (for the generated
//! kernel-abi headers): v44.0, v56.1, v57.0, v59.0, v61.0, v62.0, v63.0, v64.0,
//! and master at 691953d (PACKAGE_VERSION 65.0; no v65.0 tag exists in the
//! mirror; Debian sid's libibverbs 65.0-1.1 exports the same symbols and its
//! `verbs_set_ops` touches the same offsets).
//!
//! What the probes found, per private ABI (`IBVERBS_PABI_VERSION`; the
//! register function is `verbs_register_driver_<ABI>` and every private symbol
//! is exported under version node `IBVERBS_PRIVATE_<ABI>`):
//!
//! | ABI | tags      | verbs_context_ops | verbs_context (ibv_context at) | verbs_qp (comp_mask at) |
//! |-----|-----------|-------------------|--------------------------------|-------------------------|
//! | 34  | v34-v44   | 608 ([`private`]) | 648 (320)                      | 368 (352) ([`private`]) |
//! | 34  | v45-v56   | 608 ([`private`]) | 648 (320)                      | 376 (360) [`verbs_qp_45`] |
//! | 57  | v57-v58   | 608 ([`private`]) | 648 (320)                      | 376 (360) [`verbs_qp_45`] |
//! | 59  | v59-v61   | 632 [`verbs_context_ops_59`] | 672 (344) [`verbs_context_59`] | 376 (360) |
//! | 59  | v62-v63   | 648 [`verbs_context_ops_62`] | 680 (352) [`verbs_context_62`] | 376 (360) |
//! | 64  | v64       | 664 [`verbs_context_ops_64`] | 696 (368) [`verbs_context_64`] | 376 (360) |
//! | 65  | 65.0      | 744 [`verbs_context_ops_65`] | 696 (368) [`verbs_context_64`] | 376 (360) |
//!
//! Unchanged in every one of them (same sizes and offsets as v44.0):
//! verbs_device_ops (72), verbs_device (712), verbs_sysfs_dev (992),
//! verbs_match_ent (24), verbs_mr (56), verbs_cq (288), verbs_srq (160),
//! ibv_cq_ex (288), ibv_context (328), ibv_device (664), ibv_qp (160),
//! ibv_cq (128), ibv_srq (128), ibv_mr (48), ibv_cq_init_attr_ex,
//! ibv_qp_init_attr_ex, ibv_device_attr_ex, ibv_context_ops; and the
//! signature of every op that existed in v44.0. The op tables only gain
//! entries (sorted by name, so new ones land in the middle); verbs_context
//! only gains entries at its front ("grows up"), so the v44.0 verbs_context
//! is the tail of every later one and `sz` stays just before `context`.
//!
//! [`private`]: super::private

use super::private::{verbs_context_ops as verbs_context_ops_34, verbs_cq, verbs_device_ops, verbs_mr};
use super::sys::*;
use core::ffi::{c_int, c_uint, c_void, CStr};

type Op<F> = Option<F>;

/// The function-pointer type of every `verbs_context_ops` entry of every
/// release, named after the entry (and the same type where `verbs_context`
/// has an entry of that name). No entry's signature changed between
/// releases; the ones that exist in v44.0 are checked against
/// [`super::private::verbs_context_ops`] at build time.
#[allow(non_camel_case_types)]
pub(crate) mod op {
    use super::*;

    pub(crate) type advise_mr = unsafe extern "C" fn(*mut ibv_pd, ib_uverbs_advise_mr_advice::Type, u32, *mut ibv_sge, u32) -> c_int;
    /// v64+.
    pub(crate) type alloc_buf = unsafe extern "C" fn(*mut ibv_pd, usize, *mut *mut ibv_buf) -> *mut c_void;
    pub(crate) type alloc_dm = unsafe extern "C" fn(*mut ibv_context, *mut ibv_alloc_dm_attr) -> *mut ibv_dm;
    /// v59+.
    pub(crate) type alloc_dmah = unsafe extern "C" fn(*mut ibv_context, *mut ibv_dmah_init_attr) -> *mut ibv_dmah;
    pub(crate) type alloc_mw = unsafe extern "C" fn(*mut ibv_pd, ibv_mw_type::Type) -> *mut ibv_mw;
    pub(crate) type alloc_null_mr = unsafe extern "C" fn(*mut ibv_pd) -> *mut ibv_mr;
    pub(crate) type alloc_parent_domain = unsafe extern "C" fn(*mut ibv_context, *mut ibv_parent_domain_init_attr) -> *mut ibv_pd;
    pub(crate) type alloc_pd = unsafe extern "C" fn(*mut ibv_context) -> *mut ibv_pd;
    pub(crate) type alloc_td = unsafe extern "C" fn(*mut ibv_context, *mut ibv_td_init_attr) -> *mut ibv_td;
    pub(crate) type async_event = unsafe extern "C" fn(*mut ibv_context, *mut ibv_async_event);
    pub(crate) type attach_counters_point_flow = unsafe extern "C" fn(*mut ibv_counters, *mut ibv_counter_attach_attr, *mut ibv_flow) -> c_int;
    pub(crate) type attach_mcast = unsafe extern "C" fn(*mut ibv_qp, *const ibv_gid, u16) -> c_int;
    pub(crate) type bind_mw = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_mw, *mut ibv_mw_bind) -> c_int;
    pub(crate) type close_xrcd = unsafe extern "C" fn(*mut ibv_xrcd) -> c_int;
    pub(crate) type cq_event = unsafe extern "C" fn(*mut ibv_cq);
    pub(crate) type create_ah = unsafe extern "C" fn(*mut ibv_pd, *mut ibv_ah_attr) -> *mut ibv_ah;
    /// v65+.
    pub(crate) type create_comp_cntr = unsafe extern "C" fn(*mut ibv_context, *mut ibv_comp_cntr_init_attr) -> *mut ibv_comp_cntr;
    pub(crate) type create_counters = unsafe extern "C" fn(*mut ibv_context, *mut ibv_counters_init_attr) -> *mut ibv_counters;
    pub(crate) type create_cq = unsafe extern "C" fn(*mut ibv_context, c_int, *mut ibv_comp_channel, c_int) -> *mut ibv_cq;
    pub(crate) type create_cq_ex = unsafe extern "C" fn(*mut ibv_context, *mut ibv_cq_init_attr_ex) -> *mut ibv_cq_ex;
    pub(crate) type create_flow = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_flow_attr) -> *mut ibv_flow;
    pub(crate) type create_flow_action_esp = unsafe extern "C" fn(*mut ibv_context, *mut ibv_flow_action_esp_attr) -> *mut ibv_flow_action;
    pub(crate) type create_qp = unsafe extern "C" fn(*mut ibv_pd, *mut ibv_qp_init_attr) -> *mut ibv_qp;
    pub(crate) type create_qp_ex = unsafe extern "C" fn(*mut ibv_context, *mut ibv_qp_init_attr_ex) -> *mut ibv_qp;
    pub(crate) type create_rwq_ind_table = unsafe extern "C" fn(*mut ibv_context, *mut ibv_rwq_ind_table_init_attr) -> *mut ibv_rwq_ind_table;
    pub(crate) type create_srq = unsafe extern "C" fn(*mut ibv_pd, *mut ibv_srq_init_attr) -> *mut ibv_srq;
    pub(crate) type create_srq_ex = unsafe extern "C" fn(*mut ibv_context, *mut ibv_srq_init_attr_ex) -> *mut ibv_srq;
    pub(crate) type create_wq = unsafe extern "C" fn(*mut ibv_context, *mut ibv_wq_init_attr) -> *mut ibv_wq;
    /// v59+.
    pub(crate) type dealloc_dmah = unsafe extern "C" fn(*mut ibv_dmah) -> c_int;
    pub(crate) type dealloc_mw = unsafe extern "C" fn(*mut ibv_mw) -> c_int;
    pub(crate) type dealloc_pd = unsafe extern "C" fn(*mut ibv_pd) -> c_int;
    pub(crate) type dealloc_td = unsafe extern "C" fn(*mut ibv_td) -> c_int;
    pub(crate) type dereg_mr = unsafe extern "C" fn(*mut verbs_mr) -> c_int;
    pub(crate) type destroy_ah = unsafe extern "C" fn(*mut ibv_ah) -> c_int;
    /// v65+.
    pub(crate) type destroy_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr) -> c_int;
    pub(crate) type destroy_counters = unsafe extern "C" fn(*mut ibv_counters) -> c_int;
    pub(crate) type destroy_cq = unsafe extern "C" fn(*mut ibv_cq) -> c_int;
    pub(crate) type destroy_flow = unsafe extern "C" fn(*mut ibv_flow) -> c_int;
    pub(crate) type destroy_flow_action = unsafe extern "C" fn(*mut ibv_flow_action) -> c_int;
    pub(crate) type destroy_qp = unsafe extern "C" fn(*mut ibv_qp) -> c_int;
    pub(crate) type destroy_rwq_ind_table = unsafe extern "C" fn(*mut ibv_rwq_ind_table) -> c_int;
    pub(crate) type destroy_srq = unsafe extern "C" fn(*mut ibv_srq) -> c_int;
    pub(crate) type destroy_wq = unsafe extern "C" fn(*mut ibv_wq) -> c_int;
    pub(crate) type detach_mcast = unsafe extern "C" fn(*mut ibv_qp, *const ibv_gid, u16) -> c_int;
    /// v62+.
    pub(crate) type dm_export_dmabuf_fd = unsafe extern "C" fn(*mut ibv_dm) -> c_int;
    /// v64+.
    pub(crate) type free_buf = unsafe extern "C" fn(*mut ibv_buf);
    pub(crate) type free_context = unsafe extern "C" fn(*mut ibv_context);
    pub(crate) type free_dm = unsafe extern "C" fn(*mut ibv_dm) -> c_int;
    pub(crate) type get_srq_num = unsafe extern "C" fn(*mut ibv_srq, *mut u32) -> c_int;
    pub(crate) type import_dm = unsafe extern "C" fn(*mut ibv_context, u32) -> *mut ibv_dm;
    pub(crate) type import_mr = unsafe extern "C" fn(*mut ibv_pd, u32) -> *mut ibv_mr;
    pub(crate) type import_pd = unsafe extern "C" fn(*mut ibv_context, u32) -> *mut ibv_pd;
    /// v65+.
    pub(crate) type inc_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, u64) -> c_int;
    /// v65+.
    pub(crate) type inc_err_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, u64) -> c_int;
    pub(crate) type modify_cq = unsafe extern "C" fn(*mut ibv_cq, *mut ibv_modify_cq_attr) -> c_int;
    pub(crate) type modify_flow_action_esp = unsafe extern "C" fn(*mut ibv_flow_action, *mut ibv_flow_action_esp_attr) -> c_int;
    pub(crate) type modify_qp = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int) -> c_int;
    pub(crate) type modify_qp_rate_limit = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_rate_limit_attr) -> c_int;
    pub(crate) type modify_srq = unsafe extern "C" fn(*mut ibv_srq, *mut ibv_srq_attr, c_int) -> c_int;
    pub(crate) type modify_wq = unsafe extern "C" fn(*mut ibv_wq, *mut ibv_wq_attr) -> c_int;
    pub(crate) type open_qp = unsafe extern "C" fn(*mut ibv_context, *mut ibv_qp_open_attr) -> *mut ibv_qp;
    pub(crate) type open_xrcd = unsafe extern "C" fn(*mut ibv_context, *mut ibv_xrcd_init_attr) -> *mut ibv_xrcd;
    pub(crate) type poll_cq = unsafe extern "C" fn(*mut ibv_cq, c_int, *mut ibv_wc) -> c_int;
    pub(crate) type post_recv = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> c_int;
    pub(crate) type post_send = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_send_wr, *mut *mut ibv_send_wr) -> c_int;
    pub(crate) type post_srq_ops = unsafe extern "C" fn(*mut ibv_srq, *mut ibv_ops_wr, *mut *mut ibv_ops_wr) -> c_int;
    pub(crate) type post_srq_recv = unsafe extern "C" fn(*mut ibv_srq, *mut ibv_recv_wr, *mut *mut ibv_recv_wr) -> c_int;
    /// v65+.
    pub(crate) type qp_attach_comp_cntr = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_comp_cntr, *mut ibv_qp_attach_comp_cntr_attr) -> c_int;
    /// v65+.
    pub(crate) type query_comp_cntr_caps = unsafe extern "C" fn(*mut ibv_context, *mut ibv_comp_cntr_caps, usize) -> c_int;
    pub(crate) type query_device_ex = unsafe extern "C" fn(*mut ibv_context, *const ibv_query_device_ex_input, *mut ibv_device_attr_ex, usize) -> c_int;
    pub(crate) type query_ece = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_ece) -> c_int;
    pub(crate) type query_port = unsafe extern "C" fn(*mut ibv_context, u8, *mut ibv_port_attr) -> c_int;
    /// v62+: the port's effective speed in units of 100 Mb/s; the port
    /// number is a `uint32_t` here, unlike `query_port`'s `uint8_t`.
    pub(crate) type query_port_speed = unsafe extern "C" fn(*mut ibv_context, u32, *mut u64) -> c_int;
    pub(crate) type query_qp = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_qp_attr, c_int, *mut ibv_qp_init_attr) -> c_int;
    pub(crate) type query_qp_data_in_order = unsafe extern "C" fn(*mut ibv_qp, ibv_wr_opcode::Type, u32) -> c_int;
    pub(crate) type query_rt_values = unsafe extern "C" fn(*mut ibv_context, *mut ibv_values_ex) -> c_int;
    pub(crate) type query_srq = unsafe extern "C" fn(*mut ibv_srq, *mut ibv_srq_attr) -> c_int;
    /// v65+.
    pub(crate) type read_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, *mut u64) -> c_int;
    pub(crate) type read_counters = unsafe extern "C" fn(*mut ibv_counters, *mut u64, u32, u32) -> c_int;
    /// v65+.
    pub(crate) type read_err_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, *mut u64) -> c_int;
    pub(crate) type reg_dm_mr = unsafe extern "C" fn(*mut ibv_pd, *mut ibv_dm, u64, usize, c_uint) -> *mut ibv_mr;
    pub(crate) type reg_dmabuf_mr = unsafe extern "C" fn(*mut ibv_pd, u64, usize, u64, c_int, c_int) -> *mut ibv_mr;
    pub(crate) type reg_mr = unsafe extern "C" fn(*mut ibv_pd, *mut c_void, usize, u64, c_int) -> *mut ibv_mr;
    /// v59+.
    pub(crate) type reg_mr_ex = unsafe extern "C" fn(*mut ibv_pd, *mut ibv_mr_init_attr) -> *mut ibv_mr;
    pub(crate) type req_notify_cq = unsafe extern "C" fn(*mut ibv_cq, c_int) -> c_int;
    pub(crate) type rereg_mr = unsafe extern "C" fn(*mut verbs_mr, c_int, *mut ibv_pd, *mut c_void, usize, c_int) -> c_int;
    pub(crate) type resize_cq = unsafe extern "C" fn(*mut ibv_cq, c_int) -> c_int;
    /// v65+.
    pub(crate) type set_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, u64) -> c_int;
    pub(crate) type set_ece = unsafe extern "C" fn(*mut ibv_qp, *mut ibv_ece) -> c_int;
    /// v65+.
    pub(crate) type set_err_comp_cntr = unsafe extern "C" fn(*mut ibv_comp_cntr, u64) -> c_int;
    pub(crate) type unimport_dm = unsafe extern "C" fn(*mut ibv_dm);
    pub(crate) type unimport_mr = unsafe extern "C" fn(*mut ibv_mr);
    pub(crate) type unimport_pd = unsafe extern "C" fn(*mut ibv_pd);
}

/// The aliases of the ops that exist in v44.0 are the types of
/// [`super::private::verbs_context_ops`]' fields (a mismatch fails the build).
const _: () = {
    macro_rules! same_as_34 {
        ($($f:ident),* $(,)?) => {
            fn _same_types(o: &verbs_context_ops_34) {
                $(let _: &Op<op::$f> = &o.$f;)*
            }
        };
    }
    same_as_34!(
        advise_mr, alloc_dm, alloc_mw, alloc_null_mr, alloc_parent_domain, alloc_pd, alloc_td,
        async_event, attach_counters_point_flow, attach_mcast, bind_mw, close_xrcd, cq_event,
        create_ah, create_counters, create_cq, create_cq_ex, create_flow, create_flow_action_esp,
        create_qp, create_qp_ex, create_rwq_ind_table, create_srq, create_srq_ex, create_wq,
        dealloc_mw, dealloc_pd, dealloc_td, dereg_mr, destroy_ah, destroy_counters, destroy_cq,
        destroy_flow, destroy_flow_action, destroy_qp, destroy_rwq_ind_table, destroy_srq,
        destroy_wq, detach_mcast, free_context, free_dm, get_srq_num, import_dm, import_mr,
        import_pd, modify_cq, modify_flow_action_esp, modify_qp, modify_qp_rate_limit, modify_srq,
        modify_wq, open_qp, open_xrcd, poll_cq, post_recv, post_send, post_srq_ops, post_srq_recv,
        query_device_ex, query_ece, query_port, query_qp, query_qp_data_in_order, query_rt_values,
        query_srq, read_counters, reg_dm_mr, reg_dmabuf_mr, reg_mr, req_notify_cq, rereg_mr,
        resize_cq, set_ece, unimport_dm, unimport_mr, unimport_pd,
    );
};

/// Defines one release's `verbs_context_ops`: the entries in driver.h order,
/// each with the offset the probe printed, each typed by its [`op`] alias;
/// then checks every offset, that each entry follows the previous one by a
/// pointer (nothing left out between them), and the size.
macro_rules! ops_layout {
    ($(#[$m:meta])* $name:ident, size $size:literal { $($field:ident = $off:literal,)* }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Default)]
        pub(crate) struct $name {
            $(pub $field: Op<op::$field>,)*
        }
        const _: () = {
            use core::mem::{offset_of, size_of};
            assert!(size_of::<$name>() == $size);
            let offsets = [$((offset_of!($name, $field), $off)),*];
            let mut i = 0;
            while i < offsets.len() {
                assert!(offsets[i].0 == offsets[i].1, "an entry is not where the probe found it");
                assert!(offsets[i].0 == i * 8, "an entry is missing or out of place");
                i += 1;
            }
            assert!(offsets.len() * 8 == $size);
        };
    };
}
ops_layout! {
    /// `struct verbs_context_ops` of private ABI 59 in rdma-core v59.0-v61.x
    /// (`verbs_register_driver_59`, `IBVERBS_PRIVATE_59`; probed at v59.0 and
    /// v61.0, identical): ABI 34's entries plus `alloc_dmah`, `dealloc_dmah` and
    /// `reg_mr_ex`, each at its place in name order.
    verbs_context_ops_59, size 632 {
        advise_mr = 0,
        alloc_dm = 8,
        alloc_dmah = 16,
        alloc_mw = 24,
        alloc_null_mr = 32,
        alloc_parent_domain = 40,
        alloc_pd = 48,
        alloc_td = 56,
        async_event = 64,
        attach_counters_point_flow = 72,
        attach_mcast = 80,
        bind_mw = 88,
        close_xrcd = 96,
        cq_event = 104,
        create_ah = 112,
        create_counters = 120,
        create_cq = 128,
        create_cq_ex = 136,
        create_flow = 144,
        create_flow_action_esp = 152,
        create_qp = 160,
        create_qp_ex = 168,
        create_rwq_ind_table = 176,
        create_srq = 184,
        create_srq_ex = 192,
        create_wq = 200,
        dealloc_dmah = 208,
        dealloc_mw = 216,
        dealloc_pd = 224,
        dealloc_td = 232,
        dereg_mr = 240,
        destroy_ah = 248,
        destroy_counters = 256,
        destroy_cq = 264,
        destroy_flow = 272,
        destroy_flow_action = 280,
        destroy_qp = 288,
        destroy_rwq_ind_table = 296,
        destroy_srq = 304,
        destroy_wq = 312,
        detach_mcast = 320,
        free_context = 328,
        free_dm = 336,
        get_srq_num = 344,
        import_dm = 352,
        import_mr = 360,
        import_pd = 368,
        modify_cq = 376,
        modify_flow_action_esp = 384,
        modify_qp = 392,
        modify_qp_rate_limit = 400,
        modify_srq = 408,
        modify_wq = 416,
        open_qp = 424,
        open_xrcd = 432,
        poll_cq = 440,
        post_recv = 448,
        post_send = 456,
        post_srq_ops = 464,
        post_srq_recv = 472,
        query_device_ex = 480,
        query_ece = 488,
        query_port = 496,
        query_qp = 504,
        query_qp_data_in_order = 512,
        query_rt_values = 520,
        query_srq = 528,
        read_counters = 536,
        reg_dm_mr = 544,
        reg_dmabuf_mr = 552,
        reg_mr = 560,
        reg_mr_ex = 568,
        req_notify_cq = 576,
        rereg_mr = 584,
        resize_cq = 592,
        set_ece = 600,
        unimport_dm = 608,
        unimport_mr = 616,
        unimport_pd = 624,
    }
}

ops_layout! {
    /// `struct verbs_context_ops` of rdma-core v62.0-v63.x, still private ABI 59
    /// (`verbs_register_driver_59`, `IBVERBS_PRIVATE_59`; probed at v62.0 and
    /// v63.0, identical): [`verbs_context_ops_59`] plus `dm_export_dmabuf_fd`
    /// (after `detach_mcast`) and `query_port_speed` (after `query_port`). The
    /// ABI number did not change, so a provider built for v59-v61 that fills an
    /// op after `detach_mcast` lands one or two entries off here. Tell the two
    /// apart by libibverbs' version node `IBVERBS_1.16` (e.g.
    /// `dlvsym(handle, "ibv_query_port_speed", "IBVERBS_1.16")`), which v62+
    /// exports and v59-v61 do not.
    verbs_context_ops_62, size 648 {
        advise_mr = 0,
        alloc_dm = 8,
        alloc_dmah = 16,
        alloc_mw = 24,
        alloc_null_mr = 32,
        alloc_parent_domain = 40,
        alloc_pd = 48,
        alloc_td = 56,
        async_event = 64,
        attach_counters_point_flow = 72,
        attach_mcast = 80,
        bind_mw = 88,
        close_xrcd = 96,
        cq_event = 104,
        create_ah = 112,
        create_counters = 120,
        create_cq = 128,
        create_cq_ex = 136,
        create_flow = 144,
        create_flow_action_esp = 152,
        create_qp = 160,
        create_qp_ex = 168,
        create_rwq_ind_table = 176,
        create_srq = 184,
        create_srq_ex = 192,
        create_wq = 200,
        dealloc_dmah = 208,
        dealloc_mw = 216,
        dealloc_pd = 224,
        dealloc_td = 232,
        dereg_mr = 240,
        destroy_ah = 248,
        destroy_counters = 256,
        destroy_cq = 264,
        destroy_flow = 272,
        destroy_flow_action = 280,
        destroy_qp = 288,
        destroy_rwq_ind_table = 296,
        destroy_srq = 304,
        destroy_wq = 312,
        detach_mcast = 320,
        dm_export_dmabuf_fd = 328,
        free_context = 336,
        free_dm = 344,
        get_srq_num = 352,
        import_dm = 360,
        import_mr = 368,
        import_pd = 376,
        modify_cq = 384,
        modify_flow_action_esp = 392,
        modify_qp = 400,
        modify_qp_rate_limit = 408,
        modify_srq = 416,
        modify_wq = 424,
        open_qp = 432,
        open_xrcd = 440,
        poll_cq = 448,
        post_recv = 456,
        post_send = 464,
        post_srq_ops = 472,
        post_srq_recv = 480,
        query_device_ex = 488,
        query_ece = 496,
        query_port = 504,
        query_port_speed = 512,
        query_qp = 520,
        query_qp_data_in_order = 528,
        query_rt_values = 536,
        query_srq = 544,
        read_counters = 552,
        reg_dm_mr = 560,
        reg_dmabuf_mr = 568,
        reg_mr = 576,
        reg_mr_ex = 584,
        req_notify_cq = 592,
        rereg_mr = 600,
        resize_cq = 608,
        set_ece = 616,
        unimport_dm = 624,
        unimport_mr = 632,
        unimport_pd = 640,
    }
}

ops_layout! {
    /// `struct verbs_context_ops` of private ABI 64, rdma-core v64.0
    /// (`verbs_register_driver_64`, `IBVERBS_PRIVATE_64`): [`verbs_context_ops_62`]
    /// plus `alloc_buf` and `free_buf`.
    verbs_context_ops_64, size 664 {
        advise_mr = 0,
        alloc_buf = 8,
        alloc_dm = 16,
        alloc_dmah = 24,
        alloc_mw = 32,
        alloc_null_mr = 40,
        alloc_parent_domain = 48,
        alloc_pd = 56,
        alloc_td = 64,
        async_event = 72,
        attach_counters_point_flow = 80,
        attach_mcast = 88,
        bind_mw = 96,
        close_xrcd = 104,
        cq_event = 112,
        create_ah = 120,
        create_counters = 128,
        create_cq = 136,
        create_cq_ex = 144,
        create_flow = 152,
        create_flow_action_esp = 160,
        create_qp = 168,
        create_qp_ex = 176,
        create_rwq_ind_table = 184,
        create_srq = 192,
        create_srq_ex = 200,
        create_wq = 208,
        dealloc_dmah = 216,
        dealloc_mw = 224,
        dealloc_pd = 232,
        dealloc_td = 240,
        dereg_mr = 248,
        destroy_ah = 256,
        destroy_counters = 264,
        destroy_cq = 272,
        destroy_flow = 280,
        destroy_flow_action = 288,
        destroy_qp = 296,
        destroy_rwq_ind_table = 304,
        destroy_srq = 312,
        destroy_wq = 320,
        detach_mcast = 328,
        dm_export_dmabuf_fd = 336,
        free_buf = 344,
        free_context = 352,
        free_dm = 360,
        get_srq_num = 368,
        import_dm = 376,
        import_mr = 384,
        import_pd = 392,
        modify_cq = 400,
        modify_flow_action_esp = 408,
        modify_qp = 416,
        modify_qp_rate_limit = 424,
        modify_srq = 432,
        modify_wq = 440,
        open_qp = 448,
        open_xrcd = 456,
        poll_cq = 464,
        post_recv = 472,
        post_send = 480,
        post_srq_ops = 488,
        post_srq_recv = 496,
        query_device_ex = 504,
        query_ece = 512,
        query_port = 520,
        query_port_speed = 528,
        query_qp = 536,
        query_qp_data_in_order = 544,
        query_rt_values = 552,
        query_srq = 560,
        read_counters = 568,
        reg_dm_mr = 576,
        reg_dmabuf_mr = 584,
        reg_mr = 592,
        reg_mr_ex = 600,
        req_notify_cq = 608,
        rereg_mr = 616,
        resize_cq = 624,
        set_ece = 632,
        unimport_dm = 640,
        unimport_mr = 648,
        unimport_pd = 656,
    }
}

ops_layout! {
    /// `struct verbs_context_ops` of private ABI 65, rdma-core 65.0
    /// (`verbs_register_driver_65`, `IBVERBS_PRIVATE_65`; probed at master
    /// 691953d, PACKAGE_VERSION 65.0, which Debian sid's 65.0-1.1 matches):
    /// [`verbs_context_ops_64`] plus the ten completion-counter entries
    /// (`create_comp_cntr`, `destroy_comp_cntr`, `inc_comp_cntr`,
    /// `inc_err_comp_cntr`, `qp_attach_comp_cntr`, `query_comp_cntr_caps`,
    /// `read_comp_cntr`, `read_err_comp_cntr`, `set_comp_cntr`,
    /// `set_err_comp_cntr`).
    verbs_context_ops_65, size 744 {
        advise_mr = 0,
        alloc_buf = 8,
        alloc_dm = 16,
        alloc_dmah = 24,
        alloc_mw = 32,
        alloc_null_mr = 40,
        alloc_parent_domain = 48,
        alloc_pd = 56,
        alloc_td = 64,
        async_event = 72,
        attach_counters_point_flow = 80,
        attach_mcast = 88,
        bind_mw = 96,
        close_xrcd = 104,
        cq_event = 112,
        create_ah = 120,
        create_comp_cntr = 128,
        create_counters = 136,
        create_cq = 144,
        create_cq_ex = 152,
        create_flow = 160,
        create_flow_action_esp = 168,
        create_qp = 176,
        create_qp_ex = 184,
        create_rwq_ind_table = 192,
        create_srq = 200,
        create_srq_ex = 208,
        create_wq = 216,
        dealloc_dmah = 224,
        dealloc_mw = 232,
        dealloc_pd = 240,
        dealloc_td = 248,
        dereg_mr = 256,
        destroy_ah = 264,
        destroy_comp_cntr = 272,
        destroy_counters = 280,
        destroy_cq = 288,
        destroy_flow = 296,
        destroy_flow_action = 304,
        destroy_qp = 312,
        destroy_rwq_ind_table = 320,
        destroy_srq = 328,
        destroy_wq = 336,
        detach_mcast = 344,
        dm_export_dmabuf_fd = 352,
        free_buf = 360,
        free_context = 368,
        free_dm = 376,
        get_srq_num = 384,
        import_dm = 392,
        import_mr = 400,
        import_pd = 408,
        inc_comp_cntr = 416,
        inc_err_comp_cntr = 424,
        modify_cq = 432,
        modify_flow_action_esp = 440,
        modify_qp = 448,
        modify_qp_rate_limit = 456,
        modify_srq = 464,
        modify_wq = 472,
        open_qp = 480,
        open_xrcd = 488,
        poll_cq = 496,
        post_recv = 504,
        post_send = 512,
        post_srq_ops = 520,
        post_srq_recv = 528,
        qp_attach_comp_cntr = 536,
        query_comp_cntr_caps = 544,
        query_device_ex = 552,
        query_ece = 560,
        query_port = 568,
        query_port_speed = 576,
        query_qp = 584,
        query_qp_data_in_order = 592,
        query_rt_values = 600,
        query_srq = 608,
        read_comp_cntr = 616,
        read_counters = 624,
        read_err_comp_cntr = 632,
        reg_dm_mr = 640,
        reg_dmabuf_mr = 648,
        reg_mr = 656,
        reg_mr_ex = 664,
        req_notify_cq = 672,
        rereg_mr = 680,
        resize_cq = 688,
        set_comp_cntr = 696,
        set_ece = 704,
        set_err_comp_cntr = 712,
        unimport_dm = 720,
        unimport_mr = 728,
        unimport_pd = 736,
    }
}

/// `struct verbs_context` (public verbs.h, but the provider embeds it) of
/// private ABI 59 in rdma-core v59.0-v61.x: v44.0's with `reg_mr_ex`,
/// `dealloc_dmah` and `alloc_dmah` in front of it. libibverbs' `sz` is 672,
/// and `ibv_context` sits at 344 instead of 320, so the provider's context
/// must reserve this whole struct at the `context_offset` it passes to
/// `_verbs_init_and_alloc_context`.
#[repr(C)]
pub(crate) struct verbs_context_59 {
    pub reg_mr_ex: Op<op::reg_mr_ex>,
    pub dealloc_dmah: Op<op::dealloc_dmah>,
    pub alloc_dmah: Op<op::alloc_dmah>,
    /// Everything of v44.0's verbs_context, ending with `sz` and `context`.
    pub v44: verbs_context,
}

/// `struct verbs_context` of rdma-core v62.0-v63.x (private ABI still 59):
/// [`verbs_context_59`] with `dm_export_dmabuf_fd` in front; 680 bytes,
/// `ibv_context` at 352.
#[repr(C)]
pub(crate) struct verbs_context_62 {
    pub dm_export_dmabuf_fd: Op<op::dm_export_dmabuf_fd>,
    pub reg_mr_ex: Op<op::reg_mr_ex>,
    pub dealloc_dmah: Op<op::dealloc_dmah>,
    pub alloc_dmah: Op<op::alloc_dmah>,
    /// Everything of v44.0's verbs_context, ending with `sz` and `context`.
    pub v44: verbs_context,
}

/// `struct verbs_context` of private ABIs 64 (rdma-core v64.0) and 65
/// (65.0, unchanged there): [`verbs_context_62`] with `free_buf` and
/// `alloc_buf` in front; 696 bytes, `ibv_context` at 368.
#[repr(C)]
pub(crate) struct verbs_context_64 {
    pub free_buf: Op<op::free_buf>,
    pub alloc_buf: Op<op::alloc_buf>,
    pub dm_export_dmabuf_fd: Op<op::dm_export_dmabuf_fd>,
    pub reg_mr_ex: Op<op::reg_mr_ex>,
    pub dealloc_dmah: Op<op::dealloc_dmah>,
    pub alloc_dmah: Op<op::alloc_dmah>,
    /// Everything of v44.0's verbs_context, ending with `sz` and `context`.
    pub v44: verbs_context,
}

/// `ibv_qp_ex::wr_flush` (v45+): `(qp, rkey, remote_addr, len, type, level)`.
#[allow(non_camel_case_types)]
pub(crate) type wr_flush = unsafe extern "C" fn(*mut ibv_qp_ex, u32, u64, usize, u8, u8);

/// `struct ibv_qp_ex` from rdma-core v45.0 on (ABI 34 from v45, and 57, 59,
/// 64, 65): v44.0's with `wr_flush` appended at 352; 360 bytes.
#[repr(C)]
pub(crate) struct ibv_qp_ex_45 {
    pub v44: ibv_qp_ex,
    pub wr_flush: Op<wr_flush>,
}

/// `struct verbs_qp` from rdma-core v45.0 on: it embeds the grown
/// [`ibv_qp_ex_45`], so `comp_mask` moves from 352 to 360 and `xrcd` from 360
/// to 368 (376 bytes) *without a change of ABI number*: libibverbs 45-56 is
/// still ABI 34. libibverbs itself reads and writes these two fields
/// (`ibv_cmd_create_qp_ex2` zeroes `comp_mask` and sets `xrcd`;
/// `ibv_qp_to_qp_ex`, exported under IBVERBS_1.6, returns NULL unless
/// `comp_mask` has VERBS_QP_EX), so a provider with v44.0's
/// [`super::private::verbs_qp`] under libibverbs 45+ has its `VERBS_QP_EX`
/// bit where libibverbs reads `wr_flush`, and `ibv_qp_to_qp_ex` returns NULL.
/// No exported symbol tells 44 from 45-48 (the .map.in files are identical);
/// libibverbs' file name does (`libibverbs.so.1.14.<release>`), and so does
/// `dlvsym(h, "ibv_wr_opcode_str", "IBVERBS_PRIVATE_34")` for 49+ and
/// `ibv_cmd_create_cq_ex2@IBVERBS_PRIVATE_34` for 53+.
#[repr(C)]
pub(crate) struct verbs_qp_45 {
    pub qp_ex: ibv_qp_ex_45,
    pub comp_mask: u32,
    pub xrcd: *mut c_void,
}

/// `struct ibv_port_attr` from rdma-core v49.0 on (still ABI 34): v44.0's
/// 52 bytes plus `active_speed_ex`. libibverbs hands the provider's
/// `query_port` a zeroed buffer of its own size (`__lib_query_port`), so a
/// provider that writes only v44.0's fields leaves `active_speed_ex` 0.
#[repr(C)]
pub(crate) struct ibv_port_attr_49 {
    pub v44: ibv_port_attr,
    pub active_speed_ex: u32,
}

/// `struct ibv_fd_arr` (verbs.h, v57+): the new argument of
/// `ibv_cmd_get_context` (which this provider does not call).
#[repr(C)]
pub(crate) struct ibv_fd_arr {
    pub arr: *mut c_int,
    pub count: u32,
}

/// `struct ibv_dmah` (verbs.h, v59+): a DMA handle.
#[repr(C)]
pub(crate) struct ibv_dmah {
    pub context: *mut ibv_context,
}

/// `struct verbs_dmah` (driver.h, v59+).
#[repr(C)]
pub(crate) struct verbs_dmah {
    pub dmah: ibv_dmah,
    pub handle: u32,
}

/// `struct ibv_dmah_init_attr` (verbs.h, v59+).
#[repr(C)]
pub(crate) struct ibv_dmah_init_attr {
    pub comp_mask: u32,
    pub cpu_id: u32,
    pub ph: u8,
    pub tph_mem_type: u8,
}

/// `struct ibv_mr_init_attr` (verbs.h) as of v64+, 72 bytes; v59-v63's is
/// the first 64 (everything before `buf`).
#[repr(C)]
pub(crate) struct ibv_mr_init_attr {
    pub length: usize,
    pub access: c_int,
    pub comp_mask: u64,
    pub iova: u64,
    pub addr: *mut c_void,
    pub fd: c_int,
    pub fd_offset: u64,
    pub dmah: *mut ibv_dmah,
    /// v64+.
    pub buf: *mut ibv_buf,
}

/// `struct ibv_buf` (driver.h, v64+): what `alloc_buf` hands out.
#[repr(C)]
pub(crate) struct ibv_buf {
    pub addr: *mut c_void,
    pub size: usize,
    pub pd: *mut ibv_pd,
    pub dmabuf_fd: c_int,
}

/// `struct ibv_comp_cntr` (verbs.h, 65+).
#[repr(C)]
pub(crate) struct ibv_comp_cntr {
    pub context: *mut ibv_context,
    pub handle: u32,
}

/// `struct ibv_comp_cntr_caps` (verbs.h, 65+).
#[repr(C)]
pub(crate) struct ibv_comp_cntr_caps {
    pub max_value: u64,
    pub max_counters: u32,
    pub supported_qp_attach_ops: u32,
}

/// `struct ibv_comp_cntr_init_attr` (verbs.h, 65+); `type_` is `enum ibv_comp_cntr_type`.
#[repr(C)]
pub(crate) struct ibv_comp_cntr_init_attr {
    pub comp_mask: u32,
    pub type_: u32,
    pub flags: u32,
}

/// `struct ibv_qp_attach_comp_cntr_attr` (verbs.h, 65+).
#[repr(C)]
pub(crate) struct ibv_qp_attach_comp_cntr_attr {
    pub comp_mask: u32,
    pub op_mask: u32,
}

/// `buffer.dmabuf` of [`verbs_create_cq_prov_attr`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct verbs_create_cq_prov_attr_dmabuf {
    pub offset: u64,
    pub fd: c_int,
}

/// The anonymous union in [`verbs_create_cq_prov_attr_buffer`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union verbs_create_cq_prov_attr_u {
    pub ptr: *mut u8,
    pub dmabuf: verbs_create_cq_prov_attr_dmabuf,
}

/// `buffer` of [`verbs_create_cq_prov_attr`].
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct verbs_create_cq_prov_attr_buffer {
    pub length: u64,
    pub u: verbs_create_cq_prov_attr_u,
}

/// `struct verbs_create_cq_prov_attr` (driver.h, v59+): a CQ buffer the
/// provider supplies; the C librxe passes NULL (so does this provider).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct verbs_create_cq_prov_attr {
    pub buffer: verbs_create_cq_prov_attr_buffer,
}

/// The prototypes, from driver.h, of the imported functions whose signature
/// is not the one in [`super::private`] in every release (all return 0 or a
/// positive errno). Every other function the provider imports
/// (`_verbs_init_and_alloc_context`, `verbs_uninit_context`, `verbs_set_ops`,
/// `ibv_cmd_create_cq`, `_resize_cq`, `_destroy_cq`, `_req_notify_cq`,
/// `_create_qp`, `_modify_qp`, `_query_qp`, `_destroy_qp`, `_create_srq`,
/// `_create_srq_ex`, `_modify_srq`, `_query_srq`, `_destroy_srq`,
/// `_create_ah`, `_destroy_ah`, `_attach_mcast`, `_detach_mcast`) has the
/// same prototype from v44.0 to 65.0, exported under `IBVERBS_PRIVATE_<ABI>`.
/// `cmd`/`resp` are the DECLARE_CMD buffers; `driver` is a
/// `struct ibv_command_buffer *` (NULL for none).
#[allow(non_camel_case_types)]
pub(crate) mod proto {
    use super::*;

    /// `verbs_register_driver_<ABI>(const struct verbs_device_ops *)`, every release.
    pub(crate) type verbs_register_driver = unsafe extern "C" fn(*const verbs_device_ops);

    /// `ibv_cmd_create_cq_ex2` of v53.0-v58 (ABI 34 from v53, ABI 57): absent before v53.
    pub(crate) type ibv_cmd_create_cq_ex2_53 = unsafe extern "C" fn(
        context: *mut ibv_context, cq_attr: *const ibv_cq_init_attr_ex, cq: *mut verbs_cq,
        cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize, cmd_flags: u32,
        driver: *mut c_void,
    ) -> c_int;

    /// `ibv_cmd_create_cq_ex` of v59+ (ABI 59, 64, 65): `prov_attr` inserted
    /// before `cq` (NULL: libibverbs allocates the CQ buffer as before).
    pub(crate) type ibv_cmd_create_cq_ex_59 = unsafe extern "C" fn(
        context: *mut ibv_context, cq_attr: *const ibv_cq_init_attr_ex,
        prov_attr: *mut verbs_create_cq_prov_attr, cq: *mut verbs_cq,
        cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize, cmd_flags: u32,
    ) -> c_int;

    /// `ibv_cmd_create_cq_ex2` of v59+: `prov_attr` inserted before `cq`.
    pub(crate) type ibv_cmd_create_cq_ex2_59 = unsafe extern "C" fn(
        context: *mut ibv_context, cq_attr: *const ibv_cq_init_attr_ex,
        prov_attr: *mut verbs_create_cq_prov_attr, cq: *mut verbs_cq,
        cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize, cmd_flags: u32,
        driver: *mut c_void,
    ) -> c_int;

    /// `ibv_cmd_create_qp_ex2` of v64+ (ABI 64, 65): `driver` appended. Its
    /// `verbs_qp` is the v45+ one in every release after 44.
    pub(crate) type ibv_cmd_create_qp_ex2_64 = unsafe extern "C" fn(
        context: *mut ibv_context, qp: *mut verbs_qp_45, qp_attr: *mut ibv_qp_init_attr_ex,
        cmd: *mut c_void, cmd_size: usize, resp: *mut c_void, resp_size: usize,
        driver: *mut c_void,
    ) -> c_int;

    /// `ibv_cmd_get_context` of v57+ (not called by this provider, which
    /// sends GET_CONTEXT itself): `fd_arr` inserted before `resp`. `context`
    /// is the start of the release's verbs_context.
    pub(crate) type ibv_cmd_get_context_57 = unsafe extern "C" fn(
        context: *mut c_void, cmd: *mut c_void, cmd_size: usize, fd_arr: *mut ibv_fd_arr,
        resp: *mut c_void, resp_size: usize,
    ) -> c_int;
}

/// One private ABI: the register function a provider must call and the
/// symbol version node all of libibverbs' private symbols are exported under.
pub(crate) struct PrivateAbi {
    pub number: u32,
    /// The rdma-core releases that have it.
    pub releases: &'static str,
    pub register: &'static CStr,
    pub node: &'static CStr,
    /// The suffix libibverbs appends to a provider's path or name.
    pub suffix: &'static CStr,
}

/// Every private ABI from rdma-core 34 to 65 (`IBVERBS_PABI_VERSION` in
/// CMakeLists.txt at each tag).
pub(crate) const PRIVATE_ABIS: [PrivateAbi; 5] = [
    PrivateAbi { number: 34, releases: "v34-v56", register: c"verbs_register_driver_34", node: c"IBVERBS_PRIVATE_34", suffix: c"-rdmav34.so" },
    PrivateAbi { number: 57, releases: "v57-v58", register: c"verbs_register_driver_57", node: c"IBVERBS_PRIVATE_57", suffix: c"-rdmav57.so" },
    PrivateAbi { number: 59, releases: "v59-v63", register: c"verbs_register_driver_59", node: c"IBVERBS_PRIVATE_59", suffix: c"-rdmav59.so" },
    PrivateAbi { number: 64, releases: "v64", register: c"verbs_register_driver_64", node: c"IBVERBS_PRIVATE_64", suffix: c"-rdmav64.so" },
    PrivateAbi { number: 65, releases: "65.0", register: c"verbs_register_driver_65", node: c"IBVERBS_PRIVATE_65", suffix: c"-rdmav65.so" },
];

/// The public symbol and version node that tell v62-v63's ABI 59 layout
/// ([`verbs_context_ops_62`], [`verbs_context_62`]) from v59-v61's: exported
/// from v62.0 on (with `ibv_dm_export_dmabuf_fd`), absent in v59.0-v61.x.
/// libibverbs' later nodes: IBVERBS_1.15 (v59+: ibv_reg_mr_ex,
/// ibv_alloc_dmah, ibv_dealloc_dmah), IBVERBS_1.17 (v64+: ibv_alloc_buf),
/// IBVERBS_1.18 (65+: ibv_create_comp_cntr and the other counter verbs).
pub(crate) const ABI59_V62_MARKER: (&CStr, &CStr) = (c"ibv_query_port_speed", c"IBVERBS_1.16");

/// Sizes and offsets printed by the probes; the ops tables are checked where
/// `ops_layout!` defines them.
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    // The v44.0 verbs_context every later one ends with.
    assert!(size_of::<verbs_context>() == 648);
    assert!(offset_of!(verbs_context, sz) == 312);
    assert!(offset_of!(verbs_context, context) == 320);

    assert!(size_of::<verbs_context_59>() == 672);
    assert!(offset_of!(verbs_context_59, reg_mr_ex) == 0);
    assert!(offset_of!(verbs_context_59, dealloc_dmah) == 8);
    assert!(offset_of!(verbs_context_59, alloc_dmah) == 16);
    assert!(offset_of!(verbs_context_59, v44) == 24);
    assert!(offset_of!(verbs_context_59, v44) + offset_of!(verbs_context, query_port) == 24);
    assert!(offset_of!(verbs_context_59, v44) + offset_of!(verbs_context, sz) == 336);
    assert!(offset_of!(verbs_context_59, v44) + offset_of!(verbs_context, context) == 344);

    assert!(size_of::<verbs_context_62>() == 680);
    assert!(offset_of!(verbs_context_62, dm_export_dmabuf_fd) == 0);
    assert!(offset_of!(verbs_context_62, reg_mr_ex) == 8);
    assert!(offset_of!(verbs_context_62, dealloc_dmah) == 16);
    assert!(offset_of!(verbs_context_62, alloc_dmah) == 24);
    assert!(offset_of!(verbs_context_62, v44) + offset_of!(verbs_context, query_port) == 32);
    assert!(offset_of!(verbs_context_62, v44) + offset_of!(verbs_context, sz) == 344);
    assert!(offset_of!(verbs_context_62, v44) + offset_of!(verbs_context, context) == 352);

    assert!(size_of::<verbs_context_64>() == 696);
    assert!(offset_of!(verbs_context_64, free_buf) == 0);
    assert!(offset_of!(verbs_context_64, alloc_buf) == 8);
    assert!(offset_of!(verbs_context_64, dm_export_dmabuf_fd) == 16);
    assert!(offset_of!(verbs_context_64, reg_mr_ex) == 24);
    assert!(offset_of!(verbs_context_64, dealloc_dmah) == 32);
    assert!(offset_of!(verbs_context_64, alloc_dmah) == 40);
    assert!(offset_of!(verbs_context_64, v44) + offset_of!(verbs_context, query_port) == 48);
    assert!(offset_of!(verbs_context_64, v44) + offset_of!(verbs_context, sz) == 360);
    assert!(offset_of!(verbs_context_64, v44) + offset_of!(verbs_context, context) == 368);

    assert!(size_of::<ibv_qp_ex>() == 352);
    assert!(size_of::<ibv_qp_ex_45>() == 360);
    assert!(offset_of!(ibv_qp_ex_45, wr_flush) == 352);
    assert!(size_of::<verbs_qp_45>() == 376);
    assert!(offset_of!(verbs_qp_45, qp_ex) == 0);
    assert!(offset_of!(verbs_qp_45, comp_mask) == 360);
    assert!(offset_of!(verbs_qp_45, xrcd) == 368);

    assert!(size_of::<ibv_port_attr>() == 52);
    assert!(size_of::<ibv_port_attr_49>() == 56);
    assert!(offset_of!(ibv_port_attr_49, active_speed_ex) == 52);

    assert!(size_of::<ibv_fd_arr>() == 16);
    assert!(offset_of!(ibv_fd_arr, count) == 8);

    assert!(size_of::<ibv_dmah>() == 8);
    assert!(size_of::<verbs_dmah>() == 16);
    assert!(offset_of!(verbs_dmah, handle) == 8);
    assert!(size_of::<ibv_dmah_init_attr>() == 12);
    assert!(align_of::<ibv_dmah_init_attr>() == 4);
    assert!(offset_of!(ibv_dmah_init_attr, cpu_id) == 4);
    assert!(offset_of!(ibv_dmah_init_attr, ph) == 8);
    assert!(offset_of!(ibv_dmah_init_attr, tph_mem_type) == 9);

    assert!(size_of::<ibv_mr_init_attr>() == 72);
    assert!(offset_of!(ibv_mr_init_attr, access) == 8);
    assert!(offset_of!(ibv_mr_init_attr, comp_mask) == 16);
    assert!(offset_of!(ibv_mr_init_attr, iova) == 24);
    assert!(offset_of!(ibv_mr_init_attr, addr) == 32);
    assert!(offset_of!(ibv_mr_init_attr, fd) == 40);
    assert!(offset_of!(ibv_mr_init_attr, fd_offset) == 48);
    assert!(offset_of!(ibv_mr_init_attr, dmah) == 56);
    assert!(offset_of!(ibv_mr_init_attr, buf) == 64);

    assert!(size_of::<ibv_buf>() == 32);
    assert!(offset_of!(ibv_buf, size) == 8);
    assert!(offset_of!(ibv_buf, pd) == 16);
    assert!(offset_of!(ibv_buf, dmabuf_fd) == 24);

    assert!(size_of::<ibv_comp_cntr>() == 16);
    assert!(offset_of!(ibv_comp_cntr, handle) == 8);
    assert!(size_of::<ibv_comp_cntr_caps>() == 16);
    assert!(offset_of!(ibv_comp_cntr_caps, max_counters) == 8);
    assert!(offset_of!(ibv_comp_cntr_caps, supported_qp_attach_ops) == 12);
    assert!(size_of::<ibv_comp_cntr_init_attr>() == 12);
    assert!(offset_of!(ibv_comp_cntr_init_attr, type_) == 4);
    assert!(offset_of!(ibv_comp_cntr_init_attr, flags) == 8);
    assert!(size_of::<ibv_qp_attach_comp_cntr_attr>() == 8);
    assert!(offset_of!(ibv_qp_attach_comp_cntr_attr, op_mask) == 4);

    assert!(size_of::<verbs_create_cq_prov_attr>() == 24);
    assert!(offset_of!(verbs_create_cq_prov_attr_buffer, length) == 0);
    assert!(offset_of!(verbs_create_cq_prov_attr_buffer, u) == 8);
    assert!(offset_of!(verbs_create_cq_prov_attr_dmabuf, fd) == 8);
};
