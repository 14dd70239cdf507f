#!/usr/bin/env bash
# The deploy rehearsal (part of `make test`): the deploy path's own commands, read from
# .github/workflows/{deploy,rollback}.yml and .github/actions/sam-deploy/action.yml, run against
# MiniStack (CloudFormation with the SAM transform), with the workflow's inputs from
# tests/deploy/workflow-inputs.json. scripts/deploy_rehearsal.py says what it checks.
#
# 1. the package job up to its AWS credentials (`sam build`: arm64 bootstraps through
#    cargo-lambda), here, outside any namespace;
# 2. everything that talks to AWS inside a network namespace of its own (`unshare -n`, loopback
#    only): MiniStack listens on 127.0.0.1 there and nothing can reach any other address. The
#    namespace ends with the last process in it; MiniStack is stopped by its PID first.
#
# MiniStack lives in its own venv (.venv-ministack, scripts/bootstrap.sh): it pins a botocore
# that the project's .venv (SAM CLI) must not be moved to.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"

if [ "${1:-}" = --in-namespace ]; then
  work=$2
  ip link set lo up
  port=4566
  cd "$work"
  GATEWAY_PORT=$port BIND_HOST=127.0.0.1 "$ROOT/.venv-ministack/bin/ministack" >"$work/ministack.log" 2>&1 &
  ms=$!
  stop() { kill "$ms" 2>/dev/null || true; wait "$ms" 2>/dev/null || true; }
  trap stop EXIT
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$ms" 2>/dev/null || { cat "$work/ministack.log" >&2; exit 1; }
    sleep 0.1
  done
  cd "$ROOT"
  python scripts/deploy_rehearsal.py run "$work" "http://127.0.0.1:$port"
  exit
fi

work=$(mktemp -d /tmp/deploy-rehearsal.XXXXXX)
keep=${KEEP_REHEARSAL:-}
cleanup() { if [ -z "$keep" ]; then rm -rf "$work"; else echo "rehearsal files kept in $work"; fi; }
trap cleanup EXIT
started=$(date +%s)
echo "== deploy rehearsal: the package job's build steps (sam build)"
python scripts/deploy_rehearsal.py build "$work"
echo "== deploy rehearsal: package, deploy, rollback, mutations (MiniStack in its own network namespace)"
# As root a network namespace needs nothing more; otherwise a user namespace maps us to root in it.
if [ "$(id -u)" = 0 ]; then unshare -n bash "$0" --in-namespace "$work"; else unshare -rn bash "$0" --in-namespace "$work"; fi
echo "deploy rehearsal: $(( $(date +%s) - started )) s"
