# The two commands: `make run` starts the whole hub, `make test` runs every test.
# Both install what is missing first (scripts/ensure-deps.sh).
export CARGO_TARGET_DIR ?= $(HOME)/.cache/mcp-hub/target

.PHONY: run test bench chaos deps build lint fmt

run:
	scripts/run-hub.sh

test:
	scripts/test.sh

# The benchmark suite: rewrites docs/BENCHMARKS.md (ARGS=--quick for a short trial).
bench:
	scripts/bench.sh $(ARGS)

# The chaos suite: faults under the PRD load; rewrites docs/RELIABILITY.md
# (ARGS=--quick for short fault windows).
chaos:
	scripts/chaos.sh $(ARGS)

deps:
	scripts/ensure-deps.sh

build: deps
	cargo build --workspace --release

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all
