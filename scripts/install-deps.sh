#!/bin/bash
# Installs what building and testing need on a Debian 12 machine, as root.
# Idempotent: quick when everything is already there.
set -eu
pkgs=(
	# build: bindgen needs libclang; the provider links libibverbs
	gcc libc6-dev pkg-config clang libclang-dev libibverbs-dev librdmacm-dev
	# the test bed: Debian's kernel (with rdma_rxe) under qemu, and the
	# programs run inside it
	qemu-system-x86 linux-image-amd64 kmod cpio busybox-static iproute2 util-linux
	rdma-core ibverbs-providers ibverbs-utils rdmacm-utils perftest python3-pyverbs
	python3-pip
	# valgrind in the VM: memory checking of the provider (tests/guest/load.sh)
	# and the bench's instruction counts (tests/bench/run.sh)
	valgrind
	# packaging (scripts/package.sh): installed here, before the package
	# tests snapshot the host, so that they find it as they leave it
	dpkg-dev rpm lintian rpmlint gzip binutils
	# the doctor suite (tests/guest/doctor.sh) adds a DROP rule for UDP 4791
	nftables
)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" > /dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# virtme-ng boots the kernel with the host's filesystem; Debian 12 has no package of it.
if ! command -v vng > /dev/null; then
	python3 -m pip install -q virtme-ng==1.42 ||
		python3 -m pip install -q --break-system-packages virtme-ng==1.42
	hash -r
fi
command -v vng > /dev/null || { echo "vng (virtme-ng) is not on PATH after installing it" >&2; exit 1; }

# The Rust toolchain cannot be downloaded here; Debian 12's own is too old.
command -v cargo > /dev/null || { echo "cargo (Rust >= 1.77) is required: install it with rustup" >&2; exit 1; }
