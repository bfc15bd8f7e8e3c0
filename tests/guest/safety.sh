# Safety: bad inputs to the data path, and verbs after a privilege
# drop, through each provider. The programs catch their own crashes (one
# child per case) and print `case <name> expect=<t> got=<t>` lines.

safety_suite() {
	local p lim
	for p in stock ours; do
		only "$p" "safety_bad_inputs.$p" timeout 1200 "$BIN/bad_inputs" rxe0 1 \
			> "$OUT/safety_bad_inputs.$p.txt" 2> "$OUT/safety_bad_inputs.$p.err"
		echo "exit=$?" >> "$OUT/safety_bad_inputs.$p.txt"
		for lim in 0 65536; do
			only "$p" "safety_privdrop_$lim.$p" timeout 300 "$BIN/privdrop" rxe0 1 "$lim" \
				> "$OUT/safety_privdrop_$lim.$p.txt" 2> "$OUT/safety_privdrop_$lim.$p.err"
			echo "exit=$?" >> "$OUT/safety_privdrop_$lim.$p.txt"
		done
	done
}
