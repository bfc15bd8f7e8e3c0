#!/bin/bash
# Side-by-side benchmark of our provider against the stock librxe in one VM
# boot (tests/bench/guest.sh), printed as tables of ours/stock ratios:
# - userspace instructions per call of each hot-path verb, counted by
#   callgrind (tests/bench/icount.c): the figure that carries over to real
#   CPUs, since the emulator's cost per instruction is far from theirs;
# - posted-WR rate under contention and reg_mr+dereg_mr medians (mt.c);
# - times (micro.c, ib_send_lat, ib_write_bw), medians over the rounds.
# Emulated timings are noisy: read the ratios (< 1 is fewer instructions or
# less time; > 1 is a higher rate or bandwidth).
# usage: tests/bench/run.sh [rounds] [parts: all | any of "icount mt time"]
# Re-print the tables of an earlier run: RXE_BENCH_REPORT_ONLY=1 tests/bench/run.sh
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-3}
parts=${2:-all}
out=$repo/target/bench
if [ -z "${RXE_BENCH_REPORT_ONLY:-}" ]; then
	command -v valgrind > /dev/null || { echo "valgrind is needed (apt-get install valgrind; scripts/install-deps.sh)" >&2; exit 1; }
	rm -rf "$out" && mkdir -p "$out"
	(cd "$repo" && cargo build --release)
	gcc -O2 -o "$out/micro" "$repo/tests/bench/micro.c" -libverbs
	gcc -O2 -o "$out/icount" "$repo/tests/bench/icount.c" -libverbs
	gcc -O2 -pthread -o "$out/mt" "$repo/tests/bench/mt.c" -libverbs
	kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
	# tsc=reliable: emulation's clocksource watchdog would otherwise mark the
	# TSC unstable and the patching that follows can panic the guest
	# (tools/rxe-rs/src/sandbox.rs, vng_args).
	timeout 5400 vng --run "$kernel" --disable-kvm --append tsc=reliable --memory 4G --cpus 2 --network loop --no-dhcp \
		--rwdir "$out" --exec "bash $repo/tests/bench/guest.sh $repo $out $out $rounds '$parts'" > "$out/vm.log" 2>&1 || true
	[ -e "$out/finished" ] || { echo "benchmark VM did not finish; see $out/vm.log" >&2; exit 1; }
fi
python3 "$repo/tests/bench/report.py" "$out" "$rounds"
