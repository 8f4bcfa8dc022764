#!/usr/bin/env bash
# Installs the system tools the build, the images and the local environment need, when missing
# (Debian packages; run as root):
#   protoc (protobuf-compiler) for the PD gRPC code;
#   containerd + runc, the CNI plugins, iptables (kube-proxy), util-linux (unshare, nsenter),
#   iproute2 for the nodes; umoci, busybox-static, binutils and gcc for the images.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have protoc || need+=(protobuf-compiler)
{ have unshare && have nsenter; } || need+=(util-linux)
{ have containerd && have ctr; } || need+=(containerd)
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
{ have iptables && have iptables-restore; } || need+=(iptables)
have ip || need+=(iproute2)
have umoci || need+=(umoci)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
{ have objcopy && have strip; } || need+=(binutils)
have gcc || need+=(gcc)
# The pause image is linked statically: libc.a.
{ have gcc && [ -f "$(gcc -print-file-name=libc.a)" ]; } || need+=(libc6-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! have apt-get; then
    echo "error: missing ${need[*]}; install them with your package manager (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "installing ${need[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
