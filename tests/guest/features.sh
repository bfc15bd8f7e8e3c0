# Kernel features of newer rxe (tests/programs/features.c): ATOMIC WRITE,
# RDMA FLUSH, 2 GiB messages, on-demand paging and ibv_advise_mr. The
# program derives its expectations from what the device reports, so one
# suite serves every kernel; tests/vm/features.rs checks the results.
#
# Runs, each through one provider alone:
# - features on the host's rdma-core 44, through its stock librxe and ours;
# - the flush cases (ibv_wr_flush needs rdma-core >= 45's verbs.h): a
#   variant built here against trixie's headers (tests/releases/fetch.sh
#   unpacks trixie's libibverbs-dev) and run under trixie's 56.1
#   (tests/releases/run.sh), through its stock librxe and ours;
# - the advise_mr cases under sid's 65 (whose stock librxe has advise_mr),
#   through its stock librxe and ours.
# Results: $OUT/features.<host|trixie|sid>.<stock|ours>.txt (the program's
# output; for the releases a `loaded=<librxe files the loader opened>` line;
# then exit=<status>), stderr beside them in .err, and
# $OUT/features.build_v45.txt (the variant's compiler output). Never fails
# the suite: a failed step is an exit status or a missing line there.

# features_release <release> <program> [case prefix...]
features_release() {
	local r=$1 prog=$2 p label rc loaded
	shift 2
	for p in stock ours; do
		label=features.$r.$p
		rm -f "$OUT/log/features/$label.ld."*
		env VERBS_LOG_LEVEL=3 "VERBS_LOG_FILE=$OUT/log/$label.rxe_rs.log" "RXE_PROVIDER=$p" \
			"RXE_LD_DEBUG_OUTPUT=$OUT/log/features/$label.ld" \
			timeout 600 bash "$REPO/tests/releases/run.sh" "$r" "$prog" rxe0 1 "$@" \
			> "$OUT/$label.txt" 2> "$OUT/$label.err"
		rc=$?
		# The providers the loader opened (LD_DEBUG=files, one log per process).
		loaded=$(cat "$OUT/log/features/$label.ld."* 2>/dev/null | grep -o 'file=[^ ]*librxe[^ ]*\.so' |
			sed 's/^file=//' | sort -u | tr '\n' ',')
		echo "loaded=${loaded%,}" >> "$OUT/$label.txt"
		echo "exit=$rc" >> "$OUT/$label.txt"
	done
}

features_suite() {
	local p v45=/tmp/features_v45
	mkdir -p "$OUT/log/features"
	for p in stock ours; do
		only "$p" "features.host.$p" timeout 600 "$BIN/features" rxe0 1 \
			> "$OUT/features.host.$p.txt" 2> "$OUT/features.host.$p.err"
		echo "exit=$?" >> "$OUT/features.host.$p.txt"
	done
	# Built against trixie's verbs.h, linked against the host's libibverbs
	# (only IBVERBS_1.1..1.6 symbols: ibv_wr_flush is inline), run on trixie's.
	if gcc -O2 -Wall -DFEATURES_V45 -I"$REPO/target/releases/trixie/root/usr/include" -o "$v45" \
		"$REPO/tests/programs/features.c" -libverbs -lpthread > "$OUT/features.build_v45.txt" 2>&1; then
		features_release trixie "$v45" flush.
	else
		for p in stock ours; do
			echo "exit=build-failed (see features.build_v45.txt)" > "$OUT/features.trixie.$p.txt"
		done
	fi
	features_release sid "$BIN/features" odp.advise_mr
}
