"""The Python side of true MIPS (issue 18): the leaf_spread_z build keyword
(Index.build, Quantizer.train, Index.retrain) and build_params showing the
value the index resolved to.  The library side is tests/test_leaf_spread.c."""

import sys

import numpy as np
import pytest

from conftest import avq_module_dir

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    """25k clustered rows of dim 16 with log-normal norms, and the same rows
    normalised."""
    rng = np.random.default_rng(8)
    centers = rng.standard_normal((30, 16))
    x = centers[rng.integers(0, 30, 25000)] + 0.5 * rng.standard_normal((25000, 16))
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    raw = (unit * np.exp(0.5 * rng.standard_normal((25000, 1)))).astype(np.float32)
    return raw, unit


def test_auto_follows_the_norms(rows):
    raw, unit = rows
    assert avq.Index.build(raw, "ip", num_leaves=8).build_params["leaf_spread_z"] == 2.0
    assert avq.Index.build(unit, "ip", num_leaves=8).build_params["leaf_spread_z"] == 0.0
    assert avq.Index.build(raw, "cosine", num_leaves=8).build_params["leaf_spread_z"] == 0.0
    for auto in ("auto", None):
        index = avq.Index.build(raw, "ip", num_leaves=8, leaf_spread_z=auto)
        assert index.build_params["leaf_spread_z"] == 2.0


def test_an_explicit_weight_is_kept_everywhere(rows):
    raw, _ = rows
    index = avq.Index.build(raw, "ip", num_leaves=8, leaf_spread_z=1.5)
    assert index.build_params["leaf_spread_z"] == 1.5
    q = avq.Quantizer.train(raw, "ip", num_leaves=8, leaf_spread_z=0)
    shard = avq.Index(q)
    shard.add(raw[:1000])
    assert shard.build_params["leaf_spread_z"] == 0.0
    again = index.retrain(leaf_spread_z=0.5)
    assert again.build_params["leaf_spread_z"] == 0.5
    # a retrain that does not say keeps the index's weight
    assert index.retrain().build_params["leaf_spread_z"] == 1.5


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf"), "two", ""])
def test_bad_weights_are_refused(rows, bad):
    raw, _ = rows
    with pytest.raises(ValueError, match="leaf_spread_z"):
        avq.Index.build(raw, "ip", num_leaves=8, leaf_spread_z=bad)


def test_l2_refuses_a_weight(rows):
    raw, _ = rows
    with pytest.raises(ValueError, match="L2"):
        avq.Index.build(raw, "l2", num_leaves=8, leaf_spread_z=2)
    assert avq.Index.build(raw, "l2", num_leaves=8, leaf_spread_z=0).build_params[
        "leaf_spread_z"] == 0.0
