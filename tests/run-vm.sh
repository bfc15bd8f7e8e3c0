#!/bin/bash
# Boots Debian's kernel once under qemu (virtme-ng): the host's newest
# /boot/vmlinuz-*-amd64, or $RXE_RS_KERNEL if set. Brings up rxe0 on the
# VM's isolated NIC and runs the named guest suites (the functions
# <suite>_suite in tests/guest/*.sh) through the stock librxe and ours.
# Results land in <out dir>.
# Every C program under tests/programs/, tests/edge/, tests/safety/,
# tests/stress/ and tests/load/ is built first into target/vmtest/bin/<name>
# (a new .c file there needs no edit here).
# usage: [RXE_RS_KERNEL=<vmlinuz>] tests/run-vm.sh <out dir> <suite>...
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1
shift
bin=$repo/target/vmtest/bin
[ -e "$repo/target/release/librxe_rs.so" ] || { echo "target/release/librxe_rs.so is missing: run cargo build --release" >&2; exit 1; }
rm -rf "$bin" && mkdir -p "$bin"
shopt -s nullglob
for src in "$repo"/tests/programs/*.c "$repo"/tests/edge/*.c "$repo"/tests/safety/*.c "$repo"/tests/stress/*.c "$repo"/tests/load/*.c; do
	name=$(basename "$src" .c)
	[ ! -e "$bin/$name" ] || { echo "two test programs are named $name: rename one ($src)" >&2; exit 1; }
	gcc -O2 -Wall -o "$bin/$name" "$src" -libverbs -lrdmacm -lpthread
done
shopt -u nullglob
rm -rf "$out" && mkdir -p "$out"
# RXE_RS_KERNEL: another kernel's vmlinuz (e.g. one tests/kernels/fetch.sh
# unpacked); virtme-ng finds its modules beside it (tests/kernels/fetch.sh).
kernel=${RXE_RS_KERNEL:-$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)}
[ -f "$kernel" ] || { echo "no kernel image $kernel" >&2; exit 1; }
# No KVM for this guest: software emulation, kept at 2 CPUs and 4 GiB.
# A kernel that panics while booting, before the guest ran anything of ours,
# is booted once more: under emulation 6.12 now and then hits an int3 oops
# when it patches its own code (sched_clock going stable). The first boot's
# console is kept as vm.log.boot1 and boot-retries.txt says so.
for boot in 1 2; do
	timeout 4800 vng --run "$kernel" --verbose --disable-kvm --memory 4G --cpus 2 --network loop --no-dhcp \
		--rwdir "$out" --exec "bash $repo/tests/guest/main.sh $repo $out $bin $*" > "$out/vm.log" 2>&1 || true
	[ ! -e "$out/setup.txt" ] && [ "$boot" = 1 ] && grep -q 'Kernel panic' "$out/vm.log" || break
	mv "$out/vm.log" "$out/vm.log.boot$boot"
	echo "boot $boot: the kernel panicked before the guest started; booting again" | tee -a "$out/boot-retries.txt" >&2
done
if [ "$(cat "$out/finished" 2>/dev/null)" != ok ]; then
	echo "the VM run did not finish; last lines of $out/vm.log:" >&2
	tail -20 "$out/vm.log" >&2
	[ ! -s "$out/setup.txt" ] || { echo "--- $out/setup.txt:" >&2; cat "$out/setup.txt" >&2; }
	exit 1
fi
