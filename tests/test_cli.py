"""End-to-end tests of the avq command-line tool.

Each test runs the real binary on tiny generated data and checks its
answers against a numpy brute-force oracle (conftest.reference_topk), or
checks that bad input is refused the way a user needs: a non-zero exit
status (never a signal), a message on stderr that names the problem, and
no traceback-like crash.
"""

import re
import struct

import numpy as np
import pytest

from conftest import assert_topk_equal, datalib, reference_topk, ok, refused

METRICS = ["ip", "l2", "cos"]


# --------------------------------------------------------------------------
# help
# --------------------------------------------------------------------------

def listed_commands(run_avq):
    out = ok(run_avq("--help")).stdout
    section = out.split("commands:", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in section.strip().splitlines()]


def test_top_level_help(run_avq):
    r = ok(run_avq("--help"))
    cmds = listed_commands(run_avq)
    assert {"gt", "search", "eval"} <= set(cmds), r.stdout
    assert "usage" in r.stdout


def test_every_command_has_help(run_avq):
    for cmd in listed_commands(run_avq):
        r = ok(run_avq(cmd, "--help"))
        assert "usage" in r.stdout.lower(), f"{cmd}: {r.stdout}"
        assert "--" in r.stdout, f"{cmd} --help names no options"


@pytest.mark.parametrize("cmd,options", [
    ("gt", ["--base", "--query", "--k", "--metric", "--out", "--distances", "--threads"]),
    ("search", ["--exact", "--base", "--query", "--metric", "--k", "--out", "--scores",
                "--threads"]),
    ("eval", ["--result", "--gt", "--k", "--recall1-at"]),
])
def test_help_mentions_options(run_avq, cmd, options):
    out = ok(run_avq(cmd, "--help")).stdout
    for opt in options:
        assert opt in out, f"avq {cmd} --help does not mention {opt}"


def test_no_command_and_unknown_command(run_avq):
    r = run_avq()
    assert r.returncode == 2 and "usage" in r.stderr
    refused(run_avq("frobnicate"), "unknown command")


# --------------------------------------------------------------------------
# ground truth and exact search against numpy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("fmt", ["fvecs", "npy"])
def test_gt_matches_numpy(run_avq, tiny, metric, fmt):
    k = 10
    base, query = (tiny.base_fvecs, tiny.query_fvecs) if fmt == "fvecs" else \
        (tiny.base_npy, tiny.query_npy)
    ok(run_avq("gt", "--base", base, "--query", query, "--k", k, "--metric", metric,
               "--out", tiny.path("gt.ivecs"), "--distances", tiny.path("gt.fvecs")))
    ids = datalib.read_ivecs(tiny.path("gt.ivecs"))
    scores = datalib.read_fvecs(tiny.path("gt.fvecs"))
    ref_ids, ref_scores = reference_topk(tiny.base, tiny.query, k + 1, metric)
    assert ids.shape == (len(tiny.query), k)
    assert_topk_equal(ids, scores, ref_ids, ref_scores)


def test_gt_whole_base_and_single_threaded(run_avq, tiny):
    """k = n (every vector ranked) and --threads 1 give the same answer."""
    n = len(tiny.base)
    ok(run_avq("gt", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs, "--k", n,
               "--metric", "l2", "--threads", 1, "--out", tiny.path("all.ivecs")))
    ids = datalib.read_ivecs(tiny.path("all.ivecs"))
    assert all(sorted(row) == list(range(n)) for row in ids)
    ref_ids, _ = reference_topk(tiny.base, tiny.query, n, "l2")
    assert (ids[:, :5] == ref_ids[:, :5]).all()


@pytest.mark.parametrize("metric", METRICS)
def test_search_exact_equals_gt(run_avq, tiny, metric):
    k = 7
    ok(run_avq("gt", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs, "--k", k,
               "--metric", metric, "--out", tiny.path("gt.ivecs"),
               "--distances", tiny.path("gt.fvecs")))
    r = ok(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                   "--k", k, "--metric", metric, "--out", tiny.path("res.ivecs"),
                   "--scores", tiny.path("res.fvecs"), "--threads", 2))
    assert re.match(r"^qps [0-9.]+$", r.stdout.strip()), r.stdout
    assert (datalib.read_ivecs(tiny.path("res.ivecs")) ==
            datalib.read_ivecs(tiny.path("gt.ivecs"))).all()
    assert (datalib.read_fvecs(tiny.path("res.fvecs")) ==
            datalib.read_fvecs(tiny.path("gt.fvecs"))).all()


def test_outputs_in_npy_and_hdf5(run_avq, tiny):
    ok(run_avq("gt", "--base", tiny.base_npy, "--query", tiny.query_npy, "--k", 5,
               "--metric", "ip", "--out", tiny.path("gt.npy"),
               "--distances", tiny.path("gt_d.npy")))
    ids = np.load(tiny.path("gt.npy"))
    assert ids.dtype == np.int32 and ids.shape == (len(tiny.query), 5)
    ref_ids, ref_scores = reference_topk(tiny.base, tiny.query, 6, "ip")
    assert_topk_equal(ids, np.load(tiny.path("gt_d.npy")), ref_ids, ref_scores)
    # HDF5: both outputs into one file, then read back by the CLI itself
    h5 = tiny.path("gt.hdf5")
    ok(run_avq("gt", "--base", tiny.base_npy, "--query", tiny.query_npy, "--k", 5,
               "--metric", "ip", "--out", h5 + ":neighbors", "--distances", h5 + ":distances"))
    r = ok(run_avq("eval", "--result", h5, "--gt", tiny.path("gt.npy"), "--k", 5))
    assert r.stdout.strip() == "recall@5 1.0000"


def test_hdf5_input_ann_benchmarks_layout(run_avq, tiny):
    h5py = pytest.importorskip("h5py")
    path = tiny.path("ann.hdf5")
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=tiny.base)
        f.create_dataset("test", data=tiny.query.astype(np.float64))  # converted on read
    ok(run_avq("gt", "--base", path, "--query", path + ":test", "--k", 4, "--metric", "cos",
               "--out", tiny.path("gt.ivecs"), "--distances", tiny.path("gt.fvecs")))
    ref_ids, ref_scores = reference_topk(tiny.base, tiny.query, 5, "cos")
    assert_topk_equal(datalib.read_ivecs(tiny.path("gt.ivecs")),
                      datalib.read_fvecs(tiny.path("gt.fvecs")), ref_ids, ref_scores)


def test_bvecs_input(run_avq, tmp_path):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (120, 8), dtype=np.uint8)
    query = rng.integers(0, 256, (9, 8), dtype=np.uint8)
    for name, x in (("b.bvecs", base), ("q.bvecs", query)):
        with open(tmp_path / name, "wb") as f:
            for row in x:
                f.write(struct.pack("<i", x.shape[1]) + row.tobytes())
    ok(run_avq("gt", "--base", tmp_path / "b.bvecs", "--query", tmp_path / "q.bvecs",
               "--k", 3, "--metric", "l2", "--out", tmp_path / "gt.ivecs",
               "--distances", tmp_path / "gt.fvecs"))
    ref_ids, ref_scores = reference_topk(base.astype(np.float32), query.astype(np.float32), 4,
                                         "l2")
    assert_topk_equal(datalib.read_ivecs(str(tmp_path / "gt.ivecs")),
                      datalib.read_fvecs(str(tmp_path / "gt.fvecs")), ref_ids, ref_scores)


# --------------------------------------------------------------------------
# eval
# --------------------------------------------------------------------------

@pytest.fixture
def gt100(run_avq, tiny):
    """Ground truth with 20 neighbours per query, as an array and a file."""
    path = tiny.path("gt.ivecs")
    ok(run_avq("gt", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs, "--k", 20,
               "--metric", "ip", "--out", path))
    return datalib.read_ivecs(path), path


def eval_values(r):
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(recall\S*) ([0-9.]+)$", r.stdout, re.M)}


def test_eval_self_is_perfect(run_avq, gt100):
    _, path = gt100
    r = ok(run_avq("eval", "--result", path, "--gt", path, "--k", 10, "--recall1-at", 10))
    assert "recall@10 1.0000" in r.stdout
    assert eval_values(r) == {"recall@10": 1.0, "recall1@10": 1.0}


def test_eval_perturbed(run_avq, tiny, gt100):
    gt, path = gt100
    res = gt.copy()
    rng = np.random.default_rng(11)
    nq, k = gt.shape[0], 10
    # Replace a random number of each query's top-10 by ids outside its
    # top-20, and push the true nearest neighbour to rank 5 for some queries.
    outside = 10_000
    for q in range(nq):
        for pos in rng.choice(k, size=rng.integers(0, 6), replace=False):
            res[q, pos] = outside
            outside += 1
    moved = rng.random(nq) < 0.4
    for q in np.nonzero(moved)[0]:
        res[q, [0, 5]] = res[q, [5, 0]]
    datalib.write_ivecs(tiny.path("res.ivecs"), res)

    expected_recall = np.mean([len(set(res[q, :k]) & set(gt[q, :k])) / k for q in range(nq)])
    expected_r1_at_3 = np.mean([gt[q, 0] in res[q, :3] for q in range(nq)])
    r = ok(run_avq("eval", "--result", tiny.path("res.ivecs"), "--gt", path, "--k", k,
                   "--recall1-at", 3))
    values = eval_values(r)
    assert expected_recall < 1.0 and expected_r1_at_3 < 1.0
    assert values["recall@10"] == pytest.approx(expected_recall, abs=5e-5)
    assert values["recall1@3"] == pytest.approx(expected_r1_at_3, abs=5e-5)


def test_eval_mismatched_files(run_avq, tiny, gt100):
    gt, path = gt100
    datalib.write_ivecs(tiny.path("short.ivecs"), gt[:-1])
    refused(run_avq("eval", "--result", tiny.path("short.ivecs"), "--gt", path), "rows")
    datalib.write_ivecs(tiny.path("narrow.ivecs"), gt[:, :5])
    refused(run_avq("eval", "--result", tiny.path("narrow.ivecs"), "--gt", path, "--k", 10),
            "columns")
    refused(run_avq("eval", "--result", tiny.base_fvecs, "--gt", path), "integer")


# --------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------

def gt_args(tiny, base=None, query=None, k=5, metric="ip"):
    return ("gt", "--base", base or tiny.base_fvecs, "--query", query or tiny.query_fvecs,
            "--k", k, "--metric", metric, "--out", tiny.path("out.ivecs"))


def test_dimension_mismatch(run_avq, tiny):
    datalib.write_fvecs(tiny.path("q8.fvecs"), tiny.query[:, :8])
    refused(run_avq(*gt_args(tiny, query=tiny.path("q8.fvecs"))), "dimension mismatch", "16",
            "8")


def test_truncated_files(run_avq, tiny):
    data = open(tiny.base_fvecs, "rb").read()
    row = 4 + 4 * tiny.base.shape[1]
    for cut in (3, row + 10, len(data) - 1):
        with open(tiny.path("cut.fvecs"), "wb") as f:
            f.write(data[:cut])
        refused(run_avq(*gt_args(tiny, base=tiny.path("cut.fvecs"))), "cut.fvecs", "truncated")
    npy = open(tiny.base_npy, "rb").read()
    with open(tiny.path("cut.npy"), "wb") as f:
        f.write(npy[:-7])
    refused(run_avq(*gt_args(tiny, base=tiny.path("cut.npy"))), "cut.npy", "truncated")


def test_ragged_and_empty_files(run_avq, tiny):
    with open(tiny.path("ragged.fvecs"), "wb") as f:
        f.write(struct.pack("<i3f", 3, 1, 2, 3) + struct.pack("<i2f", 2, 1, 2))
    refused(run_avq(*gt_args(tiny, base=tiny.path("ragged.fvecs"))), "row 1 has dimension 2")
    open(tiny.path("empty.fvecs"), "wb").close()
    refused(run_avq(*gt_args(tiny, base=tiny.path("empty.fvecs"))), "empty")


def test_nan_in_vector(run_avq, tiny):
    q = tiny.query.copy()
    q[4, 9] = np.nan
    datalib.write_fvecs(tiny.path("nan.fvecs"), q)  # the writer does not judge
    refused(run_avq(*gt_args(tiny, query=tiny.path("nan.fvecs"))), "row 4 column 9", "NaN")
    np.save(tiny.path("inf.npy"), np.where(np.arange(16) == 2, np.inf, 1.0)[None, :])
    refused(run_avq(*gt_args(tiny, base=tiny.path("inf.npy"))), "row 0 column 2", "infinite")


def test_fortran_order_npy(run_avq, tiny):
    np.save(tiny.path("f.npy"), np.asfortranarray(tiny.base))
    refused(run_avq(*gt_args(tiny, base=tiny.path("f.npy"))), "fortran")


def test_k_larger_than_base(run_avq, tiny):
    refused(run_avq(*gt_args(tiny, k=len(tiny.base) + 1)), "larger than the base")
    refused(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                    "--metric", "ip", "--k", len(tiny.base) + 1, "--out", tiny.path("r.ivecs")),
            "larger than the base")


def test_missing_file(run_avq, tiny):
    refused(run_avq(*gt_args(tiny, base=tiny.path("nope.fvecs"))), "nope.fvecs",
            "no such file")
    refused(run_avq(*gt_args(tiny, base=tiny.path("nope.hdf5"))), "nope.hdf5")
    refused(run_avq("eval", "--result", tiny.path("nope.ivecs"), "--gt", tiny.path("x.ivecs")),
            "nope.ivecs")


def test_wrong_file_kinds(run_avq, tiny, gt100):
    _, path = gt100
    refused(run_avq(*gt_args(tiny, base=path)), "integer ids")
    refused(run_avq(*gt_args(tiny, base=tiny.path("base.csv"))), "unknown file type")
    with open(tiny.path("junk.npy"), "wb") as f:
        f.write(b"definitely not numpy")
    refused(run_avq(*gt_args(tiny, base=tiny.path("junk.npy"))), "bad magic")


def test_unknown_metric(run_avq, tiny):
    refused(run_avq(*gt_args(tiny, metric="hamming")), "metric", "hamming")


@pytest.mark.parametrize("cmd", ["gt", "search", "eval"])
def test_unknown_option(run_avq, cmd):
    r = refused(run_avq(cmd, "--frobnicate"), "--frobnicate", "--help")
    assert r.returncode == 2


@pytest.mark.parametrize("args,needle", [
    (("gt", "--k", "0"), "--k"),
    (("gt", "--k", "ten"), "--k"),
    (("gt", "--threads", "-1"), "--threads"),
    (("gt", "--base", "b.fvecs"), "required"),
    (("search", "--exact", "--base", "b.fvecs"), "--query"),
    (("eval", "--result", "r.ivecs"), "required"),
    (("eval", "--result", "r.ivecs", "--gt", "g.ivecs", "stray"), "unexpected argument"),
])
def test_usage_errors(run_avq, args, needle):
    r = refused(run_avq(*args), needle)
    assert r.returncode == 2
