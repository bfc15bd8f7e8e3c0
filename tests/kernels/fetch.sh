#!/bin/bash
# Downloads Debian's newer kernels and unpacks each under
# target/kernels/<name>/root, installing nothing (apt runs with the private
# configuration of tests/lib/private-apt.sh, so the machine's apt state is
# left as it was):
#   6.12  bookworm-backports' 6.12 (rxe has FLUSH and ATOMIC WRITE, no ODP)
#   7     trixie-backports' 7.3 (rxe has ODP; split into linux-binary-*,
#         linux-modules-* and linux-base-* (modules.builtin, config) packages)
# The packages are pinned below, so runs are reproducible; a pinned version
# the mirror no longer has is an error that names the newest one there
# (`--newest` lists them: apt's newest linux-image-*-amd64 of each suite).
#
# Each root holds boot/vmlinuz-<version> and lib/modules/<version> with the
# modules.dep that `depmod -b` wrote. Boot one with
#   RXE_RS_KERNEL=target/kernels/<name>/root/boot/vmlinuz-<version> tests/run-vm.sh ...
# (virtme-ng finds the modules by walking up from the vmlinuz to the first
# directory holding lib/modules, and links lib/modules/<version> there into
# the guest's /lib/modules). target/kernels/<name>/versions.txt is the stamp
# (it names the vmlinuz, relative to target/kernels/<name>):
# a kernel whose stamp was written for the same packages is not fetched
# again, so a second run downloads nothing.
#
# usage: tests/kernels/fetch.sh [--refresh] [name...]   (default: every kernel)
#        tests/kernels/fetch.sh --newest
# Needs root (apt's download sandbox), apt-get, dpkg-deb, depmod and the network.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
top=$repo/target/kernels
. "$repo/tests/lib/private-apt.sh"

# <name> <suite> <version> <package>...: what each kernel is made of.
KERNELS=(
	"6.12 bookworm-backports 6.12.95-1~bpo12+1 linux-image-6.12.95+deb12-amd64-unsigned"
	"7 trixie-backports 7.3.4-1~bpo13+1 linux-binary-unsigned-7.3.4+deb13-amd64 linux-modules-7.3.4+deb13-amd64 linux-base-7.3.4+deb13-amd64"
)
SUITES="bookworm-backports trixie trixie-backports sid"

kernel_spec() {
	local k
	for k in "${KERNELS[@]}"; do
		[ "${k%% *}" != "$1" ] || { echo "$k"; return 0; }
	done
	return 1
}

refresh=0 newest=0
case ${1:-} in
--refresh) refresh=1; shift ;;
--newest) newest=1; shift ;;
esac
if [ $# = 0 ]; then
	for k in "${KERNELS[@]}"; do set -- "$@" "${k%% *}"; done
fi

todo=()
if [ "$newest" = 0 ]; then
	for name in "$@"; do
		spec=$(kernel_spec "$name") || { echo "unknown kernel $name (one of: $(printf '%s ' "${KERNELS[@]%% *}"))" >&2; exit 2; }
		stamp=$top/$name/versions.txt
		if [ "$refresh" = 0 ] && [ -s "$stamp" ] && [ "$(sed -n 's/^# packages: //p' "$stamp")" = "$spec" ]; then
			echo "== $name: cached ($stamp)"
			grep -v '^# packages' "$stamp"
		else
			todo+=("$name")
		fi
	done
	[ ${#todo[@]} -gt 0 ] || exit 0
fi

private_apt "$top/apt" $SUITES
t0=$SECONDS
echo "== private apt update ($PRIVATE_APT_URI, $SUITES; keyring $PRIVATE_APT_KEY)"
apt-get "${APT_OPTS[@]}" update
echo "   ($((SECONDS - t0)) s)"

# newest_in <suite>: apt's newest amd64 kernel image there (the generic
# flavour; linux-image-<v>-amd64[-unsigned] or, split, linux-binary-*), as
# "<version> <package>".
newest_in() {
	apt-cache "${APT_OPTS[@]}" search --names-only '^linux-(image|binary)-(unsigned-)?[0-9][0-9.]*\+deb[0-9.]*-amd64(-unsigned)?$' |
		cut -d' ' -f1 | sort -u | xargs apt-cache "${APT_OPTS[@]}" madison |
		awk -F' *[|] *' -v s="$1" '$3 ~ (" " s "/main ") { print $2, $1 }' | sort -V | tail -1
}

if [ "$newest" = 1 ]; then
	for s in $SUITES; do
		echo "$s: $(newest_in "$s")"
	done
	exit 0
fi

for name in "${todo[@]}"; do
	read -r _ suite version pkgs < <(kernel_spec "$name")
	# The pinned version, from that suite.
	for p in $pkgs; do
		if ! apt-cache "${APT_OPTS[@]}" madison "$p" | awk -F' *[|] *' -v s="$suite" -v v="$version" '$2 == v && $3 ~ (" " s "/main ")' | grep -q .; then
			echo "$name: $p $version is no longer in $suite; apt's newest kernel there: $(newest_in "$suite")." >&2
			echo "Pin it (for a split kernel, with its linux-modules-* and linux-base-* packages) in KERNELS in $0." >&2
			exit 1
		fi
	done
	debs=$top/debs/$name root=$top/$name/root stamp=$top/$name/versions.txt
	rm -rf "$debs" "${top:?}/$name" && mkdir -p "$debs" "$root"
	want=()
	for p in $pkgs; do want+=("$p=$version"); done
	echo "== $name: downloading ${want[*]}"
	(cd "$debs" && apt-get "${APT_OPTS[@]}" download "${want[@]}")
	{
		echo "# packages: $(kernel_spec "$name")"
		for p in $pkgs; do
			deb=$(ls "$debs/${p}_"*.deb)
			dpkg-deb -x "$deb" "$root"
			echo "$p $(dpkg-deb -f "$deb" Version) $suite"
		done
	} > "$stamp.new"
	# Merged /usr: packages that ship usr/lib/modules get lib -> usr/lib, as on
	# the machine, so that depmod -b and virtme-ng find lib/modules.
	if [ ! -e "$root/lib" ] && [ -d "$root/usr/lib/modules" ]; then
		ln -s usr/lib "$root/lib"
	fi
	kvers=$(ls "$root/lib/modules")
	[ "$(echo "$kvers" | wc -w)" = 1 ] || { echo "$name: expected one kernel version in $root/lib/modules, found: $kvers" >&2; exit 1; }
	kver=$kvers
	# Split packages (7.x) ship the image as lib/modules/<version>/vmlinuz*,
	# which their install hook would copy to /boot.
	if [ ! -e "$root/boot/vmlinuz-$kver" ]; then
		img=$(cd "$root/lib/modules/$kver" && ls vmlinuz* 2>/dev/null | head -1)
		[ -n "$img" ] && mkdir -p "$root/boot" && ln -s "../lib/modules/$kver/$img" "$root/boot/vmlinuz-$kver"
	fi
	[ -f "$root/boot/vmlinuz-$kver" ] || { echo "$name: no $root/boot/vmlinuz-$kver" >&2; exit 1; }
	depmod -b "$root" "$kver"
	# What the VM tests load (ib_uverbs: rdma_rxe stopped pulling it in 7.x).
	for m in rdma_rxe ib_uverbs rdma_ucm virtio_net; do
		modprobe -d "$root" -S "$kver" --show-depends "$m" > /dev/null || { echo "$name: $m is not a module of $kver" >&2; exit 1; }
	done
	rm -rf "$debs"
	{
		echo "# kernel: $kver"
		echo "# vmlinuz: root/boot/vmlinuz-$kver"
	} >> "$stamp.new"
	mv "$stamp.new" "$stamp"
	echo "== $name: unpacked in $root"
	grep -v '^# packages' "$stamp"
done
echo "== done in $((SECONDS - t0)) s"
