"""The CLI side of SOAR spilling (issue 15): `avq build --spill
[--spill-lambda L]`, what `avq info` says, and searching a spilled index.
The library side (copies, de-duplication, changes, file format) is
tests/test_spill.c."""

import numpy as np
import pytest

from conftest import datalib, ok, refused


@pytest.fixture
def rows(tmp_path):
    """25,000 clustered unit rows of dim 16 (above the exact tier) and 50
    queries drawn the same way."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((30, 16))
    x = centers[rng.integers(0, 30, 25050)] + 0.5 * rng.standard_normal((25050, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    paths = {"dir": tmp_path, "base": str(tmp_path / "base.fvecs"),
             "query": str(tmp_path / "query.fvecs")}
    datalib.write_fvecs(paths["base"], x[:25000].astype(np.float32))
    datalib.write_fvecs(paths["query"], x[25000:].astype(np.float32))
    return paths


def info_lines(run_avq, index, prefix):
    info = ok(run_avq("info", index)).stdout
    return [line for line in info.splitlines() if line.startswith(prefix)]


def test_spill_is_built_shown_and_searched(run_avq, rows):
    d = rows["dir"]
    plain, spilled = str(d / "plain.avq"), str(d / "spill.avq")
    ok(run_avq("build", "--base", rows["base"], "--metric", "cos", "--leaves", "16",
               "--out", plain))
    ok(run_avq("build", "--base", rows["base"], "--metric", "cos", "--leaves", "16",
               "--spill", "--spill-lambda", "0.5", "--out", spilled))
    assert info_lines(run_avq, plain, "spilling") == []
    assert info_lines(run_avq, spilled, "spilling") == [
        "spilling          every vector in 2 leaves (SOAR, lambda 0.5): 25000 copies"]
    live = info_lines(run_avq, spilled, "live")
    assert live and live[0].split()[1] == "25000", live
    ok(run_avq("gt", "--base", rows["base"], "--query", rows["query"], "--k", 10,
               "--metric", "cos", "--out", str(d / "gt.ivecs")))
    recall = {}
    for name, index in (("plain", plain), ("spill", spilled)):
        out = str(d / f"{name}.ivecs")
        ok(run_avq("search", "--index", index, "--query", rows["query"], "--k", 10,
                   "--leaves", 1, "--reorder", 500, "--out", out))
        ids = datalib.read_ivecs(out)
        for row in ids:  # never one vector twice
            assert len(set(row.tolist())) == len(row), row
        r = ok(run_avq("eval", "--result", out, "--gt", str(d / "gt.ivecs"), "--k", 10))
        recall[name] = float(r.stdout.split()[1])
    # one leaf of 16, re-ranking enough that the codes do not limit recall:
    # the second copies are what a spilled index adds (0.928 -> 0.980)
    assert recall["spill"] > recall["plain"] + 0.02, recall


def test_bad_spill_options_are_refused(run_avq, rows):
    out = str(rows["dir"] / "x.avq")
    refused(run_avq("build", "--base", rows["base"], "--metric", "cos", "--spill-lambda", "1",
                    "--out", out), "--spill-lambda", "--spill")
    for bad in ("-1", "nan", "inf", "one", ""):
        refused(run_avq("build", "--base", rows["base"], "--metric", "cos", "--spill",
                        "--spill-lambda", bad, "--out", out), "--spill-lambda")
    r = ok(run_avq("build", "--help"))
    assert "--spill " in r.stdout and "--spill-lambda L" in r.stdout
