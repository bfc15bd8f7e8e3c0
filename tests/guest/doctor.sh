# `rxe-rs doctor` (tools/rxe-rs) on the healthy set-up setup_rxe made, then
# on one broken set-up per finding, each followed by the healthy set-up
# restored (checked by a healthy run at the end). Each run writes
# $OUT/doctor/<case>.txt (the text report), <case>.json (--json) and
# <case>.rc (the exit status of the text run); <case>.note says what was
# done, and anything the kernel refused. tests/vm/doctor.rs reads them.
# Where the doctor's fix is a bare command, the suite runs that command to
# restore the set-up (<case>.fix holds it), so the fix itself is tested.

DOCTOR_OURS=

# doctor_run <case> [env...]: the doctor twice (text, then --json), as
# root unless the caller wraps it, with ours served through RDMAV_DRIVERS
# unless the case says otherwise.
doctor_run() {
	local c=$1
	shift
	env "$@" "$REPO/target/release/rxe-rs" doctor > "$OUT/doctor/$c.txt" 2>&1
	echo $? > "$OUT/doctor/$c.rc"
	env "$@" "$REPO/target/release/rxe-rs" doctor --json > "$OUT/doctor/$c.json" 2> "$OUT/doctor/$c.json.err"
}

# doctor_fix <case> <check>: the first fix line the doctor gave for <check>.
doctor_fix() {
	awk -v c="$2" '$2 == c":" { want = 1; next } want && $1 == "fix:" { sub(/^ *fix: /, ""); print; exit } { want = 0 }' "$OUT/doctor/$1.txt"
}

# Waits (at most 30 s) for rxe0's port to be ACTIVE with its IPv4 GID.
doctor_settle() {
	local i
	for i in $(seq 60); do
		grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2> /dev/null &&
			grep -qi 'ffff:c000:0201' /sys/class/infiniband/rxe0/ports/1/gids/* 2> /dev/null && return 0
		sleep 0.5
	done
	return 1
}

doctor_suite() {
	mkdir -p "$OUT/doctor"
	DOCTOR_OURS="RDMAV_DRIVERS=$REPO/driver-config/librxe_rs"
	local d=$OUT/doctor fix

	# Healthy: as setup_rxe made it, ours served through RDMAV_DRIVERS.
	doctor_run healthy "$DOCTOR_OURS"

	# No rxe link; restored by the doctor's fix.
	rdma link delete rxe0 > "$d/no_link.note" 2>&1
	doctor_run no_link "$DOCTOR_OURS"
	fix=$(doctor_fix no_link link.none)
	echo "$fix" > "$d/no_link.fix"
	sh -c "$fix" >> "$d/no_link.note" 2>&1 || rdma link add rxe0 type rxe netdev "$NIC"
	chmod 666 /dev/infiniband/uverbs* 2> /dev/null
	doctor_settle || echo "rxe0 not back" >> "$d/no_link.note"

	# The link's netdev down; restored by the doctor's fix (then the
	# multicast route setup_rxe adds, which going down removed).
	ip link set "$NIC" down > "$d/netdev_down.note" 2>&1
	doctor_run netdev_down "$DOCTOR_OURS"
	fix=$(doctor_fix netdev_down netdev.up)
	echo "$fix" > "$d/netdev_down.fix"
	sh -c "$fix" >> "$d/netdev_down.note" 2>&1 || ip link set "$NIC" up
	ip route add 224.0.0.0/4 dev "$NIC" 2> /dev/null
	doctor_settle || echo "rxe0 not back" >> "$d/netdev_down.note"

	# The netdev without an address (its fix names a placeholder address:
	# setup_rxe's is put back).
	ip addr del 192.0.2.1/24 dev "$NIC" > "$d/no_address.note" 2>&1
	doctor_run no_address "$DOCTOR_OURS"
	doctor_fix no_address netdev.address > "$d/no_address.fix"
	ip addr add 192.0.2.1/24 dev "$NIC" >> "$d/no_address.note" 2>&1
	ip route add 224.0.0.0/4 dev "$NIC" 2> /dev/null
	doctor_settle || echo "rxe0 not back" >> "$d/no_address.note"

	# memlock 64 KiB, for a user without CAP_IPC_LOCK (root's capability
	# lets the kernel pin past any limit: as root the doctor says so).
	echo "ulimit -l 64, then nobody (setpriv)" > "$d/memlock.note"
	(
		ulimit -l 64
		doctor_run memlock_root "$DOCTOR_OURS"
		doctor_run memlock setpriv --reuid=65534 --regid=65534 --clear-groups env "$DOCTOR_OURS"
	)
	doctor_fix memlock memlock > "$d/memlock.fix"

	# The stock driver entry winning: no RDMAV_DRIVERS, and only the stock
	# `driver rxe` entry in /etc/libibverbs.d (setup_rxe's /tmp/drv-stock).
	echo "only /tmp/drv-stock as /etc/libibverbs.d, no RDMAV_DRIVERS" > "$d/stock_wins.note"
	unshare -m sh -c 'mount --bind /tmp/drv-stock /etc/libibverbs.d && exec "$@"' sh \
		bash -c ". $REPO/tests/guest/doctor.sh; OUT=$OUT REPO=$REPO; doctor_run stock_wins"
	doctor_fix stock_wins verbs.provider > "$d/stock_wins.fix"

	# rxe on lo, beside rxe0: the kernel may refuse it.
	if rdma link add rxe_lo type rxe netdev lo > "$d/loopback.note" 2>&1; then
		echo "rdma link add rxe_lo type rxe netdev lo: accepted" >> "$d/loopback.note"
		chmod 666 /dev/infiniband/uverbs* 2> /dev/null
		doctor_run loopback "$DOCTOR_OURS"
		doctor_fix loopback link.loopback > "$d/loopback.fix"
		rdma link delete rxe_lo >> "$d/loopback.note" 2>&1
	else
		echo "rdma link add rxe_lo type rxe netdev lo: refused (exit $?)" >> "$d/loopback.note"
		doctor_run loopback "$DOCTOR_OURS"
	fi

	# An nftables rule dropping UDP 4791; removed by the doctor's fix.
	{
		nft add table inet rxe_doctor &&
			nft add chain inet rxe_doctor input '{ type filter hook input priority 0; policy accept; }' &&
			nft add rule inet rxe_doctor input udp dport 4791 drop
	} > "$d/firewall.note" 2>&1 || echo "could not add the rule (exit $?)" >> "$d/firewall.note"
	nft -a list table inet rxe_doctor >> "$d/firewall.note" 2>&1
	doctor_run firewall "$DOCTOR_OURS"
	fix=$(doctor_fix firewall firewall.udp4791)
	echo "$fix" > "$d/firewall.fix"
	sh -c "$fix" >> "$d/firewall.note" 2>&1
	nft list table inet rxe_doctor >> "$d/firewall.note" 2>&1
	nft delete table inet rxe_doctor 2> /dev/null

	# Everything put back: healthy again.
	doctor_run restored "$DOCTOR_OURS"

	# The doctor passes rdma_cm when rdma_ucm is not loaded yet, because
	# librdmacm has the kernel load it: shown with an rping server.
	{
		echo "before=$([ -d /sys/module/rdma_ucm ] && echo loaded || echo absent)"
		timeout 3 rping -s -a 192.0.2.1 -p 7471 > /dev/null 2>&1
		echo "after_rping=$([ -d /sys/module/rdma_ucm ] && echo loaded || echo absent)"
	} > "$d/rdma_ucm.note"
}
