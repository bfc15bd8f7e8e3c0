#!/bin/bash
# Builds the .deb (Debian 12) and the .rpm (Fedora/RHEL layout) of the
# provider into target/packages/, then runs lintian and rpmlint on them.
# usage: scripts/package.sh [debian/rpm release number, default 1]
set -eu
cd "$(dirname "$0")/.."
release=${1:-1}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
need=()
for p in dpkg-dev rpm lintian rpmlint; do dpkg -s "$p" > /dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
cargo build --release
out=$PWD/target/packages
mkdir -p "$out"

# One stripped copy of the library, named as libibverbs looks it up.
stage=$out/stage
rm -rf "$stage" && mkdir -p "$stage"
strip --strip-unneeded -o "$stage/librxe_rs-rdmav34.so" target/release/librxe_rs.so
chmod 0644 "$stage/librxe_rs-rdmav34.so"
cp driver-config/rxe_rs.driver README.md LICENSE "$stage/"

# --- .deb: assembled by hand, no debhelper (the binary is cargo's).
root=$out/deb-root
rm -rf "$root"
mkdir -p "$root/DEBIAN" "$root/usr/lib/x86_64-linux-gnu/libibverbs" "$root/usr/share/rxe-rs" \
	"$root/etc/libibverbs.d" "$root/usr/share/doc/rxe-rs"
install -m 0644 "$stage/librxe_rs-rdmav34.so" "$root/usr/lib/x86_64-linux-gnu/libibverbs/"
install -m 0644 "$stage/rxe_rs.driver" "$root/usr/share/rxe-rs/"
# Our rxe.driver replaces the stock one (diverted by preinst). A symlink,
# not a conffile, so it goes away on remove and the stock one can come back.
ln -s /usr/share/rxe-rs/rxe_rs.driver "$root/etc/libibverbs.d/rxe.driver"
install -m 0644 packaging/deb/copyright "$root/usr/share/doc/rxe-rs/copyright"
sed "1s/(.*)/($version-$release)/" packaging/deb/changelog | gzip -9n > "$root/usr/share/doc/rxe-rs/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/rxe-rs/changelog.Debian.gz"
install -m 0755 packaging/deb/preinst packaging/deb/postrm "$root/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version-$release/" -e "s/@SIZE@/$size/" packaging/deb/control.in > "$root/DEBIAN/control"
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
deb=$out/rxe-rs_${version}-${release}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" > /dev/null
echo "built $deb"

# --- .rpm: rpmbuild from Debian's rpm, Fedora's /usr/lib64 layout.
top=$out/rpmbuild
rm -rf "$top"
rpmbuild -bb --quiet \
	--define "_topdir $top" --define "stage $stage" \
	--define "version_override $version" --define "release_override $release" \
	--define "_libdir /usr/lib64" --define "_defaultlicensedir /usr/share/licenses" \
	--define "_build_id_links none" \
	packaging/rpm/rxe-rs.spec
rpm=$out/$(basename "$(ls "$top"/RPMS/x86_64/rxe-rs-*.rpm)")
cp "$top"/RPMS/x86_64/rxe-rs-*.rpm "$rpm"
echo "built $rpm"

# --- Lint: errors fail the build; the warnings we keep are listed, with
# why, in packaging/README.md.
echo "--- lintian"
if ! lintian --fail-on error "$deb" > "$out/lintian.txt" 2>&1; then
	cat "$out/lintian.txt"
	exit 1
fi
grep -v '^running with root privileges' "$out/lintian.txt" || true
echo "--- rpmlint"
rpmlint -r packaging/rpmlintrc "$rpm"
