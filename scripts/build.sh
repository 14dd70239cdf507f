#!/usr/bin/env bash
# `make build`: `sam build` compiles every function for arm64 (provided.al2023) through
# cargo-lambda, which cross-links with Zig (the ziglang wheel that comes with cargo-lambda).
# Prints each bootstrap's size and what `file` says of it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
scripts/bootstrap.sh
rustup target add aarch64-unknown-linux-gnu >/dev/null
sam build --template template.yaml
for dir in .aws-sam/build/*Function; do
  bootstrap="$dir/bootstrap"
  [ -f "$bootstrap" ] || continue
  printf '%-32s %10s bytes  %s\n' "$(basename "$dir")" "$(stat -c %s "$bootstrap")" "$(file -b "$bootstrap" | cut -d, -f1-2)"
done
