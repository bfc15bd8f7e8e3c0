#!/bin/bash
# Runs INSIDE the VM, as root, started by tests/packaging/run.sh. The guest
# sees the host's root filesystem with /etc, /usr and /var as throwaway
# overlays (vng --overlay-rwdir), so dpkg really installs, upgrades, removes
# and purges the .deb here and the host never sees it.
# usage: guest.sh <out dir (--rwdir)> <probe binary> <deb release 1> <deb release 2> [releases dir]
# [releases dir]: other rdma-core releases unpacked by tests/releases/fetch.sh
# (<dir>/<suite>/root, versions.txt); with it, the installed package is also
# checked under trixie's and sid's libibverbs (see releases_installed).
# Writes `PASS <check>` / `FAIL <check>` / `SKIP <check> <why>` lines to
# <out>/results.txt, the evidence of each check to <out>/log/<check>.txt,
# then <out>/finished.
set -u
OUT=$1 PROBE=$2 DEB1=$3 DEB2=$4 RELEASES=${5:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
LIBDIR=/usr/lib/x86_64-linux-gnu/libibverbs
STOCK_LIB=$LIBDIR/librxe-rdmav34.so
# The library is installed as librxe_rs-rdmav34.so; the names libibverbs of
# the other private ABIs the library serves look for are symlinks to it.
OUR_LIB=$LIBDIR/librxe_rs-rdmav34.so
OUR_ABIS="34 57 59 64 65"
ENTRY=/etc/libibverbs.d/rxe.driver
SAVED=/etc/rxe-rs/rxe.driver.stock
OURS_LINE='rxe_rs: rxe0: context opened by rxe_rs'
mkdir -p "$OUT/log"
RESULTS=$OUT/results.txt
: > "$RESULTS"

# check <name> <command...>: PASS if the command exits 0; its output is the
# evidence kept in log/<name>.txt.
check() {
	local name=$1
	shift
	if "$@" > "$OUT/log/$name.txt" 2>&1; then
		echo "PASS $name" >> "$RESULTS"
	else
		echo "FAIL $name" >> "$RESULTS"
	fi
}

# A verbs program run the way a user would: a clean environment with no
# RDMAV_DRIVERS/IBV_DRIVERS or anything else, except VERBS_LOG_LEVEL=3 so
# that our provider logs (to stderr: no VERBS_LOG_FILE).
clean() {
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VERBS_LOG_LEVEL=3 "$@"
}

# uses <ours|stock>: the probe opens rxe0, maps the wanted provider library
# and not the other, prints no libibverbs warning; ours logs its
# `context opened by rxe_rs` line, the stock one nothing from rxe_rs.
uses() {
	local p rc want=$STOCK_LIB other=$OUR_LIB
	[ "$1" = ours ] && want=$OUR_LIB other=$STOCK_LIB
	p=$(clean "$PROBE" rxe0 2>&1)
	rc=$?
	echo "probe exit $rc; output:"
	echo "$p"
	echo "---"
	[ $rc = 0 ] || { echo "probe failed"; return 1; }
	echo "$p" | grep -qx "opened rxe0" || { echo "rxe0 not opened"; return 1; }
	echo "$p" | grep -qx "mapped $want" || { echo "$want not mapped"; return 1; }
	if echo "$p" | grep -qx "mapped $other"; then echo "$other is mapped"; return 1; fi
	if echo "$p" | grep -q "libibverbs: Warning"; then echo "libibverbs warned"; return 1; fi
	if [ "$1" = ours ]; then
		echo "$p" | grep -qF "$OURS_LINE" || { echo "no '$OURS_LINE' line"; return 1; }
	else
		if echo "$p" | grep -q "rxe_rs"; then echo "rxe_rs logged though the stock provider should serve"; return 1; fi
	fi
	echo "ok: $1 provider used"
}

# ibv_devinfo, a stock tool, through whichever provider is installed.
devinfo() {
	local p rc
	p=$(clean ibv_devinfo -d rxe0 2>&1)
	rc=$?
	echo "$p"
	[ $rc = 0 ] && echo "$p" | grep -q "hca_id:.*rxe0" || return 1
	if [ "$1" = ours ]; then
		echo "$p" | grep -qF "$OURS_LINE"
	else
		! echo "$p" | grep -q "rxe_rs"
	fi
}

# The installed `rxe-rs doctor`, run as a user would (no variable): exit 0,
# no FAIL, and it names the installed library, through the package's
# entry, as the one serving rxe0.
doctor_installed() {
	local p rc
	p=$(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin rxe-rs doctor 2>&1)
	rc=$?
	echo "$p"
	echo "exit $rc"
	[ $rc = 0 ] || return 1
	if echo "$p" | grep -q '^FAIL '; then return 1; fi
	echo "$p" | grep -qF "OK   verbs.provider: [rxe0] rxe0: served by rxe-rs, $OUR_LIB (from $ENTRY)" || return 1
	[ -f /usr/share/man/man1/rxe-rs-doctor.1.gz ] && [ -f /usr/share/man/man1/rxe-rs.1.gz ] &&
		[ -f /usr/share/man/man1/rxe-rs-sandbox.1.gz ] &&
		[ -f /usr/share/man/man7/rxe-rs-faults.7.gz ]
}

# Traffic through the installed provider: ibv_rc_pingpong, no variables.
pingpong() {
	env -i PATH=/usr/bin:/bin timeout 120 ibv_rc_pingpong -g 1 -d rxe0 -n 100 > "$OUT/log/pingpong.srv" 2>&1 &
	local spid=$! crc src
	sleep 3
	env -i PATH=/usr/bin:/bin timeout 100 ibv_rc_pingpong -g 1 -d rxe0 -n 100 localhost
	crc=$?
	wait $spid
	src=$?
	echo "server (exit $src):"
	cat "$OUT/log/pingpong.srv"
	[ $crc = 0 ] && [ $src = 0 ]
}

# The stock entry is back: the file in /etc/libibverbs.d is the stock one,
# byte for byte, no diversion is left, and nothing of ours remains.
stock_back() {
	ls -la /etc/libibverbs.d
	dpkg-divert --list '*rxe.driver*'
	[ -f $ENTRY ] && [ ! -L $ENTRY ] || { echo "$ENTRY is not a regular file"; return 1; }
	[ "$(sha256sum < $ENTRY)" = "$STOCK_SUM" ] || { echo "$ENTRY differs from the stock one"; return 1; }
	[ -z "$(dpkg-divert --list $ENTRY)" ] || { echo "diversion left"; return 1; }
	[ ! -e /etc/rxe-rs ] || { echo "/etc/rxe-rs left"; return 1; }
	[ ! -e /usr/share/rxe-rs ] || { echo "our files left"; return 1; }
	[ ! -e /usr/bin/rxe-rs ] || { echo "/usr/bin/rxe-rs left"; return 1; }
	for abi in $OUR_ABIS; do
		if [ -e $LIBDIR/librxe_rs-rdmav$abi.so ] || [ -L $LIBDIR/librxe_rs-rdmav$abi.so ]; then
			echo "$LIBDIR/librxe_rs-rdmav$abi.so left"
			return 1
		fi
	done
	for f in /etc/libibverbs.d/*; do
		if grep -qs "rxe_rs" "$f"; then echo "$f names rxe_rs"; return 1; fi
	done
	echo ok
}

# Installed: the stock entry is diverted out of /etc/libibverbs.d (kept
# intact), our entry names rxe_rs, and no file left in /etc/libibverbs.d
# names the stock rxe provider (libibverbs reads every file there).
diverted() {
	ls -la /etc/libibverbs.d /etc/rxe-rs
	dpkg-divert --list $ENTRY
	dpkg-divert --list $ENTRY | grep -qx "diversion of $ENTRY to $SAVED by rxe-rs" || return 1
	[ "$(sha256sum < $SAVED)" = "$STOCK_SUM" ] || { echo "saved stock entry differs"; return 1; }
	[ "$(readlink $ENTRY)" = /usr/share/rxe-rs/rxe_rs.driver ] || return 1
	grep -qx "driver rxe_rs" $ENTRY || return 1
	for f in /etc/libibverbs.d/*; do
		if grep -qsx "driver rxe" "$f"; then echo "$f still names the stock provider"; return 1; fi
	done
	[ -f $OUR_LIB ] && [ ! -L $OUR_LIB ] || return 1
	names
}

# Every name libibverbs of a served private ABI looks for: the library
# itself for 34, a relative symlink to it in the same directory for the
# others, each resolving to the one file.
names() {
	local abi f
	ls -la $LIBDIR/librxe_rs-*
	for abi in $OUR_ABIS; do
		f=$LIBDIR/librxe_rs-rdmav$abi.so
		if [ "$f" != $OUR_LIB ]; then
			[ "$(readlink "$f")" = "$(basename $OUR_LIB)" ] || { echo "$f is not a symlink to $(basename $OUR_LIB)"; return 1; }
		fi
		[ "$(readlink -f "$f")" = $OUR_LIB ] || { echo "$f does not resolve to $OUR_LIB"; return 1; }
	done
	echo ok
}

# The installed package under another release's libibverbs (trixie's 56.1,
# ABI 34; sid's 65, ABI 65), unpacked by tests/releases/fetch.sh and run
# through trixie's loader by tests/releases/run.sh with this machine's
# /etc/libibverbs.d (RXE_PROVIDER=system): that libibverbs has the same
# compiled-in driver-file directory and provider directory as this one, so
# it reads the entry the package installed (`driver rxe_rs`) and dlopens
# $LIBDIR/librxe_rs-rdmav<its ABI>.so, just as it would on a system where
# it is installed. (A real install of that libibverbs1 here is not
# possible: it needs glibc >= 2.38, Debian 12 has 2.36.)
# release_loads <suite>: the loader logs that name being loaded, and no
# librxe; release_serves <suite>: the probe opens rxe0 through ours. If the
# library logs that it does not serve that ABI (a build before it does),
# release_serves is a SKIP naming the library's own words.
release_abi() { sed -n 's/^# abi: //p' "$RELEASES/$1/versions.txt"; }
release_probe() {
	rm -f "$OUT/log/release-$1.ld".*
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VERBS_LOG_LEVEL=3 RXE_PROVIDER=system \
		"RXE_RELEASES_DIR=$RELEASES" "RXE_LD_DEBUG_OUTPUT=$OUT/log/release-$1.ld" \
		bash "$REPO/tests/releases/run.sh" "$1" "$PROBE" rxe0 > "$OUT/log/release-$1.probe" 2>&1
	echo $? > "$OUT/log/release-$1.rc"
}
release_loads() {
	local abi loaded
	abi=$(release_abi "$1")
	[ -n "$abi" ] || { echo "no ABI in $RELEASES/$1/versions.txt"; return 1; }
	release_probe "$1"
	echo "$1: libibverbs private ABI $abi; probe exit $(cat "$OUT/log/release-$1.rc"):"
	cat "$OUT/log/release-$1.probe"
	loaded=$(cat "$OUT/log/release-$1.ld".* 2>/dev/null | grep -o 'file=[^ ]*rdmav[^ ]*' | sort -u)
	echo "--- provider files the loader loaded:"
	echo "$loaded"
	echo "$loaded" | grep -qx "file=$LIBDIR/librxe_rs-rdmav$abi.so" || { echo "librxe_rs-rdmav$abi.so not loaded"; return 1; }
	if echo "$loaded" | grep -q 'librxe-rdmav'; then echo "a stock librxe was loaded"; return 1; fi
	# The host's driver files name rdma-core 44's other providers, which
	# exist only as -rdmav34.so: a libibverbs of another ABI warns about
	# each. Only a failure to load ours (or a librxe) counts here.
	if grep -q "couldn't load driver '[^']*rxe" "$OUT/log/release-$1.probe"; then echo "libibverbs could not load the rxe provider"; return 1; fi
	echo ok
}
release_serves() {
	local p
	p=$(cat "$OUT/log/release-$1.probe")
	echo "$p"
	[ "$(cat "$OUT/log/release-$1.rc")" = 0 ] && echo "$p" | grep -qx "opened rxe0" &&
		echo "$p" | grep -qx "mapped $OUR_LIB" && echo "$p" | grep -qF "$OURS_LINE"
}
releases_installed() {
	local r why
	for r in trixie sid; do
		if [ -z "$RELEASES" ] || [ ! -f "$RELEASES/$r/versions.txt" ]; then
			echo "SKIP installed_${r}_loads_ours_by_abi_name ${r} not unpacked (tests/releases/fetch.sh)" >> "$RESULTS"
			echo "SKIP installed_${r}_ours_used ${r} not unpacked (tests/releases/fetch.sh)" >> "$RESULTS"
			continue
		fi
		check "installed_${r}_loads_ours_by_abi_name" release_loads "$r"
		why=$(grep -o 'rxe_rs: not registered: .*' "$OUT/log/release-$r.probe" | head -1)
		if [ -n "$why" ] && echo "$why" | grep -q 'serves ABI'; then
			cp "$OUT/log/release-$r.probe" "$OUT/log/installed_${r}_ours_used.txt"
			echo "SKIP installed_${r}_ours_used $why" >> "$RESULTS"
		else
			check "installed_${r}_ours_used" release_serves "$r"
		fi
	done
}

# ibverbs-providers' own files are as dpkg installed them (none edited in
# place; dpkg --verify follows the diversion).
stock_pkg_intact() {
	dpkg --verify ibverbs-providers libibverbs1 && echo "dpkg --verify: clean"
}

status_is() {
	dpkg-query -W -f='${Status} ${Version}\n' rxe-rs 2>&1
	[ "$(dpkg-query -W -f='${Status} ${Version}' rxe-rs 2>/dev/null)" = "$1" ]
}

# Purged, or a first install that failed: dpkg's state for rxe-rs is
# not-installed (the selection, first word, may still say install).
not_installed() {
	dpkg-query -W -f='${Status}\n' rxe-rs 2>&1
	local st
	st=$(dpkg-query -W -f='${Status}' rxe-rs 2>/dev/null)
	[ -z "$st" ] || echo "$st" | grep -Eqx '(unknown|install|purge|deinstall) ok not-installed'
}

# A copy of the installed ibverbs-providers as a .deb (a small
# dpkg-repack), taken before we touch anything, to reinstall it while our
# diversion stands as an upgrade of rdma-core would.
repack_providers() {
	local r=/tmp/repack/root
	rm -rf /tmp/repack && mkdir -p $r/DEBIAN
	dpkg-query -L ibverbs-providers | while read -r f; do
		if [ -L "$f" ] || [ -f "$f" ]; then cp -a --parents "$f" $r; fi
	done
	dpkg -s ibverbs-providers | grep -vE '^(Status|Conffiles):|^ /' > $r/DEBIAN/control
	for s in preinst postinst prerm postrm triggers conffiles md5sums shlibs symbols; do
		[ -e /var/lib/dpkg/info/ibverbs-providers:amd64.$s ] && cp -a /var/lib/dpkg/info/ibverbs-providers:amd64.$s $r/DEBIAN/$s
	done
	dpkg-deb --root-owner-group -b $r /tmp/repack/ibverbs-providers.deb
}

# --- rxe0 on the VM's first NIC (wired to nothing outside the VM).
setup() {
	modprobe rdma_rxe || return 1
	NIC=$(ls /sys/class/net | grep -v '^lo$' | head -1)
	ip link set "$NIC" up && ip addr add 192.0.2.1/24 dev "$NIC" || return 1
	rdma link add rxe0 type rxe netdev "$NIC" || return 1
	rdma link show
	ls /etc/libibverbs.d
	[ -f $ENTRY ] && grep -qx "driver rxe" $ENTRY
}
check vm_setup_rxe0 setup
# The package ships man pages, so installing it triggers man-db, whose
# mandb rebuild took over 9 minutes in the emulated VM; without this file
# (in the throwaway /var) the trigger skips it, as with
# man-db/auto-update=false.
rm -f /var/lib/man-db/auto-update
STOCK_SUM=$(sha256sum < $ENTRY)
check vm_overlay_is_writable sh -c 'touch /etc/.rxe-rs-test /var/lib/dpkg/.rxe-rs-test /usr/.rxe-rs-test && rm /etc/.rxe-rs-test /var/lib/dpkg/.rxe-rs-test /usr/.rxe-rs-test'
check repack_ibverbs_providers repack_providers
check before_stock_used uses stock

# Why the stock entry must leave /etc/libibverbs.d rather than be renamed
# inside it: libibverbs reads every file there, whatever its name. Shown on
# a copy of the directory with rxe.driver renamed, bind-mounted in a private
# mount namespace: librxe is still loaded and serves rxe0.
in_dir_rename_still_loads_stock() {
	local d=/tmp/rename-test p
	rm -rf $d && cp -a /etc/libibverbs.d $d && mv $d/rxe.driver $d/rxe.driver.rxe-rs-diverted || return 1
	ls $d
	p=$(unshare -m sh -c "mount --bind $d /etc/libibverbs.d && exec env -i PATH=/usr/bin:/bin $PROBE rxe0" 2>&1)
	echo "$p"
	echo "$p" | grep -qx "mapped $STOCK_LIB" && echo "$p" | grep -qx "opened rxe0"
}
check rationale_renamed_in_dir_still_loads_librxe in_dir_rename_still_loads_stock

# Install.
check install_deb dpkg -i "$DEB1"
check install_status status_is "install ok installed 0.1.0-1"
check install_diverts_stock_entry diverted
check install_stock_packages_intact stock_pkg_intact
check install_ours_used uses ours
check install_ibv_devinfo_ours devinfo ours
check install_pingpong pingpong
check install_provider_names names
check install_doctor_says_ours_serves doctor_installed
releases_installed

# ibverbs-providers reinstalled (as by an upgrade) while we are installed:
# its rxe.driver lands in the diverted place and ours stays in charge.
check providers_reinstall dpkg -i /tmp/repack/ibverbs-providers.deb
check providers_reinstall_still_diverted diverted
check providers_reinstall_ours_used uses ours

# Upgrade in place: 0.1.0-1 -> 0.1.0-2, the diversion survives.
check upgrade_deb dpkg -i "$DEB2"
check upgrade_status status_is "install ok installed 0.1.0-2"
check upgrade_still_diverted diverted
check upgrade_ours_used uses ours
# Same version again (dpkg -i of an installed version is an upgrade too).
check reinstall_same_deb dpkg -i "$DEB2"
check reinstall_same_ours_used uses ours

# Remove: the stock provider is back.
check remove_deb dpkg -r rxe-rs
check remove_stock_entry_back stock_back
check remove_stock_packages_intact stock_pkg_intact
check remove_stock_used uses stock
check remove_ibv_devinfo_stock devinfo stock
# Removed, not purged: dpkg keeps the postrm for a later purge (that is
# all "config-files" means here: the package has no conffiles).
check remove_state_config_files status_is "deinstall ok config-files 0.1.0-2"

# Install again (from removed), then purge.
check reinstall_deb dpkg -i "$DEB1"
check reinstall_diverted diverted
check reinstall_ours_used uses ours
check purge_deb dpkg -P rxe-rs
check purge_stock_entry_back stock_back
check purge_stock_used uses stock
check purge_not_installed not_installed

# A failed first install (unpack error after preinst has diverted): postrm
# abort-install must undo the diversion. The error: a file conflict with a
# package that owns one of our paths.
blocker() {
	local r=/tmp/blocker
	rm -rf $r && mkdir -p $r/DEBIAN $r/usr/share/rxe-rs
	echo "driver none" > $r/usr/share/rxe-rs/rxe_rs.driver
	printf '%s\n' 'Package: rxe-rs-test-blocker' 'Version: 1' 'Architecture: all' \
		'Maintainer: test <test@example.com>' 'Description: owns a path of rxe-rs, to fail its unpack' > $r/DEBIAN/control
	dpkg-deb --root-owner-group -b $r /tmp/blocker.deb && dpkg -i /tmp/blocker.deb
}
check abort_install_setup_conflict blocker
check abort_install_unpack_fails sh -c "! dpkg -i '$DEB1' && dpkg -s rxe-rs-test-blocker | grep -q 'ok installed'"
check abort_install_cleanup dpkg -P rxe-rs-test-blocker
check abort_install_stock_entry_back stock_back
check abort_install_stock_used uses stock
check abort_install_not_installed not_installed

echo done > "$OUT/finished"
