#!/usr/bin/env bash
# Runs quinn-proto's own unit tests (upstream's 0.11.19 suite plus the oca patch tests) on the
# vendored, patched sources. The vendored Cargo.toml has no dev-dependencies (so the workspace
# never resolves them); this copies the crate to a scratch directory with upstream's manifest
# (`Cargo.toml.upstream`, which needs the network once to fetch its dev-dependencies) and runs
# `cargo test --lib` there (upstream's test configuration, which builds ring: the scratch
# crate is not part of the workspace). scripts/test.sh runs it. Usage: vendor/check.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$here/quinn-proto" "$scratch/quinn-proto"
mv "$scratch/quinn-proto/Cargo.toml.upstream" "$scratch/quinn-proto/Cargo.toml"
# The versions the check was last run with (refresh: delete it, run, copy the new lock back).
[ -f "$here/quinn-proto/Cargo.lock.check" ] && cp "$here/quinn-proto/Cargo.lock.check" "$scratch/quinn-proto/Cargo.lock"
cd "$scratch/quinn-proto"
CARGO_TARGET_DIR=${VENDOR_CHECK_TARGET_DIR:-$HOME/.cache/oca-vendor-check} cargo test --release --lib
[ -f "$here/quinn-proto/Cargo.lock.check" ] || cp Cargo.lock "$here/quinn-proto/Cargo.lock.check"
