#!/usr/bin/env bash
# `make test`: installs what is missing, checks formatting and lints, runs every test,
# and ends with one summary line (`tests: N passed, M failed`) summed over all the test
# binaries, so the last line speaks for the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"

scripts/ensure-deps.sh --with-sdks || exit 1
cargo fmt --all -- --check || { echo "cargo fmt found differences: run make fmt" >&2; exit 1; }
cargo clippy --workspace --all-targets --quiet -- -D warnings || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "cargo test exited with status $status (a build error or a crashed test binary)" >&2
fi
exit "$status"
