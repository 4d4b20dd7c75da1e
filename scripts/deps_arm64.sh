#!/usr/bin/env bash
# Install what `make test-arm64` (arm64.mk) needs on a Debian 12 x86-64
# machine: the AArch64 cross compiler, qemu-user, arm64 multiarch OpenBLAS,
# and an arm64 Criterion unpacked under $AVQ_ARM64_SYSROOT (/opt/avq-arm64).
# Installs only what is missing, so a second run is instant; runs apt-get
# through sudo when not root.
#
# Why Criterion is unpacked, not installed: libcriterion3:arm64 depends on
# libnanomsg5:arm64, which is not Multi-Arch: same, so installing it makes
# dpkg REMOVE the amd64 libcriterion-dev that the native `make test` links.
# The three arm64 packages (libcriterion3, libcriterion-dev, libnanomsg5)
# are downloaded with apt-get and extracted into the sysroot instead; their
# other dependencies (libgit2-1.5, libffi8) are Multi-Arch: same and are
# installed normally.
set -euo pipefail

SYSROOT=${AVQ_ARM64_SYSROOT:-/opt/avq-arm64}
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

packages=(
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # cross compiler, arm64 libc for it
  qemu-user                                     # qemu-aarch64
  libopenblas-dev:arm64                         # GEMM (multiarch)
  libgit2-1.5:arm64 libffi8:arm64               # Criterion's runtime dependencies
)
unpacked=(libcriterion3 libcriterion-dev libnanomsg5)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_unpack=0
[ -e "$SYSROOT/usr/lib/aarch64-linux-gnu/libcriterion.so.3" ] &&
  [ -e "$SYSROOT/usr/lib/aarch64-linux-gnu/libnanomsg.so.5" ] || need_unpack=1
if ((${#missing[@]} == 0 && need_unpack == 0)); then
  exit 0
fi

updated=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "deps_arm64.sh: adding the arm64 architecture to dpkg" >&2
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -q
  updated=1
fi
if ((${#missing[@]} > 0)); then
  echo "deps_arm64.sh: installing ${missing[*]}" >&2
  ((updated)) || $SUDO apt-get update -q
  updated=1
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ((need_unpack)); then
  echo "deps_arm64.sh: unpacking arm64 ${unpacked[*]} into $SYSROOT" >&2
  tmp=$(mktemp -d)
  chmod 755 "$tmp" # apt-get download runs as the _apt user
  trap 'rm -rf "$tmp"' EXIT
  names=()
  for p in "${unpacked[@]}"; do names+=("$p:arm64"); done
  (cd "$tmp" && apt-get download -q "${names[@]}") ||
    { ((updated)) || $SUDO apt-get update -q; (cd "$tmp" && apt-get download -q "${names[@]}"); }
  $SUDO mkdir -p "$SYSROOT"
  for deb in "$tmp"/*.deb; do $SUDO dpkg-deb -x "$deb" "$SYSROOT"; done
fi
