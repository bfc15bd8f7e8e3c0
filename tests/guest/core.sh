# Provider core: device and port queries, memory registration.
# Every comparison runs through each provider alone.

# core_devinfo <provider>: ibv_devinfo -v and ibv_devices through one provider.
core_devinfo() {
	local p=$1
	only "$p" "devinfo.$p" ibv_devinfo -d rxe0 -v > "$OUT/devinfo.$p.txt" 2>&1
	only "$p" "devices.$p" ibv_devices > "$OUT/devices.$p.txt" 2>&1
}

# core_mr_cases <provider>: the registration matrix (tests/programs/mr_cases.c).
core_mr_cases() {
	local p=$1
	only "$p" "mr_cases.$p" timeout 600 "$BIN/mr_cases" rxe0 > "$OUT/mr_cases.$p.txt" 2> "$OUT/mr_cases.$p.err"
	echo "exit=$?" >> "$OUT/mr_cases.$p.err"
}

# core_mr_unprivileged <provider>: mr_cases as nobody, with RLIMIT_MEMLOCK 0
# and 64 KiB (mr_cases is told the limit it should see, and derives its
# expectations from it).
core_mr_unprivileged() {
	local p=$1 lim
	for lim in 0 65536; do
		only "$p" "mr_unpriv_$lim.$p" prlimit --memlock=$lim:$lim \
			setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
			timeout 120 "$BIN/mr_cases" rxe0 --unprivileged "$lim" > "$OUT/mr_unpriv_$lim.$p.txt" 2>&1
	done
}

core_suite() {
	for p in stock ours; do
		core_devinfo "$p"
		core_mr_cases "$p"
		core_mr_unprivileged "$p"
	done
	# The README's way, no isolation: RDMAV_DRIVERS puts ours first.
	RDMAV_DRIVERS=$REPO/driver-config/librxe_rs VERBS_LOG_LEVEL=3 VERBS_LOG_FILE=$OUT/log/rdmav_drivers.rxe_rs.log \
		ibv_devinfo -d rxe0 > "$OUT/rdmav_drivers.txt" 2>&1
	# The demo program, as the README shows it.
	RDMAV_DRIVERS=$REPO/driver-config/librxe_rs VERBS_LOG_LEVEL=1 "$BIN/reg_demo" rxe0 > "$OUT/reg_demo.txt" 2>&1
	echo "exit=$?" >> "$OUT/reg_demo.txt"
}

# The README's demo: what scripts/demo.sh shows.
demo_suite() {
	{
		echo "\$ RDMAV_DRIVERS=$REPO/driver-config/librxe_rs VERBS_LOG_LEVEL=1 reg_demo rxe0"
		RDMAV_DRIVERS=$REPO/driver-config/librxe_rs VERBS_LOG_LEVEL=1 "$BIN/reg_demo" rxe0 2>&1
		echo "(exit status $?)"
	} > "$OUT/demo.txt"
}
