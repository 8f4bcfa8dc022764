#!/usr/bin/env bash
# `just down`: stops the environment `just up` started (SIGTERM: it removes every pod, container,
# mount, cgroup and network namespace it made), or cleans up after one that died. Logs stay in
# .local/logs and .local/nodes/*/logs.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="${TIKV_OPERATOR_STATE_DIR:-$root/.local}"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
pid_file="$state/tikv-env.pid"
if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  pid="$(cat "$pid_file")"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "tikv-env ($pid) did not stop within 60 s; killing it (its watchdog cleans up)"
    kill -KILL "$pid"
    sleep 2
  fi
  tail -1 "$state/logs/tikv-env.log"
fi
rm -f "$pid_file"
if [ -f "$state/state.json" ]; then
  "$target/tikv-env" down --state "$state" --keep-logs
fi
echo "down"
