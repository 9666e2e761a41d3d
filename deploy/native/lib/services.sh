# shellcheck shell=bash
# The Second Brain services: build, migrate, start in the background, wait
# for readiness, stop. Pid files and logs live in <state>/run/.

SB_SERVICES=(command-service query-service projector mcp-service)
SB_READY_TIMEOUT=${SB_READY_TIMEOUT:-90}
SB_STOP_TIMEOUT=${SB_STOP_TIMEOUT:-30}

svc_addr() {
	case $1 in
	command-service) printf '%s' "$SB_COMMAND_HTTP_ADDR" ;;
	query-service) printf '%s' "$SB_QUERY_HTTP_ADDR" ;;
	projector) printf '%s' "$SB_PROJECTOR_HTTP_ADDR" ;;
	mcp-service) printf '%s' "$SB_MCP_HTTP_ADDR" ;;
	*) die "unknown service $1" ;;
	esac
}
svc_addr_var() {
	case $1 in
	command-service) printf SB_COMMAND_HTTP_ADDR ;;
	query-service) printf SB_QUERY_HTTP_ADDR ;;
	projector) printf SB_PROJECTOR_HTTP_ADDR ;;
	mcp-service) printf SB_MCP_HTTP_ADDR ;;
	esac
}
svc_pidfile() { printf '%s/%s.pid' "$SB_RUN_DIR" "$1"; }
svc_log() { printf '%s/%s.log' "$SB_RUN_DIR" "$1"; }
svc_ready() { curl -fsS -o /dev/null --max-time 3 "http://$(svc_addr "$1")/health/ready" 2>/dev/null; }

# The pid in the pid file is alive AND is still our binary (pids get reused).
svc_running() {
	local pidfile pid
	pidfile=$(svc_pidfile "$1")
	pid_alive "$pidfile" || return 1
	pid=$(<"$pidfile")
	# (a rebuilt binary shows as "<path> (deleted)")
	[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(realpath -m "$SB_BIN_DIR/$1")"* ]]
}

ensure_cargo() {
	if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
		PATH=$HOME/.cargo/bin:$PATH
	fi
	command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust (rustup) first"
	# rustup brings no linker or C compiler, and some dependencies (ring, for
	# one) compile C; a minimal Debian has neither.
	if ! command -v cc >/dev/null 2>&1; then apt_install gcc libc6-dev; fi
}

build_binaries() {
	ensure_cargo
	local args=(build --locked --bins)
	[[ "$SB_PROFILE" == dev ]] || args+=(--release)
	log "cargo ${args[*]} (target dir $CARGO_TARGET_DIR; a cold release build takes ~8 min)"
	(cd "$SB_REPO_ROOT" && cargo "${args[@]}") ||
		die "cargo build failed; fix the build (or try SB_PROFILE=dev for a debug build)"
	local svc missing=()
	for svc in "${SB_SERVICES[@]}"; do
		[[ -x "$SB_BIN_DIR/$svc" ]] || missing+=("$svc")
	done
	((${#missing[@]} == 0)) ||
		die "the build produced no ${missing[*]} binary in $SB_BIN_DIR: the workspace does not define it yet ('up' needs all of: ${SB_SERVICES[*]})"
}

# Migrations run as the databases' owner; the services do not.
run_migrations() {
	log "migrating the event store (command-service migrate)"
	SB_EVENT_STORE_URL=$SB_EVENT_STORE_OWNER_URL "$SB_BIN_DIR/command-service" migrate ||
		die "'command-service migrate' failed (does this build implement the 'migrate' subcommand?)"
	# Also declares the projector's queues, so events the relay publishes
	# before the projector first consumes are kept.
	log "migrating the read model and declaring the queues (projector migrate)"
	SB_EVENT_STORE_URL=$SB_EVENT_STORE_READ_URL "$SB_BIN_DIR/projector" migrate || die "'projector migrate' failed"
}

# svc_env SERVICE: the database settings SERVICE runs with, as `env`
# arguments: each service gets the role it needs, nothing more.
svc_env() {
	case $1 in
	command-service) printf '%s\n' "SB_EVENT_STORE_URL=$SB_EVENT_STORE_URL" ;;
	query-service) printf '%s\n' "SB_READ_DATABASE_URL=$SB_READ_DATABASE_QUERY_URL" "SB_EVENT_STORE_READ_URL=$SB_EVENT_STORE_READ_URL" ;;
	projector) printf '%s\n' "SB_READ_DATABASE_URL=$SB_READ_DATABASE_URL" "SB_EVENT_STORE_URL=$SB_EVENT_STORE_READ_URL" ;;
	# No database: it reaches the services over HTTP, as any client does.
	mcp-service) printf '%s\n' "SB_MCP_BIND=$SB_MCP_HTTP_ADDR" "SB_COMMAND_URL=http://$SB_COMMAND_HTTP_ADDR" "SB_QUERY_URL=http://$SB_QUERY_HTTP_ADDR" ;;
	esac
}

start_service() {
	local svc=$1 pidfile log addr
	pidfile=$(svc_pidfile "$svc")
	log=$(svc_log "$svc")
	addr=$(svc_addr "$svc")
	if svc_running "$svc"; then
		# A rebuild replaces the binary; restart so `up` runs what was just built.
		if [[ "$SB_BIN_DIR/$svc" -nt "$pidfile" ]]; then
			log "$svc: binary rebuilt since start; restarting"
			stop_service "$svc"
		else
			log "$svc: already running (pid $(<"$pidfile"))"
			return 0
		fi
	fi
	if tcp_open "${addr%:*}" "${addr##*:}"; then
		die "$svc: $addr is already in use by another process; stop it or set $(svc_addr_var "$svc")"
	fi
	log "$svc: starting on $addr (log $log)"
	# setsid: own session, so a Ctrl-C in this terminal does not reach it;
	# nohup: survives the terminal closing. No job control here, so setsid
	# does not fork, and nohup and env exec: $! is the service's own pid.
	printf '\n--- %s starting %s serve\n' "$(date -Is)" "$svc" >>"$log"
	local vars
	mapfile -t vars < <(svc_env "$svc")
	setsid nohup env "${vars[@]}" "$SB_BIN_DIR/$svc" serve >>"$log" 2>&1 </dev/null &
	echo $! >"$pidfile"
}

wait_service_ready() {
	local svc=$1 deadline=$((SECONDS + SB_READY_TIMEOUT))
	until svc_ready "$svc"; do
		if ! svc_running "$svc"; then
			tail -n 40 "$(svc_log "$svc")" >&2 || true
			die "$svc exited during start-up (log: $(svc_log "$svc"))"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$(svc_log "$svc")" >&2 || true
			die "$svc not ready at http://$(svc_addr "$svc")/health/ready after ${SB_READY_TIMEOUT}s (log: $(svc_log "$svc"))"
		fi
		sleep 0.3
	done
	log "$svc: ready at http://$(svc_addr "$svc")"
}

stop_service() {
	local svc=$1
	if ! svc_running "$svc"; then
		rm -f "$(svc_pidfile "$svc")"
		return 0
	fi
	stop_pidfile "$svc" "$(svc_pidfile "$svc")"
}

# stop_pidfile NAME PIDFILE: TERM the running process PIDFILE names, KILL it
# if it is still there after SB_STOP_TIMEOUT, and remove the pid file. The
# caller has checked that the pid is still its process.
stop_pidfile() {
	local name=$1 pidfile=$2 pid
	pid=$(<"$pidfile")
	log "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_until "$SB_STOP_TIMEOUT" "$name to exit" pid_gone "$pid"; then
		warn "$name ignored SIGTERM for ${SB_STOP_TIMEOUT}s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

# A local API key for the sample requests, created once; a new Postgres
# cluster deletes the file (lib/postgres.sh), so it never outlives its data.
ensure_api_key() {
	local file=$SB_STATE_DIR/local-api-key key
	if [[ -s "$file" ]]; then
		chmod 600 "$file"
		return 0
	fi
	log "creating a local API key (user local-user)"
	key=$("$SB_BIN_DIR/command-service" api-key create --user local-user --name local) ||
		die "'command-service api-key create' failed"
	key=$(printf '%s' "$key" | sed -e '/^[[:space:]]*$/d' | tail -n1 | tr -d '[:space:]')
	[[ -n "$key" ]] || die "'command-service api-key create' printed no key"
	(
		umask 077
		printf '%s\n' "$key" >"$file.tmp"
	)
	mv -f "$file.tmp" "$file"
}
