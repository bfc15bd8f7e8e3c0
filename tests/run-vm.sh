#!/bin/bash
# Boots Debian's kernel once through `rxe-rs sandbox` (tools/rxe-rs, the
# release build: virtme-ng and qemu): the host's newest
# /boot/vmlinuz-*-amd64, or $RXE_RS_KERNEL if set. The sandbox brings up
# rxe0 on the VM's isolated NIC; the named guest suites (the functions
# <suite>_suite in tests/guest/*.sh) run there through the stock librxe and
# ours. Results land in <out dir>; the kernel's console in <out dir>/vm.log,
# the sandbox's own output in <out dir>/sandbox.log.
# Every C program under tests/programs/, tests/edge/, tests/safety/,
# tests/stress/, tests/load/ and tests/faults/ is built first into target/vmtest/bin/<name>
# (a new .c file there needs no edit here).
# usage: [RXE_RS_KERNEL=<vmlinuz>] tests/run-vm.sh <out dir> <suite>...
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1
shift
bin=$repo/target/vmtest/bin
for f in librxe_rs.so rxe-rs; do
	[ -e "$repo/target/release/$f" ] || { echo "target/release/$f is missing: run cargo build --release" >&2; exit 1; }
done
rm -rf "$bin" && mkdir -p "$bin"
shopt -s nullglob
for src in "$repo"/tests/programs/*.c "$repo"/tests/edge/*.c "$repo"/tests/safety/*.c "$repo"/tests/stress/*.c "$repo"/tests/load/*.c "$repo"/tests/faults/*.c; do
	name=$(basename "$src" .c)
	[ ! -e "$bin/$name" ] || { echo "two test programs are named $name: rename one ($src)" >&2; exit 1; }
	gcc -O2 -Wall -o "$bin/$name" "$src" -libverbs -lrdmacm -lpthread
done
shopt -u nullglob
rm -rf "$out" && mkdir -p "$out"
# Absolute: the sandbox runs in it, and the guest is given paths in it.
out=$(cd "$out" && pwd)
# RXE_RS_KERNEL: another kernel's vmlinuz (e.g. one tests/kernels/fetch.sh
# unpacked); virtme-ng finds its modules beside it (tests/kernels/fetch.sh).
kernel=${RXE_RS_KERNEL:-$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)}
[ -f "$kernel" ] || { echo "no kernel image $kernel" >&2; exit 1; }
# Software emulation here (the sandbox uses KVM only where qemu really
# runs under it), kept at 2 CPUs and 4 GiB. The sandbox boots once more a
# kernel that panics before the guest ran anything of ours (under emulation
# 6.12 now and then hits an int3 oops when it patches its own code,
# sched_clock going stable), keeping the first boot's console as
# vm.log.boot1; boot-retries.txt says so. The same patching later, when
# the clocksource watchdog marked the TSC unstable minutes in, panicked
# 7.3's guest in the middle of the suites: under emulation the sandbox
# boots with tsc=reliable, so that it does not happen. The suites run in <out dir>, the
# only host directory they write to.
# The sandbox passes the caller's environment on. Under `cargo test`
# that holds cargo's LD_LIBRARY_PATH (its own target and toolchain
# directories), which every program in the guest would then search over
# 9p: measured, 733 ms a program start instead of 60 under emulation,
# and the suites three times slower.
unset LD_LIBRARY_PATH
run_suites() {
	(cd "$out" && "$repo/target/release/rxe-rs" sandbox --kernel "$kernel" --memory 4G --cpus 2 --timeout 4800 --verbose \
		--provider "$repo/driver-config/librxe_rs" --console "$out/vm.log" \
		-- bash "$repo/tests/guest/main.sh" "$repo" "$out" "$bin" "$@") > "$out/sandbox.log" 2>&1 || true
	if [ -e "$out/vm.log.boot1" ]; then
		echo "boot 1: the kernel panicked before the guest started; booting again" | tee -a "$out/boot-retries.txt" >&2
	fi
}

# The guest kernel's oops, from its first line to the panic, when the
# console has one whose code (the faulting function and the call trace)
# lies outside the RDMA stack; nothing when there is none or it names
# RDMA code. Emulation here (qemu 7.2's TCG) has, rarely and at any time,
# crashed Debian's 6.12 and 7.x kernels in unrelated code: a double fault
# in the slab allocator during an execve over 9p, with the NIC's queue
# stalled for 25 s before it.
unrelated_oops() {
	local oops
	oops=$(sed -n '/\(Oops:\|BUG:\|general protection fault\|traps: PANIC\)/,/Kernel panic/p' "$1" | grep -v 'Modules linked in')
	[ -n "$oops" ] || return 0
	if echo "$oops" | grep -Eq '\[(rdma_rxe|ib_uverbs|ib_core|rdma_ucm|rdma_cm|ib_cm|iw_cm)\]|rxe_|ib_uverbs|ib_core|rdma_'; then
		return 0
	fi
	echo "$oops"
}

run_suites "$@"
if [ "$(cat "$out/finished" 2>/dev/null)" != ok ] && oops=$(unrelated_oops "$out/vm.log") && [ -n "$oops" ]; then
	# Booted once more, from a clean results directory, keeping the
	# first console; a second crash, or one in RDMA code, fails the run.
	keep=$(mktemp -d)
	mv "$out/vm.log" "$keep/vm.log.crashed"
	cp "$out/sandbox.log" "$keep/sandbox.log.crashed"
	rm -rf "$out" && mkdir -p "$out" && mv "$keep"/* "$out"/ && rmdir "$keep"
	{
		echo "the guest kernel crashed in code outside the RDMA stack (vm.log.crashed); booting again:"
		echo "$oops" | grep -E 'Oops:|BUG:|general protection|traps: PANIC|RIP: 0010' | head -3
	} | tee -a "$out/boot-retries.txt" >&2
	run_suites "$@"
fi
if [ "$(cat "$out/finished" 2>/dev/null)" != ok ]; then
	echo "the VM run did not finish; last lines of $out/vm.log and $out/sandbox.log:" >&2
	tail -20 "$out/vm.log" >&2
	tail -5 "$out/sandbox.log" >&2
	[ ! -s "$out/setup.txt" ] || { echo "--- $out/setup.txt:" >&2; cat "$out/setup.txt" >&2; }
	exit 1
fi
