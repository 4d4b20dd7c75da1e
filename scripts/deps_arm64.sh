#!/usr/bin/env bash
# Install what `make test-arm64` (arm64.mk) needs on a Debian 12 x86-64
# machine: the AArch64 cross compiler, qemu-user, and the arm64 multiarch
# libc6 and OpenBLAS.  Installs only what is missing, so a second run is
# instant; runs apt-get through sudo when not root, and `apt-get update`
# before installing (a fresh machine or container has no package lists).
#
# No arm64 Criterion: the arm64 test binary is built against
# tests/criterion_shim/ (arm64.mk says why), and installing
# libcriterion3:arm64 would make dpkg remove the amd64 Criterion that the
# native `make test` links.
#
# libc6:arm64 is listed although OpenBLAS pulls it in: qemu-aarch64 runs
# the test binary on its dynamic loader and libc.so.6 (arm64.mk: they must
# be one glibc build, which the cross package's loader is not).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

packages=(
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross   # cross compiler, arm64 libc to link against
  qemu-user                                     # qemu-aarch64
  libc6:arm64                                   # the loader and libc the tests run on
  libopenblas-dev:arm64                         # GEMM (multiarch)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "deps_arm64.sh: adding the arm64 architecture to dpkg" >&2
  $SUDO dpkg --add-architecture arm64
fi
echo "deps_arm64.sh: installing ${missing[*]}" >&2
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
