"""The input domain through the Python module (issue 16, items 1 and 5).

Vectors avq accepts: finite values and, for dot_product and squared_l2, a
squared norm of at most 1e30 (|x| <= 1e15); cosine vectors are normalised
first and may have any finite magnitude (but not be zero in an index).
Every case here either gives the answer numpy computes in float64 or a
ValueError naming the row (and column).  Sizes (k) are checked before any
result array is allocated.  The C test tests/test_input_domain.c covers the
same matrix in full; this file checks that Python reaches the same rules
and adds the allocation checks of the binding itself.
"""

import os
import sys

import numpy as np
import pytest

from conftest import avq_module_dir


sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402

METRICS = ["dot_product", "squared_l2", "cosine"]
TIERS = {
    "exact": {},
    "pq": dict(brute_force_below=0, num_leaves=4),
}


def _rows(kind, n, dim, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, dim)).astype(np.float32)
    if kind == "subnormal":
        x *= np.float32(1e-39)
    elif kind == "some subnormal rows":
        x[::3] *= np.float32(1e-40)
    elif kind == "zero rows":
        x[::7] = 0
    elif kind == "-0.0":
        x[:, 1::2] = -0.0
        x[n // 2] = -0.0
    elif kind == "duplicates":
        x[5:] = x[np.arange(5, n) % 5]
    elif kind == "norm 0.9e15":
        x *= np.float32(0.9e15 / np.sqrt(dim))
    elif kind == "all ~1e20":
        x *= np.float32(1e20)
    return x


def _reference(base, q, metric):
    """float64 scores of q against every row (similarity; squared distance for L2)."""
    b, v = base.astype(np.float64), q.astype(np.float64)
    if metric == "squared_l2":
        return ((b - v) ** 2).sum(1)
    if metric == "cosine":
        b = b / np.abs(b).max(1, keepdims=True).clip(1e-300)
        v = v / max(np.abs(v).max(), 1e-300)
        nb, nv = np.linalg.norm(b, axis=1), np.linalg.norm(v)
        return np.where((nb > 0) & (nv > 0), b @ v / (nb * nv + (nb == 0) + (nv == 0)), 0.0)
    return b @ v


def _check(ids, scores, base, q, metric, k):
    ref = _reference(base, q, metric)
    n = len(base)
    want = min(k, n)
    if metric == "cosine":
        tol = 2e-3
    else:
        xx = (base.astype(np.float64) ** 2).sum(1).max()
        qq = float((q.astype(np.float64) ** 2).sum())
        tol = 2e-3 * (qq + xx if metric == "squared_l2" else np.sqrt(qq * xx)) + 1e-30
    assert (ids[want:] == -1).all() and np.isnan(scores[want:]).all()
    got = ids[:want]
    assert ((got >= 0) & (got < n)).all() and len(set(got.tolist())) == want
    np.testing.assert_allclose(scores[:want], ref[got], rtol=0, atol=tol)
    # nothing left out beats the last result by more than rounding
    rest = np.setdiff1d(np.arange(n), got)
    if len(rest):
        last = ref[got[-1]]
        if metric == "squared_l2":
            assert ref[rest].min() >= last - tol
        else:
            assert ref[rest].max() <= last + tol


def _other_library_error():
    """Leave a different message in the library's last-error slot."""
    with pytest.raises(ValueError, match="base row 0, column 0 is not a finite"):
        avq.exact_search(np.full((1, 1), np.nan, np.float32), np.zeros((1, 1), np.float32))


def test_the_same_error_twice_keeps_its_message():
    # the binding used to compare the message with the one before the call
    # and call an equal one stale: the second failure read "invalid argument"
    base = np.zeros((20, 4), np.float32)
    for _ in range(2):
        with pytest.raises(ValueError, match="row 0 is a zero vector"):
            avq.Index.build(base, "cosine")


REFUSED = {
    # kind -> {metric: message fragment}; missing = accepted
    "zero rows": {"cosine": "row 0 is a zero vector"},
    "-0.0": {"cosine": "is a zero vector"},
    "all ~1e20": {"dot_product": "row 0 is too large", "squared_l2": "row 0 is too large"},
}
KINDS = ["normal", "subnormal", "some subnormal rows", "zero rows", "-0.0", "duplicates",
         "norm 0.9e15", "all ~1e20"]
SHAPES = [(200, 8, 10), (20, 8, 30), (1, 8, 10), (200, 1, 10), (40, 1024, 10)]


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS)
def test_matrix(kind, metric, tier):
    for n, dim, k in SHAPES:
        base = _rows(kind, n, dim, 3)
        kw = dict(TIERS[tier])
        if "num_leaves" in kw:
            kw["num_leaves"] = min(kw["num_leaves"], max(1, n // 8))
        if dim == 1:
            kw["dims_per_block"] = 1
        refusal = REFUSED.get(kind, {}).get(metric)
        if refusal:
            _other_library_error()   # see test_the_same_error_twice_keeps_its_message
            with pytest.raises(ValueError, match=refusal):
                avq.Index.build(base, metric, **kw)
            continue
        queries = _rows(kind, 4, dim, 9)
        queries[0] = base[0]
        if metric != "cosine":
            queries[1] = 0
        with avq.Index.build(base, metric, **kw) as ix:
            for q in queries:
                ids, scores = ix.search(q, k=k, leaves_to_search=ix.num_leaves,
                                        pre_reorder=max(n, k))
                _check(ids, scores, base, q, metric, k)
                eids, escores = avq.exact_search(base, q, k=k, metric=metric)
                _check(eids, escores, base, q, metric, k)


@pytest.mark.parametrize("metric", ["dot_product", "squared_l2"])
@pytest.mark.parametrize("value", [1e19, 1e20, 3e38, np.inf, -np.inf, np.nan])
def test_bad_values_are_refused_naming_row_and_column(metric, value):
    """Regression: 1e19 built an index no search could use ('lut quantize:
    entry ... not finite'); 1e20 crashed the quantized build."""
    base = _rows("normal", 400, 8, 1)
    base[7, 5] = value
    what = "not a finite number" if not np.isfinite(value) else "is too large"
    with pytest.raises(ValueError, match=f"row 7.*{what}|row 7, column 5 {what}") as e:
        avq.Index.build(base, metric, brute_force_below=0, num_leaves=4)
    assert "column 5" in str(e.value)
    with pytest.raises(ValueError, match="row 7"):
        avq.exact_search(base, base[:2], k=3, metric=metric)
    with pytest.raises(ValueError, match="query row 1"):
        avq.exact_search(base[:7], base[6:8], k=3, metric=metric)


@pytest.mark.parametrize("tier", TIERS)
def test_huge_values_are_fine_for_cosine(tier):
    base = _rows("normal", 300, 8, 2) * np.float32(1e20)
    base[3, 1] = 3e38
    with avq.Index.build(base, "cosine", **TIERS[tier]) as ix:
        ids, scores = ix.search(base[3], k=5, leaves_to_search=ix.num_leaves, pre_reorder=300)
        assert ids[0] == 3 and abs(scores[0] - 1) < 1e-3
        _check(ids, scores, base, base[3], "cosine", 5)


@pytest.mark.parametrize("metric", METRICS)
def test_add_and_upsert_apply_the_rule(metric):
    base = _rows("normal", 300, 4, 5)
    with avq.Index.build(base, metric, brute_force_below=0, num_leaves=4) as ix:
        bad = np.array([[0.5, 0.25, 0, 1], [1, 2, -4e20, 3]], np.float32)
        if metric == "cosine":
            ix.add(bad, ids=[1000, 1001])
            assert len(ix) == 302
        else:
            with pytest.raises(ValueError, match=r"add: row 1 is too large.*column 2 holds -4e\+20"):
                ix.add(bad, ids=[1000, 1001])
            assert len(ix) == 300
            with pytest.raises(ValueError, match="upsert: row 1 is too large"):
                ix.upsert([0, 1], bad)
            ix.add(np.array([[0.99e15, 0, 0, 0]], np.float32))   # inside the bound
            assert len(ix) == 301


def test_exact_search_k_is_checked_before_allocating():
    """Regression (item 5): k=10**12 tried to allocate the (nq, k) result
    (MemoryError after a multi-terabyte request) instead of refusing k."""
    base = _rows("normal", 3, 4, 1)
    with pytest.raises(ValueError, match="k = 1000000000000 exceeds both the 3 rows of base"):
        avq.exact_search(base, base, k=10**12)
    with pytest.raises(ValueError, match="exceeds both"):
        avq.exact_search(base, base[0], k=2**20 + 1)
    ids, scores = avq.exact_search(base, base[0], k=2**20)   # padding: as documented
    assert ids.shape == (2**20,) and (ids[3:] == -1).all() and np.isnan(scores[3]).all()


def test_search_k_is_checked_before_allocating():
    """Regression (item 5): the (nq, k) result arrays were allocated before
    the library refused k > 2**20."""
    base = _rows("normal", 50, 4, 1)
    with avq.Index.build(base, "dot_product") as ix:
        for k in (10**12, 2**20 + 1):
            with pytest.raises(ValueError, match="unreasonably large"):
                ix.search(base[0], k=k)
            with pytest.raises(ValueError, match="unreasonably large"):
                ix.search_batched(base, k=k)
        ids, _ = ix.search_batched(base[:2], k=2**20)
        assert ids.shape == (2, 2**20) and (ids[:, 50:] == -1).all()


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("metric", ["dot_product", "squared_l2"])
def test_huge_query_is_refused(metric, tier):
    """A dot/L2 query of norm > 1e15 used to be answered with inf/NaN scores
    (exact tier) or fail with 'lut quantize: ... not finite' (PQ tier)."""
    base = _rows("normal", 300, 8, 4)
    q = base[0].copy()
    q[3] = 4e19
    with avq.Index.build(base, metric, **TIERS[tier]) as ix:
        with pytest.raises(ValueError, match="the query is too large"):
            ix.search(q)
        with pytest.raises(ValueError, match="query 1: .*the query is too large"):
            ix.search_batched(np.stack([base[1], q]))


@pytest.mark.parametrize("tier", TIERS)
def test_huge_cosine_query_is_answered(tier):
    base = _rows("normal", 300, 8, 4)
    with avq.Index.build(base, "cosine", **TIERS[tier]) as ix:
        q = base[5] * np.float32(1e30)
        ids, scores = ix.search(q, k=5, leaves_to_search=ix.num_leaves, pre_reorder=300)
        assert ids[0] == 5 and np.isfinite(scores).all()
        _check(ids, scores, base, q, "cosine", 5)
