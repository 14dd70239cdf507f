#!/usr/bin/env bash
# `make bench`: release build, local stack, measurements through the local Runtime API,
# BENCHMARKS.md rewritten with the figures and this command.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
scripts/bootstrap.sh
cargo build --release --locked --workspace --bins
STACK=$(mktemp -d /tmp/bundle-bench-stack.XXXXXX)
cleanup() { scripts/stack.sh down "$STACK"; rm -rf "$STACK"; }
trap cleanup EXIT
scripts/stack.sh up "$STACK"
set -a; . "$STACK/env"; set +a
"$TARGET/release/ops" seed >/dev/null
"$TARGET/release/bench" perf --bin-dir "$TARGET/release" --env-file "$STACK/env" --out BENCHMARKS.md --command "make bench"
