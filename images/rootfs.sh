#!/usr/bin/env bash
# Assembles an image's root file system from a binary of this machine (or of a build stage):
#
#   images/rootfs.sh cc    DEST BINARY   the binary's glibc loader and libraries (the layout of
#                                        distroless/cc), users root/nobody/nonroot (65532),
#                                        nsswitch.conf, /tmp
#   images/rootfs.sh bin   DEST BINARY PATH   the binary at PATH, without debug information
#   images/rootfs.sh shell DEST          busybox and its applets in /bin (busybox-static)
#
# Used by images/build.sh (here, daemonless) and images/Containerfile (docker, podman, buildah),
# so both produce the same images.
set -euo pipefail
NONROOT=65532
busybox="${BUSYBOX:-/bin/busybox}"

kind="$1" dest="$2"
case "$kind" in
  cc)
    bin="$3"
    mkdir -p "$dest/etc" "$dest/tmp"
    chmod 1777 "$dest/tmp"
    for lib in $(ldd "$bin" | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
      mkdir -p "$dest$(dirname "$lib")"
      cp -L "$lib" "$dest$lib"
    done
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
      $NONROOT $NONROOT >"$dest/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:%s:\n' $NONROOT >"$dest/etc/group"
    printf 'hosts: files dns\n' >"$dest/etc/nsswitch.conf"
    ;;
  bin)
    bin="$3" path="$4"
    mkdir -p "$dest$(dirname "$path")"
    objcopy --strip-debug "$bin" "$dest$path"
    ;;
  shell)
    mkdir -p "$dest/bin"
    cp "$busybox" "$dest/bin/busybox"
    for applet in $("$busybox" --list); do
      [ -e "$dest/bin/$applet" ] || ln -s busybox "$dest/bin/$applet"
    done
    ;;
  *)
    echo "usage: $0 cc DEST BINARY | bin DEST BINARY PATH | shell DEST" >&2
    exit 2
    ;;
esac
