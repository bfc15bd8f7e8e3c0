#!/bin/bash
# Packaging tests.
#  1. Builds the packages (bash scripts/package.sh 1 and 2; two releases for
#     the in-place upgrade), so what is tested is what the tree builds.
#  2. Boots one VM (virtme-ng, Debian's kernel, rdma_rxe) whose /etc, /usr
#     and /var are overlays thrown away at exit, and there installs the .deb
#     for real with dpkg, upgrades it in place, removes, reinstalls, purges
#     it and fails an install on purpose (tests/packaging/guest.sh): after
#     each step a verbs program started with no variable must use ours
#     (its log line, its library mapped, librxe not mapped) or the stock one.
#  3. Checks the .rpm on this host: file list, requirements, scriptlets,
#     metadata from the package itself, then installs it with its scriptlets
#     into a scratch root (busybox for /bin/sh, a stand-in libibverbs
#     package owning rxe.driver), upgrades it, upgrades libibverbs under it,
#     erases it, and compares what it puts where with the .deb.
#  4. Checks the host was left as found.
# The library serves libibverbs' private ABIs 34, 57, 59, 64 and 65, and
# both packages install it under each name libibverbs looks for
# (librxe_rs-rdmav<ABI>.so); the dependencies are checked to accept every
# libibverbs of those ABIs (Debian 12, 13 and sid; Fedora 41-44, RHEL 9.6
# and 10) and to refuse the ones outside. In the VM the installed .deb is
# also run under trixie's and sid's libibverbs, unpacked by
# tests/releases/fetch.sh (run here if target/releases lacks them;
# RXE_RELEASES_DIR=<dir> uses releases unpacked elsewhere instead).
# Prints `PASS <check>` / `FAIL <check>` / `SKIP <check> <why>` lines, then
# `N passed, M failed`; exits 1 if any check failed. Run as root on the
# Debian 12 test machine.
# usage: bash tests/packaging/run.sh
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/packaging
cd "$repo"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
pkgs=$repo/target/packages
deb1=$pkgs/rxe-rs_${version}-1_amd64.deb
deb2=$pkgs/rxe-rs_${version}-2_amd64.deb
rpm1=$pkgs/rxe-rs-${version}-1.x86_64.rpm
rpm2=$pkgs/rxe-rs-${version}-2.x86_64.rpm
work=$repo/target/packaging-test
rm -rf "$work" && mkdir -p "$work"
passed=0 failed=0 skipped=0
# The private ABIs served, and so the names installed; the first is the file.
abis="34 57 59 64 65"
# libibverbs releases whose dependencies must be accepted (their private ABI
# is one of the above) and refused (rdma-core 43: before the oldest release
# the library was checked against; 66: an ABI not known yet).
accept_rpm="44.0 51.0 55.0 57.0 58.0 61.0 65.0 65.1"
refuse_rpm="43.0 66.0"

result() { # result <name> <status>
	if [ "$2" = 0 ]; then
		echo "PASS $1"
		passed=$((passed + 1))
	else
		echo "FAIL $1"
		failed=$((failed + 1))
	fi
}
# check <name> <command...>: PASS if it exits 0; output to $work/log/<name>.txt
mkdir -p "$work/log"
check() {
	local name=$1
	shift
	"$@" > "$work/log/$name.txt" 2>&1
	result "$name" $?
}
finish() {
	echo "logs: $work/log, $work/vm/log"
	[ "$skipped" = 0 ] || echo "$skipped skipped"
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

# What the host looks like before: compared at the end.
host_state() {
	sha256sum /var/lib/dpkg/status /var/lib/dpkg/diversions
	ls -la --time-style=full-iso /etc/libibverbs.d /usr/lib/x86_64-linux-gnu/libibverbs
	sha256sum /etc/libibverbs.d/*
	ls -d /etc/rxe-rs /usr/share/rxe-rs 2>&1
	ls -la --time-style=full-iso /root/.rpmdb 2>&1
}
host_state > "$work/host-before.txt"

# --- 1. packages
build() {
	bash scripts/package.sh 2 && bash scripts/package.sh 1
}
check build_packages build
if ! [ -e "$deb1" ] || ! [ -e "$deb2" ] || ! [ -e "$rpm1" ] || ! [ -e "$rpm2" ]; then
	cat "$work/log/build_packages.txt"
	finish
fi

# --- 2. the .deb: its dependencies resolved by dpkg against each Debian
# release's libibverbs1 (and libc6); then, in the VM, installed for real.
# Other releases, unpacked without installing (tests/releases/fetch.sh).
if [ -n "${RXE_RELEASES_DIR:-}" ]; then
	releases=$RXE_RELEASES_DIR
else
	releases=$repo/target/releases
	check fetch_releases bash tests/releases/fetch.sh
fi

deb_control() {
	dpkg-deb -I "$deb1" control
	dpkg-deb -c "$deb1"
	local d
	d=$(dpkg-deb -f "$deb1" Depends)
	[ "$d" = "libc6 (>= 2.34), libgcc-s1 (>= 4.2), libibverbs1 (>= 44), libibverbs1 (<< 66~)" ] || { echo "Depends: $d"; return 1; }
	# `rxe-rs sandbox` boots qemu: suggested, not needed by the provider.
	[ "$(dpkg-deb -f "$deb1" Suggests)" = qemu-system-x86 ] || { echo "Suggests: $(dpkg-deb -f "$deb1" Suggests)"; return 1; }
	if dpkg-deb -f "$deb1" Description | grep -q 'ABI 34 as shipped'; then echo "description names ABI 34 only"; return 1; fi
	# The five names: the file and four relative symlinks to it.
	local lst abi
	lst=$(dpkg-deb -c "$deb1")
	echo "$lst" | grep -q '^-.* \./usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav34\.so$' || return 1
	for abi in $abis; do
		[ "$abi" = 34 ] && continue
		echo "$lst" | grep -q "^l.* \./usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav$abi\.so -> librxe_rs-rdmav34\.so\$" || { echo "no symlink for ABI $abi"; return 1; }
	done
	[ "$(echo "$lst" | grep -c 'librxe_rs-rdmav')" = 5 ] || return 1
	# The rxe-rs command and its man pages.
	echo "$lst" | grep -q '^-rwxr-xr-x .* \./usr/bin/rxe-rs$' || { echo "no /usr/bin/rxe-rs"; return 1; }
	echo "$lst" | grep -q ' \./usr/share/man/man1/rxe-rs\.1\.gz$' && echo "$lst" | grep -q ' \./usr/share/man/man1/rxe-rs-doctor\.1\.gz$' &&
		echo "$lst" | grep -q ' \./usr/share/man/man1/rxe-rs-sandbox\.1\.gz$' &&
		echo "$lst" | grep -q ' \./usr/share/man/man7/rxe-rs-faults\.7\.gz$'
}
check deb_control_depends_and_names deb_control

# deb_accepts <libibverbs1 control> <libc6 control> <yes|no>: dpkg's own
# resolution (dpkg-checkbuilddeps, Dpkg::Deps) of our Depends against an
# admin directory whose status holds exactly that libibverbs1, that libc6
# and this machine's libgcc-s1.
deb_accepts() {
	local adm=$work/dpkg-deps/adm dep
	rm -rf "$adm" && mkdir -p "$adm" && touch "$adm/available"
	{
		for c in "$1" "$2" "$(dpkg-query -s libgcc-s1)"; do
			echo "$c" | grep -E '^(Package|Version|Architecture|Multi-Arch|Provides):'
			echo "Status: install ok installed"
			echo
		done
	} > "$adm/status"
	printf 'Source: rxe-rs\n\nPackage: rxe-rs\nArchitecture: any\n' > "$work/dpkg-deps/control"
	dep=$(dpkg-deb -f "$deb1" Depends)
	echo "libibverbs1 $(echo "$1" | sed -n 's/^Version: //p'), libc6 $(echo "$2" | sed -n 's/^Version: //p'):"
	if dpkg-checkbuilddeps -d "$dep" --admindir="$adm" "$work/dpkg-deps/control"; then
		echo "  accepted"
		[ "$3" = yes ]
	else
		echo "  refused"
		[ "$3" = no ]
	fi
}
fake_control() { # <package> <version>: a control paragraph of that version
	printf 'Package: %s\nVersion: %s\nArchitecture: amd64\nMulti-Arch: same\n' "$1" "$2"
}
deb_deps() {
	local ok=0 suite v c
	# Debian 12: this machine's libibverbs1 and libc6.
	deb_accepts "$(dpkg-query -s libibverbs1)" "$(dpkg-query -s libc6)" yes || ok=1
	# Debian 13 and sid: their libibverbs1 and libc6 .debs (sid's root takes
	# trixie's libc6; sid's own is newer still).
	for suite in trixie sid; do
		c=$(ls "$releases/debs/$suite"/libibverbs1_*_amd64.deb 2>/dev/null | head -1)
		[ -n "$c" ] || { echo "$suite: no libibverbs1 .deb under $releases/debs/$suite"; ok=1; continue; }
		echo "$suite: $(basename "$c")"
		deb_accepts "$(dpkg-deb -f "$c")" "$(dpkg-deb -f "$(ls "$releases/debs/$suite"/libc6_*_amd64.deb | head -1)")" yes || ok=1
	done
	# Inside and outside the range, by version alone.
	for v in 44.0-1 50.0-2ubuntu0.2 56.1-1 61.0-1 65.0-1.1 65.1-1; do
		deb_accepts "$(fake_control libibverbs1 "$v")" "$(dpkg-query -s libc6)" yes || ok=1
	done
	for v in 43.0-1 39.0-1 66~rc1-1 66.0-1; do
		deb_accepts "$(fake_control libibverbs1 "$v")" "$(dpkg-query -s libc6)" no || ok=1
	done
	return $ok
}
check deb_depends_accept_debian_12_13_sid deb_deps

gcc -O2 -Wall -o "$work/probe" "$here/probe.c" -libverbs > "$work/log/probe-build.txt" 2>&1
result build_probe $?
vm=$work/vm
mkdir -p "$vm"
kernel=$(ls /boot/vmlinuz-*-amd64 | sort -V | tail -1)
# No KVM on these machines: software emulation, 2 CPUs, 4 GiB (see
# /work/shared/notes/soft-roce-vm.md). The overlays make dpkg's writes to
# /etc, /usr and /var the guest's alone.
# tsc=reliable: emulation's clocksource watchdog would otherwise mark the
# TSC unstable and the patching that follows can panic the guest
# (tools/rxe-rs/src/sandbox.rs, vng_args).
timeout 1800 vng --run "$kernel" --disable-kvm --append tsc=reliable --memory 4G --cpus 2 --network loop --no-dhcp \
	--overlay-rwdir=/etc --overlay-rwdir=/usr --overlay-rwdir=/var --rwdir "$vm" \
	--exec "bash $here/guest.sh $vm $work/probe $deb1 $deb2 $releases" > "$work/vm.log" 2>&1
[ "$(cat "$vm/finished" 2>/dev/null)" = done ]
result vm_ran_to_the_end $?
[ -f "$vm/finished" ] || tail -30 "$work/vm.log"
if [ -f "$vm/results.txt" ]; then
	while read -r verdict name why; do
		if [ "$verdict" = SKIP ]; then
			echo "SKIP deb_$name $why"
			skipped=$((skipped + 1))
		else
			[ "$verdict" = PASS ] && result "deb_$name" 0 || result "deb_$name" 1
		fi
	done < "$vm/results.txt"
fi

# --- 3. the .rpm, on the host: rpm only reads it, or writes into $rr.
# rpm's default database is ~/.rpmdb on Debian: point it elsewhere.
export HOME=$work/rpmhome
mkdir -p "$HOME"
rq() { rpm --dbpath "$work/rpmdb-query" "$@"; }
mkdir -p "$work/rpmdb-query"

rpm_files() {
	local want got
	want=$( (printf '%s\n' /etc/libibverbs.d/rxe_rs.driver /usr/bin/rxe-rs \
		/usr/share/man/man1/rxe-rs.1.gz /usr/share/man/man1/rxe-rs-doctor.1.gz /usr/share/man/man1/rxe-rs-sandbox.1.gz /usr/share/man/man7/rxe-rs-faults.7.gz \
		/usr/share/doc/rxe-rs/README.md /usr/share/licenses/rxe-rs/LICENSE /usr/share/rxe-rs \
		/usr/share/rxe-rs/rxe_rs.driver
		for abi in $abis; do echo "/usr/lib64/libibverbs/librxe_rs-rdmav$abi.so"; done) | sort)
	got=$(rq -qpl "$rpm1" | sort)
	rq -qplv "$rpm1"
	[ "$got" = "$want" ] || { diff <(echo "$want") <(echo "$got"); return 1; }
	# The entry is a symlink to the driver file; the library is the .deb's.
	local links
	links=$(rq -qp --qf '[%{FILENAMES} %{FILELINKTOS}\n]' "$rpm1")
	echo "$links" | grep -qx '/etc/libibverbs.d/rxe_rs.driver ../../usr/share/rxe-rs/rxe_rs.driver' || return 1
	# librxe_rs-rdmav34.so is the file, every other name a relative symlink
	# to it in the same directory.
	echo "$links" | grep -qx '/usr/lib64/libibverbs/librxe_rs-rdmav34.so ' || return 1
	for abi in $abis; do
		[ "$abi" = 34 ] && continue
		echo "$links" | grep -qx "/usr/lib64/libibverbs/librxe_rs-rdmav$abi.so librxe_rs-rdmav34.so" || { echo "no symlink for ABI $abi"; return 1; }
	done
}
check rpm_file_list rpm_files

# The requirements on libibverbs are the range and nothing else: no
# libibverbs.so.1(IBVERBS_PRIVATE_<N>) (the library resolves libibverbs'
# private functions with dlvsym, so find-requires has no version need to
# turn into one) and no libibverbs.so.1() (it does not link libibverbs).
rpm_requires() {
	local r
	r=$(rq -qp --requires "$rpm1")
	echo "$r"
	if echo "$r" | grep -q 'PRIVATE'; then echo "a private ABI is pinned"; return 1; fi
	[ "$(echo "$r" | grep 'libibverbs')" = "$(printf '%s\n' 'libibverbs >= 44' 'libibverbs < 66')" ] || { echo "libibverbs requirements differ"; return 1; }
	[ "$(rq -qp --suggests "$rpm1")" = qemu-system-x86-core ] || { echo "suggests: $(rq -qp --suggests "$rpm1")"; return 1; }
}
check rpm_requires_libibverbs_range_no_private_abi rpm_requires

# rpm's own resolution of every requirement: in a scratch database, a
# stand-in libibverbs of each version (tests/packaging/fake-libibverbs.spec)
# plus a stand-in providing everything else the package requires (libc,
# libgcc_s, /bin/sh; generated from the package's requirement list), then
# `rpm -i --test`. Fedora 41-44 ship rdma-core 51, 55, 58, 61; RHEL 9.6 57;
# RHEL 10 is taken as >= 57.
rpm_resolves() {
	local db=$work/rpmdb-resolve v ok=0 want
	rm -rf "$work/resolve-build" && mkdir -p "$work/resolve-build"
	{
		echo 'Name: rxe-rs-test-base'
		echo 'Version: 1'
		echo 'Release: 1'
		echo 'Summary: stand-in for the rest of a system'
		echo 'License: MIT'
		rq -qp --requires "$rpm1" | grep -v '^libibverbs\|^rpmlib(' | sort -u | sed 's/^/Provides: /'
		printf '%%description\nstand-in\n%%files\n'
	} > "$work/resolve-build/base.spec"
	rpmbuild -bb --quiet --define "_topdir $work/resolve-build" --define "_build_id_links none" \
		"$work/resolve-build/base.spec" || return 1
	for v in $accept_rpm $refuse_rpm; do
		fake_libibverbs 1 "$v" > /dev/null || return 1
		rm -rf "$db" && mkdir -p "$db" && rpm --dbpath "$db" --initdb || return 1
		rpm --dbpath "$db" -i --justdb --nodeps "$work"/resolve-build/RPMS/*/rxe-rs-test-base-1-1.*.rpm \
			"$work/fake-build/RPMS/x86_64/libibverbs-$v-1.x86_64.rpm" || return 1
		want=no
		case " $accept_rpm " in *" $v "*) want=yes ;; esac
		if rpm --dbpath "$db" -i --test --justdb "$rpm1"; then
			echo "libibverbs $v: accepted (want $want)"
			[ $want = yes ] || ok=1
		else
			echo "libibverbs $v: refused (want $want)"
			[ $want = no ] || ok=1
		fi
	done
	return $ok
}

rpm_metadata() {
	rq -qpi "$rpm1"
	rq -qp --changelog "$rpm1"
	[ "$(rq -qp --qf '%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}' "$rpm1")" = "rxe-rs $version 1 x86_64 MIT" ] || return 1
	rq -qp --changelog "$rpm1" | grep -q "$version-1" || return 1
	rq -qp --qf '%{DESCRIPTION}' "$rpm1" | grep -q librxe || return 1
	rq -qpl "$rpm1" | grep -q LICENSE
}
check rpm_metadata rpm_metadata

rpm_scripts() {
	local s
	s=$(rq -qp --scripts --triggers "$rpm1")
	echo "$s"
	echo "$s" | grep -q '^postinstall scriptlet' || return 1
	echo "$s" | grep -q '^postuninstall scriptlet' || return 1
	echo "$s" | grep -q '^triggerin scriptlet (using /bin/sh) -- libibverbs$' || return 1
	echo "$s" | grep -q 'mv -f /etc/libibverbs.d/rxe.driver /etc/rxe-rs/rxe.driver.stock' || return 1
	echo "$s" | grep -q 'if \[ "$1" -eq 0 \]' || return 1
	echo "$s" | grep -q 'mv -f /etc/rxe-rs/rxe.driver.stock /etc/libibverbs.d/rxe.driver'
}
check rpm_scriptlets rpm_scripts

# A scratch root: busybox as /bin/sh (the scriptlets run chrooted there)
# and a stand-in libibverbs package owning /etc/libibverbs.d/rxe.driver, as
# Fedora's does (%config(noreplace)), and providing the private ABI.
rr=$work/rpmroot
fake_libibverbs() { # <release> [version, default 44.0]
	local rel=$1 v=${2:-44.0}
	HOME=$HOME rpmbuild -bb --quiet --define "_topdir $work/fake-build" --define "fake_release $rel" \
		--define "fake_version $v" --define "_build_id_links none" "$here/fake-libibverbs.spec" || return 1
	ls "$work"/fake-build/RPMS/x86_64/libibverbs-"$v"-"$rel".x86_64.rpm
}
check rpm_requires_accept_44_to_65_refuse_others rpm_resolves
mkroot() {
	rm -rf "$rr" && mkdir -p "$rr/bin" "$rr/usr/bin" "$rr/etc" "$rr/tmp" "$rr/dev" "$rr/var/lib/rpm"
	mknod -m 666 "$rr/dev/null" c 1 3 || return 1
	cp /bin/busybox "$rr/bin/busybox"
	for a in sh mv mkdir rmdir rm cat ls test [ true; do ln -s busybox "$rr/bin/$a"; done
	rpm --root "$rr" --dbpath /var/lib/rpm --initdb
}
rr_rpm() { rpm --root "$rr" --dbpath /var/lib/rpm "$@"; }
rpm_scratch_install() {
	mkroot || return 1
	fake_libibverbs 1 && fake_libibverbs 2 || return 1
	rr_rpm -i --nodeps "$work"/fake-build/RPMS/x86_64/libibverbs-44.0-1.x86_64.rpm || return 1
	ls -la "$rr/etc/libibverbs.d"
	# rxe-rs: --nodeps for libc and friends (not in the scratch root);
	# libibverbs and its private ABI are there.
	rr_rpm -i --nodeps "$rpm1" || return 1
	rr_rpm -q rxe-rs libibverbs
	ls -la "$rr/etc/libibverbs.d" "$rr/etc/rxe-rs"
}
check rpm_scratch_install rpm_scratch_install

# Installed, every name resolves to the one library file.
rpm_names_resolve() {
	local abi f
	ls -la "$rr/usr/lib64/libibverbs"
	for abi in $abis; do
		f=$rr/usr/lib64/libibverbs/librxe_rs-rdmav$abi.so
		[ "$(readlink -f "$f")" = "$rr/usr/lib64/libibverbs/librxe_rs-rdmav34.so" ] || { echo "$f does not resolve"; return 1; }
		[ -f "$f" ] || return 1
	done
	[ ! -L "$rr/usr/lib64/libibverbs/librxe_rs-rdmav34.so" ]
}
check rpm_names_resolve rpm_names_resolve

# Installed: the stock entry moved out of /etc/libibverbs.d, intact; ours
# there and pointing at `driver rxe_rs`; no file there names `driver rxe`.
rpm_moved_aside() {
	ls -la "$rr/etc/libibverbs.d" "$rr/etc/rxe-rs" || return 1
	[ ! -e "$rr/etc/libibverbs.d/rxe.driver" ] || { echo "stock entry still in place"; return 1; }
	grep -qx "driver rxe$1" "$rr/etc/rxe-rs/rxe.driver.stock" || return 1
	[ "$(readlink "$rr/etc/libibverbs.d/rxe_rs.driver")" = ../../usr/share/rxe-rs/rxe_rs.driver ] || return 1
	grep -qx "driver rxe_rs" "$rr/etc/libibverbs.d/rxe_rs.driver" || return 1
	for f in "$rr"/etc/libibverbs.d/*; do
		if grep -qsx "driver rxe" "$f"; then echo "$f names the stock provider"; return 1; fi
	done
	echo ok
}
check rpm_post_moves_stock_entry_aside rpm_moved_aside ""

# Same files in the same places as the .deb (libdir mapped): the library
# byte for byte, the driver file, the entry resolving to it, the stock
# entry saved in the same place. The entry's name differs by design
# (packaging/README.md): rxe.driver (diverting the stock one) in the .deb,
# rxe_rs.driver in the .rpm.
same_as_deb() {
	local d=$work/deb-x
	rm -rf "$d" && mkdir -p "$d" && dpkg-deb -x "$deb1" "$d" || return 1
	cmp "$d/usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav34.so" "$rr/usr/lib64/libibverbs/librxe_rs-rdmav34.so" || return 1
	local abi
	for abi in $abis; do
		[ "$(readlink "$d/usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav$abi.so")" = "$(readlink "$rr/usr/lib64/libibverbs/librxe_rs-rdmav$abi.so")" ] || return 1
	done
	cmp "$d/usr/share/rxe-rs/rxe_rs.driver" "$rr/usr/share/rxe-rs/rxe_rs.driver" || return 1
	[ "$(readlink "$d/etc/libibverbs.d/rxe.driver")" = /usr/share/rxe-rs/rxe_rs.driver ] || return 1
	[ "$(cd "$rr/etc/libibverbs.d" && realpath -m --relative-base="$rr" "$(readlink rxe_rs.driver)")" = usr/share/rxe-rs/rxe_rs.driver ] ||
		[ "$(readlink -f "$rr/etc/libibverbs.d/rxe_rs.driver")" = "$rr/usr/share/rxe-rs/rxe_rs.driver" ] || return 1
	# The non-doc files each package puts down, with the one mapping.
	local debf rpmf
	debf=$(cd "$d" && find . ! -type d | sed 's|^\.||; s|/usr/lib/x86_64-linux-gnu/|/usr/lib64/|; s|^/etc/libibverbs.d/rxe.driver$|/etc/libibverbs.d/<entry>|' | grep -v '^/usr/share/doc/' | sort)
	rpmf=$(rr_rpm -ql rxe-rs | while read -r f; do [ -d "$rr$f" ] || echo "$f"; done |
		sed 's|^/etc/libibverbs.d/rxe_rs.driver$|/etc/libibverbs.d/<entry>|' | grep -v '^/usr/share/doc/\|^/usr/share/licenses/' | sort)
	echo "deb: $debf"
	echo "rpm: $rpmf"
	[ "$debf" = "$rpmf" ] || return 1
	# Moved-aside place: the deb's diversion target, read from its preinst.
	dpkg-deb -e "$deb1" "$d/DEBIAN" && grep -q -- '--divert /etc/rxe-rs/rxe.driver.stock /etc/libibverbs.d/rxe.driver' "$d/DEBIAN/preinst" || return 1
	[ -f "$rr/etc/rxe-rs/rxe.driver.stock" ]
}
check rpm_same_layout_as_deb same_as_deb

# libibverbs upgraded under us: its rxe.driver comes back (%config file
# missing on disk), the trigger moves the new one aside.
rpm_libibverbs_upgrade() {
	rr_rpm -U --nodeps "$work"/fake-build/RPMS/x86_64/libibverbs-44.0-2.x86_64.rpm || return 1
	rr_rpm -q libibverbs
	rpm_moved_aside " # 44.0-2"
}
check rpm_libibverbs_upgrade_trigger_moves_new_entry rpm_libibverbs_upgrade

# Our upgrade in place keeps things as they are ($1 == 1 in %postun).
rpm_upgrade() {
	rr_rpm -U --nodeps "$rpm2" || return 1
	[ "$(rr_rpm -q rxe-rs)" = "rxe-rs-$version-2.x86_64" ] || return 1
	rpm_moved_aside " # 44.0-2"
}
check rpm_upgrade_in_place rpm_upgrade

# Final erase: the stock entry is back, libibverbs verifies clean.
rpm_erase() {
	rr_rpm -e rxe-rs || return 1
	ls -la "$rr/etc/libibverbs.d"
	grep -qx "driver rxe # 44.0-2" "$rr/etc/libibverbs.d/rxe.driver" || return 1
	[ ! -e "$rr/etc/libibverbs.d/rxe_rs.driver" ] && [ ! -e "$rr/etc/rxe-rs" ] || return 1
	local f
	for f in "$rr"/usr/lib64/libibverbs/librxe_rs*; do
		if [ -e "$f" ] || [ -L "$f" ]; then echo "$f left"; return 1; fi
	done
	rr_rpm -V libibverbs && echo "rpm -V libibverbs: clean"
}
check rpm_erase_restores_stock_entry rpm_erase

# While installed, rpm -V libibverbs reports rxe.driver missing (the known
# cost of moving it aside, documented); check that is all it reports.
rpm_verify_while_installed() {
	rr_rpm -i --nodeps "$rpm1" || return 1
	local v
	v=$(rr_rpm -V libibverbs)
	echo "$v"
	rr_rpm -e rxe-rs || return 1
	[ "$v" = "missing   c /etc/libibverbs.d/rxe.driver" ]
}
check rpm_verify_reports_only_moved_entry rpm_verify_while_installed
unset HOME

# --- 4. the host
host_state > "$work/host-after.txt"
check host_left_as_found diff "$work/host-before.txt" "$work/host-after.txt"
finish
