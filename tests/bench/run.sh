#!/bin/bash
# Side-by-side benchmark of our provider against the stock librxe in one VM
# boot. Prints medians and ratios (ours / stock; < 1 is faster for times,
# > 1 is faster for bandwidth). Emulated timings are noisy: read the ratios.
# usage: tests/bench/run.sh [rounds]
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${1:-3}
out=$repo/target/bench
rm -rf "$out" && mkdir -p "$out"
[ -e "$repo/target/release/librxe_rs.so" ] || (cd "$repo" && cargo build --release)
gcc -O2 -o "$out/micro" "$repo/tests/bench/micro.c" -libverbs
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
timeout 3000 vng --run "$kernel" --disable-kvm --memory 4G --cpus 2 --network loop --no-dhcp \
	--rwdir "$out" --exec "bash $repo/tests/bench/guest.sh $repo $out/micro $out $rounds" > "$out/vm.log" 2>&1 || true
[ -e "$out/finished" ] || { echo "benchmark VM did not finish; see $out/vm.log" >&2; exit 1; }

python3 - "$out" "$rounds" <<'PY'
import re, statistics, sys, pathlib
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = {}
def add(name, p, v):
    rows.setdefault(name, {}).setdefault(p, []).append(v)
for p in ("stock", "ours"):
    for r in range(1, rounds + 1):
        for line in (out / f"micro.{p}.{r}").read_text().splitlines():
            m = re.match(r"bench (\S+) ([\d.]+)", line)
            if m: add(m[1] + " (ns/op)", p, float(m[2]))
        lat = (out / f"send_lat.{r}.{p}.cli").read_text()
        m = re.search(r"^\s*2\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)", lat, re.M)
        if m: add("ib_send_lat typical (usec)", p, float(m[1]))
        bw = (out / f"write_bw.{r}.{p}.cli").read_text()
        m = re.search(r"^\s*65536\s+\d+\s+[\d.]+\s+([\d.]+)", bw, re.M)
        if m: add("ib_write_bw average (MB/s)", p, float(m[1]))
print(f"{'benchmark':34} {'stock':>10} {'ours':>10} {'ours/stock':>10}")
for name, v in rows.items():
    if "stock" in v and "ours" in v:
        s, o = statistics.median(v["stock"]), statistics.median(v["ours"])
        print(f"{name:34} {s:10.1f} {o:10.1f} {o/s:10.2f}")
    else:
        print(f"{name:34} missing data: {v}")
PY
