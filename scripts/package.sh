#!/bin/bash
# Builds the .deb (Debian 12) and the .rpm (Fedora/RHEL layout, with
# Debian's rpmbuild) of the provider into target/packages/, then runs
# lintian and rpmlint on them: a lint error fails the build.
# usage: bash scripts/package.sh [release]     (release number, default 1)
# Needs root only to apt-get install missing tools (dpkg-dev, rpm, lintian,
# rpmlint); nothing is installed from the packages built.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
release=${1:-1}
case "$release" in *[!0-9]* | "") echo "release must be a number" >&2; exit 2 ;; esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

need=()
for p in dpkg-dev rpm lintian rpmlint gzip binutils; do
	dpkg -s "$p" 2> /dev/null | grep -q '^Status: install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo build --release
out=$repo/target/packages
work=$out/work-$release
rm -rf "$work" && mkdir -p "$work"
# rpm, rpmbuild and rpmlint open an rpm database under $HOME (Debian's rpm:
# ~/.rpmdb); give them a scratch HOME so the build leaves none behind.
rpmhome=$work/home
mkdir -p "$rpmhome"

# libibverbs' private provider ABIs the one library serves. libibverbs of
# private ABI N dlopens <provider dir>/lib<name>-rdmav<N>.so, so the library
# is installed as lib<name>-rdmav<first>.so and every other name is a
# relative symlink to it in the same directory (as Debian's own
# ibverbs-providers does with its libefa-rdmav34.so -> ../libefa.so.1...).
abis=(34 57 59 64 65)
lib=librxe_rs-rdmav${abis[0]}.so
# One stripped copy of the library; both packages ship these same bytes.
stage=$work/stage
mkdir -p "$stage"
strip --strip-unneeded -o "$stage/$lib" target/release/librxe_rs.so
chmod 0644 "$stage/$lib"
cp driver-config/rxe_rs.driver README.md LICENSE "$stage/"
# The rxe-rs command (tools/rxe-rs: `rxe-rs doctor`, `rxe-rs sandbox`) and the man pages
# (the command's, and rxe-rs-faults.7: the provider's fault injection).
strip --strip-unneeded -o "$stage/rxe-rs" target/release/rxe-rs
chmod 0755 "$stage/rxe-rs"
for m in rxe-rs.1 rxe-rs-doctor.1 rxe-rs-sandbox.1 rxe-rs-faults.7; do
	gzip -9n < "tools/rxe-rs/man/$m" > "$stage/$m.gz"
	chmod 0644 "$stage/$m.gz"
done

# The layout both packages install:
#   <libdir>/libibverbs/librxe_rs-rdmav34.so   the provider (same bytes)
#   <libdir>/libibverbs/librxe_rs-rdmav{57,59,64,65}.so  -> librxe_rs-rdmav34.so
#   /usr/share/rxe-rs/rxe_rs.driver            `driver rxe_rs`
#   /usr/bin/rxe-rs, /usr/share/man/man1/rxe-rs{,-doctor,-sandbox}.1.gz   the command
#   /etc/libibverbs.d/<entry>                  symlink to the above, so that
#        it goes away on remove (a leftover conffile naming a removed
#        library would make every verbs program warn "couldn't load driver")
# and the stock /etc/libibverbs.d/rxe.driver moved to
# /etc/rxe-rs/rxe.driver.stock while installed. <entry> is rxe.driver in
# the .deb (it replaces the file it diverts, as dpkg-divert is meant to be
# used; lintian rejects a diversion of a file the package does not ship) and
# rxe_rs.driver in the .rpm (libibverbs owns rxe.driver there).
# packaging/README.md says why and how.

# --- .deb: assembled by hand with dpkg-deb (no debhelper: the binary is
# cargo's); dependencies from dpkg-shlibdeps plus the private-ABI pin.
pkg=$work/debian/rxe-rs
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib/$multiarch/libibverbs" "$pkg/usr/share/rxe-rs" \
	"$pkg/etc/libibverbs.d" "$pkg/usr/share/doc/rxe-rs" "$pkg/usr/bin" "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man7"
install -m 0644 "$stage/$lib" "$pkg/usr/lib/$multiarch/libibverbs/"
install -m 0755 "$stage/rxe-rs" "$pkg/usr/bin/"
install -m 0644 "$stage/rxe-rs.1.gz" "$stage/rxe-rs-doctor.1.gz" "$stage/rxe-rs-sandbox.1.gz" "$pkg/usr/share/man/man1/"
install -m 0644 "$stage/rxe-rs-faults.7.gz" "$pkg/usr/share/man/man7/"
for abi in "${abis[@]:1}"; do
	ln -s "$lib" "$pkg/usr/lib/$multiarch/libibverbs/librxe_rs-rdmav$abi.so"
done
install -m 0644 "$stage/rxe_rs.driver" "$pkg/usr/share/rxe-rs/"
ln -s /usr/share/rxe-rs/rxe_rs.driver "$pkg/etc/libibverbs.d/rxe.driver"
install -m 0644 packaging/deb/copyright "$pkg/usr/share/doc/rxe-rs/copyright"
sed "1s/(.*)/($version-$release)/" packaging/deb/changelog | gzip -9n > "$pkg/usr/share/doc/rxe-rs/changelog.Debian.gz"
chmod 0644 "$pkg/usr/share/doc/rxe-rs/changelog.Debian.gz"
install -m 0755 packaging/deb/preinst packaging/deb/postrm "$pkg/DEBIAN/"
printf 'Source: rxe-rs\n\nPackage: rxe-rs\nArchitecture: any\n' > "$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e"debian/rxe-rs/usr/lib/$multiarch/libibverbs/$lib" -e"debian/rxe-rs/usr/bin/rxe-rs" | sed -n 's/^shlibs:Depends=//p')
# The library does not link libibverbs (it resolves libibverbs' private
# functions with dlvsym in the libibverbs that loaded it), so
# dpkg-shlibdeps names only libc6 and libgcc-s1; a libibverbs1 line, should
# one appear, is replaced. Debian has no virtual package for the private
# ABI: the range is the libibverbs1 releases whose private ABI the library
# serves, from rdma-core 44 (Debian 12, ABI 34) through 65.x (sid, ABI 65).
# The upper bound is deliberate: a libibverbs1 66 may bring an ABI 66 whose
# librxe_rs-rdmav66.so does not exist, and with the stock rxe entry diverted
# away rxe devices would then have no provider; with the bound, apt holds
# that libibverbs1 back or removes rxe-rs (which restores the stock entry)
# until a release of rxe-rs widens it. packaging/README.md says more.
depends=$(echo "$shlibs" | tr ',' '\n' | sed 's/^ *//' | grep -v '^libibverbs1' | paste -sd, | sed 's/,/, /g')
depends="$depends, libibverbs1 (>= 44), libibverbs1 (<< 66~)"
size=$(du -sk --apparent-size --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version-$release/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
	packaging/deb/control.in > "$pkg/DEBIAN/control"
(cd "$pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"
deb=$out/rxe-rs_${version}-${release}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" > /dev/null
echo "built $deb"

# --- .rpm: rpmbuild from Debian's rpm, Fedora/RHEL's /usr/lib64 layout.
top=$work/rpmbuild
HOME=$rpmhome rpmbuild -bb --quiet \
	--define "_topdir $top" --define "stage $stage" \
	--define "pkg_version $version" --define "pkg_release $release" \
	--define "_libdir /usr/lib64" --define "_defaultlicensedir /usr/share/licenses" \
	--define "_build_id_links none" --define "abis ${abis[*]}" \
	packaging/rpm/rxe-rs.spec
built=("$top"/RPMS/x86_64/rxe-rs-"$version"-"$release"*.x86_64.rpm)
rpm=$out/$(basename "${built[0]}")
cp "${built[0]}" "$rpm"
echo "built $rpm"

# --- Lint. The warnings kept are listed, with why, in packaging/README.md.
echo "--- lintian $(basename "$deb")"
lintian --fail-on error "$deb" > "$work/lintian.txt" 2>&1 || { cat "$work/lintian.txt"; exit 1; }
grep -v '^running with root privileges' "$work/lintian.txt" || true
echo "--- rpmlint $(basename "$rpm")"
rc=0
HOME=$rpmhome rpmlint -r packaging/rpmlintrc "$rpm" > "$work/rpmlint.txt" 2>&1 || rc=$?
grep -E '^rxe-rs|packages and' "$work/rpmlint.txt" || cat "$work/rpmlint.txt"
# rpmlint exits 64 on errors (66 when badness is over the threshold).
if [ $rc != 0 ] || ! grep -Eq ' 0 errors, [0-9]+ warnings' "$work/rpmlint.txt"; then
	echo "rpmlint: errors (exit $rc)" >&2
	exit 1
fi
rm -rf "$rpmhome"
