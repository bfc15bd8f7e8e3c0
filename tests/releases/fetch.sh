#!/bin/bash
# Downloads the userspace of other rdma-core releases (Debian trixie: rdma-core
# 56.1, ABI 34; Debian sid: rdma-core 65, ABI 65) and unpacks it under
# target/releases/<suite>/root, installing nothing: apt runs with a private
# configuration (its own sources, lists, cache and empty dpkg status, none of
# the machine's apt.conf.d), so the machine's apt state is left as it was.
# A release whose stamp (target/releases/<suite>/versions.txt) was written for
# the same package list is not fetched again: a second run downloads nothing.
#
# Each root holds that suite's rdma-core (libibverbs1, ibverbs-providers,
# ibverbs-utils, librdmacm, rdmacm-utils, libibumad3; trixie's also
# libibverbs-dev, for its headers) and libnl, plus from
# trixie: libc6 (its loader runs everything: these binaries need glibc >= 2.38,
# the host has 2.36), perftest and perftest's libraries. Every program and
# library there is checked to resolve all its libraries inside the root.
# Run a program of a release with tests/releases/run.sh.
#
# usage: tests/releases/fetch.sh [--refresh] [suite...]   (default: trixie sid)
# Needs root (apt's download sandbox), apt-get, dpkg-deb and the network.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
top=$repo/target/releases
. "$repo/tests/lib/private-apt.sh"
refresh=0
if [ "${1:-}" = --refresh ]; then refresh=1; shift; fi
[ $# -gt 0 ] || set -- trixie sid

# The packages of a suite's root, as <package>/<suite to take it from>.
# librdmacm is librdmacm1t64 since the 64-bit time_t transition (trixie, sid).
packages() {
	local s=$1 p
	for p in libibverbs1 ibverbs-providers ibverbs-utils librdmacm rdmacm-utils libibumad3 libnl-3-200 libnl-route-3-200; do
		echo "$p/$s"
	done
	# trixie's verbs.h (rdma-core >= 45: ibv_wr_flush) for tests/guest/features.sh.
	[ "$s" != trixie ] || echo libibverbs-dev/trixie
	# trixie's loader and C library for every release; perftest (the same
	# upstream version in trixie and sid) and what it links beyond rdma-core.
	for p in libc6 perftest libpci3 libudev1 libcap2 zlib1g; do
		echo "$p/trixie"
	done
}

spec_of() { packages "$1" | tr '\n' ' '; }

todo=()
for s in "$@"; do
	case $s in trixie | sid) ;; *) echo "unknown suite $s (trixie or sid)" >&2; exit 2 ;; esac
	stamp=$top/$s/versions.txt
	if [ "$refresh" = 0 ] && [ -s "$stamp" ] && [ "$(sed -n 's/^# packages: //p' "$stamp")" = "$(spec_of "$s")" ]; then
		echo "== $s: cached ($stamp)"
		grep -v '^# packages' "$stamp"
	else
		todo+=("$s")
	fi
done
[ ${#todo[@]} -gt 0 ] || exit 0

private_apt "$top/apt" trixie sid
t0=$SECONDS
echo "== private apt update ($PRIVATE_APT_URI, trixie and sid; keyring $PRIVATE_APT_KEY)"
apt-get "${APT_OPTS[@]}" update
echo "   ($((SECONDS - t0)) s)"

for s in "${todo[@]}"; do
	debs=$top/debs/$s root=$top/$s/root stamp=$top/$s/versions.txt
	rm -rf "$debs" "${top:?}/$s" && mkdir -p "$debs" "$root"
	want=()
	for spec in $(packages "$s"); do
		p=${spec%/*} from=${spec#*/}
		if [ "$p" = librdmacm ]; then
			for p in librdmacm1t64 librdmacm1; do
				apt-cache "${APT_OPTS[@]}" show "$p/$from" > /dev/null 2>&1 && break
			done
		fi
		want+=("$p/$from")
	done
	echo "== $s: downloading ${want[*]}"
	(cd "$debs" && apt-get "${APT_OPTS[@]}" download "${want[@]}")
	{
		echo "# packages: $(spec_of "$s")"
		for spec in "${want[@]}"; do
			p=${spec%/*}
			deb=$(ls "$debs/${p}_"*.deb)
			dpkg-deb -x "$deb" "$root"
			echo "$p $(dpkg-deb -f "$deb" Version) ${spec#*/}"
		done
	} > "$stamp.new"

	# Check the root: every program and library finds all its libraries, of
	# the versions it needs, inside the root (none from the machine).
	lib=$root/usr/lib/x86_64-linux-gnu
	ld=$lib/ld-linux-x86-64.so.2
	[ -x "$ld" ] || { echo "$s: no loader at $ld" >&2; exit 1; }
	bad=0
	for f in "$root"/usr/bin/* "$lib"/*.so* "$lib"/libibverbs/*.so; do
		[ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
		out=$(LD_WARN=1 "$ld" --library-path "$lib" --list "$f" 2>&1) || true
		if echo "$out" | grep -E 'not found|=> /|error' | grep -v "=> $root/" | grep -q .; then
			echo "$s: $f does not resolve inside the root:" >&2
			echo "$out" | grep -E 'not found|=> /|error' | grep -v "=> $root/" >&2
			bad=1
		fi
	done
	[ "$bad" = 0 ] || exit 1
	abi=$(sed -n 's/^librxe-rdmav\([0-9]*\)\.so$/\1/p' < <(ls "$lib/libibverbs"))
	[ -n "$abi" ] || { echo "$s: no librxe-rdmav*.so in $lib/libibverbs" >&2; exit 1; }
	echo "# abi: $abi" >> "$stamp.new"
	# A smoke run on this machine (no RDMA here: the device list is empty or
	# refused, but the loader and libibverbs must start).
	err=$("$ld" --library-path "$lib" "$root/usr/bin/ibv_devices" 2>&1 > /dev/null) || true
	if echo "$err" | grep -qE 'error while loading|not found|symbol lookup'; then
		echo "$s: ibv_devices does not start: $err" >&2
		exit 1
	fi
	mv "$stamp.new" "$stamp"
	echo "== $s: unpacked in $root"
	grep -v '^# packages' "$stamp"
done
echo "== done in $((SECONDS - t0)) s"
