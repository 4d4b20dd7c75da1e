"""The CLI side of true MIPS (issue 18): `avq build --leaf-spread` and what
`avq info` says about the leaf ranking.  The library side (defaults, ranking,
file format) is tests/test_leaf_spread.c."""

import numpy as np
import pytest

from conftest import datalib, ok, refused


@pytest.fixture
def rows(tmp_path):
    """25,000 clustered rows of dim 16: with varied norms (raw.fvecs) and
    the same rows normalised (unit.fvecs); above the exact tier."""
    rng = np.random.default_rng(5)
    centers = rng.standard_normal((30, 16))
    x = centers[rng.integers(0, 30, 25000)] + 0.5 * rng.standard_normal((25000, 16))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    raw = unit * np.exp(0.5 * rng.standard_normal((25000, 1)))
    paths = {}
    for name, data in (("raw", raw), ("unit", unit)):
        paths[name] = str(tmp_path / f"{name}.fvecs")
        datalib.write_fvecs(paths[name], data.astype(np.float32))
    paths["dir"] = tmp_path
    return paths


def partition_line(run_avq, index):
    info = ok(run_avq("info", index)).stdout
    lines = [line for line in info.splitlines() if line.startswith("partition")]
    assert len(lines) == 1, info
    return lines[0]


def test_auto_ranks_by_spread_only_where_the_norms_vary(run_avq, rows):
    raw, unit = str(rows["dir"] / "raw.avq"), str(rows["dir"] / "unit.avq")
    ok(run_avq("build", "--base", rows["raw"], "--metric", "ip", "--leaves", "8", "--out", raw))
    ok(run_avq("build", "--base", rows["unit"], "--metric", "ip", "--leaves", "8", "--out", unit))
    assert "leaves ranked by center score + 2 |q| spread" in partition_line(run_avq, raw)
    assert partition_line(run_avq, unit).endswith("leaves ranked by center score")


def test_an_explicit_weight_is_kept_and_0_turns_it_off(run_avq, rows):
    a, b = str(rows["dir"] / "a.avq"), str(rows["dir"] / "b.avq")
    ok(run_avq("build", "--base", rows["unit"], "--metric", "ip", "--leaves", "8",
               "--leaf-spread", "1.5", "--out", a))
    assert "center score + 1.5 |q| spread" in partition_line(run_avq, a)
    ok(run_avq("build", "--base", rows["raw"], "--metric", "ip", "--leaves", "8",
               "--leaf-spread", "0", "--out", b))
    assert partition_line(run_avq, b).endswith("leaves ranked by center score")


def test_bad_values_and_l2_are_refused(run_avq, rows):
    out = str(rows["dir"] / "x.avq")
    for bad in ("-1", "nan", "two", ""):
        refused(run_avq("build", "--base", rows["raw"], "--metric", "ip", "--leaf-spread", bad,
                        "--out", out), "--leaf-spread")
    refused(run_avq("build", "--base", rows["raw"], "--metric", "l2", "--leaf-spread", "2",
                    "--out", out), "--leaf-spread", "ip and cos")
    # 0 is what l2 does anyway: accepted
    ok(run_avq("build", "--base", rows["raw"], "--metric", "l2", "--leaves", "8",
               "--leaf-spread", "0", "--out", out))


def test_help_names_the_option_and_its_default(run_avq):
    text = ok(run_avq("build", "--help")).stdout
    assert "--leaf-spread Z|auto" in text
    assert "default auto for ip: 2" in text
