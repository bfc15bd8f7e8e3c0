# Fault injection (RXE_RS_FAULTS; README "Fault injection") through ours,
# and the same runs through the stock librxe, which ignores the variable.
#   faults_<scenario>.<p>.txt   tests/faults/faults.c's cases, exit=<status>
#   faults_app_<name>.<p>.{srv,cli}  a real application with a fault
#                                    injected into its client, and
#   faults_app_<name>.<p>.txt   srv_exit=, cli_exit=, seconds=
# The rxe_rs log of each run is $OUT/log/<label>.<p>.rxe_rs.log.

# faults_run <label> <spec> <provider> <scenario>
faults_run() {
	local label=$1 spec=$2 p=$3 sc=$4
	only "$p" "$label.$p" env "RXE_RS_FAULTS=$spec" timeout 60 "$BIN/faults" rxe0 1 "$sc" \
		> "$OUT/$label.$p.txt" 2> "$OUT/$label.$p.err"
	echo "exit=$?" >> "$OUT/$label.$p.txt"
}

# faults_app <name> <provider> <client spec> server-cmd... -- client-cmd...
# The server runs without faults. Through ours it may wait for a client
# that gave up (ibv_rc_pingpong's and perftest's servers do), so there it
# has 20 s; through stock, where nothing fails, 60.
faults_app() {
	local name=$1 p=$2 spec=$3 t0=$SECONDS
	shift 3
	local srv=() label=faults_app_$name.$p limit=60
	[ "$p" = stock ] || limit=20
	while [ "$1" != -- ]; do srv+=("$1"); shift; done
	shift
	only "$p" "$label" timeout "$limit" "${srv[@]}" > "$OUT/$label.srv" 2>&1 &
	local spid=$!
	wait_server "$OUT/$label.srv" "$spid"
	only "$p" "$label" env "RXE_RS_FAULTS=$spec" timeout 60 "$@" > "$OUT/$label.cli" 2>&1
	local crc=$?
	wait "$spid"
	local src=$?
	printf 'srv_exit=%s cli_exit=%s seconds=%s\n' "$src" "$crc" $((SECONDS - t0)) > "$OUT/$label.txt"
}

faults_suite() {
	local p
	for p in ours stock; do
		faults_run faults_post_send "post_send:enomem:every=2" "$p" post_send
		faults_run faults_recv "post_recv:einval:nth=1;post_srq_recv:enomem:nth=2" "$p" recv
		faults_run faults_completion "poll_cq:status=retry_exc_err:nth=1" "$p" completion
		faults_run faults_qpn_filter "poll_cq:status=rem_access_err:qpn=0x1" "$p" qpn_filter
		faults_run faults_create "reg_mr:efault:nth=1;create_cq:enomem:nth=1;create_qp:enomem:nth=1" "$p" create
		faults_run faults_probability1 "post_send:enomem:p=0.5:seed=3" "$p" probability
		faults_run faults_probability2 "post_send:enomem:p=0.5:seed=3" "$p" probability
		faults_run faults_bad_spec "post_send:enomem:every=0" "$p" plain
		faults_run faults_events "poll_cq:event=cq_err:nth=1;post_send:event=qp_fatal:nth=2;post_recv:event=port_err:nth=5" "$p" events
		faults_run faults_ex_status "poll_cq:status=rem_access_err:nth=1" "$p" ex_status
		faults_run faults_delay "poll_cq:delay=300" "$p" delay
		# Real applications with an injected fault in the client.
		faults_app rc_pingpong "$p" "poll_cq:status=retry_exc_err:nth=3" \
			ibv_rc_pingpong -g 1 -d rxe0 -n 20 -- ibv_rc_pingpong -g 1 -d rxe0 -n 20 localhost
		faults_app send_bw "$p" "poll_cq:status=rem_access_err:nth=10" \
			ib_send_bw -d rxe0 -x 1 -n 200 -- ib_send_bw -d rxe0 -x 1 -n 200 localhost
		faults_app rping "$p" "post_send:enomem:nth=3" \
			rping -s -a 192.0.2.1 -C 5 -- rping -c -a 192.0.2.1 -C 5 -v
		# Delayed completions: the client, driven by completion events,
		# still completes, each exchange held back.
		faults_app rc_pingpong_delay "$p" "poll_cq:delay=100" \
			ibv_rc_pingpong -g 1 -d rxe0 -n 10 -e -- ibv_rc_pingpong -g 1 -d rxe0 -n 10 -e localhost
	done
}
