#!/usr/bin/env bash
# `make delete`: deletes a deployed stack (default: the dev stack of samconfig.toml) after saying
# what the deletion keeps. What template.yaml marks DeletionPolicy: Retain (the tables and the
# uploads bucket: data) survives the stack and keeps costing until removed by hand; everything
# else (functions, their log groups and logs, alarms, the alarm topic, the dashboard, the cache
# and its data, the queues and their messages) is deleted with it.
# Usage: scripts/stack-delete.sh STACK_NAME [REGION]
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=${1:?usage: scripts/stack-delete.sh STACK_NAME [REGION]}
REGION=${2:-us-east-1}
case $STACK in
  *-prod|*-staging) echo "refusing to delete $STACK from make delete; use the AWS console or sam delete yourself" >&2; exit 2 ;;
esac
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
echo "Deleting stack $STACK ($REGION). Retained (DeletionPolicy: Retain; delete them yourself when no longer needed):"
PYTHONPATH=scripts "$PY" - <<'PY'
from provision import load_template
t = load_template("template.yaml")
for name, r in t["Resources"].items():
    if r.get("DeletionPolicy") == "Retain":
        print(f"  {name} ({r['Type']})")
print("Deleted with the stack: every function, its log group (logs included), alarms, the alarm topic,")
print("the dashboard, the cache (its data), the email queues (messages included, dead letters too).")
PY
exec sam delete --stack-name "$STACK" --region "$REGION"
