# The data path: real programs through each provider.

# pingpong <name> <rc|uc|ud|srq> <provider> [args...]: one of rdma-core's
# examples, server and client, with those extra arguments.
pingpong() {
	local name=$1 t=$2 p=$3
	shift 3
	pair "$name" "$p" ibv_${t}_pingpong -g 1 -d rxe0 -n 100 "$@" -- ibv_${t}_pingpong -g 1 -d rxe0 -n 100 "$@" localhost
}

examples() {
	local p=$1
	for t in rc uc ud srq; do
		pingpong "pingpong_$t" "$t" "$p"
	done
	pingpong pingpong_rc_events rc "$p" -e
}

# perf <name> <provider> <tool> <args...>: a perftest server/client pair.
perf() {
	local name=$1 p=$2 tool=$3
	shift 3
	local dev=(-d rxe0)
	pair "perftest_$name" "$p" "$tool" "${dev[@]}" "$@" -- "$tool" "${dev[@]}" "$@" "$PERF_PEER"
}

perftests() {
	local p=$1 api
	PERF_PEER=localhost
	for api in new old; do
		local extra=()
		[ "$api" = old ] && extra=(--use_old_post_send)
		for kind in lat bw; do
			for c in RC UC UD; do
				perf "send_${kind}_${c}_$api" "$p" ib_send_$kind -x 1 -c $c -n 100 "${extra[@]}"
			done
			for c in RC UC; do
				perf "write_${kind}_${c}_$api" "$p" ib_write_$kind -x 1 -c $c -n 100 "${extra[@]}"
			done
			perf "read_${kind}_RC_$api" "$p" ib_read_$kind -x 1 -c RC -n 100 "${extra[@]}"
			perf "atomic_${kind}_RC_$api" "$p" ib_atomic_$kind -x 1 -c RC -n 100 "${extra[@]}"
		done
	done
	perf send_bw_srq "$p" ib_send_bw -x 1 -n 100 --use-srq
	perf send_lat_srq "$p" ib_send_lat -x 1 -n 100 --use-srq
	perf send_bw_q4 "$p" ib_send_bw -x 1 -n 100 -q 4
	perf write_bw_q4 "$p" ib_write_bw -x 1 -n 100 -q 4
	perf send_lat_inline64 "$p" ib_send_lat -x 1 -n 100 -I 64
	perf write_lat_inline64 "$p" ib_write_lat -x 1 -n 100 -I 64
	PERF_PEER=192.0.2.1
	perf send_bw_rdma_cm "$p" ib_send_bw -R -n 100
	perf write_lat_rdma_cm "$p" ib_write_lat -R -n 100
	perf read_bw_rdma_cm "$p" ib_read_bw -R -n 100
}

rping_pair() {
	pair rping "$1" rping -s -a 192.0.2.1 -C 10 -- rping -c -a 192.0.2.1 -C 10 -v
}

ucmatose_pair() {
	pair ucmatose "$1" ucmatose -- ucmatose -s 192.0.2.1
}

rdmacm() {
	local p=$1
	rping_pair "$p"
	ucmatose_pair "$p"
	pair udaddy "$p" udaddy -- udaddy -s 192.0.2.1
	pair rdma_server_client "$p" rdma_server -- rdma_client -s 192.0.2.1
}

# mckey_pair <provider>: a multicast receiver and sender on one device. The
# receiver's output is line-buffered, so that wait_server sees it join its
# group (only that: another case's server may be listening meanwhile).
mckey_pair() {
	WAIT_FOR_OUTPUT='receiving data transfers' \
		pair mckey "$1" stdbuf -oL mckey -m 239.1.1.1 -b 192.0.2.1 -C 10 -- mckey -m 239.1.1.1 -b 192.0.2.1 -s -C 10
}

# pyverbs_run <provider>: rdma-core's own suite, as python3-pyverbs ships it.
pyverbs_run() {
	local p=$1
	# The suite imports itself as the package "tests".
	rm -rf /tmp/pyv && mkdir /tmp/pyv && cp -r /usr/share/doc/rdma-core/tests /tmp/pyv/tests && gunzip -f /tmp/pyv/tests/*.gz
	(cd /tmp/pyv && only "$p" "pyverbs.$p" timeout 1500 /usr/bin/python3 tests/run_tests.py --dev rxe0 --gid 1 -v) \
		> "$OUT/pyverbs.$p.txt" 2>&1
	echo "exit=$?" >> "$OUT/pyverbs.$p.txt"
}

# tests/edge/edge.c: data-path edge cases and threads, one process.
edge_cases() {
	local p=$1
	only "$p" "edge.$p" timeout 300 "$BIN/edge" rxe0 1 > "$OUT/edge.$p.txt" 2>&1
	echo "exit=$?" >> "$OUT/edge.$p.txt"
}

datapath_suite() {
	# The mckey pairs run beside the other cases, one after the other: on
	# some kernels (Debian's 6.1) the sender's QP destroy sleeps 50 s in the
	# kernel's rxe, through either provider (a reference the kernel leaked:
	# "WARNING ... __rxe_cleanup" on the console), then succeeds.
	(for p in stock ours; do mckey_pair "$p"; done) &
	local mckey_job=$!
	for p in stock ours; do
		examples "$p"
		perftests "$p"
		rdmacm "$p"
		edge_cases "$p"
	done
	wait "$mckey_job"
	pyverbs_suite
}

# Tests of the suite whose outcome races the kernel, through either
# provider:
# - test_resize_cq posts sends, then at once shrinks the CQ below the
#   completions it expects there, and wants EINVAL. Kernels whose rxe sends
#   from a work queue (7.x here) may not have completed them yet, and the
#   resize then succeeds: seen failing through the stock librxe as well.
# One of them that did not pass through ours is run PYVERBS_RERUNS times
# more through each provider, alternating, into pyverbs.reruns.txt
# ("<test id> <provider> ok|fail|skipped"); tests/vm.rs compares the pass counts.
PYVERBS_RACY="tests.test_cq.CQTest.test_resize_cq"
PYVERBS_RERUNS=20

pyverbs_rerun_racy() {
	local t i p outcome
	: > "$OUT/pyverbs.reruns.txt"
	for t in $PYVERBS_RACY; do
		grep -qE "^(FAIL|ERROR): [^ ]+ \($t\)$" "$OUT/pyverbs.ours.txt" || continue
		for i in $(seq 1 "$PYVERBS_RERUNS"); do
			for p in stock ours; do
				# unittest names a test relative to the suite's package.
				outcome=fail
				if (cd /tmp/pyv && only "$p" "pyverbs-rerun.$p" timeout 300 /usr/bin/python3 tests/run_tests.py --dev rxe0 --gid 1 -v "${t#tests.}") \
					> "$OUT/pyverbs-rerun.last.txt" 2>&1; then
					outcome=ok
					grep -q "^OK (skipped" "$OUT/pyverbs-rerun.last.txt" && outcome=skipped
				fi
				echo "$t $p $outcome" >> "$OUT/pyverbs.reruns.txt"
			done
		done
	done
}

# The pyverbs suite through each provider (also a suite of its own).
pyverbs_suite() {
	local p
	for p in stock ours; do
		pyverbs_run "$p"
	done
	pyverbs_rerun_racy
}
