"""Score-aware weights and int8 rows from Python (issue 19): the weight and
int8_aware keywords of Index.build / Quantizer.train / Index.retrain reach
the library, are kept by the index (build_params, save/load) and bad values
are refused with the library's rules."""

import os
import sys

import numpy as np
import pytest

from conftest import avq_module_dir

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    return x * rng.uniform(1.0, 5.0, size=(3000, 1)).astype(np.float32)


def test_default_is_the_step(rows):
    ix = avq.Index.build(rows, "dot_product", brute_force_below=100)
    assert ix.build_params["weight"] == "step" and ix.build_params["int8_aware"] is False


def test_weight_and_int8_kept(rows, tmp_path):
    ix = avq.Index.build(rows, "dot_product", brute_force_below=100, weight="exp:3",
                         threshold_kind="absolute", reorder="int8", int8_aware=True)
    assert ix.build_params["weight"] == "exp:3" and ix.build_params["int8_aware"] is True
    path = os.path.join(tmp_path, "w.avq")
    ix.save(path)
    back = avq.load(path)
    assert back.build_params == ix.build_params
    ids, _ = ix.search_batched(rows[:5], k=10)
    ids2, _ = back.search_batched(rows[:5], k=10)
    assert np.array_equal(ids, ids2)
    # another weight chooses other codes: the searches' scores differ somewhere
    other = avq.Index.build(rows, "dot_product", brute_force_below=100, reorder="none")
    pw = avq.Index.build(rows, "dot_product", brute_force_below=100, reorder="none",
                         weight="pow:20")
    _, s1 = other.search_batched(rows[:50], k=10)
    _, s2 = pw.search_batched(rows[:50], k=10)
    assert not np.array_equal(s1, s2)


@pytest.mark.parametrize("bad", ["pow", "step:1", "logistic:0", "exp:-1", "exp:x", "cubic:2"])
def test_bad_weight_refused(rows, bad):
    with pytest.raises(ValueError, match="weight"):
        avq.Index.build(rows, "dot_product", brute_force_below=100, weight=bad)


def test_weight_type_and_conflicts(rows):
    with pytest.raises(TypeError, match="weight"):
        avq.Index.build(rows, "dot_product", brute_force_below=100, weight=3)
    with pytest.raises(ValueError, match="eta"):
        avq.Index.build(rows, "dot_product", brute_force_below=100, weight="pow:2", eta=3.0)
    with pytest.raises(ValueError, match="weight"):
        avq.Index.build(rows, "squared_l2", brute_force_below=100, weight="pow:2")
