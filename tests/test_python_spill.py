"""The Python side of SOAR spilling (issue 15): the spill / spill_lambda build
keywords (Index.build, Quantizer.train, Index.retrain), build_params showing
what the index resolved, stats()['spilled'], and searching, saving and
changing a spilled index.  The library side is tests/test_spill.c, the CLI's
tests/test_cli_spill.py (whose data and recall these mirror)."""

import os
import sys

import numpy as np
import pytest

from conftest import avq_module_dir

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402

N = 25000
LEAVES = 16


@pytest.fixture(scope="module")
def rows():
    """25,000 clustered unit rows of dim 16 (above the exact tier) and 50
    queries drawn the same way (test_cli_spill.py's data)."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((30, 16))
    x = centers[rng.integers(0, 30, N + 50)] + 0.5 * rng.standard_normal((N + 50, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x = x.astype(np.float32)
    return x[:N], x[N:]


@pytest.fixture(scope="module")
def plain(rows):
    return avq.Index.build(rows[0], "cosine", num_leaves=LEAVES, progress=None)


@pytest.fixture(scope="module")
def spilled(rows):
    return avq.Index.build(rows[0], "cosine", num_leaves=LEAVES, spill=True, progress=None)


def recall_at_10(index, base, queries):
    """recall@10 at one leaf of 16 and pre_reorder 500 (enough re-ranking that
    the codes do not limit recall: what is left is leaves missed), after
    checking that no row holds an id twice."""
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    ids, _ = index.search_batched(queries, k=10, leaves_to_search=1, pre_reorder=500)
    for row in ids:
        assert len(set(row.tolist())) == len(row), row
    return np.mean([len(set(a.tolist()) & set(t.tolist())) / 10 for a, t in zip(ids, truth)])


def test_spilled_index_counts_and_shows(spilled, plain):
    assert len(spilled) == N and spilled.stats()["live"] == N
    assert spilled.stats()["spilled"] == N          # one second copy per vector
    assert spilled.build_params["spill"] == 1
    assert spilled.build_params["spill_lambda"] == 1.0  # AVQ_DEFAULT_SPILL_LAMBDA
    assert plain.stats()["spilled"] == 0
    assert plain.build_params["spill"] == 0 and plain.build_params["spill_lambda"] is None
    # the second copies take memory: codes, ids and re-ranking rows again
    assert spilled.nbytes > 1.5 * plain.nbytes


def test_spilling_finds_what_one_leaf_misses(rows, plain, spilled):
    base, queries = rows
    r_plain = recall_at_10(plain, base, queries)
    r_spill = recall_at_10(spilled, base, queries)
    # the CLI measured 0.928 -> 0.980 on these rows
    assert r_spill > r_plain + 0.02, (r_plain, r_spill)
    # many leaves: every id still once per row, and one query alone agrees
    ids, _ = spilled.search_batched(queries, k=50, leaves_to_search=LEAVES, pre_reorder=500)
    for row in ids:
        assert len(set(row.tolist())) == len(row), row
    one, _ = spilled.search(queries[3], k=50, leaves_to_search=LEAVES, pre_reorder=500)
    assert np.array_equal(one, ids[3])


def test_lambda_is_kept_and_saved(rows, tmp_path):
    base, queries = rows
    ix = avq.Index.build(base, "cos", num_leaves=LEAVES, spill=1, spill_lambda=0.5,
                         progress=None)
    assert ix.build_params["spill"] == 1 and ix.build_params["spill_lambda"] == 0.5
    path = os.path.join(tmp_path, "spill.avq")
    ix.save(path)
    for back in (avq.load(path), avq.load(path, mmap=True), avq.Index.from_bytes(ix.to_bytes())):
        assert back.build_params == ix.build_params
        assert back.stats()["spilled"] == N
        for leaves in (1, 4):
            a = ix.search_batched(queries, k=10, leaves_to_search=leaves, pre_reorder=100)
            b = back.search_batched(queries, k=10, leaves_to_search=leaves, pre_reorder=100)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # retrain keeps what is not given, and can re-weight or stop spilling
    assert ix.retrain(progress=None).build_params["spill_lambda"] == 0.5
    again = ix.retrain(spill_lambda=0.0, progress=None)
    assert again.build_params["spill"] == 1 and again.build_params["spill_lambda"] == 0.0
    off = ix.retrain(spill=False, progress=None)
    assert off.build_params["spill"] == 0 and off.stats()["spilled"] == 0 and len(off) == N


def test_remove_drops_both_copies(rows):
    base, queries = rows
    ix = avq.Index.build(base, "cosine", num_leaves=LEAVES, spill=True, progress=None)
    gone = np.arange(0, N, 7)
    assert ix.remove(gone) == len(gone)
    s = ix.stats()
    assert len(ix) == s["live"] == N - len(gone)
    assert s["spilled"] == N - len(gone)
    # neither copy answers any more: searching every leaf never returns them
    ids, _ = ix.search_batched(base[gone[:50]], k=10, leaves_to_search=LEAVES, pre_reorder=500)
    assert not np.isin(ids, gone).any()
    ix.compact()
    assert ix.stats()["spilled"] == N - len(gone)


def test_quantizer_and_add_spill(rows):
    base, _ = rows
    q = avq.Quantizer.train(base, "cosine", num_leaves=LEAVES, spill=True, progress=None)
    shard = avq.Index(q)
    shard.add(base[:2000])
    assert shard.build_params["spill"] == 1
    assert len(shard) == 2000 and shard.stats()["spilled"] == 2000


def test_one_leaf_resolves_to_no_spill(rows):
    # the exact tier (below brute_force_below) and a single leaf have no
    # second leaf: the index says what it really does
    for kw in ({}, {"num_leaves": 1, "brute_force_below": 0}):
        ix = avq.Index.build(rows[0][:3000], "cosine", spill=True, progress=None, **kw)
        assert ix.build_params["spill"] == 0 and ix.stats()["spilled"] == 0


@pytest.mark.parametrize("bad", [2, -1, "yes", "", 1.0, None, [1]])
def test_bad_spill_refused(rows, bad):
    with pytest.raises(ValueError, match="spill"):
        avq.Index.build(rows[0][:3000], "cosine", spill=bad)


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
def test_bad_lambda_refused(rows, bad):
    with pytest.raises(ValueError, match="spill_lambda"):
        avq.Index.build(rows[0][:3000], "cosine", spill=True, spill_lambda=bad)
    with pytest.raises(ValueError, match="spill_lambda"):
        avq.Quantizer.train(rows[0][:3000], "cosine", spill=True, spill_lambda=bad)


def test_lambda_needs_spill(rows, plain):
    for spill in ({}, {"spill": False}, {"spill": 0}):
        with pytest.raises(ValueError, match="give spill=True"):
            avq.Index.build(rows[0][:3000], "cosine", spill_lambda=0.5, **spill)
    with pytest.raises(ValueError, match="give spill=True"):
        plain.retrain(spill_lambda=0.5)
    with pytest.raises(TypeError, match="spill_lambda"):
        avq.Index.build(rows[0][:3000], "cosine", spill=True, spill_lambda="1")
    # None is the default, so build(**build_params) works on a plain index
    params = dict(plain.build_params)
    metric = params.pop("metric")
    params.update(threads=1, training_sample=5000)
    assert avq.Index.build(rows[0], metric, progress=None, **params).build_params[
        "spill_lambda"] is None
