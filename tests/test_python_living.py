"""Tests of the living index through the `avq` Python module: add, upsert,
remove, compact, get, stats, len / `in`, pickling and bytes, the Quantizer
and empty indexes, bad input, closed indexes, and threads searching while
another thread writes.

The module is found as in test_python.py ($AVQ_PYTHON_PATH, else beside
$AVQ_BIN, else build/python).  Data are tiny and drawn from fixed seeds.
Searches that must be exhaustive scan every leaf with a large pre_reorder,
so with float re-ranking the scores are exact and the answers are the
numpy brute-force ones.
"""

import copy
import gc
import os
import pickle
import sys
import threading
import time

import numpy as np
import pytest

from conftest import avq_module_dir


sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402

N, DIM, LEAVES = 1200, 16, 8
PQ = dict(num_leaves=LEAVES, brute_force_below=0, seed=3)
ALL = dict(leaves_to_search=LEAVES, pre_reorder=400)      # exhaustive: exact answers


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    base = rng.standard_normal((N, DIM)).astype(np.float32)
    extra = rng.standard_normal((300, DIM)).astype(np.float32)
    query = rng.standard_normal((30, DIM)).astype(np.float32)
    return base, extra, query


def build(base, metric, **kw):
    """dot_product data are unit vectors, so a vector is its own best match."""
    if metric in ("dot_product", "ip"):
        base = unit(base)
    return avq.Index.build(base, metric, **{**PQ, **kw})


def prep(x, metric):
    return unit(x) if metric in ("dot_product", "ip", "cosine") else np.ascontiguousarray(x)


def core(stats):
    """stats() without memory_bytes: a loaded copy may hold its arrays more
    tightly than an index that grew by adds."""
    return {k: v for k, v in stats.items() if k != "memory_bytes"}


def self_top1(ix, vectors, ids):
    """Every vector, searched for, comes back first under its own id."""
    got, _ = ix.search_batched(vectors, k=3, **ALL)
    assert (got[:, 0] == np.asarray(ids)).all(), \
        f"{int((got[:, 0] != np.asarray(ids)).sum())} vectors not their own top-1"


# --------------------------------------------------------------------------
# add / search / remove / upsert
# --------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["dot_product", "squared_l2"])
def test_added_vectors_are_found_with_their_ids(data, metric):
    base, extra, _ = data
    with build(base, metric) as ix:
        assert len(ix) == N and ix.size == N
        self_top1(ix, prep(base[:200], metric), np.arange(200))
        new = prep(extra[:100], metric)
        ids = ix.add(new)                               # automatic ids: next free
        assert ids.dtype == np.int64 and ids.shape == (100,)
        assert (ids == np.arange(N, N + 100)).all()
        assert len(ix) == N + 100
        self_top1(ix, new, ids)
        own = np.arange(50_000, 50_100, dtype=np.int32) * 3     # caller's ids, any int dtype
        got = ix.add(prep(extra[100:200], metric), ids=own)
        assert got.dtype == np.int64 and (got == own).all()
        self_top1(ix, prep(extra[100:200], metric), own)
        # one-by-one searches agree, including a (1, dim) row
        v = prep(extra[150:151], metric)
        one_ids, one_scores = ix.search(v[0], k=3, **ALL)
        assert one_ids.shape == (3,) and one_ids[0] == own[50]
        row_ids, row_scores = ix.search(v, k=3, **ALL)
        assert row_ids.shape == row_scores.shape == (1, 3)
        assert (row_ids[0] == one_ids).all() and (row_scores[0] == one_scores).all()
        # automatic ids continue after the largest id ever held
        assert ix.stats()["next_id"] == int(own.max()) + 1
        assert (ix.add(prep(extra[200:202], metric)) == own.max() + 1 + np.arange(2)).all()


def test_search_one_row_matches_batch(data):
    base, _, query = data
    with build(base, "cosine") as ix:
        b_ids, b_scores = ix.search_batched(query[:1], k=5)
        r_ids, r_scores = ix.search(query[:1], k=5)
        assert r_ids.shape == (1, 5) and (r_ids == b_ids).all() and (r_scores == b_scores).all()
        r_ids, _ = ix.search(query[:1].tolist(), k=5)  # a nested list with one row too
        assert r_ids.shape == (1, 5) and (r_ids == b_ids).all()
        with pytest.raises(ValueError, match="search_batched"):
            ix.search(query[:2])
        with pytest.raises(ValueError, match="dimension"):
            ix.search(query[:1, :5])


@pytest.mark.parametrize("metric", ["dot_product", "squared_l2", "cosine"])
def test_removed_ids_never_appear(data, metric):
    base, _, query = data
    rng = np.random.default_rng(5)
    with build(base, metric) as ix:
        ix.set_compact_threshold(0)                     # keep dead slots: the harder case
        # the exact top-5 of every query, then remove half of those ids and more
        top, _ = ix.search_batched(query, k=5, **ALL)
        gone = np.unique(np.concatenate([top[:, :3].ravel(), rng.choice(N, 300, replace=False)]))
        assert ix.remove(gone) == len(gone)
        assert len(ix) == N - len(gone)
        assert ix.remove(gone[:10]) == 0                # already gone: counted, not an error
        assert ix.remove([10**12, 10**12 + 1]) == 0     # never present
        gone_set = set(gone.tolist())
        assert not any(int(g) in ix for g in gone[:50])
        queries = np.vstack([query, prep(base[gone[:60]], metric)])   # also the removed ones
        for params in (ALL, dict(leaves_to_search=1, pre_reorder=10), {}):
            ids, _ = ix.search_batched(queries, k=20, **params)
            assert not set(ids.ravel().tolist()) & gone_set
            for q in queries[::7]:
                one, _ = ix.search(q, k=20, **params)
                assert not set(one.tolist()) & gone_set
        # survivors are still exact: the answers equal brute force over them
        keep = np.setdiff1d(np.arange(N), gone)
        kept = prep(base, metric)[keep]
        ex_ids, ex_scores = avq.exact_search(kept, query, k=5, metric=metric)
        ids, scores = ix.search_batched(query, k=5, **ALL)
        assert (ids == keep[ex_ids]).all()
        np.testing.assert_allclose(scores, ex_scores, rtol=1e-4, atol=1e-4)
        st = ix.stats()
        assert st["live"] == len(ix) and st["dead"] == len(gone)


def test_remove_accepts_scalars_and_int_types(data):
    base, _, _ = data
    with build(base, "squared_l2") as ix:
        assert ix.remove(3) == 1 and 3 not in ix
        assert ix.remove(np.int16(4)) == 1
        assert ix.remove(np.array([5, 6], dtype=np.uint8)) == 2
        assert ix.remove((7, 8)) == 2
        assert ix.remove([]) == 0
        assert ix.remove(np.array([], dtype=np.int64)) == 0
        assert len(ix) == N - 6


@pytest.mark.parametrize("metric", ["squared_l2", "cosine"])
def test_upsert_replaces(data, metric):
    base, extra, _ = data
    with build(base, metric) as ix:
        ids = np.array([0, 17, 400, 99_999])            # three present, one new
        new = extra[:4]
        assert ix.upsert(ids, new) == 3
        assert len(ix) == N + 1 and 99_999 in ix
        got = ix.get(ids)
        assert got.dtype == np.float32 and got.shape == (4, DIM)
        np.testing.assert_allclose(got, prep(new, metric), rtol=1e-6, atol=1e-6)
        self_top1(ix, prep(new, metric), ids)
        # the old vector of id 17 is gone: searching for it no longer gives 17 first...
        old, _ = ix.search(prep(base[17:18], metric)[0], k=1, **ALL)
        assert old[0] != 17
        # ...and upserting the same ids again replaces all of them
        assert ix.upsert(ids, extra[4:8]) == 4 and len(ix) == N + 1
        np.testing.assert_allclose(ix.get(17), prep(extra[5:6], metric)[0], rtol=1e-6,
                                   atol=1e-6)
        assert ix.upsert([5], extra[9]) == 1            # one (dim,) vector with one id


def test_len_contains_get(data):
    base, _, _ = data
    with build(base, "squared_l2") as ix:
        assert len(ix) == N
        assert 0 in ix and N - 1 in ix and np.int64(5) in ix and np.uint32(6) in ix
        assert N not in ix and -1 not in ix and 2**70 not in ix and -2**70 not in ix
        for bad in (1.0, "3", None, True):
            with pytest.raises(TypeError):
                bad in ix                               # noqa: B015
        np.testing.assert_array_equal(ix.get(7), base[7])          # (dim,) for one id
        np.testing.assert_array_equal(ix.get([7, 3]), base[[7, 3]])
        assert ix.get([]).shape == (0, DIM)
        with pytest.raises(ValueError, match="12345"):
            ix.get([1, 12345])
        with pytest.raises(TypeError):
            ix.get([1.5])
    # reorder 'none' keeps no vectors; int8 gives them approximately
    with avq.Index.build(base, **PQ, reorder="none") as ix:
        with pytest.raises(avq.Error):
            ix.get([1])
    with avq.Index.build(base, **PQ, reorder="int8") as ix:
        np.testing.assert_allclose(ix.get([1, 2]), base[[1, 2]], atol=0.05)
    # float16 gives each vector rounded to the nearest half, exactly
    with avq.Index.build(base, **PQ, reorder="float16") as ix:
        assert ix.build_params["reorder"] == "float16"
        np.testing.assert_array_equal(ix.get([1, 2]),
                                      base[[1, 2]].astype(np.float16).astype(np.float32))
        big = base[:1].copy()
        big[0, 3] = 1e5                                  # beyond the half range
        with pytest.raises(ValueError, match="float16"):
            ix.add(big, ids=[10 ** 6])
        assert 10 ** 6 not in ix


def test_stats_and_compact(data):
    base, _, query = data
    with build(base, "squared_l2") as ix:
        st = ix.stats()
        assert set(st) == {"live", "dead", "leaves", "empty_leaves", "min_leaf", "max_leaf",
                           "mean_leaf", "leaf_cv", "max_leaf_dead", "memory_bytes", "next_id",
                           "tagged", "tag_postings", "distinct_tags", "spilled"}
        assert st["spilled"] == 0
        assert st["tagged"] == st["tag_postings"] == st["distinct_tags"] == 0
        assert st["live"] == N and st["dead"] == 0 and st["leaves"] == LEAVES
        assert st["next_id"] == N and st["memory_bytes"] == ix.nbytes
        assert st["min_leaf"] <= st["mean_leaf"] <= st["max_leaf"]
        assert st["mean_leaf"] == pytest.approx(N / LEAVES)
        assert st["leaf_cv"] >= 0 and st["max_leaf_dead"] == 0
        assert all(isinstance(st[k], int) for k in ("live", "dead", "leaves", "next_id"))
        ix.set_compact_threshold(0)                     # no automatic compaction
        ix.remove(np.arange(0, N, 3))
        before = ix.search_batched(query, k=10, **ALL)
        st = ix.stats()
        assert st["dead"] == len(range(0, N, 3)) and st["max_leaf_dead"] > 0
        assert ix.compact(1.0) == 0 or ix.stats()["dead"] < st["dead"]
        assert ix.compact() >= 1
        st2 = ix.stats()
        assert st2["dead"] == 0 and st2["live"] == st["live"] and st2["max_leaf_dead"] == 0
        assert st2["memory_bytes"] <= st["memory_bytes"]
        after = ix.search_batched(query, k=10, **ALL)
        assert (after[0] == before[0]).all() and (after[1] == before[1]).all()
        assert ix.compact(min_dead_fraction=0.5) == 0   # nothing dead any more
        for bad in (-0.1, 1.5, float("nan")):
            with pytest.raises(ValueError):
                ix.compact(bad)
        with pytest.raises(TypeError):
            ix.compact("all")
        with pytest.raises(ValueError):
            ix.set_compact_threshold(2.0)
        # automatic compaction at the default threshold (0.5) reclaims a leaf
        ix2 = build(base, "squared_l2")
        ix2.remove(np.arange(N))
        st = ix2.stats()
        assert st["live"] == 0 and len(ix2) == 0
        assert st["dead"] < N                           # leaves went past 0.5 and were compacted
        ix2.close()


# --------------------------------------------------------------------------
# pickling, bytes, save/load of a changed index
# --------------------------------------------------------------------------

def changed_index(base, extra, metric="cosine"):
    ix = build(base, metric)
    ix.set_compact_threshold(0)
    ix.add(extra[:100], ids=np.arange(10_000, 10_100))
    ix.remove(np.arange(0, 300, 2))
    ix.upsert([1, 3], extra[100:102])
    return ix


@pytest.mark.parametrize("metric", ["dot_product", "squared_l2", "cosine"])
def test_pickle_round_trip(data, metric):
    base, extra, query = data
    with changed_index(base, extra, metric) as ix:
        expect = ix.search_batched(query, k=10)
        expect_all = ix.search_batched(query, k=10, **ALL)
        for proto in (2, pickle.HIGHEST_PROTOCOL):
            back = pickle.loads(pickle.dumps(ix, protocol=proto))
            assert type(back) is avq.Index and back is not ix
            assert len(back) == len(ix) and core(back.stats()) == core(ix.stats())
            assert (back.dim, back.metric, back.num_leaves) == (ix.dim, ix.metric, ix.num_leaves)
            assert back.build_params == ix.build_params
            got = back.search_batched(query, k=10)
            assert (got[0] == expect[0]).all() and (got[1] == expect[1]).all()
            got = back.search_batched(query, k=10, **ALL)
            assert (got[0] == expect_all[0]).all() and (got[1] == expect_all[1]).all()
            # the copy lives on its own
            back.add(extra[200:201])
            assert len(back) == len(ix) + 1
            back.close()
        for clone in (copy.copy(ix), copy.deepcopy(ix)):
            assert clone is not ix and core(clone.stats()) == core(ix.stats())
            clone.remove([10_000])
            assert 10_000 in ix and 10_000 not in clone


def test_bytes_and_files(tmp_path, data):
    base, extra, query = data
    with changed_index(base, extra) as ix:
        blob = ix.to_bytes()
        assert isinstance(blob, bytes) and len(blob) > ix.dim * 4 * 100
        path = tmp_path / "x.avq"
        ix.save(path)
        assert path.read_bytes() == blob                # the same format as a file
        expect = ix.search_batched(query, k=10)
        for src in (blob, bytearray(blob), memoryview(blob)):
            back = avq.Index.from_bytes(src)
            assert core(back.stats()) == core(ix.stats()) and not back.mmap
            assert (back.search_batched(query, k=10)[0] == expect[0]).all()
        for mmap in (False, True):
            with avq.load(path, mmap=mmap) as back:
                assert back.stats()["next_id"] == ix.stats()["next_id"] == 10_100
                assert back.stats()["dead"] == ix.stats()["dead"]
                got = back.search_batched(query, k=10)
                assert (got[0] == expect[0]).all() and (got[1] == expect[1]).all()
                # a mapped index changes in memory; the file is untouched
                back.add(extra[150:160])
                back.remove([10_000])
                assert len(back) == len(ix) + 9
        assert path.read_bytes() == blob
        with pytest.raises(avq.FormatError):
            avq.Index.from_bytes(blob[: len(blob) // 2])
        with pytest.raises(avq.FormatError):
            avq.Index.from_bytes(b"")
        with pytest.raises(TypeError):
            avq.Index.from_bytes("not bytes")


# --------------------------------------------------------------------------
# the quantizer and empty indexes
# --------------------------------------------------------------------------

def test_quantizer_and_empty_index(tmp_path, data):
    base, extra, query = data
    q = avq.Quantizer.train(base, "squared_l2", **PQ)
    assert (q.dim, q.metric, q.num_leaves) == (DIM, "squared_l2", LEAVES)
    assert "dim=16" in repr(q)
    for ix in (avq.Index(q), avq.Index.create(q), avq.Index(quantizer=q)):
        assert len(ix) == 0 and ix.dim == DIM and ix.metric == "squared_l2"
        assert ix.stats()["next_id"] == 0
        ids, scores = ix.search(query[0], k=4)
        assert (ids == -1).all() and np.isnan(scores).all()
        assert ix.search_batched(query, k=4)[0].shape == (30, 4)
    ix = avq.Index(q)
    del q
    gc.collect()                                        # the index keeps what it needs
    assert (ix.add(base) == np.arange(N)).all()
    self_top1(ix, base[:100], np.arange(100))
    # the same as Index.build with the same parameters (same training, same encoding)
    with avq.Index.build(base, "squared_l2", **PQ) as built:
        a, b = ix.search_batched(query, k=10, **ALL), built.search_batched(query, k=10, **ALL)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
    # shards from one quantizer merge exactly
    s1, s2 = avq.Index(ix.quantizer), avq.Index(ix.quantizer)
    s1.add(base[:600])
    s2.add(base[600:], ids=np.arange(600, N))
    i1, d1 = s1.search_batched(query, k=10, **ALL)
    i2, d2 = s2.search_batched(query, k=10, **ALL)
    ids_all, d_all = np.hstack([i1, i2]), np.hstack([d1, d2])
    order = np.lexsort((ids_all, d_all), axis=1)[:, :10]
    merged = np.take_along_axis(ids_all, order, 1)
    whole = ix.search_batched(query, k=10, **ALL)[0]
    assert (merged == whole).all()
    # save / load, also the quantizer of a whole index file
    qpath, ipath = tmp_path / "q.avq", tmp_path / "i.avq"
    ix.quantizer.save(qpath)
    ix.save(ipath)
    for path in (qpath, str(ipath)):
        q2 = avq.Quantizer.load(path)
        assert (q2.dim, q2.metric, q2.num_leaves) == (DIM, "squared_l2", LEAVES)
        with avq.Index(q2) as fresh:
            fresh.add(base)
            got = fresh.search_batched(query, k=10, **ALL)
            assert (got[0] == b[0]).all() and (got[1] == b[1]).all()
    assert os.path.getsize(qpath) < os.path.getsize(ipath) / 2   # no vectors in it
    # the quantizer outlives the index it came from
    qz = ix.quantizer
    ix.close()
    with avq.Index(qz) as again:
        assert again.add(extra[:3]).tolist() == [0, 1, 2]
    s1.close()
    s2.close()


def test_quantizer_errors(tmp_path, data):
    base, _, _ = data
    with pytest.raises(TypeError):
        avq.Quantizer()
    with pytest.raises(TypeError):
        avq.Index()
    with pytest.raises(TypeError, match="Quantizer"):
        avq.Index(base)
    with pytest.raises(TypeError, match="Quantizer"):
        avq.Index.create("q")
    with pytest.raises(ValueError, match="num_leaves"):
        avq.Quantizer.train(base[:50], num_leaves=51, brute_force_below=0)
    with pytest.raises(ValueError, match="2-D"):
        avq.Quantizer.train(base[0])
    with pytest.raises(TypeError):
        avq.Quantizer.train(base, leaves=4)
    with pytest.raises(FileNotFoundError):
        avq.Quantizer.load(tmp_path / "missing.avq")
    (tmp_path / "junk.avq").write_bytes(os.urandom(1000))
    with pytest.raises(avq.FormatError):
        avq.Quantizer.load(tmp_path / "junk.avq")
    q = avq.Quantizer.train(base, **PQ)
    with pytest.raises(TypeError):
        pickle.dumps(q)                                 # no bytes API for a quantizer alone
    calls = []
    avq.Quantizer.train(base, **PQ, progress=lambda *a: calls.append(a))
    assert {"kmeans", "codebooks"} <= {c[0] for c in calls}

    def stop(*a):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        avq.Quantizer.train(base, **PQ, progress=stop)


def test_exact_tier_is_living(data):
    """Below brute_force_below the index scores every vector exactly; it
    changes like any other."""
    base, extra, query = data
    with avq.Index.build(base[:500], "squared_l2") as ix:
        ix.add(extra[:50], ids=np.arange(1000, 1050))
        ix.remove(np.arange(100))
        live = np.vstack([base[100:500], extra[:50]])
        live_ids = np.concatenate([np.arange(100, 500), np.arange(1000, 1050)])
        ex_ids, ex_scores = avq.exact_search(live, query, k=10, metric="squared_l2")
        ids, scores = ix.search_batched(query, k=10)
        assert (ids == live_ids[ex_ids]).all()
        np.testing.assert_allclose(scores, ex_scores, rtol=1e-4, atol=1e-4)


def test_retrain(data):
    base, extra, query = data
    with changed_index(base, extra, "squared_l2") as ix:
        fresh = ix.retrain(num_leaves=4)
        assert fresh.num_leaves == 4 and len(fresh) == len(ix)
        assert fresh.stats()["dead"] == 0
        for i in (1, 3, 10_050, 1199):
            assert i in fresh
            np.testing.assert_array_equal(fresh.get(i), ix.get(i))
        assert 0 not in fresh                           # removed before retraining
        a = ix.search_batched(query, k=10, **ALL)[0]
        b = fresh.search_batched(query, k=10, leaves_to_search=4, pre_reorder=400)[0]
        assert (a == b).all()
        same = ix.retrain()
        assert same.num_leaves == LEAVES and same.build_params == ix.build_params
        with pytest.raises(TypeError):
            ix.retrain(metric="cosine")
        with pytest.raises(ValueError, match="num_leaves"):
            ix.retrain(num_leaves=10**6)
        fresh.close()
        same.close()


# --------------------------------------------------------------------------
# bad input raises and changes nothing
# --------------------------------------------------------------------------

def test_bad_writes_raise_and_change_nothing(data):
    base, extra, query = data
    ix = build(base, "cosine")
    ix.add(extra[:5], ids=[5000, 5001, 5002, 5003, 5004])
    n0, stats0 = len(ix), ix.stats()
    expect = ix.search_batched(query, k=10)
    nan_rows = extra[10:14].copy()
    nan_rows[2, 3] = np.nan
    inf_rows = extra[10:14].copy()
    inf_rows[1, 0] = -np.inf
    zero_rows = extra[10:14].copy()
    zero_rows[3] = 0.0
    v4 = extra[10:14]
    cases = [
        ("wrong dim", lambda: ix.add(extra[:4, :10]), ValueError, "dimension"),
        ("wrong dim 1-D", lambda: ix.add(extra[0, :10]), ValueError, "dimension"),
        ("3-D", lambda: ix.add(extra[:8].reshape(2, 4, DIM)), ValueError, "shape"),
        ("NaN row", lambda: ix.add(nan_rows), ValueError, "2"),
        ("inf row", lambda: ix.add(inf_rows, ids=[1, 2, 3, 4]), ValueError, ""),
        ("zero row, cosine", lambda: ix.add(zero_rows), ValueError, "3"),
        ("duplicate ids", lambda: ix.add(v4, ids=[9000, 9001, 9000, 9002]), ValueError, "9000"),
        ("id present", lambda: ix.add(v4, ids=[9000, 9001, 5003, 9002]), ValueError, "5003"),
        ("id -1", lambda: ix.add(v4, ids=[9000, -1, 9001, 9002]), ValueError, "-1"),
        ("float ids", lambda: ix.add(v4, ids=[9000.0, 9001.0, 9002.0, 9003.0]), TypeError,
         "integers"),
        ("float id array", lambda: ix.add(v4, ids=np.arange(4.0)), TypeError, "float64"),
        ("bool ids", lambda: ix.add(v4, ids=[True, False, True, False]), TypeError, "bool"),
        ("str ids", lambda: ix.add(v4, ids=["a", "b", "c", "d"]), TypeError, "integers"),
        ("too few ids", lambda: ix.add(v4, ids=[9000, 9001]), ValueError, "2 ids for 4"),
        ("too many ids", lambda: ix.add(v4[:1], ids=[9000, 9001]), ValueError, "2 ids for 1"),
        ("2-D ids", lambda: ix.add(v4, ids=[[9000, 9001], [9002, 9003]]), ValueError, "1-D"),
        ("uint64 ids", lambda: ix.add(v4, ids=np.array([2**63, 1, 2, 3], np.uint64)),
         ValueError, "range"),
        ("huge ids", lambda: ix.add(v4, ids=[2**64, 1, 2, 3]), TypeError, "integers"),
        ("complex vectors", lambda: ix.add(v4.astype(complex)), TypeError, "dtype"),
        ("threads", lambda: ix.add(v4, threads=-1), ValueError, "threads"),
        ("upsert NaN", lambda: ix.upsert([0, 1, 2, 3], nan_rows), ValueError, ""),
        ("upsert dup", lambda: ix.upsert([0, 1, 0, 3], v4), ValueError, ""),
        ("upsert -1", lambda: ix.upsert([0, 1, -1, 3], v4), ValueError, "-1"),
        ("upsert lengths", lambda: ix.upsert([0, 1], v4), ValueError, "2 ids for 4"),
        ("upsert no ids", lambda: ix.upsert(None, v4), TypeError, "None"),
        ("upsert float ids", lambda: ix.upsert(np.zeros(4), v4), TypeError, ""),
        ("remove floats", lambda: ix.remove([1.0, 2.0]), TypeError, "integers"),
        ("remove 2-D", lambda: ix.remove([[1, 2]]), ValueError, "1-D"),
        ("remove None", lambda: ix.remove(None), TypeError, ""),
    ]
    for name, call, exc, needle in cases:
        with pytest.raises(exc) as info:
            call()
        assert type(info.value) is exc, f"{name}: {type(info.value)} {info.value}"
        assert needle.lower() in str(info.value).lower(), f"{name}: {info.value!r}"
        assert len(ix) == n0, f"{name} changed len()"
    assert ix.stats() == stats0
    assert not any(i in ix for i in (9000, 9001, 9002, 9003))
    got = ix.search_batched(query, k=10)
    assert (got[0] == expect[0]).all() and (got[1] == expect[1]).all()
    ix.close()


def test_closed_index_refuses_everything(data):
    base, extra, query = data
    ix = build(base[:300], "squared_l2", num_leaves=2)
    ix.close()
    calls = [
        lambda: ix.add(extra[:2]), lambda: ix.upsert([1], extra[:1]), lambda: ix.remove([1]),
        lambda: ix.compact(), lambda: ix.set_compact_threshold(0.3), lambda: ix.get([1]),
        lambda: ix.stats(), lambda: len(ix), lambda: 1 in ix, lambda: ix.to_bytes(),
        lambda: pickle.dumps(ix), lambda: copy.deepcopy(ix), lambda: ix.quantizer,
        lambda: ix.retrain(), lambda: ix.search(query[:1]), lambda: bool(ix),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="closed"):
            call()
    # a bad argument to a closed index: an error, never a crash
    with pytest.raises((ValueError, TypeError)):
        ix.add("nonsense")


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------

def test_search_while_another_thread_writes(data):
    """Two threads search while this one adds and removes: no errors, only
    ids that exist(ed), never an id removed before the searches started,
    and the final state is what the writer did."""
    base, extra, query = data
    rng = np.random.default_rng(8)
    ix = build(base, "squared_l2")
    gone_before = np.arange(0, 200)
    ix.remove(gone_before)
    gone_set = set(gone_before.tolist())
    stop, errors, seen = threading.Event(), [], set()
    valid = set(range(N)) | set(range(100_000, 100_000 + 40 * 25))

    def searcher(batched):
        rng = np.random.default_rng(int(batched))
        try:
            while not stop.is_set():
                if batched:
                    ids, _ = ix.search_batched(query, k=10, threads=1)
                else:
                    ids, _ = ix.search(query[rng.integers(30)], k=10)
                seen.update(ids.ravel().tolist())
        except Exception as e:                          # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=searcher, args=(b,)) for b in (True, False)]
    for t in threads:
        t.start()
    try:
        for i in range(40):
            new = rng.standard_normal((25, DIM)).astype(np.float32)
            ids = ix.add(new, ids=np.arange(100_000 + 25 * i, 100_000 + 25 * (i + 1)))
            assert len(ids) == 25
            ix.remove(np.arange(200 + 10 * i, 200 + 10 * (i + 1)))
            if i % 10 == 9:
                ix.upsert([900 + i], new[:1])             # present: replaced
                ix.compact(0.3)
            time.sleep(0.001)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    seen.discard(-1)
    assert seen <= valid and not seen & gone_set
    assert len(ix) == N - 200 - 400 + 40 * 25
    ix.close()


def test_gil_released_during_add():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((20000, 64)).astype(np.float32)
    q = avq.Quantizer.train(base[:5000], num_leaves=16, brute_force_below=0)
    ix = avq.Index(q)
    span, ticks = {}, []

    def run():
        span["a"] = time.perf_counter()
        ix.add(base, threads=1)
        span["b"] = time.perf_counter()

    t = threading.Thread(target=run)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
    t.join()
    a, b = span["a"], span["b"]
    assert any(a + 0.3 * (b - a) < x < b - 0.1 * (b - a) for x in ticks), \
        f"no Python ran during a {b - a:.3f} s add"
    assert len(ix) == 20000


def test_close_during_add_is_safe():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((30000, 64)).astype(np.float32)
    q = avq.Quantizer.train(base[:4000], num_leaves=16, brute_force_below=0)
    ix = avq.Index(q)
    out, started = {}, threading.Event()

    def run():
        started.set()
        out["ids"] = ix.add(base, threads=1)

    t = threading.Thread(target=run)
    t.start()
    started.wait()
    time.sleep(0.01)
    ix.close()                                          # never blocks, never crashes
    t.join()
    assert ix.closed and out["ids"].shape == (30000,)
    with pytest.raises(ValueError, match="closed"):
        ix.add(base[:1])


# --------------------------------------------------------------------------
# references and memory
# --------------------------------------------------------------------------

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_no_reference_or_memory_leaks(data):
    base, extra, query = data
    ix = build(base[:400], "squared_l2", num_leaves=4)
    vec = np.ascontiguousarray(extra[:5])
    ids = np.arange(1000, 1005, dtype=np.int64)
    bad = vec.copy()
    bad[1, 1] = np.nan
    before = [sys.getrefcount(o) for o in (vec, ids, bad, ix)]
    for _ in range(200):
        ix.add(vec, ids=ids)
        ix.get(ids)
        ix.upsert(ids, vec)
        assert ix.remove(ids) == 5
        for call in (lambda: ix.add(bad), lambda: ix.add(vec, ids=ids[:2]),
                     lambda: ix.upsert(ids, bad), lambda: ix.get(ids)):
            with pytest.raises(ValueError):
                call()
        assert 1000 not in ix
        ix.search(vec[:1], k=3)
    assert [sys.getrefcount(o) for o in (vec, ids, bad, ix)] == before

    def loop(n):
        for _ in range(n):
            blob = ix.to_bytes()
            avq.Index.from_bytes(blob).close()
            pickle.loads(pickle.dumps(ix)).close()
            avq.Index(ix.quantizer).close()
            ix.stats()
            try:
                avq.Index.from_bytes(blob[:100])
            except avq.FormatError:
                pass

    loop(30)
    gc.collect()
    start = rss_bytes()
    loop(300)
    gc.collect()
    grown = rss_bytes() - start
    assert grown < 2 << 20, f"RSS grew by {grown} bytes over 300 bytes/pickle/quantizer cycles"
    ix.close()


# ---- true MIPS: the threshold kind (issue "True MIPS") -----------------------

def test_threshold_kind_on_raw_norms():
    """On un-normalised rows (|x| ~ 50 >> T) the default 'auto' (relative for
    dot_product) codes differ from reconstruction; 'absolute' is
    reconstruction (eta clamps to 1); a bad kind is a ValueError."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((3000, 100)) * 5).astype(np.float32)
    kw = dict(brute_force_below=100, num_leaves=4, reorder="none")
    rel = avq.Index.build(x, "ip", **kw)
    absolute = avq.Index.build(x, "ip", threshold_kind="absolute", **kw)
    recon = avq.Index.build(x, "ip", threshold=None, **kw)
    q = x[:20]
    s_rel = rel.search_batched(q, k=5)[1]
    s_abs = absolute.search_batched(q, k=5)[1]
    s_rec = recon.search_batched(q, k=5)[1]
    assert not np.array_equal(s_rel, s_rec)
    assert np.array_equal(s_abs, s_rec)
    with pytest.raises(ValueError, match="threshold_kind"):
        avq.Index.build(x, "ip", threshold_kind="sideways", **kw)
    with pytest.raises(TypeError):
        avq.Index.build(x, "ip", threshold_kind=1, **kw)
