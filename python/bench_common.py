"""Shared helpers of the Python benchmarks (bench_overhead.py, bench_threads.py):
find the built module, read .fvecs, and build-or-load the GloVe index they
measure.  Not part of the installed package."""

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.environ.get("DATA_DIR", os.path.join(REPO, "data"))
GLOVE = os.path.join(DATA, "glove-100")
OUT = os.path.join(REPO, "bench", "out", "python")
AVQ_BIN = os.environ.get("AVQ_BIN", os.path.join(REPO, "build", "avq"))


def import_avq():
    """`import avq`, preferring the in-tree build (make python)."""
    path = os.environ.get("AVQ_PYTHON_PATH", os.path.join(REPO, "build", "python"))
    if os.path.isdir(os.path.join(path, "avq")):
        sys.path.insert(0, path)
    import avq
    return avq


def read_fvecs(path, rows=None):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    x = raw.reshape(-1, dim + 1)[:, 1:]
    if rows is not None:
        x = x[:rows]
    return np.ascontiguousarray(x).view(np.float32)


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty((x.shape[0], x.shape[1] + 1), dtype=np.int32)
    out[:, 0] = x.shape[1]
    out[:, 1:] = x.view(np.int32)
    out.tofile(path)


def glove_index(avq, path=None, num_leaves=0):
    """The cosine GloVe-100 index (k-means leaves + anisotropic PQ + float
    reorder), built once with the library defaults (num_leaves 0 = about
    sqrt(n) = 576) and cached in bench/out/python/."""
    name = f"glove-100-cos-{num_leaves or 'auto'}.avq"
    path = path or os.path.join(OUT, name)
    base = os.path.join(GLOVE, "base.fvecs")
    if not os.path.exists(base):
        sys.exit(f"{base} is missing: run 'make data' first")
    if not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(base):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        print(f"building {path} (once) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with avq.Index.build(read_fvecs(base), "cosine", num_leaves=num_leaves) as ix:
            ix.save(path)
        print(f"built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return path
