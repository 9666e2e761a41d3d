# shellcheck shell=bash
# Shared helpers for the native (no-Docker) stack: logging, privilege handling,
# Debian package installation, port probes and deadline-bounded polling.
# Sourced by deploy/native/stack; defines functions only, no side effects.

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as root: directly when we are root, else through sudo. In CI or
# without a terminal sudo must not prompt (it would hang or fail obscurely), so
# ask for -n there and explain what is missing when it refuses.
as_root() {
	if is_root; then
		"$@"
		return
	fi
	command -v sudo >/dev/null 2>&1 ||
		die "need root for: $* (run as root, or install sudo and allow this user to use it)"
	if [[ -n "${CI:-}" || ! -t 0 ]]; then
		sudo -n "$@" || die "'sudo -n $1 ...' failed; non-interactive runs need passwordless sudo (or run as root)"
	else
		sudo "$@"
	fi
}

# Debian packages -----------------------------------------------------------

_SB_APT_UPDATED=0

# apt_install PKG...: install the packages that are not installed yet. Runs
# `apt-get update` at most once per invocation and only when something is
# missing, so a second run on a provisioned machine never touches the network.
apt_install() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	command -v apt-get >/dev/null 2>&1 || die "packages ${missing[*]} are missing and apt-get is not available (this script targets Debian 12)"
	log "installing Debian packages: ${missing[*]}"
	# Lock timeout: unattended-upgrades may hold the dpkg lock on a fresh VM.
	local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -q -y)
	if ((!_SB_APT_UPDATED)); then
		as_root "${apt[@]}" update
		_SB_APT_UPDATED=1
	fi
	as_root "${apt[@]}" install --no-install-recommends "${missing[@]}"
}

# Like apt_install, but with service auto-start suppressed: Debian's postinst
# scripts start redis/rabbitmq through invoke-rc.d (sysv) or deb-systemd-invoke
# (systemd). Both honour /usr/sbin/policy-rc.d, and exit code 101 means "do
# not start". We want to start these servers ourselves, bound to loopback and
# with state we control, and a failed auto-start in a container (no init) can
# otherwise fail the whole install. An existing policy-rc.d (Docker images ship
# one that already says 101) is left untouched.
apt_install_no_autostart() {
	local missing=() pkg
	for pkg in "$@"; do
		dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	local policy=/usr/sbin/policy-rc.d added=0
	if [[ ! -e "$policy" ]]; then
		printf '#!/bin/sh\n# temporary, written by second-brain deploy/native/stack\nexit 101\n' |
			as_root tee "$policy" >/dev/null
		as_root chmod 755 "$policy"
		added=1
	fi
	local rc=0
	(apt_install "${missing[@]}") || rc=$?
	if ((added)); then as_root rm -f "$policy"; fi
	((rc == 0)) || die "installing ${missing[*]} failed"
	_SB_APT_UPDATED=1
	# On a systemd machine the package also enabled its unit for the next boot,
	# where it would listen on every interface. We run our own loopback-only
	# instance instead, so keep the packaged unit from starting on its own.
	if [[ -d /run/systemd/system ]]; then
		for pkg in "${missing[@]}"; do
			as_root systemctl disable "$pkg" >/dev/null 2>&1 || true
		done
	fi
}

ensure_command() { # ensure_command CMD PACKAGE
	command -v "$1" >/dev/null 2>&1 || apt_install "$2"
	command -v "$1" >/dev/null 2>&1 || die "'$1' is still missing after installing $2"
}

# Benchmarks call this; up/test never need wrk.
ensure_wrk() { ensure_command wrk wrk; }

# Probes and polling ----------------------------------------------------------

# tcp_open HOST PORT: true when something accepts a TCP connection. Uses bash's
# /dev/tcp so it needs no client tool; `timeout` bounds a filtered port.
tcp_open() {
	# shellcheck disable=SC2016 # $1/$2 expand in the child shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# wait_until SECONDS DESCRIPTION CMD...: poll CMD every 0.3 s until it succeeds
# or the deadline passes. Readiness is always checked, never assumed after a
# fixed sleep.
wait_until() {
	local timeout=$1 what=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@"; do
		if ((SECONDS >= deadline)); then
			warn "timed out after ${timeout}s waiting for $what"
			return 1
		fi
		sleep 0.3
	done
}

# pid_alive PIDFILE: the pid in PIDFILE names a live process.
pid_alive() {
	local pid
	[[ -s "$1" ]] || return 1
	pid=$(<"$1")
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# Serialise concurrent runs (several engineers or CI jobs on one machine) while
# servers are being checked or started; fd 9 stays open until released.
lock_state() {
	exec 9>"$SB_STATE_DIR/.lock"
	flock -w 900 9 || die "another 'stack' run holds $SB_STATE_DIR/.lock"
}
unlock_state() { flock -u 9 2>/dev/null || true; }
