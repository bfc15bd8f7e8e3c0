# The subset of the suites that runs on the other kernels (tests/kernels/
# fetch.sh unpacks them; tests/vm/kernels.rs boots each and checks it), with
# the functions of core.sh and datapath.sh, through the stock librxe and ours,
# into the same files as there: ibv_devinfo -v, the registration matrix,
# rdma-core's pingpongs, a perftest subset, rping and ucmatose, the edge and
# threads program; and ibv_rc_pingpong -o (on-demand paging), which passes
# where the kernel's rxe has ODP (7.x) and fails where it has not.

# perftest: send, write, read and atomic, latency and bandwidth over RC, and
# send over UD (the extended QP API, as perftest uses by default).
perftests_subset() {
	local p=$1 t kind
	PERF_PEER=localhost
	for t in send write read atomic; do
		for kind in lat bw; do
			perf "${t}_${kind}_RC" "$p" "ib_${t}_$kind" -x 1 -c RC -n 100
		done
	done
	for kind in lat bw; do
		perf "send_${kind}_UD" "$p" "ib_send_$kind" -x 1 -c UD -n 100
	done
}

subset_suite() {
	local p t
	for p in stock ours; do
		core_devinfo "$p"
		core_mr_cases "$p"
	done
	for p in stock ours; do
		for t in rc uc ud srq; do
			pingpong "pingpong_$t" "$t" "$p"
		done
		pingpong pingpong_rc_odp rc "$p" -o
		perftests_subset "$p"
		rping_pair "$p"
		ucmatose_pair "$p"
		edge_cases "$p"
	done
}
