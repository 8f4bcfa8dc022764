#!/usr/bin/env bash
# Builds the real control-plane and PD binaries from Go modules (no container images, no release
# downloads: only the Go module proxy). Each wrapper module under e2e/tools/<name>/ pins exact
# versions in its go.mod/go.sum; a binary is rebuilt only when its module files change.
#
#   e2e/tools/build.sh [etcd|k8s|pd|helm|kubelet|coredns|crictl|local-path-provisioner|kvclient|
#                       prometheus|promql-check|prometheus-operator-crds|cert-manager|jaeger ...]
#   (default: all)
#
# Output: $TIKV_OPERATOR_BIN_DIR (default ~/.cache/tikv-operator/bin), outside the checkout so that
# fresh clones (CI) reuse it. Go's module and build caches are the usual ones and are reused too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${TIKV_OPERATOR_BIN_DIR:-$HOME/.cache/tikv-operator/bin}"
mkdir -p "$bin_dir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

K8S_VERSION=1.34.1
ETCD_VERSION=3.6.4
# The module proxy here serves no v8.5.x commit of PD; this is the newest it serves: commit
# 7179657d (2024-04-07, v8.1.0-alpha+4), an ancestor of every v8.1-v8.5 release, and the PD
# version pinned by the 8.x release branches of pingcap/tiflow.
PD_VERSION=8.1.0-alpha

# stamp NAME GO-BUILD-ARGS...: a hash of what decides the build (go.mod, go.sum, a wrapper's own
# Go files and the build arguments with their versions), so a changed module or version rebuilds
# and nothing else does.
stamp() {
  local name="$1"; shift
  local go_files=()
  for f in "$here/$name"/*.go; do [ -f "$f" ] && go_files+=("$f"); done
  { cat "$here/$name/go.mod" "$here/$name/go.sum" "${go_files[@]}"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

need_go() {
  command -v go >/dev/null 2>&1 && return
  echo "error: Go is not installed. Building etcd, kube-apiserver, pd-server and helm needs Go" \
    "(version in e2e/tools/*/go.mod) and the Go module proxy; install Go, then run e2e/tools/build.sh" >&2
  exit 1
}

# build NAME OUTPUTS... -- GO BUILD ARGS...
build() {
  local name="$1"; shift
  local outs=()
  while [ "$1" != "--" ]; do outs+=("$1"); shift; done
  shift
  local want have=""
  want="$(stamp "$name" "$@")"
  [ -f "$bin_dir/.$name.stamp" ] && have="$(cat "$bin_dir/.$name.stamp")"
  local missing=0
  for o in "${outs[@]}"; do [ -x "$bin_dir/$o" ] || missing=1; done
  if [ "$missing" = 0 ] && [ "$want" = "$have" ]; then
    echo "$name: up to date (${outs[*]})"
    return
  fi
  need_go
  echo "$name: building ${outs[*]} ..."
  local start=$SECONDS
  if ! (cd "$here/$name" && go build -trimpath "$@"); then
    echo "error: building $name failed (go build's output above). It needs Go $(sed -n 's/^go //p' "$here/$name/go.mod")" \
      "or newer (this is $(go env GOVERSION)) and the Go module proxy (GOPROXY=$(go env GOPROXY)) to serve" \
      "the modules in e2e/tools/$name/go.sum; fix that, then run e2e/tools/build.sh $name" >&2
    exit 1
  fi
  echo "$want" >"$bin_dir/.$name.stamp"
  echo "$name: built in $((SECONDS - start))s"
}

build_etcd() {
  build etcd etcd -- -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3
}

# Without these a Kubernetes binary reports v0.0.0-master as its version.
k8s_ldflags() {
  local minor
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  echo "-s -w -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
    -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
    -X k8s.io/component-base/version.gitTreeState=clean \
    -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION \
    -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}

build_k8s() {
  local ldf
  ldf="$(k8s_ldflags)"
  build k8s kube-apiserver kube-controller-manager kube-scheduler kubectl -- \
    -ldflags "$ldf" -o "$bin_dir/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

build_pd() {
  # PD's Makefile downloads tools; build the server package directly, without the dashboard.
  build pd pd-server -- -tags without_dashboard \
    -ldflags "-s -w -X github.com/tikv/pd/pkg/versioninfo.PDReleaseVersion=v$PD_VERSION -X github.com/tikv/pd/pkg/versioninfo.PDEdition=Community" \
    -o "$bin_dir/pd-server" github.com/tikv/pd/cmd/pd-server
}

build_helm() {
  # For the chart rendering tests.
  build helm helm -- -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v3.19.0" -o "$bin_dir/helm" helm.sh/helm/v3/cmd/helm
}

# The node components, from the same k8s.io/kubernetes release as the control plane. Their own
# module (not e2e/tools/k8s): the kubelet needs modules the control plane does not.
build_kubelet() {
  local ldf
  ldf="$(k8s_ldflags)"
  build kubelet kubelet kube-proxy -- -ldflags "$ldf" -o "$bin_dir/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

build_coredns() {
  # Cluster DNS; e2e/tools/coredns/main.go picks the plugins.
  build coredns coredns -- -ldflags "-s -w" -o "$bin_dir/coredns" .
}

build_crictl() {
  # The CRI client, to remove a node's pods through its runtime at teardown (and to look around).
  build crictl crictl -- -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v1.34.0" \
    -o "$bin_dir/crictl" sigs.k8s.io/cri-tools/cmd/crictl
}

build_local_path_provisioner() {
  # The PersistentVolume provisioner kind uses: node-local directories through helper pods.
  build local-path-provisioner local-path-provisioner -- -ldflags "-s -w -X main.VERSION=v0.0.30" \
    -o "$bin_dir/local-path-provisioner" github.com/rancher/local-path-provisioner
}

build_kvclient() {
  # Our RawKV client program on the official Go client (tests and benchmarks of the store).
  build kvclient kvclient -- -ldflags "-s -w" -o "$bin_dir/kvclient" .
}

# Prometheus module v0.X.Y is Prometheus 3.X.Y.
PROMETHEUS_VERSION=3.16.0

build_prometheus() {
  # promtool tests the alert rules (`promtool test rules`); prometheus scrapes the local
  # environment in the tests that check every dashboard and alert query returns series.
  build prometheus prometheus promtool -- \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=release-3.16" \
    -o "$bin_dir/" github.com/prometheus/prometheus/cmd/prometheus github.com/prometheus/prometheus/cmd/promtool
}

build_promql_check() {
  # Prometheus's PromQL parser behind a JSON interface (e2e/tools/promql-check/main.go): parse
  # errors and vector selectors of the dashboards' and alert rules' queries.
  build promql-check promql-check -- -ldflags "-s -w" -o "$bin_dir/promql-check" .
}

build_jaeger() {
  # A real OTLP collector with a query API: the test of the controllers' span export.
  build jaeger jaeger-all-in-one -- \
    -ldflags "-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=v1.76.0" \
    -o "$bin_dir/jaeger-all-in-one" github.com/jaegertracing/jaeger/cmd/all-in-one
}

# CRDs from a project's Go module (its generated, untemplated YAML) into $bin_dir/<name>-crds,
# for the tests that check our objects against their real schemas:
# fetch_crds <name (a wrapper module in e2e/tools)> <module> <dir in the module> <file>...
fetch_crds() {
  local name="$1" module="$2" sub="$3"; shift 3
  local out="$bin_dir/$name-crds" want have=""
  want="$(stamp "$name" "$@")"
  [ -f "$bin_dir/.$name-crds.stamp" ] && have="$(cat "$bin_dir/.$name-crds.stamp")"
  if [ "$want" = "$have" ] && [ -d "$out" ]; then
    echo "$name: up to date (CRDs in $out)"
    return
  fi
  need_go
  local dir
  if ! dir="$(cd "$here/$name" && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || [ -z "$dir" ]; then
    echo "error: downloading $module failed (output above);" \
      "it needs the Go module proxy (GOPROXY=$(go env GOPROXY)); then run e2e/tools/build.sh $name-crds" >&2
    exit 1
  fi
  rm -rf "$out" && mkdir -p "$out"
  for f in "$@"; do
    cp "$dir/$sub/$f" "$out/"
  done
  chmod 0644 "$out"/*.yaml
  echo "$want" >"$bin_dir/.$name-crds.stamp"
  echo "$name: CRDs in $out"
}

# The Prometheus operator's (PodMonitor, ServiceMonitor, PrometheusRule): the monitoring chart.
fetch_prometheus_operator_crds() {
  fetch_crds prometheus-operator github.com/prometheus-operator/prometheus-operator \
    example/prometheus-operator-crd \
    monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_servicemonitors.yaml \
    monitoring.coreos.com_prometheusrules.yaml
}

# cert-manager for examples/tls-cert-manager: its controllers for the SelfSigned and CA issuers
# (e2e/tools/cert-manager/main.go: its published module's controllers, glued; its own
# cmd/controller module is not on the module proxy) and its CRDs.
build_cert_manager() {
  build cert-manager cert-manager-controller -- -ldflags "-s -w" -o "$bin_dir/cert-manager-controller" .
  fetch_crds cert-manager github.com/cert-manager/cert-manager deploy/crds \
    cert-manager.io_issuers.yaml cert-manager.io_clusterissuers.yaml \
    cert-manager.io_certificates.yaml cert-manager.io_certificaterequests.yaml
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(etcd k8s pd helm kubelet coredns crictl local-path-provisioner kvclient prometheus promql-check prometheus-operator-crds cert-manager jaeger)
for t in "${targets[@]}"; do
  case "$t" in
    etcd) build_etcd ;;
    k8s) build_k8s ;;
    pd) build_pd ;;
    helm) build_helm ;;
    kubelet) build_kubelet ;;
    coredns) build_coredns ;;
    crictl) build_crictl ;;
    local-path-provisioner) build_local_path_provisioner ;;
    kvclient) build_kvclient ;;
    prometheus) build_prometheus ;;
    promql-check) build_promql_check ;;
    prometheus-operator-crds) fetch_prometheus_operator_crds ;;
    cert-manager) build_cert_manager ;;
    jaeger) build_jaeger ;;
    *) echo "unknown target: $t (want etcd, k8s, pd, helm, kubelet, coredns, crictl, local-path-provisioner, kvclient, prometheus, promql-check, prometheus-operator-crds, cert-manager or jaeger)" >&2; exit 2 ;;
  esac
done
echo "binaries in $bin_dir"
