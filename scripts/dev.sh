#!/usr/bin/env bash
# `make dev`: install what is missing, start the local stack, seed demo data, and serve every
# function through `cargo lambda watch` (its router maps the HTTP contract, like API Gateway's
# routes), behind scripts/api_front_door.py (CORS as API Gateway decides it, from template.yaml).
# Leaves everything running; `make down` stops it. All listeners are on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=.dev
export PATH="$PWD/.venv/bin:$PATH"

scripts/bootstrap.sh
scripts/stack.sh down "$DEV"
# The local OIDC issuer on a fixed port: its URL is the iss of every local user's identity.
export OIDC_ISSUER_PORT=${OIDC_ISSUER_PORT:-9444}
scripts/stack.sh up "$DEV"

set -a; . "$DEV/env"; set +a
cargo build -q -p ops
target/debug/ops seed >/dev/null

API_PORT=${API_PORT:-9000}
WATCH_PORT=${WATCH_PORT:-$((API_PORT + 1))}
ORIGINS=$(grep '^ALLOWED_ORIGINS=' "$DEV/env" | cut -d= -f2-)
# --disable-cors: cargo lambda watch's own CORS layer allows any origin; API Gateway's comes from
# the template instead (the front door below).
nohup cargo lambda watch -A 127.0.0.1 -P "$WATCH_PORT" --disable-cors --env-file "$DEV/env" \
  >"$DEV/watch.log" 2>&1 &
echo $! >>"$DEV/pids"
# API Gateway's part: with CorsConfiguration set it answers every preflight itself and replaces the
# functions' CORS headers with the configured ones. The front door does the same, from template.yaml.
nohup .venv/bin/python scripts/api_front_door.py --port "$API_PORT" --upstream "http://127.0.0.1:$WATCH_PORT" \
  --origins "$ORIGINS" >"$DEV/front-door.log" 2>&1 &
echo $! >>"$DEV/pids"

{
  echo "API_URL=http://127.0.0.1:$API_PORT"
  # A Function URL is not behind API Gateway: cargo lambda watch serves it under /lambda-url/<function>/
  echo "WEBHOOK_URL=http://127.0.0.1:$WATCH_PORT/lambda-url/stripe-webhook/"
} >>"$DEV/env"

# Wait for the router, then compile posts-read once so the first request is not a cold build.
for _ in $(seq 1 600); do
  curl -s -o /dev/null "http://127.0.0.1:$API_PORT/posts/1" && break
  sleep 0.5
done

# email-sender: the stack verified the SES identity (scripts/provision.py); feed EmailQueue to the
# function the way the SQS event source mapping does (batches, delete only what succeeded).
nohup target/debug/ops poll-queue --queue-url "$EMAIL_QUEUE_URL" \
  --invoke-url "http://127.0.0.1:$WATCH_PORT/2015-03-31/functions/email-sender/invocations" \
  >"$DEV/poller.log" 2>&1 &
echo $! >>"$DEV/pids"

echo "local stack is up (stop it with: make down)"
grep -v '^#' "$DEV/env" | grep -E 'URL|_TABLE|_BUCKET|_QUEUE|SECRET|ORIGINS|OIDC_(ISSUER|CLIENT_ID)=' | sed 's/^/  /'
echo "  try: curl -i \$API_URL/posts/1   (values in $DEV/env)"
echo "  sign in (docs/sign-in.md): curl -i -H 'content-type: application/json' -H 'origin: http://localhost:5173' \\"
echo "    -d \"{\\\"idToken\\\":\\\"\$(target/debug/ops id-token --sub alice)\\\"}\" \$API_URL/auth/session"
