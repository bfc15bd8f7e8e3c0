#!/bin/bash
# Two hosts on one wire: boots Debian's kernel twice under qemu (virtme-ng),
# each VM with one NIC, the two NICs joined by a qemu socket netdev over TCP
# on 127.0.0.1 in a private network namespace (nothing else is on that
# wire), and runs tests/twohost/guest.sh in both: rxe0 on each NIC, servers
# on host a (192.0.2.1), clients on host b (192.0.2.2), through every
# pairing of the stock librxe and ours.
# Builds nothing: the provider is target/release/librxe_rs.so.
# usage: tests/twohost/run.sh <out dir>
set -eu
# The wire lives in a network namespace of this run's own, where 127.0.0.1
# is private to it: no port can clash with anything else on the machine,
# and nothing outside sees it.
if [ -z "${RXE_RS_TWOHOST_NETNS:-}" ]; then
	exec env RXE_RS_TWOHOST_NETNS=1 unshare --net bash "$0" "$@"
fi
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
[ -e "$repo/target/release/librxe_rs.so" ] || { echo "target/release/librxe_rs.so is missing: run cargo build --release" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out/log" "$out/sync"
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)

# The wire is a TCP connection between the two qemus: over UDP the host
# dropped frames whenever the receiving VM fell behind (its socket buffer
# overflowed), and the 6.1 rxe then failed ib_write_bw after retransmitting
# (remote invalid request, through the stock librxe too); TCP loses
# nothing. qemu leaves Nagle on, and the peer's delayed acknowledgements
# held every message of several frames for about 40 ms (rc_pingpong took
# 50 ms an iteration, with rxe retransmitting): quickack on the namespace's
# route to 127.0.0.1 removes that.
ip link set lo up
ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1
port=10000

# boot <role> <netdev> <mac>: one VM in the background.
# No KVM: software emulation, 1 CPU and 2 GiB each (the machine has 2
# cores; with 2 CPUs each, measured once, the run took twice as long).
boot() {
	timeout 900 vng --run "$kernel" --disable-kvm --memory 2G --cpus 1 --name "twohost-$1" --no-dhcp \
		--rwdir "$out" --qemu-opts="-netdev $2 -device virtio-net-pci,netdev=wire,mac=$3" \
		--exec "bash $repo/tests/twohost/guest.sh $1 $repo $out" > "$out/vm-$1.log" 2>&1
}
echo "wire: tcp 127.0.0.1:$port in a private network namespace (a listens, 52:54:00:00:02:01; b connects, 52:54:00:00:02:02)" > "$out/wire.txt"
t0=$SECONDS
boot a "socket,id=wire,listen=127.0.0.1:$port" 52:54:00:00:02:01 &
pid_a=$!
# The connecting end needs the listening one up first.
for _ in $(seq 300); do
	ss -Hltn "sport = :$port" | grep -q . && break
	sleep 0.2
done
boot b "socket,id=wire,connect=127.0.0.1:$port" 52:54:00:00:02:02 &
pid_b=$!
wait "$pid_a" "$pid_b" || true
echo "seconds=$((SECONDS - t0))" >> "$out/wire.txt"
rc=0
for role in a b; do
	if [ "$(cat "$out/$role/finished" 2> /dev/null)" != ok ]; then
		echo "host $role did not finish; last lines of $out/vm-$role.log:" >&2
		tail -20 "$out/vm-$role.log" >&2
		[ ! -s "$out/$role/setup.txt" ] || { echo "--- $out/$role/setup.txt:" >&2; cat "$out/$role/setup.txt" >&2; }
		rc=1
	fi
done
exit $rc
