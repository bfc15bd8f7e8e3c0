#!/bin/bash
# The main job: build the provider, then in a VM with the kernel's rxe, run a
# small verbs program through it that registers memory of several sizes,
# prints handle/lkey/rkey, and has one registration refused, with the reason
# our provider logs (VERBS_LOG_LEVEL=1).
set -eu
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release
out=$PWD/target/demo
bash tests/run-vm.sh "$out" demo
cat "$out/demo.txt"
