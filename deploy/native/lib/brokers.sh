# shellcheck shell=bash
# Redis and RabbitMQ: reuse a server that already answers on loopback, else
# install Debian's package and start our own instance bound to 127.0.0.1.
# A marker in <state>/started/ records what we started, so `stop` never touches
# a server that was there before us.

SB_REDIS_DIR=$SB_STATE_DIR/redis
SB_REDIS_LOG=$SB_STATE_DIR/redis.log
SB_REDIS_PIDFILE=$SB_REDIS_DIR/redis.pid
SB_RABBITMQ_SERVER=/usr/sbin/rabbitmq-server # not on a normal user's PATH
SB_RABBITMQCTL=/usr/sbin/rabbitmqctl

# Redis -------------------------------------------------------------------------

redis_answers() {
	if command -v redis-cli >/dev/null 2>&1; then
		[[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$SB_REDIS_PORT" ping 2>/dev/null)" == PONG ]]
	else
		# No client: speak the inline protocol over bash's /dev/tcp.
		# shellcheck disable=SC2016 # $1 and $line expand in the child shell
		timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 &&
			IFS= read -r line <&3 && [[ "$line" == "+PONG"* ]]' _ "$SB_REDIS_PORT" 2>/dev/null
	fi
}

ensure_redis() {
	if redis_answers; then
		if [[ -e "$SB_STATE_DIR/started/redis" ]] && pid_alive "$SB_REDIS_PIDFILE"; then
			log "Redis: ours, already running on 127.0.0.1:$SB_REDIS_PORT"
		else
			log "Redis: reusing the server on 127.0.0.1:$SB_REDIS_PORT"
		fi
		return 0
	fi
	tcp_open 127.0.0.1 "$SB_REDIS_PORT" &&
		die "127.0.0.1:$SB_REDIS_PORT accepts connections but does not answer PING (a Redis with a password, or not Redis); set SB_REDIS_PORT"
	if ! command -v redis-server >/dev/null 2>&1; then
		apt_install_no_autostart redis-server
		# In case the package started one anyway (a permissive policy-rc.d).
		if redis_answers; then
			log "Redis: the package started one on 127.0.0.1:$SB_REDIS_PORT; reusing it"
			return 0
		fi
	fi
	svc_dir "$SB_REDIS_DIR"
	touch "$SB_REDIS_LOG"
	if is_root; then chown "$SB_SVC_USER:" "$SB_REDIS_LOG"; fi
	log "starting Redis on 127.0.0.1:$SB_REDIS_PORT (dir $SB_REDIS_DIR, log $SB_REDIS_LOG)"
	# Runs as the service user, like Postgres: no reason for a cache to be root.
	as_svc redis-server --daemonize yes --bind 127.0.0.1 --port "$SB_REDIS_PORT" \
		--dir "$SB_REDIS_DIR" --logfile "$SB_REDIS_LOG" --pidfile "$SB_REDIS_PIDFILE"
	touch "$SB_STATE_DIR/started/redis"
	wait_until 20 "Redis on 127.0.0.1:$SB_REDIS_PORT" redis_answers || {
		tail -n 20 "$SB_REDIS_LOG" >&2 || true
		die "Redis did not come up (log: $SB_REDIS_LOG)"
	}
}

stop_redis() {
	if [[ ! -e "$SB_STATE_DIR/started/redis" ]]; then
		log "Redis: not started by us; leaving it alone"
		return 0
	fi
	if pid_alive "$SB_REDIS_PIDFILE"; then
		log "stopping our Redis"
		local pid
		pid=$(<"$SB_REDIS_PIDFILE")
		kill -TERM "$pid" # Redis saves its dataset and exits on SIGTERM
		wait_until 30 "Redis to exit" pid_gone "$pid" ||
			kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$SB_STATE_DIR/started/redis"
}

# RabbitMQ ----------------------------------------------------------------------

rabbitmq_answers() { tcp_open 127.0.0.1 "$SB_RABBITMQ_PORT"; }

ensure_rabbitmq() {
	if rabbitmq_answers; then
		if [[ -e "$SB_STATE_DIR/started/rabbitmq" ]]; then
			log "RabbitMQ: ours, already running on 127.0.0.1:$SB_RABBITMQ_PORT"
		else
			log "RabbitMQ: reusing the server on 127.0.0.1:$SB_RABBITMQ_PORT (guest/guest)"
		fi
		return 0
	fi
	if ! dpkg -s rabbitmq-server >/dev/null 2>&1; then
		apt_install_no_autostart rabbitmq-server
		if rabbitmq_answers; then
			log "RabbitMQ: the package started one on 127.0.0.1:$SB_RABBITMQ_PORT; reusing it"
			return 0
		fi
	fi
	log "starting RabbitMQ on 127.0.0.1:$SB_RABBITMQ_PORT (logs in /var/log/rabbitmq)"
	# Debian's wrapper switches to the rabbitmq user itself (via su, which keeps
	# these variables), so it needs root. The three settings keep AMQP, epmd and
	# Erlang distribution on loopback.
	as_root env \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$SB_RABBITMQ_PORT" \
		ERL_EPMD_ADDRESS=127.0.0.1 \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
		"$SB_RABBITMQ_SERVER" -detached
	touch "$SB_STATE_DIR/started/rabbitmq"
	# await_startup blocks until the node boots (or fails); the outer timeout
	# bounds the case where the node never registers with epmd at all.
	if ! as_root timeout 150 "$SB_RABBITMQCTL" await_startup --timeout 120 >/dev/null ||
		! wait_until 30 "RabbitMQ on 127.0.0.1:$SB_RABBITMQ_PORT" rabbitmq_answers; then
		as_root sh -c 'tail -n 30 /var/log/rabbitmq/*.log' >&2 || true
		die "RabbitMQ did not come up (logs: /var/log/rabbitmq/)"
	fi
}

stop_rabbitmq() {
	if [[ ! -e "$SB_STATE_DIR/started/rabbitmq" ]]; then
		log "RabbitMQ: not started by us; leaving it alone"
		return 0
	fi
	if rabbitmq_answers; then
		log "stopping our RabbitMQ"
		as_root timeout 90 "$SB_RABBITMQCTL" stop >/dev/null ||
			warn "rabbitmqctl stop failed; see /var/log/rabbitmq/"
	fi
	rm -f "$SB_STATE_DIR/started/rabbitmq"
}
