//! rxe_rs: a drop-in replacement, in Rust, for librxe, the rdma-core provider
//! that libibverbs loads for Soft-RoCE (the kernel's rdma_rxe devices).
//!
//! Layers, bottom up:
//! - [`abi`]: the C structs shared with the kernel (bindgen) and with
//!   libibverbs (public via bindgen, private written by hand and layout-tested);
//! - [`cmd`]: uverbs commands written to the context's command fd, as `Result`s;
//! - [`queue`]: the rings shared with the kernel; [`wqe`]: the entries we write there;
//! - one module per verbs object: [`device`], [`context`], [`pd`], [`mr`] (and
//!   memory windows), [`cq`], [`qp`], [`srq`], [`ah`];
//! - [`ffi`]: the extern "C" entry points, which never let a panic reach C.

pub mod abi;
pub mod ah;
pub mod cmd;
pub mod context;
pub mod cq;
pub mod device;
pub mod ffi;
pub mod log;
pub mod mr;
pub mod pd;
pub mod qp;
pub mod queue;
pub mod srq;
pub mod uverbs_ioctl;
pub mod wqe;

/// Registers the provider with libibverbs when it dlopens us, as
/// rdma-core's PROVIDER_DRIVER macro does for C providers.
#[cfg_attr(test, allow(dead_code))]
extern "C" fn register_provider() {
    // SAFETY: DEVICE_OPS is 'static and laid out as libibverbs 44 expects.
    unsafe { abi::private::verbs_register_driver_34(&device::DEVICE_OPS.0) };
}

// Not in unit-test binaries: they link libibverbs but are not providers.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static REGISTER_PROVIDER: extern "C" fn() = register_provider;
