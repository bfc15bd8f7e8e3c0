#!/bin/bash
# Entry point inside the VM: one boot runs the named suites.
# usage: main.sh <repo> <out dir> <bin dir> <suite>...   (suites: core datapath demo)
REPO=$1 OUT=$2 BIN=$3
shift 3
here=$(dirname "$0")
. "$here/common.sh"
. "$here/core.sh"
. "$here/datapath.sh"
. "$here/safety.sh"
: > "$CASES"
if ! setup_rxe > "$OUT/setup.txt" 2>&1; then
	echo "setup failed" >> "$OUT/setup.txt"
	echo setup-failed > "$OUT/finished"
	exit 1
fi
for suite in "$@"; do
	echo "suite $suite start $(date +%s)" >> "$OUT/progress.txt"
	"${suite}_suite"
	echo "suite $suite end $(date +%s)" >> "$OUT/progress.txt"
done
echo ok > "$OUT/finished"
