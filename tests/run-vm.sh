#!/bin/bash
# Boots Debian's kernel once under qemu (virtme-ng), brings up rxe0 on the
# VM's isolated NIC and runs the named guest suites (tests/guest/*.sh)
# through the stock librxe and ours. Results land in <out dir>.
# usage: tests/run-vm.sh <out dir> <suite>...
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$1
shift
bin=$repo/target/vmtest/bin
[ -e "$repo/target/release/librxe_rs.so" ] || { echo "target/release/librxe_rs.so is missing: run cargo build --release" >&2; exit 1; }
mkdir -p "$bin"
for prog in programs/mr_cases programs/reg_demo edge/edge; do
	gcc -O2 -Wall -o "$bin/$(basename $prog)" "$repo/tests/$prog.c" -libverbs -lpthread
done
for prog in bad_inputs privdrop; do gcc -O2 -Wall -Wextra -o "$bin/$prog" "$repo/tests/safety/$prog.c" -libverbs; done
rm -rf "$out" && mkdir -p "$out"
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
# No KVM here: software emulation with 2 CPUs, as checked in shared/notes.
timeout 4800 vng --run "$kernel" --disable-kvm --memory 4G --cpus 2 --network loop --no-dhcp \
	--rwdir "$out" --exec "bash $repo/tests/guest/main.sh $repo $out $bin $*" > "$out/vm.log" 2>&1 || true
if [ "$(cat "$out/finished" 2>/dev/null)" != ok ]; then
	echo "the VM run did not finish; last lines of $out/vm.log:" >&2
	tail -20 "$out/vm.log" >&2
	exit 1
fi
