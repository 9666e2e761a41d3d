# shellcheck shell=bash
# The environment contract of the native stack, in one place, so `stack up`,
# `stack test`, `stack env` and benchmark scripts agree on every address.
#
# Sourcing this file only computes and exports variables: it starts nothing,
# installs nothing and never reads or prints the JWT secret (see
# sb_load_jwt_secret). Ports and addresses may be overridden from the caller's
# environment; the URLs are always derived from them.

# Where state lives (venv with Postgres and the embedding model, pgdata, logs,
# pid files, secrets). Root's home is usually mode 700, and Postgres runs as the
# unprivileged `secondbrain` user, who must reach its data directory: so root
# keeps state under /var/lib. A normal user keeps it in their XDG state dir.
if [[ "$(id -u)" -eq 0 ]]; then
	SB_STATE_DIR=${SB_STATE_DIR:-/var/lib/second-brain}
	# Postgres (and our Redis) refuse to or should not run as root.
	SB_SVC_USER=${SB_SVC_USER:-secondbrain}
	_sb_default_target=/var/tmp/second-brain-target
else
	SB_STATE_DIR=${SB_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/second-brain}
	SB_SVC_USER=$(id -un)
	_sb_default_target=${XDG_CACHE_HOME:-$HOME/.cache}/second-brain/cargo-target
fi
export SB_STATE_DIR SB_SVC_USER

# Build output lives outside the clone so a fresh clone (CI checks out anew)
# reuses earlier builds; cargo creates the directory when it does not exist.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${SB_CARGO_TARGET_DIR:-$_sb_default_target}}
unset _sb_default_target
export SB_PROFILE=${SB_PROFILE:-release}
if [[ "$SB_PROFILE" == dev ]]; then
	SB_BIN_DIR=$CARGO_TARGET_DIR/debug
else
	SB_BIN_DIR=$CARGO_TARGET_DIR/release
fi
export SB_BIN_DIR

export SB_PG_PORT=${SB_PG_PORT:-5433}
export SB_REDIS_PORT=${SB_REDIS_PORT:-6379}
export SB_RABBITMQ_PORT=${SB_RABBITMQ_PORT:-5672}

SB_VENV_DIR=$SB_STATE_DIR/venv
SB_PG_DIR=$SB_STATE_DIR/pg # owned by SB_SVC_USER, mode 700
SB_PG_DATA=$SB_PG_DIR/data
SB_PG_SOCKET_DIR=$SB_PG_DIR/sock
SB_PG_LOG=$SB_PG_DIR/postgres.log
SB_RUN_DIR=$SB_STATE_DIR/run # service pid files and logs
export SB_VENV_DIR SB_PG_DIR SB_PG_DATA SB_PG_SOCKET_DIR SB_PG_LOG SB_RUN_DIR

# Filled in by the venv installer (lib/postgres.sh): the site-packages path and
# the model folder, found by listing the installed wheels' files. Reading the
# cached answers keeps `source env.sh` free of a Python start-up.
SB_SITE_PACKAGES=
if [[ -s "$SB_VENV_DIR/.sb-site-packages" ]]; then
	SB_SITE_PACKAGES=$(<"$SB_VENV_DIR/.sb-site-packages")
fi
export SB_SITE_PACKAGES
export SB_PG_BIN_DIR=${SB_SITE_PACKAGES:+$SB_SITE_PACKAGES/pgserver/pginstall/bin}
if [[ -s "$SB_VENV_DIR/.sb-model-dir" ]]; then
	SB_EMBEDDING_MODEL_DIR=$(<"$SB_VENV_DIR/.sb-model-dir")
	export SB_EMBEDDING_MODEL_DIR
fi
# The embedders run the model on ONNX Runtime (the onnxruntime wheel's library)
# from the graph lib/postgres.sh exports beside the state; same vectors as candle.
if [[ -s "$SB_VENV_DIR/.sb-onnxruntime-library" ]]; then
	SB_ONNXRUNTIME_LIBRARY=$(<"$SB_VENV_DIR/.sb-onnxruntime-library")
	export SB_ONNXRUNTIME_LIBRARY
fi
export SB_EMBEDDING_RUNTIME=${SB_EMBEDDING_RUNTIME:-onnx}
export SB_EMBEDDING_ONNX_GRAPH=${SB_EMBEDDING_ONNX_GRAPH:-$SB_STATE_DIR/models/all-MiniLM-L6-v2.onnx}

# Each service logs in with the least it needs (README, "Database roles"):
# the command service may append events but not change them; the projector
# owns the read model and only reads the event store; the query service only
# reads. Migrations run as the owner. `stack env` prints the command
# service's and the projector's settings (a shell runs `projector verify`,
# `rebuild-projections` and `command-service api-key` with them).
export SB_EVENT_STORE_URL="postgres://second_brain_commands@127.0.0.1:${SB_PG_PORT}/second_brain_events"
export SB_READ_DATABASE_URL="postgres://second_brain@127.0.0.1:${SB_PG_PORT}/second_brain_read"
export SB_EVENT_STORE_READ_URL="postgres://second_brain_query@127.0.0.1:${SB_PG_PORT}/second_brain_events"
SB_EVENT_STORE_OWNER_URL="postgres://second_brain@127.0.0.1:${SB_PG_PORT}/second_brain_events"
SB_READ_DATABASE_QUERY_URL="postgres://second_brain_query@127.0.0.1:${SB_PG_PORT}/second_brain_read"
export SB_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:${SB_RABBITMQ_PORT}/%2f"
export SB_REDIS_URL="redis://127.0.0.1:${SB_REDIS_PORT}/"

export SB_COMMAND_HTTP_ADDR=${SB_COMMAND_HTTP_ADDR:-127.0.0.1:8080}
export SB_QUERY_HTTP_ADDR=${SB_QUERY_HTTP_ADDR:-127.0.0.1:8081}
export SB_PROJECTOR_HTTP_ADDR=${SB_PROJECTOR_HTTP_ADDR:-127.0.0.1:8082}
export SB_MCP_HTTP_ADDR=${SB_MCP_HTTP_ADDR:-127.0.0.1:8083}
# Caddy (lib/web.sh): the web app, with /v1/* and /mcp passed to the services.
export SB_WEB_HTTP_ADDR=${SB_WEB_HTTP_ADDR:-127.0.0.1:8090}
export SB_LOG_FORMAT=${SB_LOG_FORMAT:-json}
export RUST_LOG=${RUST_LOG:-info}

# Tests create and drop their own databases through the admin URL.
export SB_TEST_PG_ADMIN_URL="postgres://postgres@127.0.0.1:${SB_PG_PORT}/postgres"
export SB_TEST_RABBITMQ_URL=$SB_RABBITMQ_URL
export SB_TEST_REDIS_URL=$SB_REDIS_URL

# The variables `stack env` prints, in this order; SB_JWT_SECRET is never among them.
# shellcheck disable=SC2034 # read by `stack env`
SB_ENV_EXPORTS=(
	SB_EVENT_STORE_URL SB_EVENT_STORE_READ_URL SB_READ_DATABASE_URL SB_RABBITMQ_URL SB_REDIS_URL
	SB_COMMAND_HTTP_ADDR SB_QUERY_HTTP_ADDR SB_PROJECTOR_HTTP_ADDR SB_MCP_HTTP_ADDR SB_WEB_HTTP_ADDR
	SB_LOG_FORMAT RUST_LOG SB_EMBEDDING_MODEL_DIR
	SB_EMBEDDING_RUNTIME SB_EMBEDDING_ONNX_GRAPH SB_ONNXRUNTIME_LIBRARY
	SB_TEST_PG_ADMIN_URL SB_TEST_RABBITMQ_URL SB_TEST_REDIS_URL
	SB_PG_PORT SB_REDIS_PORT SB_STATE_DIR SB_PG_BIN_DIR CARGO_TARGET_DIR
)

# sb_load_jwt_secret: export SB_JWT_SECRET, generating it on first use. It is
# 48 random bytes in base64, kept in <state>/secrets.env (mode 600) so tokens
# survive restarts. Only `up` calls this; nothing prints the value.
sb_load_jwt_secret() {
	local file=$SB_STATE_DIR/secrets.env
	if [[ ! -s "$file" ]]; then
		local secret
		secret=$(head -c 48 /dev/urandom | base64 -w0)
		(
			umask 077
			printf 'SB_JWT_SECRET=%s\n' "$secret" >"$file.tmp"
		)
		mv -f "$file.tmp" "$file"
	fi
	chmod 600 "$file"
	SB_JWT_SECRET=$(sed -n 's/^SB_JWT_SECRET=//p' "$file" | head -n1)
	[[ -n "$SB_JWT_SECRET" ]] || {
		echo "error: $file has no SB_JWT_SECRET line; delete it to generate a new secret" >&2
		return 1
	}
	export SB_JWT_SECRET
}
