#!/usr/bin/env bash
# bench/faiss_native.sh -- build FAISS for THIS CPU from Debian's source package,
# for the true-MIPS comparison (bench/mips.py, `make bench-mips`).
#
# Why: Debian's libfaiss-dev is a generic build (its 4-bit fast-scan kernel has no
# AVX2/AVX-512 code), so its numbers are not "FAISS".  This script takes the very
# same source (`apt-get source faiss`, Debian's patches applied) and builds it
# with CMake at the best FAISS_OPT_LEVEL the source knows and the CPU supports
# (avx512 when both do, else avx2; chosen from /proc/cpuinfo at run time), plus
# -O3 -march=native, no GPU, no Python, no C API, no tests, BLAS/LAPACK =
# OpenBLAS, one static library.
#
# Output (outside git; data/ is ignored):
#   $FAISS_NATIVE_DIR/<version>-<opt>/include/faiss/...   headers
#   $FAISS_NATIVE_DIR/<version>-<opt>/lib/libfaiss_<opt>.a
#   $FAISS_NATIVE_DIR/<version>-<opt>/BUILDINFO            what was built, how, how long
#   $FAISS_NATIVE_DIR/current -> <version>-<opt>           what `make bench-mips` links
# FAISS_NATIVE_DIR defaults to $DATA_DIR/cache/faiss-native ($DATA_DIR: ./data).
# Nothing is rebuilt when BUILDINFO matches (same version, opt level, flags).
#
# Usage: bash bench/faiss_native.sh [--opt avx512|avx2] [--jobs 2] [--force] [--print-prefix]
# The build runs under `nice -n 19` with 2 jobs (the machine is shared): 165 s
# for 1.7.3 on 2 busy cores (the library target only).  Needs cmake, g++, libopenblas-dev, dpkg-dev and a
# deb-src line for Debian (added to /etc/apt/sources.list.d/ when missing and run
# as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="${DATA_DIR:-$ROOT/data}"
CACHE="${FAISS_NATIVE_DIR:-$DATA_DIR/cache/faiss-native}"
JOBS=2
FORCE=0
PRINT=0
OPT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --opt) OPT="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        --print-prefix) PRINT=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "faiss_native.sh: unknown option $1" >&2; exit 2 ;;
    esac
done

log() { echo "faiss_native: $*" >&2; }

# --print-prefix: the installed prefix, or nothing (exit 1) when not built.
if [ "$PRINT" = 1 ]; then
    if [ -f "$CACHE/current/BUILDINFO" ]; then
        readlink -f "$CACHE/current"
        exit 0
    fi
    exit 1
fi

cpu_has() { grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -qx "$1"; }

mkdir -p "$CACHE/src"

# 1. The source package (once): Debian's faiss with Debian's patches applied.
srcdir="$(find "$CACHE/src" -mindepth 1 -maxdepth 1 -type d -name 'faiss-*' | sort | tail -1)"
if [ -z "$srcdir" ]; then
    if ! apt-cache showsrc faiss 2>/dev/null | grep -q '^Package: faiss'; then
        if [ "$(id -u)" = 0 ]; then
            log "no deb-src for faiss: adding /etc/apt/sources.list.d/avq-deb-src.list"
            codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
            echo "deb-src http://deb.debian.org/debian $codename main" > /etc/apt/sources.list.d/avq-deb-src.list
            apt-get update -q >&2
        else
            log "no deb-src line for Debian's faiss source package; as root add"
            log "  deb-src http://deb.debian.org/debian bookworm main"
            log "to /etc/apt/sources.list.d/ and run apt-get update"
            exit 1
        fi
    fi
    command -v dpkg-source >/dev/null || { log "dpkg-source missing: apt-get install dpkg-dev"; exit 1; }
    log "apt-get source faiss -> $CACHE/src"
    (cd "$CACHE/src" && apt-get source -q faiss >&2)
    srcdir="$(find "$CACHE/src" -mindepth 1 -maxdepth 1 -type d -name 'faiss-*' | sort | tail -1)"
    [ -n "$srcdir" ] || { log "apt-get source faiss left no faiss-* directory"; exit 1; }
fi
version="$(basename "$srcdir")"                      # faiss-1.7.3
debver="$(sed -n '1s/.*(\(.*\)).*/\1/p' "$srcdir/debian/changelog" 2>/dev/null || echo unknown)"

# 2. Opt level: the best one that both the CPU and this FAISS source support.
src_levels="generic"
grep -q '"avx2"' "$srcdir/faiss/CMakeLists.txt" && src_levels="$src_levels avx2"
grep -q '"avx512"' "$srcdir/faiss/CMakeLists.txt" && src_levels="$src_levels avx512"
cpu_avx2=0; cpu_avx512=0
cpu_has avx2 && cpu_has fma && cpu_has f16c && cpu_has popcnt && cpu_avx2=1
[ "$cpu_avx2" = 1 ] && cpu_has avx512f && cpu_has avx512cd && cpu_has avx512vl \
    && cpu_has avx512dq && cpu_has avx512bw && cpu_avx512=1
if [ -z "$OPT" ]; then
    if [ "$cpu_avx512" = 1 ] && [[ " $src_levels " == *" avx512 "* ]]; then OPT=avx512
    elif [ "$cpu_avx2" = 1 ] && [[ " $src_levels " == *" avx2 "* ]]; then OPT=avx2
    else
        log "this CPU has no AVX2 (or $version knows no avx2 level): a native build would be"
        log "the generic one, the same as Debian's libfaiss-dev; not building"
        exit 1
    fi
fi
[[ " $src_levels " == *" $OPT "* ]] || { log "$version knows opt levels: $src_levels (not $OPT)"; exit 1; }
if [ "$OPT" = avx512 ] && [ "$cpu_avx512" = 0 ]; then log "CPU lacks AVX-512"; exit 1; fi
if [ "$OPT" = avx2 ] && [ "$cpu_avx2" = 0 ]; then log "CPU lacks AVX2/FMA/F16C"; exit 1; fi
[ "$OPT" = generic ] && { log "generic is Debian's build: use libfaiss-dev"; exit 1; }
if [ "$cpu_avx512" = 1 ] && [ "$OPT" = avx2 ]; then
    log "CPU has AVX-512 but $version's CMake knows only: $src_levels -> FAISS_OPT_LEVEL=avx2"
    log "(its fast-scan kernels are 256-bit simdlib; -march=native still lets g++ use AVX-512 elsewhere)"
fi

CXXFLAGS_NATIVE="-march=native"
CXXFLAGS_RELEASE="-O3 -DNDEBUG"
target="faiss_$OPT"
prefix="$CACHE/$version-$OPT"
gxx="$(g++ --version | head -1)"
want="version=$version debian=$debver opt=$OPT target=$target cxxflags=$CXXFLAGS_NATIVE $CXXFLAGS_RELEASE blas=OpenBLAS compiler=$gxx cpu=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/.*: //')"

if [ "$FORCE" = 0 ] && [ -f "$prefix/BUILDINFO" ] && [ -f "$prefix/lib/lib$target.a" ] \
    && grep -qxF "$want" "$prefix/BUILDINFO"; then
    log "up to date: $prefix ($(grep '^build_seconds=' "$prefix/BUILDINFO"))"
    ln -sfn "$(basename "$prefix")" "$CACHE/current"
    exit 0
fi

for tool in cmake g++; do
    command -v "$tool" >/dev/null || { log "$tool missing"; exit 1; }
done
ls /usr/lib/*/libopenblas.so >/dev/null 2>&1 || { log "OpenBLAS missing: apt-get install libopenblas-dev"; exit 1; }

# 3. Configure + build the one library target, niced.
build="$CACHE/build-$version-$OPT"
rm -rf "$build" "$prefix"
log "configuring $version (Debian $debver) FAISS_OPT_LEVEL=$OPT in $build"
t0=$(date +%s)
nice -n 19 cmake -S "$srcdir" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS="$CXXFLAGS_NATIVE" \
    -DCMAKE_CXX_FLAGS_RELEASE="$CXXFLAGS_RELEASE" \
    -DFAISS_OPT_LEVEL="$OPT" \
    -DFAISS_ENABLE_GPU=OFF -DFAISS_ENABLE_PYTHON=OFF -DFAISS_ENABLE_C_API=OFF \
    -DBUILD_TESTING=OFF -DBUILD_SHARED_LIBS=OFF \
    -DBLA_VENDOR=OpenBLAS >"$CACHE/configure-$OPT.log" 2>&1 \
    || { tail -30 "$CACHE/configure-$OPT.log" >&2; log "cmake configure failed (log: $CACHE/configure-$OPT.log)"; exit 1; }
grep -iE 'Found (BLAS|LAPACK|OpenMP)' "$CACHE/configure-$OPT.log" >&2 || true
log "building target $target with -j$JOBS under nice -n 19 (log: $CACHE/build-$OPT.log)"
nice -n 19 cmake --build "$build" --target "$target" -j "$JOBS" >"$CACHE/build-$OPT.log" 2>&1 \
    || { tail -40 "$CACHE/build-$OPT.log" >&2; log "build failed (log: $CACHE/build-$OPT.log)"; exit 1; }
t1=$(date +%s)

# 4. Lay out a prefix: headers from the source tree, the static library.
lib="$(find "$build" -name "lib$target.a" | head -1)"
[ -n "$lib" ] || { log "no lib$target.a under $build"; exit 1; }
mkdir -p "$prefix/lib" "$prefix/include"
cp "$lib" "$prefix/lib/"
(cd "$srcdir" && find faiss -name '*.h' -not -path 'faiss/gpu/*' -not -path 'faiss/python/*' \
    -exec cp --parents {} "$prefix/include/" \;)

# 5. Check that the fast-scan kernel really is vectorised (Debian's has no ymm/zmm).
obj="$(find "$build" -name 'pq4_fast_scan_search_qbs.cpp.o' | head -1)"
ymm=0; zmm=0
if [ -n "$obj" ] && command -v objdump >/dev/null; then
    ymm=$(objdump -d "$obj" | grep -c '%ymm' || true)
    zmm=$(objdump -d "$obj" | grep -c '%zmm' || true)
fi
if [ "$ymm" -eq 0 ] && [ "$zmm" -eq 0 ]; then
    log "the fast-scan kernel ($obj) has no AVX2/AVX-512 instructions: not a native build; nothing installed"
    rm -rf "$prefix"
    exit 1
fi
{
    echo "$want"
    echo "build_seconds=$((t1 - t0))"
    echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "fast_scan_qbs_ymm_instructions=$ymm"
    echo "fast_scan_qbs_zmm_instructions=$zmm"
    echo "lib=$prefix/lib/lib$target.a"
} > "$prefix/BUILDINFO"
ln -sfn "$(basename "$prefix")" "$CACHE/current"
rm -rf "$build"
log "built $version $OPT in $((t1 - t0)) s: $prefix (fast-scan qbs kernel: $ymm ymm, $zmm zmm instructions)"
