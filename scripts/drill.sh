#!/usr/bin/env bash
# `make drill`: fault drills against the release bootstraps (Redis killed under posts-read and
# auth-refresh load). Writes RELIABILITY.md; exits non-zero when a drill misses its goal.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
scripts/bootstrap.sh
cargo build --release --locked --workspace --bins
STACK=$(mktemp -d /tmp/bundle-drill-stack.XXXXXX)
cleanup() { scripts/stack.sh down "$STACK"; rm -rf "$STACK"; }
trap cleanup EXIT
scripts/stack.sh up "$STACK"
set -a; . "$STACK/env"; set +a
"$TARGET/release/ops" seed >/dev/null
"$TARGET/release/bench" drill --bin-dir "$TARGET/release" --env-file "$STACK/env" --out RELIABILITY.md --command "make drill"
