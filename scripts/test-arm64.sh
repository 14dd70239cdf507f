#!/usr/bin/env bash
# `make test-arm64`: the artifact Lambda runs, run. Builds the arm64 bootstraps with `make build`
# (sam build → cargo-lambda + Zig; `--no-build` checks the ones already in .aws-sam/build), then
# runs every sample event of events/manifest.json through each arm64 bootstrap under user-mode
# emulation (qemu-aarch64-static with Debian's arm64 glibc and libgcc as the library root),
# through the same harness and local stack as `make test`, and checks the manifest's statuses.
#
# Installs what it needs on a fresh Debian machine (apt): qemu-user-static, libc6-arm64-cross,
# libgcc-s1-arm64-cross. Nothing is registered with binfmt_misc (no /etc or /proc changes): each
# function is a small wrapper that execs qemu on its bootstrap, so the harness sees the process
# it spawned and stops it by that PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ARM64_ROOT=/usr/aarch64-linux-gnu
QEMU=/usr/bin/qemu-aarch64-static

build=1
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    *) echo "usage: $0 [--no-build]" >&2; exit 2 ;;
  esac
done

scripts/bootstrap.sh
if [ ! -x "$QEMU" ] || [ ! -e "$ARM64_ROOT/lib/ld-linux-aarch64.so.1" ] || [ ! -e "$ARM64_ROOT/lib/libgcc_s.so.1" ]; then
  echo "test-arm64: installing qemu-user-static, libc6-arm64-cross, libgcc-s1-arm64-cross (apt)"
  export DEBIAN_FRONTEND=noninteractive
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq qemu-user-static libc6-arm64-cross libgcc-s1-arm64-cross >/dev/null
fi

started=$(date +%s)
if [ "$build" = 1 ]; then
  echo "== make build (arm64 bootstraps)"
  scripts/build.sh
fi
built=$(date +%s)

# One wrapper per function, named as the manifest names it, from the template's BuildProperties.
BIN=$(mktemp -d /tmp/bundle-arm64-bin.XXXXXX)
STACK=$(mktemp -d /tmp/bundle-arm64-stack.XXXXXX)
cleanup() { scripts/stack.sh down "$STACK"; rm -rf "$STACK" "$BIN"; }
trap cleanup EXIT

echo "== arm64 bootstraps"
functions=$(python3 - <<'EOF'
import json, re
# The logical id and binary of each function, without a YAML parser (the template's intrinsic
# tags would need custom constructors): "<Logical>Function:" then "Binary: <name>".
logical = None
for line in open("template.yaml"):
    m = re.match(r"^  ([A-Za-z0-9]+Function):\s*$", line)
    if m:
        logical = m.group(1)
    m = re.match(r"^\s+Binary:\s*([a-z0-9-]+)\s*$", line)
    if m and logical:
        print(f"{logical} {m.group(1)}")
        logical = None
EOF
)
listed=$(python3 -c 'import json; print("\n".join(sorted({e["function"] for e in json.load(open("events/manifest.json"))})))')
count=0
while read -r logical binary; do
  bootstrap=$ROOT/.aws-sam/build/$logical/bootstrap
  if [ ! -f "$bootstrap" ]; then
    echo "test-arm64: $bootstrap is missing: run make build" >&2
    exit 1
  fi
  if ! file -b "$bootstrap" | grep -q 'ARM aarch64'; then
    echo "test-arm64: $bootstrap is not an arm64 executable: $(file -b "$bootstrap")" >&2
    exit 1
  fi
  printf '%-24s %-16s %10s bytes  %s\n' "$logical" "$binary" "$(stat -c %s "$bootstrap")" "$(file -b "$bootstrap" | cut -d, -f1-2)"
  printf '#!/bin/sh\nexec %s -L %s %s "$@"\n' "$QEMU" "$ARM64_ROOT" "$bootstrap" >"$BIN/$binary"
  chmod +x "$BIN/$binary"
  count=$((count + 1))
done <<<"$functions"
for name in $listed; do
  [ -x "$BIN/$name" ] || { echo "test-arm64: the manifest lists $name, which template.yaml does not build" >&2; exit 1; }
done
echo "$count arm64 bootstraps"

echo "== local stack (redis-server + moto on free loopback ports)"
cargo build -p lambda-harness -p ops --bins --locked -q
scripts/stack.sh up "$STACK" "arm64-"
set -a; . "$STACK/env"; set +a
"$TARGET/debug/ops" seed >/dev/null
# Sample events name users, not tokens: fresh access tokens of the stack's key go in at run time.
"$TARGET/debug/ops" render-events --from events --to "$STACK/events" >/dev/null

echo "== events/ through the arm64 bootstraps under qemu-aarch64 (local Lambda Runtime API)"
# Emulation makes a cold init several times slower: a generous per-invocation timeout.
# Each function as its own cache (ACL) user, as deployed.
"$TARGET/debug/lambda-harness" check --manifest "$STACK/events/manifest.json" --bin-dir "$BIN" \
  --env-file "$STACK/env" --function-env-dir "$STACK/functions" --timeout 60
finished=$(date +%s)
echo "test-arm64: build $((built - started)) s, emulated events $((finished - built)) s"
