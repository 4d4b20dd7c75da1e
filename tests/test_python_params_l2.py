"""Anisotropic settings for squared_l2 from Python (issue 17): L2 ignores
them (its codes minimise the reconstruction error), so the library refuses
an explicit one and the binding passes its message on as ValueError naming
the keyword; the values that mean "the default" still build, for
Index.build, Quantizer.train and Index.retrain alike."""

import sys

import numpy as np
import pytest

from conftest import avq_module_dir

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(17)
    return rng.standard_normal((1500, 8)).astype(np.float32)


# keyword arguments L2 would ignore, and the name the error must carry
IGNORED = [
    ({"threshold": 0.2}, "threshold"),
    ({"threshold": 0.0}, "threshold"),
    ({"eta": 4.0}, "eta"),
    ({"threshold_kind": "relative"}, "threshold_kind"),
    ({"threshold_kind": "absolute"}, "threshold_kind"),
    ({"avq_center_eta": 2.5}, "avq_center_eta"),
    ({"weight": "pow:2"}, "weight"),
    ({"reorder": "int8", "int8_aware": True}, "int8_aware"),
]

# every one written out with the value that means "the default"
EXPLICIT_DEFAULTS = {"threshold": None, "eta": 0.0, "threshold_kind": "auto",
                     "avq_center_eta": 0.0, "weight": "step", "int8_aware": False,
                     "leaf_spread_z": "auto"}


@pytest.mark.parametrize("kw,name", IGNORED, ids=[n + str(i) for i, (_, n) in enumerate(IGNORED)])
def test_ignored_setting_refused(rows, kw, name):
    with pytest.raises(ValueError, match=name) as e:
        avq.Index.build(rows, "squared_l2", brute_force_below=1000, threads=1, **kw)
    assert "L2" in str(e.value)
    with pytest.raises(ValueError, match=name):
        avq.Quantizer.train(rows, "squared_l2", brute_force_below=1000, threads=1, **kw)
    ix = avq.Index.build(rows, "squared_l2", brute_force_below=1000, threads=1)
    with pytest.raises(ValueError, match=name):
        ix.retrain(**kw)


def test_explicit_defaults_build(rows):
    ix = avq.Index.build(rows, "squared_l2", brute_force_below=1000, threads=1,
                         **EXPLICIT_DEFAULTS)
    assert len(ix) == len(rows)
    # retraining with what the index says it was built with works too
    again = ix.retrain()
    assert len(again) == len(rows)
    q = avq.Quantizer.train(rows, "squared_l2", brute_force_below=1000, threads=1,
                            **EXPLICIT_DEFAULTS)
    assert q is not None


@pytest.mark.parametrize("metric", ["dot_product", "cosine"])
def test_same_settings_take_effect_for_inner_products(rows, metric):
    # the refusal is L2's alone: these settings mean something here
    for kw, _ in IGNORED:
        ix = avq.Index.build(rows, metric, brute_force_below=1000, threads=1, **kw)
        assert len(ix) == len(rows)


def test_scann_builder_l2(rows):
    # score_ah's default threshold is for inner products: squared_l2 leaves
    # it out and builds (it failed once the library refused the threshold)
    b = avq.builder(rows, 10, "squared_l2").tree(4, 2).score_ah(2).reorder(20)
    assert b.build_params()["threshold"] is None
    s = b.build()
    ids, _ = s.search_batched(rows[:3])
    assert ids.shape == (3, 10)
    s.close()
    for none in (None, float("nan")):
        assert avq.builder(rows, 10, "l2").score_ah(2, none).build_params()["threshold"] is None
    # an explicit threshold, even the default's value, cannot be honoured
    for t in (0.2, 0.5, 0.0):
        with pytest.raises(ValueError, match="anisotropic_quantization_threshold"):
            avq.builder(rows, 10, "squared_l2").score_ah(2, t)
        with pytest.raises(ValueError, match="anisotropic_quantization_threshold"):
            avq.builder(rows, 10, "euclidean").score_ah(2, anisotropic_quantization_threshold=t)
    # the inner-product metrics keep the default T
    assert avq.builder(rows, 10, "dot_product").score_ah(2).build_params()["threshold"] == 0.2
    with pytest.raises(ValueError, match="avq_center_eta"):
        avq.builder(rows, 10, "squared_l2").tree(4, 2, avq=2.5).score_ah(2).build()
