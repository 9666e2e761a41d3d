# shellcheck shell=bash
# The web app on the native stack: built from web/ with npm into web/dist,
# and served by Debian's Caddy from compose/Caddyfile, the file the
# containers run, on loopback beside the services it proxies /v1/* and
# /mcp to (docs/web.md, "Serving"). Caddy runs in the background like the
# services: pid file and log in <state>/run/.
#
# ensure_web_build is for any step that needs the built app (`up`, checks of
# the app): it only installs what the build needs and builds; it starts
# nothing.

export SB_WEB_DIST=$SB_REPO_ROOT/web/dist
SB_WEB_SRC=$SB_REPO_ROOT/web
SB_CADDYFILE=$SB_REPO_ROOT/compose/Caddyfile
# Caddy's XDG_DATA_HOME and XDG_CONFIG_HOME (its autosaved config; no
# certificates on plain HTTP), so it never writes into the caller's home.
SB_CADDY_HOME=$SB_STATE_DIR/caddy
SB_CADDY_PIDFILE=$SB_RUN_DIR/caddy.pid
SB_CADDY_LOG=$SB_RUN_DIR/caddy.log
# The configuration the running Caddy was started with (see caddy_config).
SB_CADDY_CONFIG=$SB_RUN_DIR/caddy.json
SB_WEB_NODE_MIN=18

# Build ---------------------------------------------------------------------

node_usable() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || return 1
	local major
	major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || return 1
	[[ "$major" =~ ^[0-9]+$ ]] && ((major >= SB_WEB_NODE_MIN))
}

# Node.js and npm: Debian 12's nodejs is 18, enough for the build.
ensure_node() {
	node_usable && return 0
	apt_install nodejs npm
	node_usable || die "the web app needs Node.js >= $SB_WEB_NODE_MIN with npm; found $(node --version 2>/dev/null || echo none)"
}

# ensure_web_build: web/dist built from the current sources. `npm ci` runs
# only when package.json, the lockfile or Node's version changed since the
# last install (a stamp inside node_modules, which `npm ci` deletes first);
# the build itself always runs (a few seconds: esbuild-wasm). Held under a
# lock of its own, so an `up` and a check building at once don't interleave
# their writes to dist/.
ensure_web_build() {
	ensure_node
	mkdir -p "$SB_STATE_DIR"
	(
		flock -w 300 8 || die "another web build holds $SB_STATE_DIR/.web-build.lock"
		cd "$SB_WEB_SRC" || exit 1
		stamp=node_modules/.sb-install.sha256
		want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1) node $(node --version)"
		if ! [[ -s "$stamp" && "$(<"$stamp")" == "$want" ]]; then
			log "web: npm ci (package.json, the lockfile or Node changed)"
			NPM_CONFIG_UPDATE_NOTIFIER=false npm ci --no-audit --no-fund --loglevel=warn >&2 || exit 1
			printf '%s\n' "$want" >"$stamp" || exit 1
		fi
		log "web: npm run build (into $SB_WEB_DIST)"
		NPM_CONFIG_UPDATE_NOTIFIER=false npm run --silent build >&2 || exit 1
		[[ -s "$SB_WEB_DIST/index.html" ]] || {
			warn "the web build wrote no $SB_WEB_DIST/index.html"
			exit 1
		}
	) 8>"$SB_STATE_DIR/.web-build.lock" || die "building the web app failed (in $SB_WEB_SRC)"
}

# Caddy ---------------------------------------------------------------------

ensure_caddy() {
	# Its package would start a server on :80: install without starting it.
	command -v caddy >/dev/null 2>&1 || apt_install_no_autostart caddy
	command -v caddy >/dev/null 2>&1 || die "caddy is still missing after installing it"
}

# caddy_env: the settings compose/Caddyfile reads, for this stack. The
# http:// scheme keeps Caddy off HTTPS; on 127.0.0.1 the site also answers
# as localhost. No admin endpoint: the stack stops Caddy by signal.
caddy_env() {
	local host=${SB_WEB_HTTP_ADDR%:*} port=${SB_WEB_HTTP_ADDR##*:} site
	site="http://$SB_WEB_HTTP_ADDR"
	[[ "$host" != 127.0.0.1 ]] || site+=", http://localhost:$port"
	printf '%s\n' \
		"SB_SITE_ADDRESS=$site" \
		"SB_WEB_ROOT=$SB_WEB_DIST" \
		"SB_COMMAND_UPSTREAM=$SB_COMMAND_HTTP_ADDR" \
		"SB_QUERY_UPSTREAM=$SB_QUERY_HTTP_ADDR" \
		"SB_MCP_UPSTREAM=$SB_MCP_HTTP_ADDR" \
		"SB_CADDY_ADMIN=off" \
		"XDG_DATA_HOME=$SB_CADDY_HOME/data" \
		"XDG_CONFIG_HOME=$SB_CADDY_HOME/config" \
		"HOME=$SB_CADDY_HOME"
}

caddy_adapt() {
	local vars
	mapfile -t vars < <(caddy_env)
	env "${vars[@]}" caddy adapt --adapter caddyfile --config "$SB_CADDYFILE"
}

# caddy_config: compose/Caddyfile adapted to JSON with this stack's settings,
# on stdout, its listener bound to SB_WEB_HTTP_ADDR's host. A Caddyfile site
# listens on every interface whatever its host name (the host is only a
# match), and the containers want exactly that; the stack stays on loopback.
# deploy/check runs this too, to validate what the stack runs.
caddy_config() {
	local json
	json=$(caddy_adapt 2>/dev/null) || die "caddy adapt $SB_CADDYFILE failed: $(caddy_adapt 2>&1 >/dev/null | tail -n 3)"
	# shellcheck disable=SC2016 # a Python program, not shell
	printf '%s' "$json" | python3 -c '
import json, sys
addr = sys.argv[1]
host, _, port = addr.rpartition(":")
config = json.load(sys.stdin)
servers = config.get("apps", {}).get("http", {}).get("servers", {})
for server in servers.values():
    listen = server.get("listen", [])
    if listen != [":" + port]:
        sys.exit(f"compose/Caddyfile adapts to listeners {listen}; the stack expects one, :{port}")
    server["listen"] = [addr]
if not servers:
    sys.exit("compose/Caddyfile adapts to no HTTP server")
json.dump(config, sys.stdout, indent=1, sort_keys=True)
print()
' "$SB_WEB_HTTP_ADDR" || die "could not bind compose/Caddyfile's listener to $SB_WEB_HTTP_ADDR"
}

# The pid in the pid file is alive and is a caddy binary that still exists
# (an upgraded package shows as "<path> (deleted)").
caddy_running() {
	local pid exe
	pid_alive "$SB_CADDY_PIDFILE" || return 1
	pid=$(<"$SB_CADDY_PIDFILE")
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	[[ "$exe" == */caddy ]]
}

# Serves the app: / is the built index.html, byte for byte.
web_serves_app() {
	[[ -s "$SB_WEB_DIST/index.html" ]] &&
		curl -fsS --max-time 3 "http://$SB_WEB_HTTP_ADDR/" 2>/dev/null | cmp -s - "$SB_WEB_DIST/index.html"
}

# Proxies the APIs: a read without a token reaches the query service, which
# answers 401 (Caddy itself would answer 502 with the service down).
web_proxies_api() {
	[[ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 3 "http://$SB_WEB_HTTP_ADDR/v1/memories" 2>/dev/null)" == 401 ]]
}

web_ready() { web_serves_app && web_proxies_api; }

# start_web: Caddy in the background, restarted when its configuration (the
# Caddyfile or the stack's addresses) or its binary changed. A new build of
# the app needs no restart: the files are read from disk at each request.
start_web() {
	ensure_caddy
	mkdir -p "$SB_CADDY_HOME/data" "$SB_CADDY_HOME/config"
	chmod 700 "$SB_CADDY_HOME"
	local config
	config=$(caddy_config)
	if caddy_running; then
		if [[ -s "$SB_CADDY_CONFIG" && "$(<"$SB_CADDY_CONFIG")" == "$config" ]]; then
			log "caddy: already running (pid $(<"$SB_CADDY_PIDFILE"))"
			return 0
		fi
		log "caddy: its configuration changed; restarting"
		stop_web
	fi
	rm -f "$SB_CADDY_PIDFILE"
	if tcp_open "${SB_WEB_HTTP_ADDR%:*}" "${SB_WEB_HTTP_ADDR##*:}"; then
		die "caddy: $SB_WEB_HTTP_ADDR is already in use by another process; stop it or set SB_WEB_HTTP_ADDR"
	fi
	printf '%s\n' "$config" >"$SB_CADDY_CONFIG"
	log "caddy: serving the web app on http://$SB_WEB_HTTP_ADDR (log $SB_CADDY_LOG)"
	printf '\n--- %s starting caddy run\n' "$(date -Is)" >>"$SB_CADDY_LOG"
	# As start_service: own session, survives the terminal, $! is Caddy's pid.
	setsid nohup env XDG_DATA_HOME="$SB_CADDY_HOME/data" XDG_CONFIG_HOME="$SB_CADDY_HOME/config" \
		HOME="$SB_CADDY_HOME" caddy run --config "$SB_CADDY_CONFIG" >>"$SB_CADDY_LOG" 2>&1 </dev/null &
	echo $! >"$SB_CADDY_PIDFILE"
}

wait_web_ready() {
	local deadline=$((SECONDS + SB_READY_TIMEOUT))
	until web_ready; do
		if ! caddy_running; then
			tail -n 40 "$SB_CADDY_LOG" >&2 || true
			die "caddy exited during start-up (log: $SB_CADDY_LOG)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$SB_CADDY_LOG" >&2 || true
			web_serves_app || die "caddy does not serve $SB_WEB_DIST/index.html at http://$SB_WEB_HTTP_ADDR/ after ${SB_READY_TIMEOUT}s (log: $SB_CADDY_LOG)"
			die "caddy does not pass http://$SB_WEB_HTTP_ADDR/v1/memories to the query service (no 401) after ${SB_READY_TIMEOUT}s (log: $SB_CADDY_LOG)"
		fi
		sleep 0.3
	done
	log "caddy: the web app is ready at http://$SB_WEB_HTTP_ADDR/"
}

stop_web() {
	if ! caddy_running; then
		rm -f "$SB_CADDY_PIDFILE"
		return 0
	fi
	stop_pidfile caddy "$SB_CADDY_PIDFILE"
}
