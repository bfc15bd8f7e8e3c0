# Packages (issue 4): install the .deb for real in the guest (its /etc, /usr
# and /var are overlays, thrown away at power-off), then upgrade, remove,
# reinstall and purge it, checking each time which provider a verbs program
# started with no variables gets.

STOCK_LIB=/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
OUR_LIB=/usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav34.so

# check <name> <command...>: records the command's status as a case.
check() {
	local name=$1
	shift
	local t0=$SECONDS
	"$@" >> "$OUT/log/pkg_$name.out" 2>&1
	record "pkg_$name" deb $? $((SECONDS - t0))
}

# A verbs program with a clean environment; its log shows if ours served.
probe() {
	rm -f "$OUT/log/probe.log"
	env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin VERBS_LOG_LEVEL=3 VERBS_LOG_FILE="$OUT/log/probe.log" \
		"$BIN/which_provider" rxe0 > "$OUT/log/probe.out" 2>&1
	cat "$OUT/log/probe.out" "$OUT/log/probe.log" 2>/dev/null
}

# uses <ours|stock>: a verbs program started with a clean environment maps
# that provider's library and not the other's, and only ours logs.
uses() {
	local want=$STOCK_LIB other=$OUR_LIB p
	[ "$1" = ours ] && want=$OUR_LIB other=$STOCK_LIB
	p=$(probe)
	echo "$p"
	echo "$p" | grep -q "^opened rxe0" && echo "$p" | grep -q "provider-lib: $want" &&
		! echo "$p" | grep -q "provider-lib: $other" || return 1
	if [ "$1" = ours ]; then
		echo "$p" | grep -q "context opened by rxe_rs"
	else
		! echo "$p" | grep -q "rxe_rs"
	fi
}

stock_entry_in_place() {
	[ -f /etc/libibverbs.d/rxe.driver ] && [ ! -L /etc/libibverbs.d/rxe.driver ] &&
		grep -qx "driver rxe" /etc/libibverbs.d/rxe.driver &&
		! dpkg-divert --list /etc/libibverbs.d/rxe.driver | grep -q rxe-rs
}

diverted() {
	dpkg-divert --list /etc/libibverbs.d/rxe.driver | grep -q "by rxe-rs" &&
		[ -f /etc/rxe-rs/rxe.driver.stock ] && [ "$(readlink /etc/libibverbs.d/rxe.driver)" = /usr/share/rxe-rs/rxe_rs.driver ]
}

# A real program through the installed provider, no variables.
pingpong_installed() {
	env -i PATH=/usr/bin:/bin ibv_rc_pingpong -g 1 -d rxe0 -n 50 > "$OUT/log/pkg_pp.srv" 2>&1 &
	sleep 3
	env -i PATH=/usr/bin:/bin timeout 120 ibv_rc_pingpong -g 1 -d rxe0 -n 50 localhost > "$OUT/log/pkg_pp.cli" 2>&1
	local rc=$?
	wait $! && [ $rc = 0 ]
}

packaging_suite() {
	local deb1 deb2
	deb1=$(ls "$REPO"/target/packages/rxe-rs_*-1_amd64.deb)
	deb2=$(ls "$REPO"/target/packages/rxe-rs_*-2_amd64.deb)
	# The guest's dpkg database is the host's, under an overlay.
	check before_install_stock_is_used uses stock
	check install dpkg -i "$deb1"
	check install_diverts_stock_entry diverted
	check installed_ours_is_used uses ours
	check installed_pingpong pingpong_installed
	check upgrade_in_place dpkg -i "$deb2"
	check upgraded_still_diverted diverted
	check upgraded_ours_is_used uses ours
	check remove dpkg -r rxe-rs
	check removed_stock_entry_back stock_entry_in_place
	check removed_stock_is_used uses stock
	check removed_no_leftovers sh -c '! [ -e /usr/lib/x86_64-linux-gnu/libibverbs/librxe_rs-rdmav34.so ] && ! [ -e /etc/rxe-rs ]'
	check reinstall dpkg -i "$deb1"
	check reinstalled_ours_is_used uses ours
	check purge dpkg -P rxe-rs
	check purged_stock_entry_back stock_entry_in_place
	check purged_stock_is_used uses stock
	check purged_not_installed sh -c '! dpkg -s rxe-rs 2>/dev/null | grep -q "^Status: install"'
}
