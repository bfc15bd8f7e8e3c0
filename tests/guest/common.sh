# Sourced by the guest suites. Runs inside the VM as root.
#   REPO  the project checkout (read-only in the guest)
#   OUT   where results go (the VM's --rwdir)
#   BIN   the C test programs, built on the host
set -u
CASES=$OUT/cases.txt

# rxe0 is the sandbox's (tests/run-vm.sh boots through `rxe-rs sandbox`):
# on the VM's first NIC, 192.0.2.1/24, wired to nothing outside it, with
# the multicast route rdma_cm's tools need. This records it and makes what
# the suites need besides.
setup_rxe() {
	NIC=${RXE_RS_NETDEVS%% *}
	[ -n "$NIC" ] && [ -e /sys/class/infiniband/rxe0 ] || { echo "no rxe0 from the sandbox (RXE_RS_NETDEVS='${RXE_RS_NETDEVS:-}')"; return 1; }
	# The sandbox let only ours serve; the suites choose per program (only)
	# and the doctor suite looks at the machine's own directory.
	umount /etc/libibverbs.d || return 1
	# The unprivileged cases open the device as nobody.
	chmod 666 /dev/infiniband/uverbs* /dev/infiniband/rdma_cm 2>/dev/null
	mkdir -p /tmp/drv-stock /tmp/drv-ours
	echo "driver rxe" > /tmp/drv-stock/x.driver
	echo "driver $REPO/driver-config/librxe_rs" > /tmp/drv-ours/x.driver
	mkdir -p "$OUT/log" && chmod 777 "$OUT/log"
	ip -br addr show "$NIC"
	rdma link show
}

# only <stock|ours> <label> cmd...: runs cmd seeing only that provider's
# driver file (a private mount of /etc/libibverbs.d, by $BIN/only, built
# from tests/programs/only.c). Both log at info level to
# $OUT/log/<label>.rxe_rs.log: a `context opened by rxe_rs` line there
# proves ours served the run, and its absence that the stock one did.
only() {
	local p=$1 label=$2
	shift 2
	"$BIN/only" "/tmp/drv-$p" "$OUT/log/$label.rxe_rs.log" "$@"
}

# record <name> <provider> <exit status> <seconds>
record() {
	local verdict=PASS
	[ "$3" = 0 ] || verdict=FAIL
	echo "CASE $1 $2 $verdict $4 rc=$3" >> "$CASES"
}

# single <name> <provider> cmd...: one program, pass = exit 0.
single() {
	local name=$1 p=$2
	shift 2
	local t0=$SECONDS
	only "$p" "$name.$p" timeout 300 "$@" > "$OUT/log/$name.$p.out" 2>&1
	record "$name" "$p" $? $((SECONDS - t0))
}

# wait_server <server output> <server pid>: until the server is ready, at
# most 60 s, or until it exits. A fixed sleep was too short on a loaded
# machine: the client then found no server. Ready is, with WAIT_FOR_OUTPUT
# set, that text in the server's output (mckey's receiver has joined its
# group: nothing of it listens); otherwise its out-of-band TCP port 18515
# listening, or an rdma_cm id in LISTEN. The port and the output are read by
# the shell itself, every 0.2 s; `rdma resource show`, a process that costs
# a good part of a second on the emulated CPU (and takes it from the server
# starting beside it), runs once a second.
wait_server() {
	local out=$1 pid=$2 end=$((SECONDS + 60)) i=0
	while [ "$SECONDS" -lt "$end" ] && kill -0 "$pid" 2> /dev/null; do
		if [ -n "${WAIT_FOR_OUTPUT:-}" ]; then
			output_has "$out" "$WAIT_FOR_OUTPUT" && return
		else
			tcp_listening 4853 && return
			[ $((i % 5)) = 4 ] && cm_listening && return
		fi
		i=$((i + 1))
		sleep 0.2
	done
}

# output_has <file> <text>: the file holds the text (read by the shell).
output_has() {
	local text=
	[ -e "$1" ] && IFS= read -r -d '' text < "$1"
	[[ $text == *"$2"* ]]
}

# cm_listening: an rdma_cm id is in LISTEN (a process of its own: rdma).
cm_listening() {
	rdma resource show cm_id 2> /dev/null | grep -q LISTEN
}

# tcp_listening <port, 4 hex digits>: a TCP socket listens on it (IPv4 or
# IPv6), read from /proc/net without starting a process.
tcp_listening() {
	local f sl addr rem st rest
	for f in /proc/net/tcp /proc/net/tcp6; do
		[ -r "$f" ] || continue
		while read -r sl addr rem st rest; do
			[ "$st" = 0A ] && [ "${addr##*:}" = "$1" ] && return 0
		done < "$f"
	done
	return 1
}

# pair <name> <provider> server-cmd... -- client-cmd...: a server in the
# background and a client; pass = both exit 0. One failure is not final:
# perftest times itself after the traffic and, when an emulated CPU was
# paused, its clock calibration fails ("Correlation coefficient r^2 ... <
# 0.9", "Can't produce a report"). Only that failure is retried, up to 4
# attempts; the case records attempts=N and tests/vm.rs bounds how many
# cases needed more than one. Any other failure is final at once.
pair() {
	local name=$1 p=$2
	shift 2
	local srv=()
	while [ "$1" != -- ]; do srv+=("$1"); shift; done
	shift
	local t0=$SECONDS attempt status
	for attempt in 1 2 3 4; do
		only "$p" "$name.$p" timeout 240 "${srv[@]}" > "$OUT/log/$name.$p.srv" 2>&1 &
		local spid=$!
		wait_server "$OUT/log/$name.$p.srv" "$spid"
		only "$p" "$name.$p" timeout 200 "$@" > "$OUT/log/$name.$p.cli" 2>&1
		local crc=$?
		wait "$spid"
		local src=$?
		[ "$crc" = 0 ] && [ "$src" = 0 ]
		status=$?
		[ "$status" = 0 ] && break
		cat "$OUT/log/$name.$p.srv" "$OUT/log/$name.$p.cli" | grep -q 'Correlation coefficient r^2: .* < 0.9' || break
		cp "$OUT/log/$name.$p.srv" "$OUT/log/$name.$p.srv.attempt$attempt"
		cp "$OUT/log/$name.$p.cli" "$OUT/log/$name.$p.cli.attempt$attempt"
	done
	record "$name" "$p" "$status" "$((SECONDS - t0)) attempts=$attempt"
}
