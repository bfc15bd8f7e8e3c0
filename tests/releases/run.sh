#!/bin/bash
# Runs a program of another rdma-core release, unpacked by
# tests/releases/fetch.sh, through trixie's loader and that release's
# libraries, with exactly one provider serving rxe devices:
#
#   <root>/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 \
#       --library-path <root>/usr/lib/x86_64-linux-gnu:<root>/lib/x86_64-linux-gnu \
#       <root>/usr/bin/<program> [args]
#
# usage: tests/releases/run.sh <release> <program> [args...]
#   <release>  trixie or sid (a directory target/releases/<release>/root)
#   <program>  a name in the release's usr/bin, or a path (e.g. a test
#              program built on this machine: it runs on the release's
#              libibverbs and glibc)
#
# The provider. That libibverbs reads its driver files from /etc/libibverbs.d
# (compiled in; no variable names another directory) and a plain `driver rxe`
# there loads /usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav<ABI>.so: the
# host's rdma-core 44 provider for an ABI 34 release such as trixie, nothing
# for sid (ABI 65; the fallback, dlopen("librxe-rdmav65.so") on the library
# path, finds nothing either since the providers sit in a subdirectory). So,
# as root, the program runs in a private mount namespace where
# /etc/libibverbs.d is a directory holding one file, `driver <prefix>`:
# libibverbs appends -rdmav<ABI>.so to an absolute prefix. RXE_PROVIDER picks
# the prefix:
#   stock (default)  the release's own librxe: <root>/usr/lib/x86_64-linux-gnu/libibverbs/librxe
#   ours             $repo/driver-config/librxe_rs (needs a librxe_rs-rdmav<ABI>.so there)
#   /abs/prefix      that prefix
#   system           the machine's /etc/libibverbs.d as it is (no namespace; as
#                    the caller's own mount of it may have arranged)
# RXE_LD_DEBUG_OUTPUT=<prefix>: the loader logs the files it loads
# (LD_DEBUG=files) to <prefix>.<pid>; the `file=.../librxe...` lines there
# show which provider each process loaded.
set -eu
# Parameter expansion rather than dirname(1) and id(1): the suites run this
# hundreds of times on an emulated CPU, where each process costs a fraction
# of a second.
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
repo=$(cd "$here/../.." && pwd)
[ $# -ge 2 ] || { echo "usage: $0 <release> <program> [args...]" >&2; exit 2; }
release=$1 prog=$2
shift 2
root=${RXE_RELEASES_DIR:-$repo/target/releases}/$release/root
lib=$root/usr/lib/x86_64-linux-gnu
ld=$lib/ld-linux-x86-64.so.2
[ -x "$ld" ] || { echo "$release is not unpacked in $root: run tests/releases/fetch.sh" >&2; exit 1; }
case $prog in
*/*) ;;
*) prog=$root/usr/bin/$prog ;;
esac

provider=${RXE_PROVIDER:-stock}
case $provider in
stock) prefix=$lib/libibverbs/librxe ;;
ours) prefix=$repo/driver-config/librxe_rs ;;
/*) prefix=$provider ;;
system) prefix= ;;
*) echo "RXE_PROVIDER: stock, ours, system or an absolute path prefix, not $provider" >&2; exit 2 ;;
esac

cmd=("$ld" --library-path "$lib:$root/lib/x86_64-linux-gnu" "$prog" "$@")
if [ -n "${RXE_LD_DEBUG_OUTPUT:-}" ]; then
	# Set for the loader only, not for unshare, mount or sh.
	cmd=(env LD_DEBUG=files "LD_DEBUG_OUTPUT=$RXE_LD_DEBUG_OUTPUT" "${cmd[@]}")
fi
[ -n "$prefix" ] || exec "${cmd[@]}"

[ "$EUID" = 0 ] || { echo "RXE_PROVIDER=$provider needs root (a private mount of /etc/libibverbs.d); RXE_PROVIDER=system does not" >&2; exit 1; }
# One directory per prefix; its content depends only on the prefix, so
# concurrent runs (a server and its client) may write it at once.
drv=${TMPDIR:-/tmp}/rxe-releases-drv/$(printf '%s' "$prefix" | cksum | cut -d' ' -f1)
mkdir -p "$drv"
echo "driver $prefix" > "$drv.$$"
mv -f "$drv.$$" "$drv/rxe.driver"
# shellcheck disable=SC2016 # expanded by that sh
exec unshare -m sh -c 'mount --bind "$1" /etc/libibverbs.d && shift && exec "$@"' sh "$drv" "${cmd[@]}"
