#!/usr/bin/env bash
# Regenerates layout/hot-text/<function>.ld (layout/build.rs says what they are for): builds the
# functions with symbols (the `symbols` profile: release, not stripped), then runs every sample
# event of every function in a fresh process under valgrind's callgrind against a fresh local
# stack, and writes the executed functions as section patterns. Run it after changes that move a
# lot of code (a dependency upgrade, a new client); a stale list only costs locality.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
scripts/bootstrap.sh
command -v valgrind >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; apt-get install -y -qq valgrind >/dev/null; }
cargo build --locked --profile symbols --bins -p posts-read -p posts-write -p auth-refresh -p upload-presign -p email-sender -p stripe-webhook
cargo build --locked --release -p bench -p ops
. scripts/seeded-stack.sh hot-text
"$TARGET/release/bench" hot-text --bin-dir "$TARGET/symbols" --env-file "$STACK/env" --events "$STACK/events" \
  --out-dir layout/hot-text --command "scripts/hot-text.sh"
