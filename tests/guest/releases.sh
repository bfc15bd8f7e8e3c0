# Other rdma-core releases: Debian trixie (rdma-core 56.1, libibverbs private
# ABI 34) and sid (65, ABI 65), unpacked on the host by tests/releases/fetch.sh
# and run through trixie's loader by tests/releases/run.sh. Each program runs
# through one provider of that release alone; the provider field of a case is
# <release>-<provider> (trixie-stock, sid-stock; <release>-ours joins by
# adding `ours` to RELEASE_PROVIDERS once ours serves that release's ABI).
#
# Results: $OUT/cases_releases.txt, lines as common.sh's `record` writes them
# (CASE <name> <release>-<provider> PASS|FAIL <seconds> rc=<n> ...), plus
# served=ok|wrong: every process of the case loaded exactly the provider it
# names, and no other librxe (the loader's LD_DEBUG=files log, per process,
# in $OUT/log/releases/). A case served by the wrong provider is a FAIL.
# $OUT/releases/: device queries and which provider files each case loaded.
# Not in tests/vm.rs's SUITES: boot it with
#   tests/run-vm.sh <out dir> releases
# after tests/releases/fetch.sh.

RELEASES="trixie sid"
RELEASE_PROVIDERS="stock ours"

# The driver prefix libibverbs is given for <release> <provider>; it appends
# -rdmav<ABI>.so (tests/releases/run.sh explains).
rel_prefix() {
	case $2 in
	stock) echo "$REPO/target/releases/$1/root/usr/lib/x86_64-linux-gnu/libibverbs/librxe" ;;
	ours) echo "$REPO/driver-config/librxe_rs" ;;
	esac
}

# The release's libibverbs private ABI, as fetch.sh found it.
rel_abi() {
	sed -n 's/^# abi: //p' "$REPO/target/releases/$1/versions.txt"
}

# rel_served <name> <release>-<provider> <expected file>: checks the loader
# logs of one case; sets REL_SERVED to ok or wrong, and writes the files to
# served.txt. One grep for every log of the case: each process this saves
# is a fraction of a second on the emulated CPU, and there are hundreds.
rel_served() {
	local name=$1 rp=$2 want=$3 logs f path line
	logs=("$OUT/log/releases/$name.$rp.ld."*)
	[ -e "${logs[0]}" ] || logs=()
	local -A files=() mine=()
	if [ ${#logs[@]} != 0 ]; then
		# <log>:file=<path>, for each librxe path a log names.
		while IFS= read -r line; do
			f=${line%%:file=*}
			path=${line#*:file=}
			files[$path]=1
			[ "$path" != "$want" ] || mine[$f]=1
		done < <(grep -H -o 'file=[^ ]*librxe[^ ]*\.so' "${logs[@]}")
	fi
	local loaded=${!files[*]}
	REL_SERVED=ok
	# Exactly the expected file, and every process (server and client,
	# every attempt) loaded it.
	[ ${#logs[@]} != 0 ] && [ "$loaded" = "$want" ] || REL_SERVED=wrong
	for f in "${logs[@]}"; do
		[ -n "${mine[$f]:-}" ] || REL_SERVED=wrong
	done
	echo "$name $rp $REL_SERVED processes=${#logs[@]} loaded: ${loaded:-none}" >> "$OUT/releases/served.txt"
}

# rel_case <single|pair> <name> <release> <provider> args...: common.sh's
# single or pair (its timeouts, its retry of perftest's failed clock
# calibration), with each program of the release run through run.sh inside
# `only`'s private /etc/libibverbs.d (/tmp/drv-<release>-<provider>). For
# pair, `{}` in the arguments stands for the launcher (server and client).
# REL_WANT is the provider file the case must load (release_cases sets it).
rel_case() {
	local how=$1 name=$2 r=$3 p=$4
	shift 4
	local rp=$r-$p
	local run=(bash "$REPO/tests/releases/run.sh" "$r")
	local args=() a
	for a in "$@"; do
		if [ "$a" = "{}" ]; then args+=("${run[@]}"); else args+=("$a"); fi
	done
	[ "$how" = pair ] || args=("${run[@]}" "${args[@]}")
	# The variables reach run.sh through the environment of the function
	# call (no env(1) process); the case's line goes to a file of its own.
	local one=$OUT/log/releases/case.txt line= l
	: > "$one"
	CASES=$one RXE_PROVIDER=system RXE_LD_DEBUG_OUTPUT="$OUT/log/releases/$name.$rp.ld" "$how" "$name" "$rp" "${args[@]}"
	while IFS= read -r l; do
		[[ $l != "CASE "* ]] || line=$l
	done < "$one"
	[ -n "$line" ] || line="CASE $name $rp FAIL 0 rc=none (the case recorded nothing)"
	rel_served "$name" "$rp" "$REL_WANT"
	[ "$REL_SERVED" = ok ] || line=${line/ PASS / FAIL }
	echo "$line served=$REL_SERVED" >> "$REL_CASES"
}

rel_pair() {
	local name=$1 r=$2 p=$3
	shift 3
	rel_case pair "$name" "$r" "$p" "{}" "$@"
}

# rel_pp <name> <release> <provider> <program> args...: a server and a
# client of the same program and arguments; the client adds $REL_PEER.
rel_pp() {
	local name=$1 r=$2 p=$3
	shift 3
	rel_case pair "$name" "$r" "$p" "{}" "$@" -- "{}" "$@" "$REL_PEER"
}

release_cases() {
	local r=$1 p=$2 rp=$1-$2 t prefix
	prefix=$(rel_prefix "$r" "$p")
	REL_WANT=$prefix-rdmav$(rel_abi "$r").so
	mkdir -p "/tmp/drv-$rp"
	echo "driver $prefix" > "/tmp/drv-$rp/x.driver"

	rel_case single devinfo "$r" "$p" ibv_devinfo -d rxe0 -v
	cp "$OUT/log/devinfo.$rp.out" "$OUT/releases/devinfo.$rp.txt"
	diff "$OUT/releases/devinfo.host-stock.txt" "$OUT/releases/devinfo.$rp.txt" > "$OUT/releases/devinfo.$rp.vs-host.diff"
	rel_case single devices "$r" "$p" ibv_devices
	# The registration matrix (tests/programs/mr_cases.c, built on the host)
	# on the release's libibverbs.
	rel_case single mr_cases "$r" "$p" "$BIN/mr_cases" rxe0
	cp "$OUT/log/mr_cases.$rp.out" "$OUT/releases/mr_cases.$rp.txt"

	REL_PEER=localhost
	for t in rc uc ud srq; do
		rel_pp "pingpong_$t" "$r" "$p" "ibv_${t}_pingpong" -g 1 -d rxe0 -n 100
	done
	# perftest is trixie's in every root (tests/releases/fetch.sh).
	for t in send write read atomic; do
		rel_pp "perftest_${t}_lat_RC" "$r" "$p" "ib_${t}_lat" -d rxe0 -x 1 -c RC -n 100
		rel_pp "perftest_${t}_bw_RC" "$r" "$p" "ib_${t}_bw" -d rxe0 -x 1 -c RC -n 100
	done
	rel_pp perftest_send_lat_UD "$r" "$p" ib_send_lat -d rxe0 -x 1 -c UD -n 100
	rel_pp perftest_send_bw_UD "$r" "$p" ib_send_bw -d rxe0 -x 1 -c UD -n 100

	rel_pair rping "$r" "$p" rping -s -a 192.0.2.1 -C 10 -- "{}" rping -c -a 192.0.2.1 -C 10 -v
	rel_pair ucmatose "$r" "$p" ucmatose -- "{}" ucmatose -s 192.0.2.1
}

# RDMAV_DRIVERS, without the private driver directory: the release's stock
# librxe is loaded first, then whatever the machine's /etc/libibverbs.d names
# (for an ABI 34 release, rdma-core 44's librxe-rdmav34.so as well). Recorded
# with the files loaded; not a check of which one served.
release_rdmav_drivers() {
	local r=$1 name=devinfo_rdmav_drivers t0=$SECONDS rc loaded
	local prefix
	prefix=$(rel_prefix "$r" stock)
	RDMAV_DRIVERS=$prefix RXE_PROVIDER=system RXE_LD_DEBUG_OUTPUT=$OUT/log/releases/$name.$r-stock.ld \
		timeout 120 bash "$REPO/tests/releases/run.sh" "$r" ibv_devinfo -d rxe0 > "$OUT/log/$name.$r-stock.out" 2>&1
	rc=$?
	# Every librxe dlopen tried, in order (also those not found).
	loaded=$(cat "$OUT/log/releases/$name.$r-stock.ld."* 2>/dev/null | grep -o 'file=[^ ]*librxe[^ ]*\.so' | sed 's/^file=//' | awk '!seen[$0]++' | tr '\n' ',')
	echo "$name $r-stock info dlopen tried: $loaded" >> "$OUT/releases/served.txt"
	local verdict=PASS
	[ "$rc" = 0 ] || verdict=FAIL
	echo "CASE $name $r-stock $verdict $((SECONDS - t0)) rc=$rc tried=${loaded%,}" >> "$REL_CASES"
}

releases_suite() {
	REL_CASES=$OUT/cases_releases.txt
	: > "$REL_CASES"
	mkdir -p "$OUT/releases" "$OUT/log/releases"
	: > "$OUT/releases/served.txt"
	# rdma-core 44's stock librxe, for comparing the device queries.
	only stock devinfo_host.stock ibv_devinfo -d rxe0 -v > "$OUT/releases/devinfo.host-stock.txt" 2>&1
	local r p
	for r in $RELEASES; do
		if [ ! -s "$REPO/target/releases/$r/versions.txt" ]; then
			echo "CASE fetched $r-stock FAIL 0 rc=1 (run tests/releases/fetch.sh)" >> "$REL_CASES"
			continue
		fi
		cp "$REPO/target/releases/$r/versions.txt" "$OUT/releases/versions.$r.txt"
		for p in $RELEASE_PROVIDERS; do
			release_cases "$r" "$p"
		done
		release_rdmav_drivers "$r"
	done
}
