#!/bin/bash
# Every test: unit tests, then the VM integration tests (tests/vm.rs), which
# boot Debian's kernel with rdma_rxe once and compare our provider with the
# stock librxe, then the package tests (tests/packaging/run.sh: .deb in a VM,
# .rpm in a scratch root). Run as root on Debian 12.
set -eu
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
cargo test --release -- --test-threads=8
bash tests/packaging/run.sh
