#!/usr/bin/env bash
# Where the time goes: `perf record` over a function's cold starts and warm loop, on a release
# build that keeps its symbols (the `profiling` profile), against a fresh local stack.
# Usage: scripts/profile.sh [function] [event] [out-dir]   (default posts-read, its cache hit)
# Prints the top self-time symbols of init (the cold starts) and of the warm path.
set -euo pipefail
cd "$(dirname "$0")/.."
FUNCTION=${1:-posts-read}
EVENT=${2:-events/posts-read/get-hit.json}
OUT=${3:-$(mktemp -d /tmp/profile.XXXXXX)}
mkdir -p "$OUT"
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
scripts/bootstrap.sh
command -v perf >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq linux-perf >/dev/null; }
cargo build --locked --profile profiling -p "$FUNCTION"
cargo build --locked --release -p bench -p ops
. scripts/seeded-stack.sh profile
BENCH="$TARGET/release/bench"
BIN="$TARGET/profiling/$FUNCTION"
# Init: many cold starts, one invocation each. Warm: one process, many invocations.
perf record -q -F 20000 -o "$OUT/init.data" -- "$BENCH" exercise --bin "$BIN" --env-file "$STACK/env" --event "$EVENT" --colds 200 --warm 0
perf record -q -F 5000 -o "$OUT/warm.data" -- "$BENCH" exercise --bin "$BIN" --env-file "$STACK/env" --event "$EVENT" --colds 0 --warm 20000
for phase in init warm; do
  echo "== $FUNCTION $phase: top self-time symbols (perf report --comm $FUNCTION)"
  perf report -q -i "$OUT/$phase.data" --comm "$FUNCTION" --no-children --sort dso,sym --percent-limit 1.5 2>/dev/null | head -30
done
echo "perf data in $OUT"
