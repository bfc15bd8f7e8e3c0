#!/bin/bash
# One of the two VMs of tests/twohost/run.sh (rxe-rs sandbox --hosts 2). Host a (192.0.2.1) runs every
# server, host b (192.0.2.2) every client, over the qemu wire between their
# NICs, case by case in one fixed order. The two meet through files in the
# shared results directory (the same host directory, 9p without a cache:
# what one guest writes the other sees at once), so the wire carries only
# the programs' own traffic.
# usage: guest.sh <a|b> <repo> <out dir>
#
# Results (in <out dir>):
#   cases.txt   CASE <name> <server>-<client> PASS|FAIL <seconds> rc=<srv>/<cli> attempts=<n> (written by a)
#   stats.<role>.txt  STAT <name> <pairing> attempt=<n> role=<role> rxe_sent=.. rxe_rcvd=..
#               rxe_retry=.. rxe_out_of_seq=.. nic_tx=.. nic_rx=.. peer_mac=.. ready_s|client_s=..
#   log/<name>.<pairing>.srv|cli  the programs' output; .rxe_rs.log beside it: ours' log
#   <role>/setup.txt, <role>/finished
set -u
ROLE=$1 REPO=$2 OUT=$3 BIN=$3/bin
# only(): each program sees one provider's driver file.
. "$REPO/tests/guest/common.sh"
SYNC=$OUT/sync
case $ROLE in
a) ME=192.0.2.1 PEER=192.0.2.2 ;;
b) ME=192.0.2.2 PEER=192.0.2.1 ;;
*) echo "role a or b" >&2; exit 2 ;;
esac
SRV_ADDR=192.0.2.1

# Bounds, so that nothing can hang the run: a server's life, a client's
# life, how long a server may take to get ready, and how long either side
# waits for the other's next step (longer than the other side's step).
T_SRV=150 T_CLI=120 T_READY=40 T_WAIT=240

PAIRINGS="stock-stock ours-ours ours-stock stock-ours"
NAMES="rc_pingpong ud_pingpong send_bw write_bw read_lat rping mckey"

# define <name>: sets SRV and CLI (the two commands) and READY (how the
# server shows it is ready: tcp = its out-of-band port 18515 listens, cm =
# an rdma_cm id listens, mckey = it printed that it is receiving).
define() {
	READY=tcp
	case $1 in
	rc_pingpong)
		SRV=(ibv_rc_pingpong -g 1 -d rxe0 -n 100)
		CLI=("${SRV[@]}" "$SRV_ADDR") ;;
	ud_pingpong)
		SRV=(ibv_ud_pingpong -g 1 -d rxe0 -n 100)
		CLI=("${SRV[@]}" "$SRV_ADDR") ;;
	send_bw)
		SRV=(ib_send_bw -d rxe0 -x 1 -n 100)
		CLI=("${SRV[@]}" "$SRV_ADDR") ;;
	write_bw)
		SRV=(ib_write_bw -d rxe0 -x 1 -n 100)
		CLI=("${SRV[@]}" "$SRV_ADDR") ;;
	read_lat)
		SRV=(ib_read_lat -d rxe0 -x 1 -n 100)
		CLI=("${SRV[@]}" "$SRV_ADDR") ;;
	rping)
		READY=cm
		SRV=(rping -s -a "$SRV_ADDR" -C 10 -v)
		CLI=(rping -c -a "$SRV_ADDR" -C 10 -v) ;;
	mckey)
		# The receiver must have joined before the sender sends; line
		# buffering lets its "receiving" line show that while it runs.
		READY=mckey
		SRV=(stdbuf -oL mckey -m 239.1.1.1 -b "$SRV_ADDR" -C 10)
		CLI=(mckey -m 239.1.1.1 -b "$ME" -s -C 10) ;;
	*) return 1 ;;
	esac
}

# rxe0 is the sandbox's: on this VM's one NIC, $ME/24, the multicast
# route mckey's group needs out of it included.
setup() {
	NIC=${RXE_RS_NETDEVS%% *}
	[ -n "$NIC" ] && [ -e /sys/class/infiniband/rxe0 ] || return 1
	mkdir -p /tmp/drv-stock /tmp/drv-ours "$OUT/log"
	echo "driver rxe" > /tmp/drv-stock/x.driver
	echo "driver $REPO/driver-config/librxe_rs" > /tmp/drv-ours/x.driver
	ip -br link show "$NIC"
	ip -br addr show "$NIC"
	rdma link show
	# Nothing has been sent yet: the peer is not known.
	echo "neigh_before=$(peer_mac)"
}

# wait_for <seconds> <command...>: polls until the command succeeds.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -lt "$end" ] || return 1
		sleep 0.2
	done
}

peer_mac() {
	local mac
	mac=$(ip neigh show "$PEER" dev "$NIC" | awk '/lladdr/ { print $3 }')
	echo "${mac:-none}"
}

# rxe0's packets sent and received (the RoCE packets only), its
# retransmissions after a timeout and the out-of-sequence requests it saw
# (lost packets), and the NIC's frames sent and received.
counters() {
	local hw=/sys/class/infiniband/rxe0/ports/1/hw_counters st=/sys/class/net/$NIC/statistics
	cat $hw/sent_pkts $hw/rcvd_pkts $hw/completer_retry_err $hw/out_of_seq_request "$st/tx_packets" "$st/rx_packets" | tr '\n' ' '
}

# record_stat <name> <pairing> <attempt> <counters before> <key=value>: the
# run's counter deltas and the peer's MAC as the neighbour table has it.
record_stat() {
	local b a
	read -ra b <<< "$4"
	read -ra a <<< "$(counters)"
	echo "STAT $1 $2 attempt=$3 role=$ROLE rxe_sent=$((a[0] - b[0])) rxe_rcvd=$((a[1] - b[1]))" \
		"rxe_retry=$((a[2] - b[2])) rxe_out_of_seq=$((a[3] - b[3])) nic_tx=$((a[4] - b[4])) nic_rx=$((a[5] - b[5]))" \
		"peer_mac=$(peer_mac) $5" >> "$OUT/stats.$ROLE.txt"
}

ready() {
	case $READY in
	tcp) tcp_listening 4853 ;;
	cm) cm_listening ;;
	mckey) output_has "$1" 'receiving data transfers' ;;
	esac
}

# The neighbour entries are flushed before every run, so each one resolves
# its peer's MAC anew (ARP) instead of finding the last run's.
fresh() {
	ip neigh flush dev "$NIC"
}

# serve <name> <pairing>: host a's side of one case. Only perftest's failed
# clock calibration ("Correlation coefficient r^2 ... < 0.9", see pair() in
# tests/guest/common.sh) is retried, up to 4 attempts; the verdict file
# tells b whether another attempt follows.
serve() {
	local name=$1 pairing=$2 sp=${2%-*} t0=$SECONDS t1 attempt id c0 spid src crc status
	local label=$name.$pairing
	define "$name"
	for attempt in 1 2 3 4; do
		id=$label.$attempt
		fresh
		c0=$(counters)
		only "$sp" "$label.srv" timeout "$T_SRV" "${SRV[@]}" > "$OUT/log/$label.srv" 2>&1 &
		spid=$!
		t1=$SECONDS
		wait_for "$T_READY" ready "$OUT/log/$label.srv" || echo "$id: server not ready after ${T_READY}s" >> "$OUT/a/setup.txt"
		t1=$((SECONDS - t1))
		echo go > "$SYNC/$id.ready"
		crc=none
		wait_for "$T_WAIT" test -s "$SYNC/$id.done" && crc=$(cat "$SYNC/$id.done")
		wait "$spid"
		src=$?
		record_stat "$name" "$pairing" "$attempt" "$c0" "ready_s=$t1"
		[ "$src" = 0 ] && [ "$crc" = 0 ]
		status=$?
		if [ "$status" != 0 ] && [ "$attempt" != 4 ] &&
			cat "$OUT/log/$label.srv" "$OUT/log/$label.cli" 2> /dev/null | grep -q 'Correlation coefficient r^2: .* < 0.9'; then
			cp "$OUT/log/$label.srv" "$OUT/log/$label.srv.attempt$attempt"
			cp "$OUT/log/$label.cli" "$OUT/log/$label.cli.attempt$attempt" 2> /dev/null
			echo retry > "$SYNC/$id.verdict"
			continue
		fi
		echo final > "$SYNC/$id.verdict"
		break
	done
	local verdict=PASS
	[ "$status" = 0 ] || verdict=FAIL
	echo "CASE $name $pairing $verdict $((SECONDS - t0)) rc=$src/$crc attempts=$attempt" >> "$CASES"
}

# run_client <name> <pairing>: host b's side of one case.
run_client() {
	local name=$1 pairing=$2 cp=${2#*-} t1 attempt id c0 crc
	local label=$name.$pairing
	define "$name"
	for attempt in 1 2 3 4; do
		id=$label.$attempt
		if ! wait_for "$T_WAIT" test -e "$SYNC/$id.ready"; then
			echo "$id: no server after ${T_WAIT}s" >> "$OUT/b/setup.txt"
			return
		fi
		fresh
		c0=$(counters)
		t1=$SECONDS
		only "$cp" "$label.cli" timeout "$T_CLI" "${CLI[@]}" > "$OUT/log/$label.cli" 2>&1
		crc=$?
		record_stat "$name" "$pairing" "$attempt" "$c0" "client_s=$((SECONDS - t1))"
		echo "$crc" > "$SYNC/$id.done"
		wait_for "$T_WAIT" test -s "$SYNC/$id.verdict" || return
		[ "$(cat "$SYNC/$id.verdict")" = retry ] || return
	done
}

mkdir -p "$OUT/$ROLE"
if ! setup > "$OUT/$ROLE/setup.txt" 2>&1; then
	echo "setup failed" >> "$OUT/$ROLE/setup.txt"
	echo setup-failed > "$OUT/$ROLE/finished"
	exit 1
fi
# Both hosts up before the first case (their boots take different times).
echo up > "$SYNC/$ROLE.up"
if ! wait_for "$T_WAIT" test -e "$SYNC/$([ "$ROLE" = a ] && echo b || echo a).up"; then
	echo "the other host did not come up" >> "$OUT/$ROLE/setup.txt"
	echo no-peer > "$OUT/$ROLE/finished"
	exit 1
fi
echo "start $(date +%s)" >> "$OUT/$ROLE/setup.txt"
for pairing in $PAIRINGS; do
	for name in $NAMES; do
		if [ "$ROLE" = a ]; then serve "$name" "$pairing"; else run_client "$name" "$pairing"; fi
	done
done
echo "end $(date +%s)" >> "$OUT/$ROLE/setup.txt"
{
	ip -s link show "$NIC"
	ip neigh show dev "$NIC"
	rdma statistic show link rxe0/1
} > "$OUT/$ROLE/final.txt" 2>&1
# Stay up until the other host is done: its last packets need this one.
echo done > "$SYNC/$ROLE.end"
wait_for "$T_WAIT" test -e "$SYNC/$([ "$ROLE" = a ] && echo b || echo a).end"
echo ok > "$OUT/$ROLE/finished"
