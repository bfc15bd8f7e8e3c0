#!/bin/bash
# Every test. Run as root on Debian 12.
#  0. clippy, with warnings as errors.
#  1. The hermetic tests (plain `cargo test`: no root, no VM, no network).
#  2. The VM integration tests (tests/vm.rs, behind the vm-tests feature),
#     which boot Debian's kernel with rdma_rxe once and compare our provider
#     with the stock librxe: under the host's rdma-core 44, and under
#     trixie's and sid's userspace, which tests/releases/fetch.sh unpacks
#     (cached) under target/releases/ first; then, one boot each, a subset
#     on Debian's 6.12 and 7.x kernels, which tests/kernels/fetch.sh unpacks
#     (cached) under target/kernels/. Every boot goes through `rxe-rs
#     sandbox` (tools/rxe-rs), which tests/vm/sandbox.rs tests as a user
#     runs it, with the README's examples.
#  3. The package tests (tests/packaging/run.sh: .deb in a VM, .rpm in a
#     scratch root).
set -eu
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
cargo clippy --release --all-targets --features vm-tests -- -D warnings
cargo test --release
bash tests/releases/fetch.sh
bash tests/kernels/fetch.sh
cargo test --release --features vm-tests --test vm -- --test-threads=8
bash tests/packaging/run.sh
