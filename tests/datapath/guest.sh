#!/bin/bash
# The data-path comparison suite, run INSIDE the VM (as root) by
# tests/datapath/run.sh. Every case runs twice, back to back: once through
# the stock librxe, once through ours, each alone (a private mount of
# /etc/libibverbs.d holding a single driver file).
#
# usage: guest.sh <repo> <out dir>      (or REPO=... DATAPATH_OUT=... guest.sh)
#
# Writes, under <out dir>:
#   results.txt   CASE <name> <stock|ours> PASS|FAIL <seconds> srv=<rc> cli=<rc> served=<yes|no>
#                 DIAG <name> ours PASS|FAIL <seconds> ...   (a re-run at VERBS_LOG_LEVEL=4
#                 when ours failed where stock passed; the CASE line is the verdict)
#                 PYVERBS <stock|ours> exit=<rc> <seconds> served=<yes|no>
#   commands.txt  CMD <name> server: ... | client: ...
#   log/<name>.<p>.srv, .cli          server / client output
#   log/<name>.<p>.srv.vlog, .cli.vlog  VERBS_LOG_FILE of each process
#   pyverbs.<p>.txt, pyverbs.<p>.vlog  the pyverbs suite's output and verbs log
#   setup.txt, progress.txt, finished ("ok" when the whole suite ran)
# served=yes means: for ours, every process's verbs log has rxe_rs's
# "context opened by rxe_rs" line; for stock, no log mentions rxe_rs.
set -u
REPO=${1:-${REPO:?usage: guest.sh <repo> <out dir>}}
OUT=${2:-${DATAPATH_OUT:?usage: guest.sh <repo> <out dir>}}
RESULTS=$OUT/results.txt
LOG=$OUT/log
PROOF="context opened by rxe_rs"
SRV_TIMEOUT=${SRV_TIMEOUT:-180}   # per server process (s)
CLI_TIMEOUT=${CLI_TIMEOUT:-150}   # per client process (s)
READY_TIMEOUT=60                  # waiting for a server to listen (s)
PYVERBS_TIMEOUT=${PYVERBS_TIMEOUT:-1500}

mkdir -p "$LOG"
: > "$RESULTS"
: > "$OUT/commands.txt"
progress() { echo "$(date +%s) $*" >> "$OUT/progress.txt"; }

setup_rxe() {
	set -x
	modprobe rdma_rxe || return 1
	NIC=$(ls /sys/class/net | grep -v '^lo$' | head -1)
	[ -n "$NIC" ] || return 1
	ip link set "$NIC" up && ip addr add 192.0.2.1/24 dev "$NIC" || return 1
	# mckey resolves its multicast group through a route.
	ip route add 224.0.0.0/4 dev "$NIC" || true
	rdma link add rxe0 type rxe netdev "$NIC" || return 1
	rdma link show
	mkdir -p /tmp/drv-stock /tmp/drv-ours
	echo "driver rxe" > /tmp/drv-stock/x.driver
	echo "driver $REPO/driver-config/librxe_rs" > /tmp/drv-ours/x.driver
	ls -lL "$REPO/driver-config/librxe_rs-rdmav34.so" || return 1
	ibv_devinfo -d rxe0 -v | grep -E 'hca_id|state|GID\['
	# The link needs a moment before its IPv4 GID is usable.
	for _ in $(seq 30); do
		ibv_devinfo -d rxe0 -v | grep -q 'GID\[  1\]:.*::ffff:192.0.2.1' && break
		sleep 1
	done
	{ set +x; } 2>/dev/null
}

# only <stock|ours> <verbs log file> <log level> cmd...: runs cmd seeing only
# that provider's driver file.
only() {
	local p=$1 vlog=$2 level=$3
	shift 3
	unshare -m sh -c 'mount --bind "$1" /etc/libibverbs.d && shift && exec "$@"' sh "/tmp/drv-$p" \
		env VERBS_LOG_LEVEL="$level" VERBS_LOG_FILE="$vlog" "$@"
}

now_ds() { local t=${EPOCHREALTIME/./}; echo $((t / 100000)); }   # deciseconds
secs() { local d=$(($(now_ds) - $1)); printf '%d.%d' $((d / 10)) $((d % 10)); }

# served <p> <vlog>...: did the named provider (and only it) serve these runs?
served() {
	local p=$1 f
	shift
	for f in "$@"; do
		if [ "$p" = ours ]; then
			grep -q "$PROOF" "$f" 2>/dev/null || { echo no; return; }
		else
			! grep -q rxe_rs "$f" 2>/dev/null || { echo no; return; }
		fi
	done
	echo yes
}

# wait_ready <how> <server output> <server pid>: tcp:<port> (listening TCP
# socket), cm (a listening rdma_cm id), out:<text> (in the server's output).
wait_ready() {
	local how=$1 srvout=$2 spid=$3 i
	for ((i = 0; i < READY_TIMEOUT * 5; i++)); do
		kill -0 "$spid" 2>/dev/null || return 1
		case $how in
		tcp:*) ss -Hltn "sport = :${how#tcp:}" 2>/dev/null | grep -q . && break ;;
		cm) rdma res show cm_id 2>/dev/null | grep -q LISTEN && break ;;
		out:*) grep -q "${how#out:}" "$srvout" 2>/dev/null && break ;;
		esac
		sleep 0.2
	done
	sleep 0.5
}

# stop <pid> <seconds>: wait for a process to end, then TERM it (timeout
# passes the signal on) and KILL it if it must.
stop() {
	local pid=$1 grace=$2 i
	for ((i = 0; i < grace * 5; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	kill -TERM "$pid" 2>/dev/null
	sleep 2
	kill -KILL "$pid" 2>/dev/null
	return 0
}

# run_pair <p> <level> <tag> <ready>: runs $SRV in the background and then
# $CLI; sets RC_SRV, RC_CLI. Logs go to $LOG/<tag>.*
run_pair() {
	local p=$1 level=$2 tag=$3 ready=$4 base=$LOG/$3
	rm -f "$base".*
	only "$p" "$base.srv.vlog" "$level" timeout -k 5 "$SRV_TIMEOUT" stdbuf -oL -eL "${SRV[@]}" > "$base.srv" 2>&1 &
	local spid=$!
	wait_ready "$ready" "$base.srv" "$spid"
	only "$p" "$base.cli.vlog" "$level" timeout -k 5 "$CLI_TIMEOUT" stdbuf -oL -eL "${CLI[@]}" > "$base.cli" 2>&1
	RC_CLI=$?
	# A server whose client failed may wait forever: give it 15 s.
	if [ "$RC_CLI" = 0 ]; then stop "$spid" 60; else stop "$spid" 15; fi
	wait "$spid"
	RC_SRV=$?
}

# pair <name> <ready> [check:<cli regex>:<min count>] server... -- client...
# A case passes when server and client both exit 0 (and the client's output
# has at least <min count> lines matching <cli regex>, if given).
pair() {
	local name=$1 ready=$2 check=
	shift 2
	case $1 in check:*) check=${1#check:}; shift ;; esac
	SRV=() CLI=()
	while [ "$1" != -- ]; do SRV+=("$1"); shift; done
	shift
	CLI=("$@")
	echo "CMD $name server: ${SRV[*]} | client: ${CLI[*]}" >> "$OUT/commands.txt"
	progress "case $name"
	local p t0 verdict stock_verdict=
	for p in stock ours; do
		t0=$(now_ds)
		run_pair "$p" 3 "$name.$p" "$ready"
		verdict=PASS
		[ "$RC_SRV" = 0 ] && [ "$RC_CLI" = 0 ] || verdict=FAIL
		if [ -n "$check" ] && [ "$verdict" = PASS ]; then
			local n
			n=$(grep -cE "${check%:*}" "$LOG/$name.$p.cli")
			[ "$n" -ge "${check##*:}" ] || verdict=FAIL
		fi
		echo "CASE $name $p $verdict $(secs "$t0") srv=$RC_SRV cli=$RC_CLI served=$(served "$p" "$LOG/$name.$p.srv.vlog" "$LOG/$name.$p.cli.vlog")" >> "$RESULTS"
		[ "$p" = stock ] && stock_verdict=$verdict
	done
	# Ours failed where stock passed: run ours again, logging at debug level.
	if [ "$verdict" = FAIL ] && [ "$stock_verdict" = PASS ]; then
		t0=$(now_ds)
		run_pair ours 4 "$name.ours.diag" "$ready"
		verdict=PASS
		[ "$RC_SRV" = 0 ] && [ "$RC_CLI" = 0 ] || verdict=FAIL
		echo "DIAG $name ours $verdict $(secs "$t0") srv=$RC_SRV cli=$RC_CLI" >> "$RESULTS"
	fi
}

examples() {
	local t
	for t in rc uc ud srq; do
		pair "example_${t}_pingpong" tcp:18515 \
			ibv_${t}_pingpong -d rxe0 -g 1 -n 100 -- ibv_${t}_pingpong -d rxe0 -g 1 -n 100 localhost
	done
	pair example_rc_pingpong_events tcp:18515 \
		ibv_rc_pingpong -d rxe0 -g 1 -n 100 -e -- ibv_rc_pingpong -d rxe0 -g 1 -n 100 -e localhost
	# Messages of many MTU-sized packets.
	pair example_rc_pingpong_64k tcp:18515 \
		ibv_rc_pingpong -d rxe0 -g 1 -n 50 -s 65536 -- ibv_rc_pingpong -d rxe0 -g 1 -n 50 -s 65536 localhost
}

# perf <name> <tool> <args...>: a perftest server and client with the same
# arguments. -R runs are addressed by IP, the others use rxe0 and GID 1.
perf() {
	local name=$1 tool=$2
	shift 2
	case " $* " in
	*" -R "*) pair "perftest_$name" cm "$tool" "$@" -- "$tool" "$@" 192.0.2.1 ;;
	*) pair "perftest_$name" tcp:18515 "$tool" -d rxe0 -x 1 "$@" -- "$tool" -d rxe0 -x 1 "$@" localhost ;;
	esac
}

perftests() {
	local api kind c n extra
	for api in wr old; do
		extra=()
		[ "$api" = old ] && extra=(--use_old_post_send)
		for kind in lat bw; do
			n=100
			[ "$kind" = bw ] && n=200
			for c in RC UC UD; do perf "send_${kind}_${c}_$api" ib_send_$kind -c $c -n $n "${extra[@]}"; done
			for c in RC UC; do perf "write_${kind}_${c}_$api" ib_write_$kind -c $c -n $n "${extra[@]}"; done
			perf "read_${kind}_RC_$api" ib_read_$kind -c RC -n $n "${extra[@]}"
			perf "atomic_${kind}_RC_$api" ib_atomic_$kind -c RC -n $n "${extra[@]}"
		done
	done
	perf atomic_lat_RC_cas ib_atomic_lat -c RC -n 100 -A CMP_AND_SWAP
	perf atomic_bw_RC_cas ib_atomic_bw -c RC -n 200 -A CMP_AND_SWAP
	# Shared receive queue.
	perf send_lat_RC_srq ib_send_lat -c RC -n 100 --use-srq
	perf send_bw_RC_srq ib_send_bw -c RC -n 200 --use-srq
	perf send_bw_RC_srq_old ib_send_bw -c RC -n 200 --use-srq --use_old_post_send
	perf send_bw_UD_srq ib_send_bw -c UD -n 200 --use-srq
	# Several QPs.
	perf send_bw_RC_q4 ib_send_bw -c RC -n 200 -q 4
	perf send_bw_UD_q4 ib_send_bw -c UD -n 200 -q 4
	perf write_bw_RC_q4 ib_write_bw -c RC -n 200 -q 4
	perf read_bw_RC_q4 ib_read_bw -c RC -n 200 -q 4
	perf atomic_bw_RC_q4 ib_atomic_bw -c RC -n 200 -q 4
	# Inline sends (lat tests send 2 bytes; bw tests need -s within the inline size).
	for c in RC UC UD; do perf "send_lat_${c}_inline64" ib_send_lat -c $c -n 100 -I 64; done
	for c in RC UC; do perf "write_lat_${c}_inline64" ib_write_lat -c $c -n 100 -I 64; done
	perf send_lat_RC_inline64_old ib_send_lat -c RC -n 100 -I 64 --use_old_post_send
	perf write_lat_RC_inline64_old ib_write_lat -c RC -n 100 -I 64 --use_old_post_send
	perf send_bw_RC_inline64 ib_send_bw -c RC -n 200 -s 64 -I 64
	perf write_bw_RC_inline64 ib_write_bw -c RC -n 200 -s 64 -I 64
	# Both directions at once; large messages.
	perf send_bw_RC_bidir ib_send_bw -c RC -n 200 -b
	perf write_bw_RC_bidir ib_write_bw -c RC -n 200 -b
	perf read_lat_RC_64k ib_read_lat -c RC -n 50 -s 65536
	# Connected through rdma_cm.
	for kind in lat bw; do
		n=100
		[ "$kind" = bw ] && n=200
		perf "send_${kind}_RC_rdma_cm" ib_send_$kind -R -c RC -n $n
		perf "send_${kind}_UD_rdma_cm" ib_send_$kind -R -c UD -n $n
		perf "write_${kind}_RC_rdma_cm" ib_write_$kind -R -c RC -n $n
		perf "read_${kind}_RC_rdma_cm" ib_read_$kind -R -c RC -n $n
		perf "atomic_${kind}_RC_rdma_cm" ib_atomic_$kind -R -c RC -n $n
	done
	perf send_bw_RC_rdma_cm_old ib_send_bw -R -c RC -n 200 --use_old_post_send
}

rdmacm() {
	local a=192.0.2.1
	pair rdmacm_rping cm check:'ping data: rdma-ping-':10 \
		rping -s -a $a -C 10 -v -V -- rping -c -a $a -C 10 -v -V
	# -q: the tool creates and modifies its QP itself instead of rdma_cm.
	pair rdmacm_rping_own_qp cm check:'ping data: rdma-ping-':10 \
		rping -s -a $a -C 10 -v -V -q -- rping -c -a $a -C 10 -v -V -q
	pair rdmacm_ucmatose cm ucmatose -- ucmatose -s $a
	pair rdmacm_ucmatose_c4 cm ucmatose -c 4 -C 20 -S 512 -- ucmatose -s $a -c 4 -C 20 -S 512
	pair rdmacm_udaddy cm udaddy -- udaddy -s $a
	pair rdmacm_rdma_server_client cm rdma_server -s $a -- rdma_client -s $a
	# The receiver joins the group and waits for the sender's datagrams
	# (looped back by rxe).
	pair rdmacm_mckey out:joined check:'data transfers complete':1 \
		mckey -m 239.0.0.1 -b $a -- mckey -m 239.0.0.1 -b $a -s
}

# rdma-core's own suite, as python3-pyverbs ships it, once per provider.
pyverbs() {
	local p t0 rc
	rm -rf /tmp/pyv && mkdir /tmp/pyv && cp -r /usr/share/doc/rdma-core/tests /tmp/pyv/tests && gunzip -f /tmp/pyv/tests/*.gz
	for p in stock ours; do
		progress "pyverbs $p"
		t0=$(now_ds)
		rm -f "$OUT/pyverbs.$p.vlog"
		(cd /tmp/pyv && only "$p" "$OUT/pyverbs.$p.vlog" 3 timeout -k 10 "$PYVERBS_TIMEOUT" \
			/usr/bin/python3 tests/run_tests.py --dev rxe0 --gid 1 -v) > "$OUT/pyverbs.$p.txt" 2>&1
		rc=$?
		echo "PYVERBS $p exit=$rc $(secs "$t0") served=$(served "$p" "$OUT/pyverbs.$p.vlog")" >> "$RESULTS"
	done
}

progress start
if ! setup_rxe > "$OUT/setup.txt" 2>&1; then
	echo "setup failed" >> "$OUT/setup.txt"
	echo setup-failed > "$OUT/finished"
	exit 1
fi
suites=${DATAPATH_SUITES:-examples perftests rdmacm pyverbs}
for s in $suites; do
	progress "suite $s"
	"$s"
done
progress end
echo ok > "$OUT/finished"
