#!/usr/bin/env bash
# Daemonless image build for the local environment: every image the e2e environment runs, as OCI
# archives that `ctr images import` loads into each node's containerd. No registry, no daemon:
# the rootfs of each image is assembled here from binaries that already exist, then packed with
# umoci. The layout comes from images/rootfs.sh, which images/Containerfile uses too (a glibc
# loader, libc and libgcc_s as in distroless/cc, the binary, user 65532), so the two agree.
#
#   images/build.sh [OUT_DIR]
#
# Inputs: the controllers and tikv-sim from $TIKV_IMAGE_BINS (default: the cargo target dir's
# debug profile, i.e. the test build: no second cargo build), pd-server from the Go-built bin dir
# (e2e/tools/build.sh), busybox from Debian's busybox-static, pause.c from the k8s.io/kubernetes
# module. Output (default $TIKV_IMAGE_BINS/images): one archive per image repository and
# images.txt ("REPOSITORY ARCHIVE" per line). Each image is rebuilt only when one of its inputs
# (files, this script, the versions) changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bins="${TIKV_IMAGE_BINS:-${CARGO_TARGET_DIR:-$root/target}/debug}"
out="${1:-$bins/images}"
go_bins="${TIKV_OPERATOR_BIN_DIR:-$HOME/.cache/tikv-operator/bin}"
# Every store and PD version a test or example uses; the store image is tikv-sim reporting it.
VERSIONS=(v8.5.0 v8.5.1)
K8S_VERSION=1.34.1
PAUSE_TAG=3.10.1
BUSYBOX_TAG=1.35
# Controller images are tagged with the charts' appVersion, which the charts use by default.
APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$root/charts/tikv-operator-cluster-controller/Chart.yaml")"
CONTROLLERS=(cluster-controller group-controller instance-controller)
NONROOT=65532

for tool in umoci tar gcc strip objcopy ldd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is missing (run e2e/tools/deps.sh)" >&2; exit 1; }
done
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list >/dev/null 2>&1 || { echo "error: $busybox (busybox-static) is missing (run e2e/tools/deps.sh)" >&2; exit 1; }

need_file() {
  [ -f "$1" ] || { echo "error: $1 is missing: $2" >&2; exit 1; }
}
for c in "${CONTROLLERS[@]}" tikv-sim; do
  need_file "$bins/$c" "build it with cargo build --workspace --bins (or just test)"
done
need_file "$go_bins/pd-server" "run e2e/tools/build.sh pd"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# pause.c from the module cache (e2e/tools/build.sh k8s put the module there), else downloaded
# through the Go module proxy (outside any module, so no go.mod is touched).
pause_c="$(go env GOMODCACHE 2>/dev/null)/k8s.io/kubernetes@v$K8S_VERSION/build/pause/linux/pause.c"
if [ ! -f "$pause_c" ]; then
  pause_c="$(cd "$work" && GOFLAGS= go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" 2>/dev/null | sed -n 's/.*"Dir": "\(.*\)",/\1/p')/build/pause/linux/pause.c"
fi
need_file "$pause_c" "Go and the Go module proxy are needed for k8s.io/kubernetes (e2e/tools/build.sh k8s)"
: >"$out/images.txt.new"

# stamp_of FILES...: what decides an image: this script, the versions, and each input's path, size
# and modification time (cargo and go rewrite a binary whenever they rebuild it).
stamp_of() {
  { cat "${BASH_SOURCE[0]}" "$root/images/rootfs.sh"; printf '%s\n' "${VERSIONS[@]}" "$APP_VERSION"; stat -L -c '%n %s %Y' "$@"; } | sha256sum | cut -c1-16
}

# Every file gets the same time, so identical content makes an identical layer (and containerd
# stores a layer shared by several images once).
normalize() {
  find "$1" -exec touch -h -d @1 {} +
}

rootfs() { "$root/images/rootfs.sh" "$@"; }

# pack NAME REPOSITORY STAMP LAYER-DIRS... -- TAG CONFIG-ARGS... [-- TAG CONFIG-ARGS...]: an OCI
# image layout with the layers in order and one image per tag (same layers, its own config),
# archived as NAME.tar for `ctr images import --base-name REPOSITORY`.
pack() {
  local name="$1" repo="$2" stamp="$3"; shift 3
  local layers=()
  while [ "$1" != "--" ]; do layers+=("$1"); shift; done
  local layout="$work/$name-oci"
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:base"
  local l
  for l in "${layers[@]}"; do
    normalize "$l"
    umoci insert --history.created 1970-01-01T00:00:01Z --history.created_by "images/build.sh: $(basename "$l")" --image "$layout:base" "$l" / >/dev/null
  done
  while [ $# -gt 0 ]; do
    shift # the "--"
    local tag="$1"; shift
    local args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
    umoci config --history.created 1970-01-01T00:00:01Z --history.created_by "images/build.sh: config $tag" --image "$layout:base" --tag "$tag" --created 1970-01-01T00:00:01Z \
      --author tikv-operator "${args[@]}"
  done
  umoci rm --image "$layout:base"
  umoci gc --layout "$layout"
  tar -C "$layout" -cf "$out/$name.tar.new" .
  mv "$out/$name.tar.new" "$out/$name.tar"
  echo "$stamp" >"$out/$name.stamp"
}

# image NAME REPOSITORY INPUTS... : whether NAME must be (re)built; records it in images.txt.
image_needed() {
  local name="$1" repo="$2"; shift 2
  echo "$repo $name.tar" >>"$out/images.txt.new"
  local want
  want="$(stamp_of "$@")"
  if [ -f "$out/$name.tar" ] && [ "$(cat "$out/$name.stamp" 2>/dev/null)" = "$want" ]; then
    echo "$name: up to date"
    return 1
  fi
  echo "$want" >"$work/$name.want"
  echo "$name: building $repo ..."
}
want() { cat "$work/$1.want"; }

# The sandbox image: kubernetes' pause.c, static.
if image_needed pause registry.k8s.io/pause "$pause_c"; then
  r="$work/pause"; mkdir -p "$r"
  gcc -Os -Wall -static -DVERSION="v$PAUSE_TAG" -o "$r/pause" "$pause_c"
  strip "$r/pause"
  pack pause registry.k8s.io/pause "$(want pause)" "$r" -- "$PAUSE_TAG" \
    --config.entrypoint /pause --config.user 65535:65535
fi

# busybox: local-path-provisioner's helper pods (mkdir/rm of volume directories).
if image_needed busybox docker.io/library/busybox "$busybox"; then
  r="$work/busybox"; rootfs shell "$r"
  pack busybox docker.io/library/busybox "$(want busybox)" "$r" -- "$BUSYBOX_TAG" --config.cmd sh
fi

# The controllers: one image each, sharing the base layer.
for c in "${CONTROLLERS[@]}"; do
  if image_needed "$c" "ghcr.io/tikv/tikv-operator-$c" "$bins/$c"; then
    base="$work/$c-base"; rootfs cc "$base" "$bins/$c"
    r="$work/$c"; rootfs bin "$r" "$bins/$c" "/$c"
    pack "$c" "ghcr.io/tikv/tikv-operator-$c" "$(want "$c")" "$base" "$r" -- "$APP_VERSION" \
      --config.entrypoint "/$c" --config.user "$NONROOT:$NONROOT" \
      --config.label org.opencontainers.image.source=https://github.com/tikv/tikv-operator
  fi
done

# PD: the real pd-server (static Go), with a shell.
if image_needed pd docker.io/pingcap/pd "$go_bins/pd-server" "$busybox"; then
  sh_layer="$work/pd-shell"; rootfs shell "$sh_layer"
  r="$work/pd"; mkdir -p "$r"; cp "$go_bins/pd-server" "$r/pd-server"
  tags=()
  for v in "${VERSIONS[@]}"; do tags+=(-- "$v" --config.entrypoint /pd-server); done
  pack pd docker.io/pingcap/pd "$(want pd)" "$sh_layer" "$r" "${tags[@]}"
fi

# The store: tikv-sim as /tikv-server, reporting the version of its tag.
if image_needed tikv docker.io/pingcap/tikv "$bins/tikv-sim" "$busybox"; then
  base="$work/tikv-base"; rootfs cc "$base" "$bins/tikv-sim"
  sh_layer="$work/tikv-shell"; rootfs shell "$sh_layer"
  r="$work/tikv"; rootfs bin "$r" "$bins/tikv-sim" /tikv-server
  tags=()
  for v in "${VERSIONS[@]}"; do
    tags+=(-- "$v" --config.entrypoint /tikv-server --config.env "TIKV_SIM_VERSION=${v#v}")
  done
  pack tikv docker.io/pingcap/tikv "$(want tikv)" "$base" "$sh_layer" "$r" "${tags[@]}"
fi

mv "$out/images.txt.new" "$out/images.txt"
echo "images in $out: $(du -sh "$out" | cut -f1)"
