#!/usr/bin/env bash
# The local stack without Docker: redis-server, moto's server and a local OIDC issuer
# (scripts/oidc_issuer.py) on free loopback ports, the template's resources provisioned into moto,
# and a dotenv file describing it all.
#
#   scripts/stack.sh up DIR [PREFIX]   start the servers, provision, write DIR/env and DIR/functions.json
#   scripts/stack.sh down DIR          stop what `up` started (by the PIDs it recorded)
#
# Everything binds to 127.0.0.1. PIDs go to DIR/pids; logs to DIR/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
# Local only: the access-token key pair (`ops keygen --kid dev-1`). Sample events carry
# {{access-token:USER}} placeholders that `ops render-events` fills with tokens of this key; the
# local access-token TTL is an hour (900 s in the template) so that rendered events outlast a
# `make bench` run.
DEV_JWT_SIGNING_KEY=MFECAQEwBQYDK2VwBCIEIIDPe82yQBEEj0xVV309GPmgaSEeLsp3nlfclSQHQUkugSEAOysUVcqj6s--EY2H-yvF7NXjUXC8p5hMbhzyzo85VjU
DEV_JWT_PUBLIC_KEYS=dev-1:OysUVcqj6s--EY2H-yvF7NXjUXC8p5hMbhzyzo85VjU
DEV_REFRESH_TOKEN_SECRET=dev-only-refresh-token-secret-not-for-production-01
# Local only: the cache users' passwords (tools/testkit's redis_acl uses the same rule).
dev_cache_password() { echo "dev-redis-password-$1-0001"; }
# Local only: the sample events in events/stripe-webhook are signed with this secret.
DEV_STRIPE_WEBHOOK_SECRET=whsec_dev_only_not_for_production_0001
# Local only: the cursor in events/posts-read/list-cursor.json is signed with this key.
DEV_POSTS_CURSOR_SECRET=dev-only-posts-cursor-secret-not-for-production-01

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # port, seconds
  for _ in $(seq 1 $(( $2 * 20 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "stack: nothing listening on 127.0.0.1:$1" >&2; return 1
}

up() {
  local dir=$1 prefix=${2:-}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pids" ]; then down "$dir"; fi
  local redis_port moto_port
  redis_port=$(free_port); moto_port=$(free_port)

  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$dir/moto.log" 2>&1 &
  echo $! >>"$dir/pids"
  wait_port "$moto_port" 60

  # The local OIDC issuer (sign-in, POST /auth/session): discovery document and key set on
  # loopback; `ops id-token` signs with its key file. OIDC_ISSUER_PORT pins its port (make dev keeps
  # the issuer, and so every signed-in user's id, across restarts).
  local issuer_port=${OIDC_ISSUER_PORT:-$(free_port)}
  "$VENV/bin/python" scripts/oidc_issuer.py --key "$dir/oidc-issuer-key.json" --port "$issuer_port" \
    >"$dir/oidc-issuer.log" 2>&1 &
  echo $! >>"$dir/pids"
  wait_port "$issuer_port" 30
  local oidc_issuer="http://127.0.0.1:$issuer_port" oidc_client_id=local-app

  local endpoint="http://127.0.0.1:$moto_port" redis_url="redis://127.0.0.1:$redis_port"
  local origins=${ALLOWED_ORIGINS:-http://127.0.0.1:5173,http://localhost:5173}
  "$VENV/bin/python" scripts/provision.py --endpoint "$endpoint" --prefix "$prefix" \
    --param "AllowedOrigins=$origins" \
    --param "JwtSigningKeySecret=$DEV_JWT_SIGNING_KEY" --set "JWT_SIGNING_KEY_ID=dev-1" \
    --set "JWT_PUBLIC_KEYS=$DEV_JWT_PUBLIC_KEYS" --param "RefreshTokenSecret=$DEV_REFRESH_TOKEN_SECRET" \
    --param "PostsReadCachePassword=$(dev_cache_password posts-read)" \
    --param "PostsWriteCachePassword=$(dev_cache_password posts-write)" \
    --param "AuthRefreshCachePassword=$(dev_cache_password auth-refresh)" \
    --param "StripeWebhookSecret=$DEV_STRIPE_WEBHOOK_SECRET" --param "PostsCursorSecret=$DEV_POSTS_CURSOR_SECRET" \
    --param "EmailFromAddress=no-reply@example.com" --param "SesIdentity=example.com" \
    --set "REDIS_URL=$redis_url" --set REDIS_CLUSTER=false --set "ALLOWED_ORIGINS=$origins" \
    --set S3_FORCE_PATH_STYLE=true --acl-out "$dir/users.acl" \
    --set "ACCESS_TOKEN_TTL_SECONDS=${ACCESS_TOKEN_TTL_SECONDS:-3600}" \
    --param "OidcClientId=$oidc_client_id" --set "OIDC_ISSUER=$oidc_issuer" \
    `# One local stage: the code's default issuer and audience (in AWS each stack's own).` \
    --set "JWT_ISSUER=rust-serverless-bundle" --set "JWT_AUDIENCE=rust-serverless-bundle-api" \
    >"$dir/functions.json"

  # The template's cache users, so each function signs in with only its own rights.
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" \
    --aclfile "$dir/users.acl" >"$dir/redis.log" 2>&1 &
  echo $! >>"$dir/pids"
  wait_port "$redis_port" 10

  # Each function's own variables (its cache user among them), for tools that start functions
  # one by one (lambda-harness --function-env-dir).
  mkdir -p "$dir/functions"
  "$VENV/bin/python" - "$dir/functions.json" "$dir/functions" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
for name, env in doc["functions"].items():
    with open(os.path.join(sys.argv[2], f"{name}.env"), "w") as f:
        for key in sorted(env):
            f.write(f"{key}={env[key]}\n")
PY

  # One dotenv file: the stack's endpoints plus the union of every function's variables
  # (each function reads only its own). The cache user is per function, so it is left out here:
  # what reads this file alone (ops, bench, `cargo lambda watch`) signs in as the local default user.
  {
    echo "# written by scripts/stack.sh; local dev values only"
    echo "AWS_ENDPOINT_URL=$endpoint"
    echo "AWS_REGION=us-east-1"
    echo "AWS_DEFAULT_REGION=us-east-1"
    echo "AWS_ACCESS_KEY_ID=test"
    echo "AWS_SECRET_ACCESS_KEY=test"
    echo "REDIS_PORT=$redis_port"
    # The local issuer's signing key, for `ops id-token` and {{id-token:<sub>}} in events/.
    echo "OIDC_DEV_ISSUER_KEY=$dir/oidc-issuer-key.json"
    "$VENV/bin/python" - "$dir/functions.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
merged = {}
for env in doc["functions"].values():
    merged.update({k: v for k, v in env.items() if k not in ("REDIS_USERNAME", "REDIS_PASSWORD")})
for key in sorted(merged):
    print(f"{key}={merged[key]}")
PY
  } >"$dir/env"
}

down() {
  local dir=$1
  [ -f "$dir/pids" ] || return 0
  while read -r pid; do
    [ -n "$pid" ] || continue
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done <"$dir/pids"
  rm -f "$dir/pids"
}

case "${1:-}" in
  up) up "${2:?dir}" "${3:-}" ;;
  down) down "${2:?dir}" ;;
  *) echo "usage: $0 up DIR [PREFIX] | down DIR" >&2; exit 2 ;;
esac
