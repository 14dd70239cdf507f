#!/usr/bin/env bash
# Shared by `make bench` and `make drill`: release build, a fresh local stack, seeded data, then
# `bench <mode>` against the release bootstraps, writing OUT. Usage: release-run.sh perf|drill OUT
# (ONLY=<drill name> runs a single drill: redis-posts-read, redis-seed-replaced, redis-auth-refresh, refresh-flood,
# webhook-killed, posts-flood, ses-outage).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?perf or drill}
OUT=${2:?output file}
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
scripts/bootstrap.sh
cargo build --release --locked --workspace --bins
. scripts/seeded-stack.sh release
if [ "$MODE" = drill ] && [ -n "${ONLY:-}" ]; then
  # One drill: its report goes beside the full one, which stays as `make drill` wrote it.
  "$TARGET/release/bench" drill --only "$ONLY" --bin-dir "$TARGET/release" --env-file "$STACK/env" \
    --events "$STACK/events" --out "drill-$ONLY.md" --command "make drill ONLY=$ONLY"
else
  "$TARGET/release/bench" "$MODE" --bin-dir "$TARGET/release" --env-file "$STACK/env" --events "$STACK/events" --out "$OUT" \
    --command "make $([ "$MODE" = perf ] && echo bench || echo drill)"
fi
if [ "$MODE" = perf ]; then
  # The same release bootstraps through `sam local invoke`, one event at a time: its own section,
  # on the page of every figure (docs/performance.md stays short enough to read in one sitting).
  scripts/sam-local.sh --bin-dir "$TARGET/release" --bench "$(dirname "$OUT")/performance-figures.md"
fi
