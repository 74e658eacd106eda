#!/usr/bin/env bash
# Runs every test of the workspace on a fresh machine: installs what the tests need
# (Debian packages: curl with HTTP/2, promtool), builds the binaries the end-to-end tests
# start, then runs the unit and end-to-end tests. Release profile only, so one build serves
# the tests, the demo and the benches.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/oca-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

need=()
command -v curl >/dev/null || need+=(curl)
command -v promtool >/dev/null || need+=(prometheus)
# BGP test (tests/bgp.rs): BIRD 2 in network namespaces; systemd unit checks (tests/systemd.rs).
command -v bird >/dev/null || need+=(bird2)
command -v ip >/dev/null || need+=(iproute2)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing ${need[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing ${need[*]} and not root: install them (apt-get install ${need[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
curl --version | grep -q HTTP2 || { echo "curl lacks HTTP/2 support" >&2; exit 1; }

echo "== format"
cargo fmt --all -- --check

echo "== build"
cargo build --release --workspace --bins

echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The vendored, patched quinn-proto (vendor/README.md): upstream's unit tests plus ours, on
# the patched sources, in a scratch copy with upstream's dev-dependencies.
echo "== vendored quinn-proto"
VENDOR_CHECK_TARGET_DIR="$CARGO_TARGET_DIR/vendor-check" vendor/check.sh 2>&1 | tee -a "$log"
vstatus=${PIPESTATUS[0]}
[ "$status" -ne 0 ] || status=$vstatus
set -e
# One closing line for the whole workspace (cargo prints one per test binary, the last of
# which is often an empty doc-test run).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "Total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
