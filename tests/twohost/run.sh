#!/bin/bash
# Two hosts on one wire: boots Debian's kernel twice through
# `rxe-rs sandbox --hosts 2` (tools/rxe-rs, the release build: virtme-ng
# and qemu), each VM with one NIC, the two NICs joined by a qemu socket
# netdev over TCP on 127.0.0.1 in a network namespace of the sandbox's own
# (nothing else is on that wire), rxe0 on each, and runs
# tests/twohost/guest.sh in both: servers on host a (192.0.2.1), clients
# on host b (192.0.2.2), through every pairing of the stock librxe and ours.
# Builds nothing: the provider is target/release/librxe_rs.so.
# usage: tests/twohost/run.sh <out dir>
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
for f in librxe_rs.so rxe-rs; do
	[ -e "$repo/target/release/$f" ] || { echo "target/release/$f is missing: run cargo build --release" >&2; exit 1; }
done
rm -rf "$out" && mkdir -p "$out/log" "$out/sync" "$out/bin"
# Absolute: the sandbox runs in it, and the guest is given paths in it.
out=$(cd "$out" && pwd)
# The launcher the guests' only() runs (tests/guest/common.sh).
gcc -O2 -Wall -o "$out/bin/only" "$repo/tests/programs/only.c"
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)

# The wire is a TCP connection between the two qemus (the sandbox's
# --hosts 2): over UDP the host dropped frames whenever the receiving VM
# fell behind (its socket buffer overflowed), and the 6.1 rxe then failed
# ib_write_bw after retransmitting (remote invalid request, through the
# stock librxe too); TCP loses nothing. The sandbox turns on quickack on
# the namespace's route to 127.0.0.1: with qemu's Nagle and the peer's
# delayed acknowledgements rc_pingpong took 50 ms an iteration.
# Software emulation here, 1 CPU and 2 GiB each (the machine has 2 cores;
# with 2 CPUs each, measured once, the run took twice as long). Each VM's
# console goes to vm-<a|b>.log, the sandbox's own output to sandbox.log.
echo "wire: tcp 127.0.0.1:10000 in a private network namespace (a listens, 52:54:00:00:02:01; b connects, 52:54:00:00:02:02)" > "$out/wire.txt"
t0=$SECONDS
# The sandbox passes the caller's environment on. Under `cargo test`
# that holds cargo's LD_LIBRARY_PATH (its own target and toolchain
# directories), which every program in the guest would then search over
# 9p: measured, 733 ms a program start instead of 60 under emulation,
# and the suites three times slower.
unset LD_LIBRARY_PATH
(cd "$out" && "$repo/target/release/rxe-rs" sandbox --hosts 2 --kernel "$kernel" --memory 2G --cpus 1 --timeout 900 --verbose \
	--provider "$repo/driver-config/librxe_rs" --console "$out/vm-%h.log" \
	-- sh -c 'exec bash "$0" "$RXE_RS_HOST" "$1" "$2"' "$repo/tests/twohost/guest.sh" "$repo" "$out") > "$out/sandbox.log" 2>&1 || true
echo "seconds=$((SECONDS - t0))" >> "$out/wire.txt"
rc=0
for role in a b; do
	if [ "$(cat "$out/$role/finished" 2> /dev/null)" != ok ]; then
		echo "host $role did not finish; last lines of $out/vm-$role.log and $out/sandbox.log:" >&2
		tail -20 "$out/vm-$role.log" >&2
		tail -5 "$out/sandbox.log" >&2
		[ ! -s "$out/$role/setup.txt" ] || { echo "--- $out/$role/setup.txt:" >&2; cat "$out/$role/setup.txt" >&2; }
		rc=1
	fi
done
exit $rc
