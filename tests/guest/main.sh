#!/bin/bash
# Entry point inside the VM: one boot runs the named suites.
# usage: main.sh <repo> <out dir> <bin dir> <suite>...
# A suite <name> is the function <name>_suite, defined by a file in this
# directory: every tests/guest/*.sh except main.sh and common.sh is sourced,
# so a new suite file needs no edit here.
REPO=$1 OUT=$2 BIN=$3
shift 3
here=$(dirname "$0")
. "$here/common.sh"
for f in "$here"/*.sh; do
	case $(basename "$f") in
	main.sh | common.sh) ;;
	*) . "$f" ;;
	esac
done
: > "$CASES"
uname -r > "$OUT/kernel.txt"
if ! setup_rxe > "$OUT/setup.txt" 2>&1; then
	echo "setup failed" >> "$OUT/setup.txt"
	echo setup-failed > "$OUT/finished"
	exit 1
fi
for suite in "$@"; do
	if ! declare -F "${suite}_suite" > /dev/null; then
		echo "no suite $suite: no ${suite}_suite in $here/*.sh" >> "$OUT/setup.txt"
		echo "unknown-suite $suite" > "$OUT/finished"
		exit 1
	fi
done
for suite in "$@"; do
	echo "suite $suite start $(date +%s)" >> "$OUT/progress.txt"
	"${suite}_suite"
	echo "suite $suite end $(date +%s)" >> "$OUT/progress.txt"
done
echo ok > "$OUT/finished"
