"""avq-paper --int8-aware (issue 19): the base encoded as int8 rows, rounded
to nearest and score-aware, scored like the PQ codes.

The int8-nearest row is checked against an independent numpy oracle (the
index's per-dimension scales max|x_j|/127, round half away from zero, exact
inner products against the same ground truth), so the rows are measured on
the same queries and scoring path as the PQ variants.  The score-aware rows
are checked for what the rounding promises on this fixed data: identical
to nearest where eta is 1, a smaller top-1 inner-product error where eta is
5.  The program is build/avq-paper ($AVQ_PAPER_BIN under `make test`).
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ok, refused

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import datalib  # noqa: E402

N, NQ, DIM = 1500, 100, 16


def paper_bin():
    path = os.environ.get("AVQ_PAPER_BIN") or os.path.join(REPO, "build", "avq-paper")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built ('make paper')")
    return path


def run_paper(*args, timeout=300):
    return subprocess.run([paper_bin(), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Gaussian base and queries (seed 3: one of eight seeds on which the
    score-aware top-1 error at eta 5 was 7-25 % below nearest's)."""
    d = tmp_path_factory.mktemp("paper_int8")
    rng = np.random.default_rng(3)
    base = rng.standard_normal((N, DIM)).astype(np.float32)
    query = rng.standard_normal((NQ, DIM)).astype(np.float32)
    datalib.write_fvecs(str(d / "b.fvecs"), base)
    datalib.write_fvecs(str(d / "q.fvecs"), query)
    return d, base, query


COMMON = ("--queries", "0", "--sample", str(N), "--iters", "2", "--dims-per-block", "4",
          "--threads", "1")


def rows_by_name(path):
    with open(path, newline="") as f:
        return {r["variant"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def classic(data):
    """The threshold run: T = 0.2 (eta clamps to 1 at d = 16) and 0.5 (eta 5)."""
    d, _, _ = data
    out = d / "classic.csv"
    r = ok(run_paper("--base", d / "b.fvecs", "--query", d / "q.fvecs", *COMMON,
                     "--thresholds", "0.2,0.5", "--int8-aware", "--csv", out))
    return r, rows_by_name(out)


def test_int8_rows_present(classic):
    r, rows = classic
    int8 = {k: v for k, v in rows.items() if v["codes"] == "int8"}
    assert set(int8) == {"int8 nearest", "int8 anisotropic T=0.2", "int8 anisotropic T=0.5"}
    for v in int8.values():
        assert int(v["bits"]) == 8 * DIM
        for col in ("recall1_at_1", "recall1_at_10", "recall_at_10"):
            assert 0.0 <= float(v[col]) <= 1.0
    assert all(v["codes"] == "pq4" for k, v in rows.items() if k not in int8)
    for name in int8:
        assert name in r.stdout  # the printed table has them too
    assert float(rows["int8 anisotropic T=0.5"]["eta"]) == pytest.approx(5.0, rel=1e-4)


def test_int8_nearest_matches_numpy(data, classic):
    """Same queries, same ground truth, score <q, decoded row>."""
    _, base, query = data
    _, rows = classic
    x = base / np.linalg.norm(base, axis=1, keepdims=True)
    q = query / np.linalg.norm(query, axis=1, keepdims=True)
    scale = (np.abs(x).max(axis=0) / np.float32(127.0)).astype(np.float32)
    v = x / scale
    codes = np.clip(np.trunc(v + np.copysign(np.float32(0.5), v)), -127, 127)
    dec = (codes * scale).astype(np.float64)
    exact = q.astype(np.float64) @ x.astype(np.float64).T
    est = q.astype(np.float64) @ dec.T
    top1 = exact.argmax(axis=1)
    rank_of_top1 = (est > est[np.arange(NQ), top1][:, None]).sum(axis=1)
    r1_10 = float((rank_of_top1 < 10).mean())
    ex1, es1 = exact[np.arange(NQ), top1], est[np.arange(NQ), top1]
    err = float(np.mean(np.abs(es1 - ex1) / np.abs(ex1)))
    got = rows["int8 nearest"]
    assert float(got["recall1_at_10"]) == pytest.approx(r1_10, abs=1.5 / NQ)
    assert float(got["top1_rel_err"]) == pytest.approx(err, rel=0.02)


def test_score_aware_rounding(classic):
    _, rows = classic
    near = rows["int8 nearest"]
    flat = rows["int8 anisotropic T=0.2"]   # eta 1: the nearest rounding itself
    aware = rows["int8 anisotropic T=0.5"]  # eta 5
    for col in ("recall1_at_1", "recall1_at_10", "recall_at_10", "top1_rel_err"):
        assert flat[col] == near[col]
    assert float(aware["top1_rel_err"]) < float(near["top1_rel_err"])
    # 8 x d bits are far finer than 4-bit PQ at d/4 blocks
    assert float(near["recall1_at_10"]) > float(rows["reconstruction"]["recall1_at_10"]) + 0.2


def test_int8_with_weights(data):
    """--weights: the int8 rows get the tuning / held-out columns and their
    own group (8 x d bits, 'nearest' for the baseline) in the summary."""
    d, _, _ = data
    out = d / "weights.csv"
    r = ok(run_paper("--base", d / "b.fvecs", "--query", d / "q.fvecs", *COMMON,
                     "--weights", "step:0.5,pow:2", "--int8-aware", "--csv", out))
    rows = rows_by_name(out)
    for name in ("int8 nearest", "int8 step T=0.5", "int8 pow P=2"):
        v = rows[name]
        tune, held = float(v["tune_r1_at_10"]), float(v["held_r1_at_10"])
        assert 0.0 <= tune <= 1.0 and 0.0 <= held <= 1.0
        # even and odd halves of NQ = 100 queries: the whole is their mean
        assert float(v["recall1_at_10"]) == pytest.approx((tune + held) / 2, abs=1e-6)
    summary = r.stdout.split("# best value per weight")[1]
    assert any(line.split()[:3] == [str(8 * DIM), "nearest", "int8"]
               for line in summary.splitlines()), summary


def test_help_mentions_int8_aware():
    r = ok(run_paper("--help"))
    assert "--int8-aware" in r.stdout


def test_refusals(data):
    d, _, _ = data
    args = ("--base", d / "b.fvecs", "--query", d / "q.fvecs", *COMMON)
    refused(run_paper(*args, "--int8-aware", "--codebook-update", "1"),
            "--int8-aware and --codebook-update do not combine", code=2)
    refused(run_paper(*args, "--int8-aware=yes"), "--int8-aware=yes", code=2)
