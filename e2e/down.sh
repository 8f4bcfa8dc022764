#!/usr/bin/env bash
# `just down`: stops every process `just up` started (newest first), then cleans its state.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${TIKV_OPERATOR_STATE_DIR:-$root/.local}"
pids="$state/pids"
[ -f "$pids" ] || { echo "nothing to stop"; exit 0; }
tac "$pids" | while read -r name pid; do
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name ($pid)"
  fi
done
# Each `just up` starts a new cluster, so the pods' volumes (PVC directories) of this one are of
# no use once it is gone; logs stay for reading.
rm -rf "$state/node-agent"
rm -f "$pids" "$state/kubeconfig"
echo "down"
