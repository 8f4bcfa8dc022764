#!/usr/bin/env bash
# `just up`: the local environment — a real Kubernetes cluster (control plane, a control-plane
# node and three worker nodes with kubelet + containerd, cluster DNS, volumes; see e2e/env) —
# then the operator installed with Helm from the images built here, exactly as the README tells
# users, then examples/basic. Runs in the background; `just down` stops it. A second `just up`
# while one runs says so and starts nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
state="${TIKV_OPERATOR_STATE_DIR:-$root/.local}"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
bin_dir="${TIKV_OPERATOR_BIN_DIR:-$HOME/.cache/tikv-operator/bin}"
export PATH="$bin_dir:$PATH"
mkdir -p "$state/logs"
pid_file="$state/tikv-env.pid"

if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
  echo "already up (tikv-env pid $(cat "$pid_file")); KUBECONFIG=$state/kubeconfig"
  exit 0
fi
start=$SECONDS
# The images of this build (nothing is rebuilt when up to date).
TIKV_IMAGE_BINS="$target" "$root/images/build.sh" | tail -1

echo "starting the environment (control plane, 4 nodes) ..."
log="$state/logs/tikv-env.log"
nohup "$target/tikv-env" up --state "$state" --images "$target/images" --keep-logs >"$log" 2>&1 &
echo $! >"$pid_file"
for _ in $(seq 1 300); do
  grep -q '^ready$' "$log" 2>/dev/null && break
  if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "the environment failed to start:"; tail -30 "$log"; rm -f "$pid_file"; exit 1
  fi
  sleep 1
done
grep -q '^ready$' "$log" || { echo "the environment is not ready after 300 s; see $log"; exit 1; }
export KUBECONFIG="$state/kubeconfig"
echo "  ready in $(sed -n 's/^startup_ms=//p' "$log") ms; KUBECONFIG=$KUBECONFIG"
kubectl get nodes

# The operator, as the README installs it.
echo "installing the operator with helm ..."
helm install tikv-operator-crds charts/tikv-operator-crds --wait
for c in cluster group instance; do
  helm install "tikv-operator-$c-controller" "charts/tikv-operator-$c-controller" \
    --namespace tikv-operator --create-namespace --wait --timeout 3m
done
kubectl get deployments --namespace tikv-operator

kubectl apply -f examples/basic/
echo "waiting for Cluster basic to be Ready (up to 10 minutes) ..."
for i in $(seq 1 120); do
  ready="$(kubectl get cluster basic -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  if [ "$ready" = "True" ]; then
    kubectl get pdgroups,tikvgroups,pds,tikvs,pods -o wide
    echo "Cluster basic is Ready ($((SECONDS - start)) s). KUBECONFIG=$KUBECONFIG"
    echo "inside the cluster network: just exec -- CMD (e.g. just exec -- curl http://basic-pd.default.svc:2379/pd/api/v1/stores); stop with: just down"
    exit 0
  fi
  if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    echo "the environment exited; its log:"; tail -30 "$log"; exit 1
  fi
  if [ $((i % 6)) = 0 ]; then kubectl get pdgroups,tikvgroups,pds,tikvs,pods 2>/dev/null || true; fi
  sleep 5
done
echo "Cluster basic is not Ready after 10 minutes. Where it stands:"
kubectl get cluster,pdgroups,tikvgroups,pds,tikvs,pods -o wide || true
kubectl get events --sort-by=.lastTimestamp | tail -20 || true
echo "logs in $state/logs and $state/nodes/*/logs; the environment keeps running (just down stops it)"
exit 1
