#!/usr/bin/env bash
# `just up`: the local environment. Starts a real control plane (etcd, kube-apiserver,
# controller-manager, scheduler), the node agent (runs pods as local processes: PD as the real
# pd-server, TiKV as tikv-sim), the three controllers, and applies examples/basic. Everything runs
# in the background; `just down` stops it. Safe to run twice.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${TIKV_OPERATOR_STATE_DIR:-$root/.local}"
mkdir -p "$state/logs"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
pids="$state/pids"

# Every recorded process runs (and at least one is recorded).
alive() { [ -s "$pids" ] && while read -r name pid; do kill -0 "$pid" 2>/dev/null || return 1; done <"$pids"; }
if [ -f "$pids" ] && alive; then
  echo "already up (pids in $pids); KUBECONFIG=$state/kubeconfig"
  exit 0
fi
[ -f "$pids" ] && "$root/e2e/down.sh" >/dev/null 2>&1 || true
: >"$pids"

start() { # name logfile command...
  local name="$1" log="$2"; shift 2
  nohup "$@" >"$log" 2>&1 &
  echo "$name $!" >>"$pids"
}

echo "starting the control plane ..."
start control-plane "$state/logs/control-plane.log" "$target/testenv-up"
for _ in $(seq 1 120); do
  grep -q '^ready$' "$state/logs/control-plane.log" 2>/dev/null && break
  if ! alive; then echo "control plane failed:"; tail -30 "$state/logs/control-plane.log"; exit 1; fi
  sleep 1
done
grep -q '^ready$' "$state/logs/control-plane.log" || { echo "control plane not ready after 120s"; exit 1; }
kubeconfig="$(sed -n 's/^kubeconfig=//p' "$state/logs/control-plane.log")"
cp "$kubeconfig" "$state/kubeconfig"
export KUBECONFIG="$state/kubeconfig"
echo "  $(sed -n 's/^startup_ms=//p' "$state/logs/control-plane.log") ms; KUBECONFIG=$KUBECONFIG"

if [ -x "$target/node-agent" ]; then
  echo "starting the node agent ..."
  start node-agent "$state/logs/node-agent.log" "$target/node-agent" --kubeconfig "$KUBECONFIG" --state-dir "$state/node-agent" --tikv-sim "$target/tikv-sim"
else
  echo "node agent not built ($target/node-agent): pods will stay Pending"
fi

port=18080
for c in cluster-controller group-controller instance-controller; do
  echo "starting $c (metrics on 127.0.0.1:$port) ..."
  start "$c" "$state/logs/$c.log" env LOG_FORMAT=text "$target/$c" --metrics-addr "127.0.0.1:$port"
  port=$((port + 1))
done

kubectl=kubectl
[ -x "${TIKV_OPERATOR_BIN_DIR:-$HOME/.cache/tikv-operator/bin}/kubectl" ] && kubectl="${TIKV_OPERATOR_BIN_DIR:-$HOME/.cache/tikv-operator/bin}/kubectl"
"$kubectl" apply -f examples/basic/

echo "waiting for Cluster basic to be Ready (up to 10 minutes) ..."
for i in $(seq 1 120); do
  ready="$("$kubectl" get cluster basic -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  if [ "$ready" = "True" ]; then
    "$kubectl" get pdgroups,tikvgroups,pds,tikvs
    echo "Cluster basic is Ready. KUBECONFIG=$KUBECONFIG; stop with: just down"
    exit 0
  fi
  if ! alive; then
    echo "a process of the environment exited; logs in $state/logs:"
    while read -r name pid; do kill -0 "$pid" 2>/dev/null || { echo "--- $name"; tail -20 "$state/logs/$name.log"; }; done <"$pids"
    exit 1
  fi
  if [ $((i % 6)) = 0 ]; then "$kubectl" get pdgroups,tikvgroups,pds,tikvs,pods 2>/dev/null || true; fi
  sleep 5
done
echo "Cluster basic is not Ready after 10 minutes. Where it stands:"
"$kubectl" get cluster,pdgroups,tikvgroups,pds,tikvs,pods -o wide || true
"$kubectl" get events --sort-by=.lastTimestamp | tail -20 || true
echo "logs in $state/logs; the environment keeps running (just down stops it)"
exit 1
