"""The Python module ready for users (issue 17, items 5, 6, 7 and 10).

Item 5: Index.tune, sampling the whole query set.  Item 6: every metric
alias of the C library's one table, in any case, everywhere (Index.build,
Quantizer.train, exact_search, the ScaNN builder); leaves_to_search above
the leaf count means all leaves.  Item 7: default_threads() follows the
affinity mask.  Item 10: a (1, dim) query is one query, len(index),
build_params resolved, a progress bar by default on a terminal.
"""

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import avq_module_dir

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402


@pytest.fixture(scope="module")
def clustered():
    """21k clustered points (above the exact tier) and 400 queries near them."""
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((40, 24))
    base = centers[rng.integers(0, 40, 21000)] + 0.35 * rng.standard_normal((21000, 24))
    query = centers[rng.integers(0, 40, 400)] + 0.35 * rng.standard_normal((400, 24))
    return base.astype(np.float32), query.astype(np.float32)


@pytest.fixture(scope="module")
def index(clustered):
    ix = avq.Index.build(clustered[0], "cosine", num_leaves=40, progress=None)
    yield ix
    ix.close()


@pytest.fixture(scope="module")
def truth(clustered):
    return avq.exact_search(clustered[0], clustered[1], 10, "cosine")[0]


# ---------------------------------------------------------------------------
# item 10
# ---------------------------------------------------------------------------

def test_one_row_2d_query_is_one_query(index, clustered):
    q = clustered[1]
    ids1, sc1 = index.search(q[3], k=7)
    ids2, sc2 = index.search(q[3:4], k=7)
    assert ids1.shape == (7,) and ids2.shape == (1, 7) and sc2.shape == (1, 7)
    np.testing.assert_array_equal(ids2[0], ids1)
    np.testing.assert_array_equal(sc2[0], sc1)
    bi, bs = index.search_batched(q[3:4], k=7)
    np.testing.assert_array_equal(bi, ids2)
    with pytest.raises(ValueError, match="search_batched"):
        index.search(q[3:5], k=7)


def test_len(clustered):
    base = clustered[0][:500]
    with avq.Index.build(base, "l2") as ix:
        assert len(ix) == 500 == ix.size
        ix.remove([0, 1, 2])
        assert len(ix) == 497
        ix.add(base[:2])
        assert len(ix) == 499


def test_build_params_are_resolved(index, clustered):
    p = index.build_params
    assert p["num_leaves"] == index.num_leaves == 40
    assert p["threads"] == avq.default_threads() >= 1
    assert p["training_sample"] == 100000
    assert p["spherical"] is True
    # auto leaves: the number the index really has, not 0
    with avq.Index.build(clustered[0], "l2", progress=None) as ix:
        p = ix.build_params
        assert p["num_leaves"] == ix.num_leaves == 1 and p["spherical"] is False
        assert p["threshold"] is None            # no anisotropic loss for l2
    with avq.Index.build(clustered[0], "ip", threads=1, training_sample=5000,
                         progress=None) as ix:
        assert ix.build_params["threads"] == 1 and ix.build_params["training_sample"] == 5000


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shown_by_default_on_a_terminal(clustered, monkeypatch):
    base = clustered[0][:3000]
    monkeypatch.setattr(avq, "_PROGRESS_DELAY", 0.0)
    tty = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", tty)
    avq.Index.build(base, "cosine", brute_force_below=0, num_leaves=8).close()
    assert "avq:" in tty.getvalue() and "kmeans" in tty.getvalue(), tty.getvalue()
    # progress=None: silent, even on a terminal
    tty = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", tty)
    avq.Index.build(base, "cosine", brute_force_below=0, num_leaves=8, progress=None).close()
    assert tty.getvalue() == ""
    # not a terminal (a log, a pipe): nothing
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    avq.Index.build(base, "cosine", brute_force_below=0, num_leaves=8).close()
    avq.Quantizer.train(base, "cosine", brute_force_below=0, num_leaves=8)
    assert log.getvalue() == ""


def test_default_progress_waits_before_showing(clustered, monkeypatch):
    """Quick builds print nothing: the bar appears after _PROGRESS_DELAY s."""
    tty = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", tty)
    monkeypatch.setattr(avq, "_PROGRESS_DELAY", 3600.0)
    avq.Index.build(clustered[0][:3000], "cosine", brute_force_below=0, num_leaves=8).close()
    assert tty.getvalue() == ""


# ---------------------------------------------------------------------------
# item 5
# ---------------------------------------------------------------------------

def test_tune_returns_settings_that_reach_the_target(index, clustered, truth):
    r = index.tune(clustered[1], 0.9, truth, runs=1)
    assert r["reached"] and not r["exact"]
    assert r["tune_queries"] == 200 and r["held_out_queries"] == 200
    ids, _ = index.search_batched(clustered[1], 10, r["leaves_to_search"], r["pre_reorder"])
    assert avq.recall(ids[0::2], truth[0::2]) == pytest.approx(r["recall"])
    assert avq.recall(ids[1::2], truth[1::2]) == pytest.approx(r["recall_held_out"])
    assert r["recall"] >= 0.9
    assert r["candidates"] and all(c["pre_reorder"] % 10 == 0 for c in r["candidates"])


def test_tune_samples_evenly(index, clustered, truth):
    """gt is right only for every 10th query: an even sample of 40 of 400
    takes rows 0, 10, 20, ... and reaches the target; the first 40 rows or
    a random sample would hold few right rows."""
    wrong = np.roll(truth, 1, axis=0)
    mixed = np.where((np.arange(len(truth)) % 10 == 0)[:, None], truth, wrong)
    r = index.tune(clustered[1], 0.8, mixed, max_queries=40, runs=1)
    assert r["reached"] and r["tune_queries"] == 20, r
    r = index.tune(clustered[1], 0.8, mixed, max_queries=40, seed=7, runs=1)
    assert not r["reached"], r


def test_tune_truth_from_the_index(index, clustered, truth):
    a = index.tune(clustered[1], 0.9, truth, runs=1)
    b = index.tune(clustered[1], 0.9, runs=1)
    key = [(c["leaves_to_search"], c["pre_reorder"], c["recall"]) for c in a["candidates"]]
    assert key == [(c["leaves_to_search"], c["pre_reorder"], c["recall"])
                   for c in b["candidates"]]


def test_tune_errors(index, clustered, truth):
    with avq.Index.build(clustered[0], "cosine", num_leaves=20, reorder="int8",
                         progress=None) as ix8:
        with pytest.raises(avq.Error, match="true neighbours"):
            ix8.tune(clustered[1])
        assert ix8.tune(clustered[1], 0.5, truth, runs=1)["leaves_to_search"] >= 1
    with pytest.raises(ValueError, match="target_recall"):
        index.tune(clustered[1], 1.5)
    with pytest.raises(ValueError, match="rows"):
        index.tune(clustered[1], 0.9, truth[:10])
    with pytest.raises(ValueError, match="neighbours per query"):
        index.tune(clustered[1], 0.9, truth[:, :5])
    with pytest.raises(TypeError, match="integer"):
        index.tune(clustered[1], 0.9, truth.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        index.tune(clustered[1][:, :5])


def test_tune_exact_tier(clustered):
    with avq.Index.build(clustered[0][:2000], "cosine") as ix:
        r = ix.tune(clustered[1], 0.9, runs=1)
        assert r["exact"] and r["recall_held_out"] == 1.0


# ---------------------------------------------------------------------------
# item 6
# ---------------------------------------------------------------------------

ALIASES = {"dot_product": ["dot_product", "dot", "ip", "inner_product", "mips", "DOT", "Mips"],
           "squared_l2": ["squared_l2", "l2", "euclidean", "sqeuclidean", "L2", "EUCLIDEAN"],
           "cosine": ["cosine", "cos", "angular", "Cosine", "ANGULAR"]}


def test_the_one_table():
    assert set(avq.METRIC_ALIASES.values()) == set(avq.METRICS)
    for canonical, names in ALIASES.items():
        for name in names:
            assert avq.parse_metric(name) == canonical
            assert avq.METRIC_ALIASES.get(name.lower(), canonical) == canonical
    assert sorted(avq.METRIC_ALIASES) == sorted({n.lower() for ns in ALIASES.values() for n in ns})
    with pytest.raises(ValueError, match="angular"):
        avq.parse_metric("hamming")
    with pytest.raises(TypeError):
        avq.parse_metric(3)


@pytest.mark.parametrize("canonical", sorted(ALIASES))
def test_aliases_everywhere(clustered, canonical):
    base, query = clustered[0][:400], clustered[1][:20]
    ref = avq.exact_search(base, query, 5, canonical)[0]
    for name in ALIASES[canonical]:
        np.testing.assert_array_equal(avq.exact_search(base, query, 5, name)[0], ref)
        with avq.Index.build(base, name) as ix:
            assert ix.metric == canonical
        assert avq.Quantizer.train(base, name, brute_force_below=0, num_leaves=2).metric == \
            canonical
        s = avq.builder(base, 5, name).score_brute_force().build()
        with s:
            assert s.index.metric == canonical
            np.testing.assert_array_equal(s.search_batched(query)[0], ref)


def test_cli_lists_the_same_table(avq_bin):
    out = subprocess.run([avq_bin, "--help"], capture_output=True, text=True, check=True).stdout
    listing = re.search(r"metrics \(any case\): (.*)", out).group(1)
    names = [n for group in listing.split(", ") for n in group.split("|")]
    assert sorted(names) == sorted(avq.METRIC_ALIASES)


def test_leaves_to_search_above_the_leaf_count_is_all_leaves(index, clustered):
    q = clustered[1]
    all_ids, all_sc = index.search_batched(q, 10, leaves_to_search=index.num_leaves)
    for leaves in (index.num_leaves + 1, 10 ** 6):
        ids, sc = index.search_batched(q, 10, leaves_to_search=leaves)
        np.testing.assert_array_equal(ids, all_ids)
        one, _ = index.search(q[0], 10, leaves_to_search=leaves)
        np.testing.assert_array_equal(one, all_ids[0])
    # the ScaNN builder accepts it too
    with avq.builder(clustered[0], 10, "cosine").tree(4, 50).score_ah(2).reorder(40).build() as s:
        ids, _ = s.search_batched(q[:5])
        ref, _ = s.search_batched(q[:5], leaves_to_search=4)
        np.testing.assert_array_equal(ids, ref)


# ---------------------------------------------------------------------------
# item 7
# ---------------------------------------------------------------------------

def test_default_threads_follow_the_affinity_mask():
    cpus = sorted(os.sched_getaffinity(0))
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); os.sched_setaffinity(0, {%d}); "
            "import avq, numpy as np; "
            "ix = avq.Index.build(np.ones((50, 4), np.float32) + np.eye(50, 4, dtype=np.float32),"
            " 'l2'); print(avq.default_threads(), ix.build_params['threads'])" % cpus[0])
    out = subprocess.run([sys.executable, "-c", code, avq_module_dir()], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["1", "1"], out
    assert 1 <= avq.default_threads() <= len(cpus)
