# The two commands: `make dev` runs the whole bundle locally, `make test` runs every test.
# Both install what is missing on a fresh Debian machine (scripts/bootstrap.sh).
SHELL := /bin/bash
.PHONY: dev down test test-arm64 bench drill fuzz build fmt

dev:
	scripts/dev.sh

down:
	scripts/stack.sh down .dev

test:
	scripts/test.sh

# The arm64 bootstraps of `make build`, each answering its sample events under qemu-aarch64.
test-arm64:
	scripts/test-arm64.sh

bench:
	scripts/release-run.sh perf BENCHMARKS.md

drill:
	scripts/release-run.sh drill RELIABILITY.md

fuzz:
	scripts/fuzz.sh

# arm64 bootstraps for every function, through SAM's rust-cargolambda build (cargo-lambda + zig).
build:
	scripts/build.sh

fmt:
	cargo fmt --all
