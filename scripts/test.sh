#!/usr/bin/env bash
# `make test`: installs what is missing, checks formatting and lints (the dashboard's
# type-check and lint too), runs every test, the dashboard's browser suite and the quick
# chaos run, and ends with one summary line (`tests: N passed, M failed`) summed over all
# the test binaries, the browser checks and the chaos faults, so the last line speaks
# for the whole run.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcp-hub/target}"

scripts/ensure-deps.sh --with-sdks || exit 1
cargo fmt --all -- --check || { echo "cargo fmt found differences: run make fmt" >&2; exit 1; }
cargo clippy --workspace --all-targets --quiet -- -D warnings || exit 1

# The dashboard: locked npm dependencies, build, type-check, lint, unit tests (frontend/).
PATH="$(scripts/ensure-node.sh):$PATH" || exit 1
export PATH
scripts/build-dashboard.sh || exit 1
(cd frontend && npm run --silent check) || { echo "the dashboard's type-check, lint or unit tests failed" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The two numbers of the last line of the log that matches the extended regex $1 (two
# groups); "- 1" when none does (a suite that did not report counts as one failure).
counts() {
  local line
  line=$(grep -E "$1" "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "- 1"
  else
    echo "$line" | sed -E "s/$1.*/\\1 \\2/"
  fi
}
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "cargo test exited with status $status (a build error or a crashed test binary)" >&2
fi

# The dashboard's browser suite: Debian's chromium (installed when missing) against a
# real hub of the debug binaries cargo test just built. It ends with its own line,
# `dashboard: N passed, N failed`.
if ! command -v chromium >/dev/null; then
  echo "test: installing Debian's chromium for the dashboard's browser suite" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >&2
fi
cargo build --workspace --bins --quiet || status=1
(cd frontend && CHROMIUM_PATH="$(command -v chromium)" npx tsx e2e/run.ts) 2>&1 | tee -a "$log"
browser_status=${PIPESTATUS[0]}
read -r browser_passed browser_failed < <(counts '^dashboard: ([0-9]+) passed, ([0-9]+) failed')
[ "$browser_passed" = "-" ] && echo "the dashboard's browser suite did not report (exit status $browser_status)" >&2 && browser_passed=0
[ "$browser_status" -ne 0 ] && status=1

# The chaos suite, quick (docs/RELIABILITY.md has the full run, `make chaos`): its own
# hub of the debug binaries, the PRD load, every fault in turn with short windows. It
# ends with `chaos: faults: N held, M broken`; a broken promise fails the run.
chaos_dir="$CARGO_TARGET_DIR/chaos-logs/quick"
rm -rf "$chaos_dir"
"$CARGO_TARGET_DIR/debug/mcp-loadtest" chaos --quick --no-report --log-dir "$chaos_dir" 2>&1 | tee -a "$log"
chaos_status=${PIPESTATUS[0]}
read -r chaos_held chaos_broken < <(counts '^chaos: faults: ([0-9]+) held, ([0-9]+) broken')
[ "$chaos_held" = "-" ] && echo "the quick chaos run did not report (exit status $chaos_status); its logs: $chaos_dir" >&2 && chaos_held=0
[ "$chaos_status" -ne 0 ] && status=1

echo
echo "tests: $((passed + browser_passed + chaos_held)) passed, $((failed + browser_failed + chaos_broken)) failed (cargo: $passed passed, $failed failed; dashboard: $browser_passed passed, $browser_failed failed; chaos: $chaos_held held, $chaos_broken broken)"
exit "$status"
