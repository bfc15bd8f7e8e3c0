# Under load (issue 11, items 1-3), through each provider:
#   soak   tests/load/soak.c: 8 threads of checked traffic for a time
#   churn  tests/load/churn.c: create/destroy cycles; fd, mapping, RSS growth
#   memcheck and helgrind (valgrind) on the edge program, a short churn and
#          a short soak
# load_suite is the bounded version (a 20 s soak, 1,000 cycles); load_long_suite
# the long one (a 60 s soak, 10,000 cycles), with the same output files:
#   bash tests/run-vm.sh target/vmtest/load-long load_long
# Each program prints `figure` and `case` lines (tests/vm/load.rs checks them);
# each run's wall time goes to load-times.txt.

load_times() {
	echo "$1 $2 seconds=$3" >> "$OUT/load-times.txt"
}

# load_run <label> <provider> <timeout> cmd...: output to $OUT/<label>.<p>.txt
# with the exit status appended.
load_run() {
	local label=$1 p=$2 limit=$3 t0=$SECONDS
	shift 3
	only "$p" "$label.$p" timeout "$limit" "$@" > "$OUT/$label.$p.txt" 2> "$OUT/$label.$p.err"
	echo "exit=$?" >> "$OUT/$label.$p.txt"
	load_times "$label" "$p" $((SECONDS - t0))
}

# load_valgrind <label> <provider> <tool> <timeout> cmd...: the program under
# valgrind; its XML report to $OUT/<label>.<p>.xml, its text log to .vglog.
load_valgrind() {
	local label=$1 p=$2 tool=$3 limit=$4 t0=$SECONDS
	shift 4
	local opts=(--tool="$tool" --fair-sched=yes --num-callers=40 --error-limit=no --child-silent-after-fork=yes
		--suppressions="$REPO/tests/load/valgrind.supp"
		--xml=yes --xml-file="$OUT/$label.$p.xml" --log-file="$OUT/$label.$p.vglog")
	[ "$tool" != memcheck ] || opts+=(--leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
		--track-origins=yes)
	only "$p" "$label.$p" timeout "$limit" valgrind "${opts[@]}" "$@" > "$OUT/$label.$p.txt" 2> "$OUT/$label.$p.err"
	echo "exit=$?" >> "$OUT/$label.$p.txt"
	load_times "$label" "$p" $((SECONDS - t0))
}

# load_all <mode> <soak seconds> <churn cycles> <valgrind providers>
load_all() {
	local p mode=$1 soak_s=$2 cycles=$3 vg_providers=$4
	echo "mode=$mode soak_seconds=$soak_s churn_cycles=$cycles valgrind=${vg_providers// /-}" > "$OUT/load-mode.txt"
	: > "$OUT/load-times.txt"
	for p in stock ours; do
		load_run soak "$p" $((soak_s + 200)) "$BIN/soak" rxe0 1 "$soak_s" 15
		load_run churn "$p" $((cycles / 4 + 300)) "$BIN/churn" rxe0 1 "$cycles"
	done
	# Under valgrind (about 50 times slower on the emulated CPU): short runs.
	for p in $vg_providers; do
		load_valgrind vg_churn "$p" memcheck 200 "$BIN/churn" rxe0 1 10
		load_valgrind vg_soak "$p" memcheck 240 "$BIN/soak" rxe0 1 2 60
		load_valgrind hg_soak "$p" helgrind 240 "$BIN/soak" rxe0 1 2 60
		load_valgrind vg_edge "$p" memcheck 600 "$BIN/edge" rxe0 1
	done
}

# The bounded version runs valgrind through ours only (the stock runs, there
# for comparison, would double its time); the long one through both.
load_suite() {
	load_all bounded 20 1000 ours
}

load_long_suite() {
	load_all long 60 10000 "ours stock"
}
