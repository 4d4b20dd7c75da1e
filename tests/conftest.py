"""Shared pytest fixtures for the end-to-end tests of the avq CLI.

The CLI under test is $AVQ_BIN (set by `make py-test`), falling back to
build/avq.  Data sets are tiny, generated with numpy from fixed seeds into
pytest's per-test temporary directory, so the tests need no network and no
prepared data, and every failure is reproducible.  The numpy brute-force
reference here is the independent oracle the CLI's answers are checked
against.
"""

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import datalib  # noqa: E402


def avq_module_dir():
    """Where the built avq extension is: $AVQ_PYTHON_PATH, else beside
    $AVQ_BIN, else build/python (for the Python-module tests)."""
    if os.environ.get("AVQ_PYTHON_PATH"):
        return os.environ["AVQ_PYTHON_PATH"]
    candidates = []
    if os.environ.get("AVQ_BIN"):
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(os.environ["AVQ_BIN"])),
                                       "python"))
    candidates.append(os.path.join(REPO, "build", "python"))
    for c in candidates:
        if glob.glob(os.path.join(c, "avq", "_avq*.so")):
            return c
    raise ImportError(f"the avq extension is not built (looked in {candidates}): run 'make python'")


def ok(r):
    """r (a CompletedProcess) exited 0; the message shows both streams."""
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r


def refused(r, *needles, code=None):
    """A clean refusal: exit 1 or 2 (or exactly `code`; never a signal), an
    'avq' message on stderr without a traceback or sanitizer report, holding
    every needle (case-insensitive; a needle may be a compiled regex)."""
    want = (1, 2) if code is None else (code,)
    assert r.returncode in want, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert "avq" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr
    for n in needles:
        if isinstance(n, re.Pattern):
            assert n.search(r.stderr), f"{n.pattern!r} not in stderr:\n{r.stderr}"
        else:
            assert str(n).lower() in r.stderr.lower(), f"{n!r} not in stderr:\n{r.stderr}"
    return r


@pytest.fixture(scope="session")
def avq_bin():
    path = os.environ.get("AVQ_BIN") or os.path.join(REPO, "build", "avq")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"avq CLI not found at {path}: run 'make' or set AVQ_BIN")
    return os.path.abspath(path)


@pytest.fixture
def run_avq(avq_bin):
    """run_avq(*args) -> CompletedProcess (text).  Never raises on a failing
    exit status: the tests look at it themselves."""
    def run(*args, timeout=120):
        return subprocess.run([avq_bin, *map(str, args)], capture_output=True, text=True,
                              timeout=timeout)
    return run


class TinyData:
    """A random base/query pair written as .fvecs and .npy files."""

    def __init__(self, directory, n=300, nq=25, dim=16, seed=7):
        rng = np.random.default_rng(seed)
        # Varied norms make inner product, L2 and cosine rank differently.
        self.base = (rng.standard_normal((n, dim)) *
                     rng.uniform(0.2, 3.0, (n, 1))).astype(np.float32)
        self.query = rng.standard_normal((nq, dim)).astype(np.float32)
        self.dir = directory
        self.base_fvecs = self.path("base.fvecs")
        self.query_fvecs = self.path("query.fvecs")
        self.base_npy = self.path("base.npy")
        self.query_npy = self.path("query.npy")
        datalib.write_fvecs(self.base_fvecs, self.base)
        datalib.write_fvecs(self.query_fvecs, self.query)
        np.save(self.base_npy, self.base)
        np.save(self.query_npy, self.query)

    def path(self, name):
        return str(self.dir / name)


@pytest.fixture
def tiny(tmp_path):
    return TinyData(tmp_path)


def reference_topk(base, query, k, metric):
    """Exact top-k by numpy in float64: (ids, scores), best first, ties to
    the lower id.  Scores are similarities for ip/cos, squared distances
    for l2, as the CLI reports them."""
    b, q = base.astype(np.float64), query.astype(np.float64)
    if metric == "l2":
        scores = (q * q).sum(1)[:, None] - 2 * q @ b.T + (b * b).sum(1)[None, :]
        key = scores
    else:
        if metric == "cos":
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        scores = q @ b.T
        key = -scores
    order = np.lexsort((np.broadcast_to(np.arange(b.shape[0]), key.shape), key), axis=1)[:, :k]
    return order.astype(np.int32), np.take_along_axis(scores, order, axis=1)


def assert_topk_equal(ids, scores, ref_ids, ref_scores, tol=1e-4):
    """Same scores at every rank, and the same ids wherever the reference
    has no near-tie that float32 could legitimately order differently.
    The reference may have one extra column (rank k+1) so that a near-tie
    across the top-k boundary is recognised too."""
    k = ids.shape[1]
    assert ids.shape == ref_ids[:, :k].shape
    np.testing.assert_allclose(scores, ref_scores[:, :k], rtol=tol, atol=tol)
    gaps = np.abs(np.diff(ref_scores, axis=1))
    near_tie = np.zeros(ref_ids.shape, dtype=bool)
    near_tie[:, :-1] |= gaps < tol
    near_tie[:, 1:] |= gaps < tol
    mismatch = (ids != ref_ids[:, :k]) & ~near_tie[:, :k]
    assert not mismatch.any(), f"ids differ at {np.argwhere(mismatch)[:5].tolist()}"
