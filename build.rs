//! Generates Rust bindings for the C types the provider shares with the kernel
//! and with libibverbs' public API, from the headers installed on this machine
//! (rdma-core 44's libibverbs-dev on Debian 12): the kernel uapi
//! (rdma/ib_user_verbs.h, rdma/rdma_user_rxe.h, the ioctl headers) and
//! public libibverbs (infiniband/verbs.h).
//! libibverbs' private driver ABI (driver.h) is not installed; provider/abi/private.rs
//! writes those structs by hand and tests their layout.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=provider/abi/wrapper.h");
    println!("cargo:rustc-link-lib=ibverbs");

    let bindings = bindgen::Builder::default()
        .header("provider/abi/wrapper.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_type("ibv_.*|verbs_context|_ibv_.*|ib_uverbs_.*|rxe_.*|mminfo")
        .allowlist_var("IB_USER_VERBS_.*|IBV_.*|RXE_.*|RDMA_VERBS_IOCTL|RDMA_IOCTL_MAGIC|UVERBS_.*")
        .allowlist_type("ib_uverbs_write_cmds|ib_uverbs_ex_write_cmds|rdma_driver_id")
        .allowlist_type("uverbs_.*|ib_uverbs_access_flags")
        // Values read from C may be any integer: never Rust enums for them.
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(true)
        .generate_comments(false)
        .generate()
        .expect("bindgen failed: are libibverbs-dev and libclang-dev installed?");

    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings.write_to_file(out).expect("writing bindings");
}
