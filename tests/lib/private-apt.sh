# Sourced by the scripts that download Debian packages without installing
# them (tests/releases/fetch.sh, tests/kernels/fetch.sh). apt runs with a
# private configuration: its own sources, lists, cache and empty dpkg status,
# none of the machine's apt.conf.d, so the machine's apt state is left as it
# was.
#
# private_apt <dir> <suite>...: writes that configuration under <dir> for the
# named suites of the machine's Debian source (its deb822 entry's URI and
# Signed-By keyring), exports APT_CONFIG and sets the array APT_OPTS, to be
# given to every apt-get and apt-cache call:
#     apt-get "${APT_OPTS[@]}" update
#     apt-cache "${APT_OPTS[@]}" policy <package>
#     apt-get "${APT_OPTS[@]}" download <package>/<suite>
# Needs root (apt's download sandbox runs as root here, see below).

# The machine's Debian source (URI and Signed-By of its deb822 entry).
private_apt_source() {
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		awk '
			/^[ \t]*$/ { if (uri != "" && key != "" && suites ~ /(^| )bookworm( |$)/) { print uri, key; found = 1; exit } uri = key = suites = ""; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { $1 = ""; suites = $0 " " }
			/^Signed-By:/ { key = $2 }
			END { if (!found && uri != "" && key != "" && suites ~ /(^| )bookworm( |$)/) print uri, key }
		' "$f" | head -1
	done | head -1
}

private_apt() {
	local apt uri key s
	apt=$(mkdir -p "$1" && cd "$1" && pwd) || return 1
	shift
	[ "$(id -u)" = 0 ] || { echo "apt-get runs as root here (its download sandbox)" >&2; return 1; }
	read -r uri key < <(private_apt_source) || true
	uri=${uri:-http://deb.debian.org/debian}
	key=${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
	[ -r "$key" ] || { echo "keyring $key is missing (debian-archive-keyring)" >&2; return 1; }
	PRIVATE_APT_URI=$uri PRIVATE_APT_KEY=$key
	# APT_CONFIG is read before apt.conf.d, so pointing Dir::Etc::parts at an
	# empty directory keeps the machine's hooks (e.g. APT::Update::Post-Invoke
	# cleaning /var/cache/apt) out of these runs.
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/state" "$apt/apt.conf.d"
	: > "$apt/status"
	printf 'Dir::Etc::main "/dev/null";\nDir::Etc::parts "%s";\n' "$apt/apt.conf.d" > "$apt/apt.conf"
	for s in "$@"; do
		echo "deb [signed-by=$key] $uri $s main"
	done > "$apt/sources.list"
	export APT_CONFIG=$apt/apt.conf
	APT_OPTS=(
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
		-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State=$apt/state" -o "Dir::State::status=$apt/status"
		-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null
		-o Acquire::Languages=none
		# Small: compressed lists, no binary caches (about an eighth of the size).
		-o Acquire::GzipIndexes=true -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
		# Mirrors here serve sid's Release file past its Valid-Until (the
		# machine's own apt configuration says the same).
		-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false
		# The download directories are under the checkout, which _apt may not reach.
		-o APT::Sandbox::User=root
		-q
	)
}
