//! rxe_rs: a drop-in replacement, in Rust, for librxe, the rdma-core provider
//! that libibverbs loads for Soft-RoCE (the kernel's rdma_rxe devices).
//!
//! Layers, bottom up; each uses only the ones before it:
//! - `abi`: the C structs shared with the kernel (bindgen) and with
//!   libibverbs (public via bindgen, private written by hand, layout
//!   checked at build time);
//! - `cmd`: uverbs commands on the context's command fd, as `Result`s;
//! - `object`, `queue` (rings and their locks), `wqe` (work queue entries),
//!   `recv` (receive queues);
//! - one module per verbs object: `device`, `context`, `pd`, `mr` (and
//!   memory windows), `cq`, `qp`, `srq`, `ah`;
//! - `ffi`: every function table libibverbs reads and every extern "C"
//!   entry; the only place with C return conventions, errno and the panic
//!   guard.
//!
//! `log` (rdma-core's VERBS_LOG_LEVEL / VERBS_LOG_FILE) serves all layers.

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!(
    "rxe_rs knows libibverbs' private ABI and the rxe uapi layouts only for x86_64 Linux; \
     other targets need their layouts checked against rdma-core's driver.h first"
);

mod abi;
mod ah;
mod cmd;
mod context;
mod cq;
mod device;
mod fault;
mod fault_delay;
mod fault_events;
mod ffi;
mod log;
mod mr;
mod object;
mod pd;
mod qp;
mod queue;
mod recv;
mod srq;
mod uverbs_ioctl;
mod valgrind;
mod wqe;

#[cfg(test)]
mod datapath_tests;
#[cfg(test)]
mod icount_tests;
#[cfg(test)]
mod wqe_props;

/// Registers the provider with libibverbs when it dlopens us, as
/// rdma-core's PROVIDER_DRIVER macro does for C providers.
#[cfg_attr(test, allow(dead_code))]
extern "C" fn register_provider() {
    // A library constructor must not unwind or abort the host: a provider
    // that cannot serve this libibverbs says why and stays unregistered.
    let _ = std::panic::catch_unwind(|| {
        valgrind::detect();
        fault::init();
        if let Err(why) = abi::imports::register(&ffi::DEVICE_OPS.0) {
            log::init();
            if log::enabled(::log::Level::Error) {
                ::log::error!("not registered: {why}");
            } else {
                eprintln!("rxe_rs: not registered: {why}");
            }
        }
    });
}

// Not in unit-test binaries: they link libibverbs but are not providers.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static REGISTER_PROVIDER: extern "C" fn() = register_provider;
