#!/bin/bash
# Runs inside the VM: the same benchmarks through the stock librxe and ours,
# interleaved round by round so drift in the emulated machine hits both alike.
# usage: guest.sh <repo> <bin dir> <out dir> <rounds> <parts>
# parts: any of icount (callgrind counts), mt (contention, reg_mr), time
# (micro.c, ib_send_lat, ib_write_bw); "all" for every one.
set -u
repo=$1 bin=$2 out=$3 rounds=$4 parts=${5:-all}
want() { [ "$parts" = all ] || [[ " $parts " == *" $1 "* ]]; }
modprobe rdma_rxe
nic=$(ls /sys/class/net | grep -v '^lo$' | head -1)
ip link set "$nic" up && ip addr add 192.0.2.1/24 dev "$nic"
rdma link add rxe0 type rxe netdev "$nic"
mkdir -p /tmp/drv-stock /tmp/drv-ours
echo "driver rxe" > /tmp/drv-stock/x.driver
echo "driver $repo/driver-config/librxe_rs" > /tmp/drv-ours/x.driver

# Runs "$@" with only provider $1's driver file visible to libibverbs.
only() { local p=$1; shift; unshare -m sh -c "mount --bind /tmp/drv-$p /etc/libibverbs.d && exec \"\$@\"" sh "$@"; }

pair() { # provider name server-args... -- client-args...
	local p=$1 name=$2; shift 2
	local srv=() cli=()
	while [ "$1" != -- ]; do srv+=("$1"); shift; done; shift
	cli=("$@")
	only "$p" timeout 120 "${srv[@]}" > "$out/$name.$p.srv" 2>&1 &
	sleep 2
	only "$p" timeout 120 "${cli[@]}" > "$out/$name.$p.cli" 2>&1
	wait
}

# Instructions per call: callgrind collects only inside icount.c's regions;
# LD_BIND_NOW keeps the dynamic linker's lazy binding out of them.
if want icount; then
	for p in stock ours; do
		mkdir -p "$out/cg"
		only "$p" env LD_BIND_NOW=1 timeout 1500 valgrind --tool=callgrind --collect-atstart=no \
			--callgrind-out-file="$out/cg/$p.%p" "$bin/icount" rxe0 1 "${ICOUNT_BATCHES:-8}" \
			> "$out/icount.$p" 2>&1
	done
fi
# One part at a time, the providers back to back, the order turned each
# round (stock first, then ours first): the emulated machine's speed drifts
# with the host's load, which then falls on both alike.
if want mt; then
	for r in $(seq 1 "$rounds"); do
		order="stock ours"
		[ $((r % 2)) = 0 ] && order="ours stock"
		for part in 1x1 2x1 4x1 8x1 1x2 2x2 4x2 8x2 reg; do
			for p in $order; do
				only "$p" timeout 600 "$bin/mt" rxe0 1 2 "$part" >> "$out/mt.$p.$r" 2>&1
			done
		done
	done
fi
if want time; then
	for r in $(seq 1 "$rounds"); do
		for p in stock ours; do
			only "$p" timeout 300 "$bin/micro" rxe0 1 > "$out/micro.$p.$r" 2>&1
			pair "$p" send_lat.$r ib_send_lat -d rxe0 -x 1 -n 2000 -- ib_send_lat -d rxe0 -x 1 -n 2000 localhost
			pair "$p" write_bw.$r ib_write_bw -d rxe0 -x 1 -n 3000 -- ib_write_bw -d rxe0 -x 1 -n 3000 localhost
		done
	done
fi
echo finished > "$out/finished"
