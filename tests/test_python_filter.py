"""Tests of filtered search and tags through the `avq` Python module:
search(filter=, deny=, tags_any=, tags_all=), avq.Filter, per-query
filters in search_batched, tags given to build / add / upsert / set_tags,
get_tags / tag_count / stats(), tags through remove, compact, pickling,
bytes and files, and bad input.

The module is found as in test_python.py ($AVQ_PYTHON_PATH, else beside
$AVQ_BIN, else build/python).  Data are small and drawn from fixed seeds.
The oracle is a numpy brute force over the allowed vectors (float64
scores, ties to the lower id).  Searches that must be exact scan every
leaf and re-score every candidate (pre_reorder = N) with float re-ranking;
each filter is checked both on the planner's exact path (the default: the
index is smaller than filter_exact_below) and on the filtered scan
(filter_exact_below=1).
"""

import gc
import os
import pickle
import signal
import sys
import threading

import numpy as np
import pytest

from conftest import avq_module_dir


sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402

N, DIM, LEAVES, NQ, K = 1200, 16, 8, 12, 10
NTAGS = 12
PQ = dict(num_leaves=LEAVES, brute_force_below=0, seed=3)
EXHAUSTIVE = dict(leaves_to_search=LEAVES, pre_reorder=N)
METRICS = ["dot_product", "squared_l2", "cosine"]


# --------------------------------------------------------------------------
# data and the numpy oracle
# --------------------------------------------------------------------------

def make_data(seed=5):
    rng = np.random.default_rng(seed)
    # varied norms: inner product, L2 and cosine rank differently
    base = (rng.standard_normal((N, DIM)) * rng.uniform(0.3, 2.0, (N, 1))).astype(np.float32)
    query = rng.standard_normal((NQ, DIM)).astype(np.float32)
    # 0..3 tags per vector, skewed towards the small tags; some vectors untagged
    tags = []
    for _ in range(N):
        t = rng.choice(NTAGS, size=int(rng.integers(0, 4)), replace=True,
                       p=np.linspace(2, 1, NTAGS) / np.linspace(2, 1, NTAGS).sum())
        tags.append([int(v) for v in t])          # duplicates on purpose: merged
    return base, query, tags


@pytest.fixture(scope="module")
def data():
    return make_data()


def tag_sets(tags):
    return [set(t) for t in tags]


def brute(base, ids, queries, metric, allowed, k=K):
    """Exact filtered top-k: (ids, scores) of shape (nq, k), -1 / NaN padded.
    base[i] has id ids[i]; allowed is a boolean mask over the rows."""
    x = base.astype(np.float64)
    q = np.atleast_2d(queries).astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    rows = np.flatnonzero(allowed)
    out_ids = np.full((len(q), k), -1, np.int64)
    out_sc = np.full((len(q), k), np.nan, np.float32)
    for i, qi in enumerate(q):
        if metric == "squared_l2":
            s = ((x[rows] - qi) ** 2).sum(axis=1)
            key = s
        else:
            s = x[rows] @ qi
            key = -s
        order = np.lexsort((ids[rows], key))[:k]
        out_ids[i, :len(order)] = ids[rows][order]
        out_sc[i, :len(order)] = s[order]
    return out_ids, out_sc


def same(got, want, what=""):
    gi, gs = got
    wi, ws = want
    gi, gs = np.atleast_2d(gi), np.atleast_2d(gs)
    assert gi.shape == wi.shape, what
    bad = np.flatnonzero((gi != wi).any(axis=1))
    assert len(bad) == 0, (f"{what}: query {bad[0]}: got {gi[bad[0]].tolist()}, "
                           f"want {wi[bad[0]].tolist()}")
    assert (np.isnan(gs) == np.isnan(ws)).all(), what
    ok = ~np.isnan(ws)
    np.testing.assert_allclose(gs[ok], ws[ok], rtol=2e-4, atol=2e-4, err_msg=what)


def build(base, metric, tags=None, **kw):
    return avq.Index.build(base, metric, tags=tags, **{**PQ, **kw})


# The filters under test: (name, search keywords, allowed mask).
def filter_cases(tags, ids=None):
    n = len(tags)
    ids = np.arange(n) if ids is None else ids
    rng = np.random.default_rng(9)
    ts = tag_sets(tags)
    allow10 = np.sort(rng.choice(ids, size=n // 10, replace=False))
    allow_small = rng.choice(ids, size=15, replace=False)
    deny = rng.choice(ids, size=n // 2, replace=False)
    isin = lambda sel: np.isin(ids, sel)                           # noqa: E731
    any_mask = np.array([bool(t & {1, 5}) for t in ts])
    all_mask = np.array([{0, 2} <= t for t in ts])
    return [
        ("allow 10% array", dict(filter=allow10), isin(allow10)),
        ("allow 15 list", dict(filter=[int(v) for v in allow_small]), isin(allow_small)),
        ("allow set", dict(filter={int(v) for v in allow_small}), isin(allow_small)),
        ("allow Filter", dict(filter=avq.Filter.allow_ids(allow10)), isin(allow10)),
        ("deny 50%", dict(deny=deny), ~isin(deny)),
        ("deny Filter", dict(filter=avq.Filter.deny_ids(deny)), ~isin(deny)),
        ("callback", dict(filter=lambda i: i % 3 == 0), ids % 3 == 0),
        ("callback Filter", dict(filter=avq.Filter.callback(lambda i: np.bool_(i % 7 < 2))),
         ids % 7 < 2),
        ("tags_any", dict(tags_any=[1, 5]), any_mask),
        ("tags_any Filter", dict(filter=avq.Filter.tags_any(np.array([1, 5], np.uint32))),
         any_mask),
        ("tags_all", dict(tags_all=(0, 2)), all_mask),
        ("tags_all Filter", dict(filter=avq.Filter.tags_all([2, 0, 2])), all_mask),
    ]


# --------------------------------------------------------------------------
# filtered results equal the exact filtered search
# --------------------------------------------------------------------------

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("tier", ["pq", "exact"])
def test_filtered_search_is_exact(data, metric, tier):
    base, query, tags = data
    kw = {} if tier == "pq" else dict(brute_force_below=10 ** 6)
    with build(base, metric, tags, **kw) as ix:
        every = dict(leaves_to_search=ix.num_leaves, pre_reorder=N)
        assert ix.num_leaves == (LEAVES if tier == "pq" else 1)
        ids = np.arange(N)
        for name, fkw, mask in filter_cases(tags):
            assert 0 < mask.sum() < N, name
            want = brute(base, ids, query, metric, mask)
            for plan in ({}, dict(filter_exact_below=1)):
                what = f"{metric}/{tier}: {name} {plan}"
                got = ix.search_batched(query, k=K, threads=1, **every, **fkw, **plan)
                same(got, want, what + " (batched)")
                for i in (0, NQ - 1):
                    one = ix.search(query[i], k=K, **every, **fkw, **plan)
                    same(one, (want[0][i:i + 1], want[1][i:i + 1]), what + f" (query {i})")


@pytest.mark.parametrize("metric", METRICS)
def test_small_filters_are_scored_exactly(data, metric):
    """A filter known to allow few vectors (an allow set by its size, a tag
    filter by the tag counts) is answered exactly even with a search that
    scans one leaf."""
    base, query, tags = data
    with build(base, metric, tags) as ix:
        ids = np.arange(N)
        for name, fkw, mask in filter_cases(tags):
            if "callback" in name or "deny" in name:
                continue                   # their size is not known to the planner
            want = brute(base, ids, query, metric, mask)
            got = ix.search_batched(query, k=K, leaves_to_search=1, **fkw)
            same(got, want, f"{metric}: {name} (one leaf, exact plan)")


@pytest.mark.parametrize("metric", METRICS)
def test_filter_on_a_changed_index(data, metric):
    """Own ids, removals and an upsert: the oracle follows the live set."""
    base, query, tags = data
    q = avq.Quantizer.train(base, metric, **PQ)
    ix = avq.Index(q)
    own = np.arange(N, dtype=np.int64) * 7 + 1000
    ix.add(base, ids=own, tags=tags)
    gone = own[::5]
    assert ix.remove(gone) == len(gone)
    live = ~np.isin(own, gone)
    rng = np.random.default_rng(2)
    new = rng.standard_normal((3, DIM)).astype(np.float32)
    up = own[[1, 2, 3]]
    assert ix.upsert(up, new) == 3                   # keeps the tags of 1, 2, 3
    vecs = base.copy()
    vecs[[1, 2, 3]] = new
    for name, fkw, mask in filter_cases(tags, own):
        want = brute(vecs, own, query, metric, mask & live)
        for plan in ({}, dict(filter_exact_below=1)):
            got = ix.search_batched(query, k=K, threads=1, **EXHAUSTIVE, **fkw, **plan)
            same(got, want, f"{metric}: changed index: {name} {plan}")


def test_empty_allow_set_returns_nothing(data):
    base, query, tags = data
    with build(base, "squared_l2", tags) as ix:
        for fkw in (dict(filter=[]), dict(filter=set()), dict(filter=np.array([], np.int64)),
                    dict(filter=avq.Filter.allow_ids([])),
                    dict(filter=[-5, 10 ** 12]),                 # ids not in the index
                    dict(tags_any=[999]), dict(tags_all=[0, 999]),
                    dict(filter=lambda i: False)):
            for plan in ({}, dict(filter_exact_below=1)):
                got_ids, got_sc = ix.search_batched(query, k=K, **fkw, **plan)
                assert (got_ids == -1).all(), fkw
                assert np.isnan(got_sc).all(), fkw
                one_ids, one_sc = ix.search(query[0], k=K, **fkw, **plan)
                assert (one_ids == -1).all() and np.isnan(one_sc).all(), fkw


@pytest.mark.parametrize("metric", METRICS)
def test_filter_allowing_everything_changes_nothing(data, metric):
    base, query, _ = data
    every = [[0]] * N                                   # every vector carries tag 0
    with build(base, metric, every) as ix:
        everything = [dict(filter=np.arange(N)), dict(filter=avq.Filter.allow_ids(range(N))),
                      dict(deny=[]), dict(deny=[-7, 10 ** 9]), dict(filter=lambda i: True),
                      dict(tags_any=[0]), dict(tags_all=[0]), dict(tags_any=[0, 3])]
        for params in (EXHAUSTIVE, dict(leaves_to_search=2, pre_reorder=40)):
            plain = ix.search_batched(query, k=K, **params)
            for fkw in everything:
                # no extra leaves and no exact scoring: the same scan
                got = ix.search_batched(query, k=K, **params, **fkw, filter_min_scanned=1,
                                        filter_exact_below=1)
                assert (got[0] == plain[0]).all(), (params, fkw)
                assert (got[1] == plain[1]).all(), (params, fkw)
            for fkw in everything:                       # exhaustive: any plan is exact
                if params is EXHAUSTIVE:
                    got = ix.search_batched(query, k=K, **params, **fkw)
                    same(got, plain, f"{metric}: {fkw}")


def test_per_query_filters(data):
    base, query, tags = data
    with build(base, "dot_product", tags) as ix:
        cases = filter_cases(tags)
        per = [cases[i % len(cases)][1].get("filter") for i in range(NQ)]
        per[3] = None                                       # no filter for query 3
        per[4] = avq.Filter.deny_ids(range(0, N, 2))
        per[5] = avq.Filter.tags_any([4])
        got_ids, got_sc = ix.search_batched(query, k=K, filters=per, threads=2, **EXHAUSTIVE)
        for i, f in enumerate(per):
            kw = {} if f is None else dict(filter=f)
            one_ids, one_sc = ix.search(query[i], k=K, **EXHAUSTIVE, **kw)
            assert (one_ids == got_ids[i]).all(), i
            np.testing.assert_array_equal(one_sc, got_sc[i])
        # one filter for every query == the same filter per query
        f = avq.Filter.allow_ids(range(0, N, 3))
        a = ix.search_batched(query, k=K, filter=f, threads=2, **EXHAUSTIVE)
        b = ix.search_batched(query, k=K, filters=[f] * NQ, threads=2, **EXHAUSTIVE)
        assert (a[0] == b[0]).all() and (a[1] == b[1]).all()
        # empty batch
        e_ids, _ = ix.search_batched(query[:0], k=K, filters=[])
        assert e_ids.shape == (0, K)


def test_batched_callback_on_threads(data):
    base, query, tags = data
    with build(base, "squared_l2", tags) as ix:
        seen = set()
        lock = threading.Lock()

        def keep(i):
            with lock:
                seen.add(threading.get_ident())
            return i % 4 == 1

        many = np.repeat(query, 20, axis=0)
        got = ix.search_batched(many, k=K, filter=keep, threads=2, **EXHAUSTIVE)
        want = brute(base, np.arange(N), many, "squared_l2", np.arange(N) % 4 == 1)
        same(got, want, "callback on 2 threads")
        one = ix.search_batched(many, k=K, filter=keep, threads=1, **EXHAUSTIVE)
        assert (one[0] == got[0]).all()


# --------------------------------------------------------------------------
# a callback that fails
# --------------------------------------------------------------------------

class Boom(Exception):
    pass


def test_callback_exception_propagates(data):
    base, query, tags = data
    with build(base, "cosine", tags) as ix:
        calls = []

        def bad(i):
            calls.append(i)
            if len(calls) > 50:
                raise Boom(f"no {i}")
            return True

        with pytest.raises(Boom, match="no "):
            ix.search(query[0], k=K, filter=bad, **EXHAUSTIVE)
        assert len(calls) == 51                         # the search stopped at once
        for threads in (1, 2):
            calls.clear()
            with pytest.raises(Boom):
                ix.search_batched(query, k=K, filter=bad, threads=threads)
            calls.clear()
            with pytest.raises(Boom):
                ix.search_batched(query, k=K, threads=threads,
                                  filters=[None] * (NQ - 1) + [avq.Filter.callback(bad)])

        class BadBool:
            def __bool__(self):
                raise ZeroDivisionError("truth")

        with pytest.raises(ZeroDivisionError, match="truth"):
            ix.search(query[0], k=K, filter=lambda i: BadBool())
        with pytest.raises(TypeError):
            ix.search(query[0], k=K, filter=lambda: True)        # wrong signature
        # Ctrl-C during a callback-filtered search
        sent = []

        def interrupted(i):
            if not sent:
                sent.append(i)
                # to this (the main) thread: os.kill may hand the signal to
                # another thread of the process (OpenBLAS's), whose handler
                # can run after the whole search under load (a CI failure)
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            return True

        # Python leaves SIGINT ignored when it started ignored (a background
        # job of a non-interactive shell): install the handler for the test
        old = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                ix.search(query[0], k=K, filter=interrupted, **EXHAUSTIVE)
        finally:
            signal.signal(signal.SIGINT, old)
        # the index is fine afterwards
        ok = ix.search(query[0], k=K, filter=lambda i: True, **EXHAUSTIVE)
        assert (ok[0] == ix.search(query[0], k=K, **EXHAUSTIVE)[0]).all()


# --------------------------------------------------------------------------
# tags: storage, counts, forms of input
# --------------------------------------------------------------------------

def check_tags(ix, ids, tags):
    """get_tags, tag_count and stats() agree with the expected tags of the
    live vectors ids[i] -> tags[i]."""
    ts = [sorted(set(t)) for t in tags]
    for i, t in zip(ids, ts):
        assert ix.get_tags(int(i)) == t, int(i)
    for tag in range(NTAGS + 2):
        assert ix.tag_count(tag) == sum(tag in t for t in ts), tag
    st = ix.stats()
    assert st["tagged"] == sum(bool(t) for t in ts)
    assert st["tag_postings"] == sum(len(t) for t in ts)
    assert st["distinct_tags"] == len(set().union(*map(set, ts)))


def csr(tags):
    offsets = np.zeros(len(tags) + 1, np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tags])
    flat = np.array([v for t in tags for v in t], np.uint32)
    return offsets, flat


def test_tag_input_forms(data):
    base, _, tags = data
    sub = tags[:300]
    want = [sorted(set(t)) for t in sub]
    forms = {
        "lists": sub,
        "tuples, arrays, None": [tuple(t) if i % 3 == 0 else
                                 np.array(t, np.int16) if i % 3 == 1 else (t or None)
                                 for i, t in enumerate(sub)],
        "object array": np.array([np.array(t, np.int64) for t in sub] + [None],
                                 dtype=object)[:300],
        "csr": csr(sub),
        "csr lists": tuple(x.tolist() for x in csr(sub)),
    }
    for name, form in forms.items():
        with build(base[:300], "squared_l2", form) as ix:
            check_tags(ix, range(300), want)
    # a 2-D array: the same number of tags on every row
    grid = np.arange(600, dtype=np.uint64).reshape(300, 2) % 7
    with build(base[:300], "squared_l2", grid) as ix:
        check_tags(ix, range(300), grid.tolist())
    # tags beyond 2**31 and up to 2**32 - 1
    big = [[2 ** 32 - 1, 2 ** 31], [0], []]
    q = avq.Quantizer.train(base, "squared_l2", **PQ)
    with avq.Index(q) as ix:
        ix.add(base[:3], tags=big)
        assert ix.get_tags(0) == [2 ** 31, 2 ** 32 - 1]
        assert ix.tag_count(2 ** 32 - 1) == 1
        ids, _ = ix.search(base[0], k=3, tags_any=[2 ** 32 - 1], **EXHAUSTIVE)
        assert ids.tolist() == [0, -1, -1]


def test_tags_through_add_remove_upsert_set_tags_compact(data):
    base, query, tags = data
    q = avq.Quantizer.train(base, "dot_product", **PQ)
    ix = avq.Index(q)
    expect = {}
    got = ix.add(base[:600], tags=tags[:600])
    expect.update({int(i): t for i, t in zip(got, tags[:600])})
    got = ix.add(base[600:900])                                # untagged
    expect.update({int(i): [] for i in got})
    ids = ix.add(base[900:], ids=np.arange(900, N) + 10 ** 6, tags=csr(tags[900:]))
    expect.update({int(i): t for i, t in zip(ids, tags[900:])})

    def verify(what):
        live = sorted(expect)
        check_tags(ix, live, [expect[i] for i in live])
        assert len(ix) == len(live), what

    verify("after add")
    gone = [int(i) for i in list(expect)[::4]]
    ix.remove(gone)
    for i in gone:
        del expect[i]
        with pytest.raises(ValueError):
            ix.get_tags(i)
    verify("after remove")
    # plain upsert keeps the tags of replaced vectors, adds untagged ones
    keep = [i for i in list(expect)[:5]]
    rng = np.random.default_rng(4)
    ix.upsert(keep + [5_000_000], rng.standard_normal((6, DIM)).astype(np.float32))
    expect[5_000_000] = []
    verify("after plain upsert")
    # tagged upsert sets exactly the tags given
    ix.upsert(keep[:2] + [5_000_001], rng.standard_normal((3, DIM)).astype(np.float32),
              tags=[[11], [], [3, 3, 4]])
    expect[keep[0]], expect[keep[1]], expect[5_000_001] = [11], [], [3, 4]
    verify("after tagged upsert")
    # set_tags replaces the tags of present ids
    some = list(expect)[10:20]
    new = [[j % NTAGS, (j * 5) % NTAGS] for j in range(10)]
    ix.set_tags(some, new)
    for i, t in zip(some, new):
        expect[i] = t
    ix.set_tags(some[0], [7, 8])                                # one int id: one list
    expect[some[0]] = [7, 8]
    ix.set_tags(np.array(some[1:3]), csr([[], [1]]))
    expect[some[1]], expect[some[2]] = [], [1]
    verify("after set_tags")
    # compaction keeps them
    ix.compact()
    assert ix.stats()["dead"] == 0
    verify("after compact")
    # and filtered search follows the live tags
    live = np.array(sorted(expect))
    vecs = ix.get(live)
    mask = np.array([3 in expect[int(i)] for i in live])
    for plan in ({}, dict(filter_exact_below=1)):
        got = ix.search_batched(query, k=K, tags_any=[3], **EXHAUSTIVE, **plan)
        same(got, brute(vecs, live, query, "dot_product", mask), f"tags after writes {plan}")
    ix.close()


def test_tags_survive_pickle_bytes_and_files(tmp_path, data):
    base, query, tags = data
    with build(base, "cosine", tags) as ix:
        ix.remove(range(0, N, 9))
        ix.set_tags([1, 2], [[NTAGS + 1], []])
        live = [i for i in range(N) if i % 9]
        before = {i: ix.get_tags(i) for i in live}
        res = {name: ix.search_batched(query, k=K, **EXHAUSTIVE, **fkw)
               for name, fkw, _ in filter_cases(tags) if "callback" not in name}
        res["tag 13"] = ix.search_batched(query, k=K, tags_any=[NTAGS + 1], **EXHAUSTIVE)
        stats = ix.stats()
        path = str(tmp_path / "tagged.avq")
        ix.save(path)
        copies = {
            "pickle": pickle.loads(pickle.dumps(ix)),
            "bytes": avq.Index.from_bytes(ix.to_bytes()),
            "load": avq.load(path),
            "mmap": avq.load(path, mmap=True),
        }
    for how, cp in copies.items():
        with cp:
            assert {i: cp.get_tags(i) for i in live} == before, how
            st = cp.stats()
            for key in ("tagged", "tag_postings", "distinct_tags", "live", "dead"):
                assert st[key] == stats[key], (how, key)
            for name, fkw, _ in filter_cases(tags):
                if "callback" in name:
                    continue
                got = cp.search_batched(query, k=K, **EXHAUSTIVE, **fkw)
                assert (got[0] == res[name][0]).all(), (how, name)
                np.testing.assert_array_equal(got[1], res[name][1])
            assert (cp.search_batched(query, k=K, tags_any=[NTAGS + 1],
                                      **EXHAUSTIVE)[0] == res["tag 13"][0]).all()
            # a loaded (also mapped) index can change its tags
            cp.set_tags([3], [[NTAGS + 1]])
            assert cp.tag_count(NTAGS + 1) == 2


def test_untagged_index_still_round_trips(tmp_path, data):
    base, query, _ = data
    with build(base, "squared_l2") as ix:
        st = ix.stats()
        assert st["tagged"] == st["tag_postings"] == st["distinct_tags"] == 0
        assert ix.get_tags(5) == [] and ix.tag_count(0) == 0
        blob = ix.to_bytes()
        cp = avq.Index.from_bytes(blob)
        assert cp.stats()["tagged"] == 0
        ids, _ = cp.search(query[0], k=K, tags_any=[0])
        assert (ids == -1).all()


# --------------------------------------------------------------------------
# the Filter object
# --------------------------------------------------------------------------

def test_docstrings_and_signatures():
    import inspect
    for name in ("set_tags", "get_tags", "tag_count", "search", "search_batched", "add",
                 "upsert", "build"):
        assert getattr(avq.Index, name).__doc__
        inspect.signature(getattr(avq.Index, name))
    params = inspect.signature(avq.Index.search).parameters
    for name in ("filter", "deny", "tags_any", "tags_all", "filter_min_scanned",
                 "filter_exact_below"):
        assert params[name].kind == inspect.Parameter.KEYWORD_ONLY, name
    assert "filters" in inspect.signature(avq.Index.search_batched).parameters
    assert "tags" in inspect.signature(avq.Index.build).parameters
    for name in ("allow_ids", "deny_ids", "tags_any", "tags_all", "callback"):
        assert getattr(avq.Filter, name).__doc__
        inspect.signature(getattr(avq.Filter, name))
    assert avq.Filter.__doc__ and "Filter" in avq.__all__
    assert (avq.MAX_TAGS_PER_VECTOR, avq.MAX_FILTER_TAGS) == (1024, 4096)


def test_filter_object(data):
    base, query, tags = data
    f = avq.Filter.allow_ids(np.arange(0, 100, dtype=np.uint16))
    assert f.kind == "allow_ids" and f.size == 100 and f.keep is None
    assert "allow_ids" in repr(f)
    assert avq.Filter.deny_ids({1, 2}).kind == "deny_ids"
    assert avq.Filter.tags_any([1]).kind == "tags_any"
    assert avq.Filter.tags_all([1, 2]).size == 2
    fn = lambda i: True                                          # noqa: E731
    cb = avq.Filter.callback(fn)
    assert cb.kind == "callback" and cb.size is None and cb.keep is fn
    with pytest.raises(TypeError):
        avq.Filter()
    with pytest.raises(TypeError):
        avq.Filter.callback(3)
    with pytest.raises(TypeError):
        pickle.dumps(f)
    # one filter, two indexes, several threads
    with build(base, "dot_product", tags) as a, build(base[::-1].copy(), "dot_product") as b:
        want_a = a.search_batched(query, k=K, filter=f, **EXHAUSTIVE)
        want_b = b.search_batched(query, k=K, filter=f, **EXHAUSTIVE)
        assert set(want_a[0].ravel()) <= set(range(100))
        errors = []

        def worker():
            try:
                for _ in range(20):
                    assert (a.search_batched(query, k=K, filter=f, threads=1,
                                             **EXHAUSTIVE)[0] == want_a[0]).all()
                    assert (b.search(query[0], k=K, filter=f, **EXHAUSTIVE)[0]
                            == want_b[0][0]).all()
            except Exception as e:           # pragma: no cover - reported below
                errors.append(e)

        ts = [threading.Thread(target=worker) for _ in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errors, errors
    del f
    # a callback referring to its own Filter is collected (no leak, no crash)
    holder = {}
    holder["f"] = avq.Filter.callback(lambda i: holder["f"] is not None)
    del holder
    assert gc.collect() > 0


# --------------------------------------------------------------------------
# bad input: a clear error, never a crash, nothing changed
# --------------------------------------------------------------------------

def test_bad_filter_arguments(data):
    base, query, tags = data
    with build(base, "squared_l2", tags) as ix:
        q = query[0]
        with pytest.raises(ValueError, match="at most one"):
            ix.search(q, filter=[1], deny=[2])
        with pytest.raises(ValueError, match="at most one"):
            ix.search(q, tags_any=[1], tags_all=[2])
        with pytest.raises(ValueError, match="at most one"):
            ix.search_batched(query, filter=lambda i: True, tags_any=[1])
        with pytest.raises(ValueError, match="filters"):
            ix.search_batched(query, filter=[1], filters=[None] * NQ)
        with pytest.raises(ValueError, match="filters has 3 items"):
            ix.search_batched(query, filters=[None] * 3)
        with pytest.raises(TypeError):
            ix.search_batched(query, filters=avq.Filter.allow_ids([1]))
        with pytest.raises(TypeError):
            ix.search(q, 10, None, None, [1, 2])          # filters are keyword-only
        with pytest.raises(TypeError, match="single int"):
            ix.search(q, filter=5)
        for bad in ("abc", 1.5, [1.0, 2.0], object()):
            with pytest.raises(TypeError):
                ix.search(q, filter=bad)
        with pytest.raises(TypeError):
            ix.search(q, deny=lambda i: True)
        with pytest.raises(ValueError, match="1 to 4096 tags"):
            ix.search(q, tags_any=[])
        with pytest.raises(ValueError, match="1 to 4096 tags"):
            ix.search(q, tags_all=list(range(avq.MAX_FILTER_TAGS + 1)))
        ix.search(q, tags_any=list(range(avq.MAX_FILTER_TAGS)))      # the limit itself is fine
        for bad in ([-1], [2 ** 32], [2 ** 70], np.array([-3]), np.array([2 ** 40], np.uint64)):
            with pytest.raises(ValueError, match="out of range"):
                ix.search(q, tags_any=bad)
            with pytest.raises(ValueError, match="out of range"):
                avq.Filter.tags_all(bad)
        for bad in ([1.5], ["a"], [True], 3, np.array([1.0])):
            with pytest.raises(TypeError):
                ix.search(q, tags_any=bad)
        with pytest.raises(TypeError):
            ix.search(q, filter_min_scanned=1.5, filter=[1])
        with pytest.raises(ValueError):
            ix.search(q, filter_exact_below=-1, filter=[1])
        with pytest.raises(ValueError, match="out of range"):
            ix.tag_count(-1)
        with pytest.raises(ValueError):
            ix.get_tags(10 ** 9)
        with pytest.raises(TypeError):
            ix.get_tags(1.0)
        # still serving
        assert ix.search(q, k=3, filter=[4, 5, 6])[0].tolist() != [-1, -1, -1]


def test_bad_tags_raise_and_change_nothing(data):
    base, _, tags = data
    q = avq.Quantizer.train(base, "squared_l2", **PQ)
    ix = avq.Index(q)
    ix.add(base[:100], tags=tags[:100])
    def state():                 # (memory_bytes may keep the capacity of a past change)
        st = {k: v for k, v in ix.stats().items() if k != "memory_bytes"}
        return len(ix), st, [ix.get_tags(i) for i in range(100)]

    before = state()
    v = base[100:103]
    too_many = [list(range(avq.MAX_TAGS_PER_VECTOR + 1)), [], []]
    bad_cases = [
        (ValueError, "for 3 vectors", [[1], [2]]),                      # wrong length
        (ValueError, "out of range", [[1], [-1], []]),
        (ValueError, "out of range", [[1], [2 ** 32], []]),
        (ValueError, "row 1", [[1], [2 ** 32], []]),
        (ValueError, None, too_many),                                   # library's limit
        (TypeError, "row 2", [[1], [2], 3]),                             # a bare int row
        (TypeError, None, [[1], [2], "ab"]),
        (TypeError, None, [[1], [2.5], []]),
        (TypeError, None, np.array([1, 2, 3])),                         # 1-D int array
        (ValueError, "rows", np.zeros((2, 1), np.int64)),
        (TypeError, None, np.zeros((3, 1))),                            # float dtype
        (ValueError, "CSR", (np.array([0, 1, 2]), np.array([5, 6]))),   # offsets too short
        (ValueError, "CSR", (np.array([0, 2, 1, 2]), np.array([5, 6]))),  # decreasing
        (ValueError, "CSR", (np.array([0, 1, 2, 3]), np.array([5, 6]))),  # past the end
        (ValueError, "CSR", (np.array([1, 1, 2, 2]), np.array([5, 6]))),  # not from 0
        (ValueError, "CSR", (np.array([0, 1, 1, 1]), np.array([5, 6]))),  # tags left over
        (ValueError, "out of range", (np.array([0, 1, 1, 1]), np.array([-5]))),
    ]
    for exc, match, bad in bad_cases:
        with pytest.raises(exc, match=match):
            ix.add(v, tags=bad)
        with pytest.raises(exc, match=match):
            ix.upsert([0, 1, 2], v, tags=bad)
        with pytest.raises(exc, match=match):
            ix.set_tags([0, 1, 2], bad)
        assert state() == before, bad
    # the limit itself is fine (1024 tags), duplicates are merged
    ok = list(range(avq.MAX_TAGS_PER_VECTOR))
    ix.set_tags([0], [ok[::-1]])
    assert ix.get_tags(0) == ok
    ix.set_tags([0], [[5, 1, 5, 1, 5]])
    assert ix.get_tags(0) == [1, 5]
    ix.set_tags([0], [tags[0]])
    with pytest.raises(ValueError):
        ix.set_tags([0, 10 ** 9], [[1], [2]])                           # absent id
    with pytest.raises(ValueError):
        ix.set_tags([3, 3], [[1], [2]])                                 # id twice
    with pytest.raises(TypeError):
        ix.add(v, None, 0, [[1], [2], [3]])                             # tags keyword-only
    assert state() == before
    # build checks its tags before building
    with pytest.raises(ValueError, match="for 50 vectors"):
        avq.Index.build(base[:50], "squared_l2", tags=[[1]] * 49)
    with pytest.raises(ValueError, match="out of range"):
        avq.Index.build(base[:50], "squared_l2", tags=[[-1]] * 50)
    with pytest.raises(ValueError):
        avq.Index.build(base[:50], "squared_l2", tags=[too_many[0]] + [[]] * 49)
    with pytest.raises(TypeError):
        avq.Quantizer.train(base[:50], "squared_l2", tags=[[1]] * 50)   # not a train keyword
    ix.close()


def test_closed_index_refuses_tag_calls(data):
    base, query, tags = data
    ix = build(base[:100], "squared_l2", tags[:100])
    ix.close()
    for call in (lambda: ix.get_tags(0), lambda: ix.tag_count(0),
                 lambda: ix.set_tags([0], [[1]]),
                 lambda: ix.search(query[0], filter=[1]),
                 lambda: ix.search_batched(query, filters=[None] * NQ)):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_no_reference_leaks(data):
    base, query, tags = data
    with build(base[:300], "squared_l2", tags[:300]) as ix:
        def keep(i):
            return i % 2 == 0
        f = avq.Filter.allow_ids(range(50))
        before = sys.getrefcount(keep), sys.getrefcount(f)
        for _ in range(200):
            ix.search(query[0], k=3, filter=keep)
            ix.search(query[0], k=3, filter=f)
            ix.search_batched(query, k=3, filters=[keep, f] * (NQ // 2))
            try:
                ix.search(query[0], k=3, filter=lambda i: 1 / 0)
            except ZeroDivisionError:
                pass
        gc.collect()
        assert (sys.getrefcount(keep), sys.getrefcount(f)) == before
