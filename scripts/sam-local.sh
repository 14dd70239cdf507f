#!/usr/bin/env bash
# The sample events through SAM CLI's own local paths, as a user runs them (`make test` calls it):
#   1. every file of events/manifest.json through `sam local invoke` (one process and one
#      container per event), checking the manifest's status, or email-sender's exact
#      batchItemFailures ids;
#   2. the HTTP contract once through `sam local start-api`: the same events as HTTP requests, so
#      the template's routes and CorsConfiguration decide, as API Gateway does.
# Each phase runs on a fresh local stack (scripts/stack.sh: redis-server + moto on loopback).
#
#   scripts/sam-local.sh [--bin-dir DIR] [--bench FILE]
#     --bin-dir  where the x86_64 function binaries are (default: $CARGO_TARGET_DIR/debug)
#     --bench    also write phase 1's per-event durations into FILE (its "sam local invoke" section,
#                replaced in place; make bench does this for docs/performance-figures.md on the release bootstraps)
#
# No Docker and no registry: Podman serves the Docker API on a socket in a temporary folder, its
# configuration is a project-local containers.conf (CONTAINERS_CONF; /etc is never touched), its
# storage and network configuration live in that folder too. SAM's base image
# (public.ecr.aws/lambda/provided:al2023-x86_64) is made here: busybox-static for `sh`, the
# bootstraps' shared libraries (ldd) and the CA bundle, `podman import`ed under that name, and
# --skip-pull-image keeps SAM from looking for it elsewhere.
#
# Network: Podman 4.3's Docker API puts SAM's containers on a bridge (it ignores containers.conf's
# netns there), so they cannot reach the host's 127.0.0.1. The script creates its own bridge
# network with no default route and no masquerading (a container reaches its subnet and nothing
# else) and runs forwarders (scripts/loopback_forward.py) on the bridge's host address that relay to
# the stack's loopback ports and refuse any peer outside that subnet. Everything the script starts
# is stopped by PID on exit, and its containers are removed.
#
# When a Docker daemon answers (`docker info`: Docker Desktop, dockerd, the dev container's host
# daemon), SAM CLI uses it as it normally does and no Podman is started: the same base image is
# `docker import`ed (a tag of that name the daemon had is put back on exit), the containers join
# an --internal network of this run (no route out), and the forwarders listen on the address that
# network gives this machine (its gateway; or, when this runs in a container of that daemon, the
# container's own address on it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
export PATH="$VENV/bin:$PATH"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=$TARGET/debug
BENCH=
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) BIN_DIR=$(cd "$2" && pwd); shift 2 ;;
    --bench) BENCH=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: $0 [--bin-dir DIR] [--bench FILE]" >&2; exit 2 ;;
  esac
done
# Every function template.yaml declares (scripts/functions.py): a new one needs nothing here.
mapfile -t FUNCTIONS < <(python scripts/functions.py)
[ "${#FUNCTIONS[@]}" -gt 0 ] || { echo "sam-local: scripts/functions.py found no function in template.yaml" >&2; exit 1; }
# The seeding CLI from the same build when it is there (make bench builds release only).
OPS=$BIN_DIR/ops
[ -x "$OPS" ] || OPS=$TARGET/debug/ops
ORIGIN=http://localhost:5173
ORIGINS="http://127.0.0.1:5173,$ORIGIN"
# The template's parameters as scripts/stack.sh provisions with (the sample events are signed with
# its secrets; the functions get every secret's local value through the stack's env-vars, since
# the template's secrets and signing key are made in AWS).
DEV_PARAMS=(
  "StripeWebhookSecret=whsec_dev_only_not_for_production_0001"
  "EmailFromAddress=no-reply@example.com" "SesIdentity=example.com" "AllowedOrigins=$ORIGINS"
)

WORK=$(mktemp -d /tmp/bundle-sam-local.XXXXXX)
PIDS=$WORK/pids
STACKS=()
BASE_IMAGE=public.ecr.aws/lambda/provided:al2023-x86_64
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=podman; fi
PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/run" --tmpdir "$WORK/tmp" --storage-driver vfs)
if [ "$ENGINE" = podman ]; then
  export CONTAINERS_CONF=$WORK/containers.conf
  export DOCKER_HOST=unix://$WORK/podman.sock
fi

stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  set +e
  # Started last, stopped first: start-api, forwarders, then (after its containers) Podman.
  if [ -f "$PIDS.sam" ]; then while read -r pid; do stop_pid "$pid"; done <"$PIDS.sam"; fi
  if [ -f "$PIDS.fwd" ]; then while read -r pid; do stop_pid "$pid"; done <"$PIDS.fwd"; fi
  if [ -S "$WORK/podman.sock" ]; then "${PODMAN[@]}" rm -af -t 2 >/dev/null 2>&1; fi
  if [ -f "$PIDS.podman" ]; then while read -r pid; do stop_pid "$pid"; done <"$PIDS.podman"; fi
  if [ "$ENGINE" = docker ]; then
    [ -z "${JOINED:-}" ] || docker network disconnect -f "$NET" "$JOINED" >/dev/null 2>&1
    [ ! -f "$WORK/docker-network" ] || docker network rm "$NET" >/dev/null 2>&1
    if [ -f "$WORK/docker-image-before" ]; then
      docker tag "$(cat "$WORK/docker-image-before")" "$BASE_IMAGE" >/dev/null 2>&1
    elif [ -f "$WORK/docker-image-ours" ]; then
      docker rmi "$BASE_IMAGE" >/dev/null 2>&1
    fi
  fi
  # The bridge and the IP allocations CNI keeps for it outlive the containers: this run's, by name.
  if [ -n "${BRIDGE:-}" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then ip link delete "$BRIDGE"; fi
  if [ -n "${NET:-}" ]; then rm -rf "/var/lib/cni/networks/$NET"; fi
  for stack in "${STACKS[@]}"; do scripts/stack.sh down "$stack"; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # host port seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "sam-local: nothing listening on $1:$2" >&2; return 1
}

# ------------------------------------------------------------------ bootstraps and the base image
for f in "${FUNCTIONS[@]}"; do
  [ -x "$BIN_DIR/$f" ] || { echo "sam-local: $BIN_DIR/$f missing (cargo build --workspace --bins)" >&2; exit 1; }
  mkdir -p "$WORK/code/$f"
  ln "$BIN_DIR/$f" "$WORK/code/$f/bootstrap" 2>/dev/null || cp "$BIN_DIR/$f" "$WORK/code/$f/bootstrap"
done

ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS"/{bin,tmp,opt,var/task,var/runtime,etc/ssl/certs,etc/pki/tls/certs}
cp /bin/busybox "$ROOTFS/bin/busybox"
# SAM's image build runs `mv` and `chmod`; RIE needs nothing else from the image.
for applet in sh mv chmod cp rm cat ls; do ln -s busybox "$ROOTFS/bin/$applet"; done
for lib in $(for f in "${FUNCTIONS[@]}"; do ldd "$BIN_DIR/$f"; done | grep -o '/[^ ]*' | sort -u); do
  mkdir -p "$ROOTFS$(dirname "$lib")"
  cp -L "$lib" "$ROOTFS$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
ln -s ../../../ssl/certs/ca-certificates.crt "$ROOTFS/etc/pki/tls/certs/ca-bundle.crt"

# ------------------------------------------------------------------ Podman, its network, the image
NOFILE=$(ulimit -Hn)
SUBNET_C=
for c in $(seq 200 250); do
  if ! ip -4 route show | grep -q "^10\.89\.$c\."; then SUBNET_C=$c; break; fi
done
[ -n "$SUBNET_C" ] || { echo "sam-local: no free 10.89.x.0/24 subnet" >&2; exit 1; }
SUBNET=10.89.$SUBNET_C.0/24
GATEWAY=10.89.$SUBNET_C.1
NET=bundle-sam-$$
BRIDGE=bsam$SUBNET_C
HOST_ADDRESS=$GATEWAY
if [ "$ENGINE" = podman ]; then  # ---- no Docker daemon: Podman serves the Docker API, this run only
mkdir -p "$WORK/cni" "$WORK/tmp"
cat >"$CONTAINERS_CONF" <<EOF
# scripts/sam-local.sh: Podman for SAM CLI, this run only.
[containers]
# Lambda's own limits, near enough: open files at this host's hard limit, 4096 processes.
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=4096:4096"]
[engine]
# The host's cgroups are hybrid: runc handles them, crun (Podman's default) does not here.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[network]
network_config_dir = "$WORK/cni"
default_network = "$NET"
EOF
# A bridge whose containers get their subnet route only: no default gateway, no NAT.
cat >"$WORK/cni/$NET.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NET",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET", "gateway": "$GATEWAY"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": ""},
    {"type": "tuning"}
  ]
}
EOF
"${PODMAN[@]}" system service --time=0 "$DOCKER_HOST" >"$WORK/podman.log" 2>&1 &
echo $! >>"$PIDS.podman"
for _ in $(seq 1 100); do [ -S "$WORK/podman.sock" ] && break; sleep 0.1; done
tar -C "$ROOTFS" -c . | "${PODMAN[@]}" import --change 'WORKDIR /var/task' - \
  "$BASE_IMAGE" >/dev/null 2>"$WORK/import.log" \
  || { cat "$WORK/import.log" >&2; exit 1; }

else
  # The daemon's own network, --internal: containers reach its subnet and nothing else.
  docker network create --internal --subnet "$SUBNET" --gateway "$GATEWAY" "$NET" >/dev/null
  touch "$WORK/docker-network"
  export SAM_DOCKER_NETWORK=$NET
  HOST_ADDRESS=$GATEWAY
  if docker inspect "$(hostname)" >/dev/null 2>&1; then
    # This machine is itself a container of that daemon: containers reach it on that network.
    JOINED=$(hostname)
    docker network connect "$NET" "$JOINED"
    HOST_ADDRESS=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$JOINED")
  fi
  before=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
  [ -z "$before" ] || echo "$before" >"$WORK/docker-image-before"
  touch "$WORK/docker-image-ours"
  tar -C "$ROOTFS" -c . | docker import --change 'WORKDIR /var/task' - "$BASE_IMAGE" >/dev/null 2>"$WORK/import.log" \
    || { cat "$WORK/import.log" >&2; exit 1; }
fi

export SAM_CLI_TELEMETRY=0
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

# ------------------------------------------------------------------ a fresh stack per phase
# Starts a stack, seeds it, forwards its ports onto the bridge, and writes the local template,
# env-vars and parameters for it into $WORK/gen-$1. Sets STACK_ENDPOINT.
phase_stack() {
  local name=$1 dir=$WORK/stack-$1
  STACKS+=("$dir")
  ALLOWED_ORIGINS=$ORIGINS scripts/stack.sh up "$dir" "sam$name-" >/dev/null
  local endpoint redis_port
  endpoint=$(grep '^AWS_ENDPOINT_URL=' "$dir/env" | cut -d= -f2-)
  redis_port=$(grep '^REDIS_PORT=' "$dir/env" | cut -d= -f2-)
  # Seeded data, and the sample events with fresh access tokens of this stack's key filled in
  # (events name users, not tokens: `ops render-events`).
  (set -a; . "$dir/env"; set +a; "$OPS" seed >/dev/null; "$OPS" render-events --from events --to "$dir/events" >/dev/null)
  python "$ROOT/scripts/loopback_forward.py" --listen "$HOST_ADDRESS" --allow "$SUBNET" \
    --port "${endpoint##*:}" --port "$redis_port" >>"$WORK/forward.log" 2>&1 &
  echo $! >>"$PIDS.fwd"
  python "$ROOT/scripts/sam_local_template.py" --functions-json "$dir/functions.json" --endpoint "$endpoint" \
    --origins "$ORIGINS" --code-dir "$WORK/code" --host-address "$HOST_ADDRESS" \
    --port "${endpoint##*:}" --port "$redis_port" "${DEV_PARAMS[@]/#/--param=}" --out-dir "$WORK/gen-$name"
  # SAM asks STS who the caller is before each invoke: moto answers.
  export AWS_ENDPOINT_URL=$endpoint AWS_ENDPOINT_URL_STS=$endpoint
}

echo "== sam local invoke: every events/ file ($ENGINE, containers on $NET, $SUBNET)"
phase_stack invoke
started=$(date +%s)
bench_args=()
[ -z "$BENCH" ] || bench_args=(--bench "$BENCH" --binaries "$(basename "$BIN_DIR")")
python scripts/sam_local_run.py invoke --manifest "$WORK/stack-invoke/events/manifest.json" --gen-dir "$WORK/gen-invoke" "${bench_args[@]}"
echo "sam local invoke phase: $(( $(date +%s) - started )) s"

echo "== sam local start-api: the HTTP contract through the template's routes"
phase_stack api
started=$(date +%s)
API_PORT=$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sam local start-api --template "$WORK/gen-api/template.yaml" --env-vars "$WORK/gen-api/env-vars.json" \
  --parameter-overrides "$(cat "$WORK/gen-api/parameters")" --skip-pull-image --warm-containers LAZY \
  --host 127.0.0.1 --port "$API_PORT" >"$WORK/start-api.log" 2>&1 &
echo $! >>"$PIDS.sam"
wait_port 127.0.0.1 "$API_PORT" 120 || { tail -30 "$WORK/start-api.log" >&2; exit 1; }
if ! python scripts/sam_local_run.py api --manifest "$WORK/stack-api/events/manifest.json" --gen-dir "$WORK/gen-api" \
  --api-url "http://127.0.0.1:$API_PORT" --origin "$ORIGIN"; then
  tail -40 "$WORK/start-api.log" >&2
  exit 1
fi
echo "sam local start-api phase: $(( $(date +%s) - started )) s"
