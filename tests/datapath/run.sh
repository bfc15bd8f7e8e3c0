#!/bin/bash
# The data-path comparison suite, host side: boots Debian's 6.1 kernel once
# under qemu (virtme-ng, software emulation), runs tests/datapath/guest.sh
# inside (every case through the stock librxe and through ours), then prints
# the side-by-side table and the pyverbs counts (tests/datapath/report.py).
#
# usage: tests/datapath/run.sh [out dir]        (default: target/datapath/out)
# env:   DATAPATH_SUITES="examples perftests rdmacm pyverbs"  (a subset, for quick runs)
#        DATAPATH_VM_TIMEOUT=2400  (seconds for the whole VM run)
#
# Exits non-zero when the VM did not finish, when ours fails a case (or a
# pyverbs test) that the stock librxe passes, or when a run was not served by
# the provider it names. Needs root, qemu, vng, Debian's kernel and a release
# build (cargo build --release).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/target/datapath/out}
lib=$repo/target/release/librxe_rs.so
if [ ! -e "$lib" ] || [ ! -e "$repo/driver-config/librxe_rs-rdmav34.so" ]; then
	echo "$lib is missing: run \`cargo build --release\` first" >&2
	exit 2
fi
for tool in vng qemu-system-x86_64; do
	command -v $tool > /dev/null || { echo "$tool is not installed (see /work/shared/notes/soft-roce-vm.md)" >&2; exit 2; }
done
kernel=$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || { echo "no Debian kernel in /boot (linux-image-amd64)" >&2; exit 2; }

rm -rf "$out" && mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
suites=${DATAPATH_SUITES:-examples perftests rdmacm pyverbs}
start=$SECONDS
echo "booting $kernel; results in $out" >&2
# No KVM: software emulation with 2 CPUs (shared/notes/soft-roce-vm.md).
timeout -k 30 "${DATAPATH_VM_TIMEOUT:-2400}" vng --run "$kernel" --disable-kvm --memory 4G --cpus 2 \
	--network loop --no-dhcp --rwdir "$out" \
	--exec "env DATAPATH_SUITES='$suites' bash $here/guest.sh $repo $out" > "$out/vm.log" 2>&1
vm_rc=$?
echo "VM exited ($vm_rc) after $((SECONDS - start)) s" >&2

/usr/bin/python3 "$here/report.py" "$out"
report_rc=$?
if [ "$(cat "$out/finished" 2>/dev/null)" != ok ]; then
	echo "the VM run did not finish (vng exit $vm_rc); last lines of $out/vm.log and progress:" >&2
	tail -20 "$out/vm.log" >&2
	tail -3 "$out/progress.txt" >&2 2>/dev/null
	exit 1
fi
exit $report_rc
