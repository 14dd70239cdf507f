#!/usr/bin/env bash
# `make fuzz`: cargo-fuzz (libFuzzer, nightly) on the Stripe header parser, the verifier and the
# request decoders, each for FUZZ_SECONDS (default 60). Not part of `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in stripe_header stripe_verify request_decoders; do
  echo "== fuzz $target for ${FUZZ_SECONDS:-60} s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$target" -- -max_total_time="${FUZZ_SECONDS:-60}" -rss_limit_mb=2048
done
