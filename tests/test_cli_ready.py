"""The CLI never ignores what it was told (issue 17, items 3-7).

Item 3: an option either takes effect or is an error (or, where a fallback
is the kind thing, a warning that says so).  Item 4: help texts and
`avq info` agree with what the library does (their defaults come from the
library's own constants).  Item 5: `avq tune` samples the whole query file.
Item 6: one table of metric names (any case), float16 .npy, the HDF5
'distance' attribute, leaves_to_search clamped.  Item 7: the default thread
count follows the affinity mask.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, datalib, reference_topk, ok, refused


def header_define(name):
    text = open(os.path.join(REPO, "include", "avq.h"), encoding="utf-8").read()
    return int(re.search(rf"#define {name} (\d+)", text).group(1))


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """25k clustered points (above the exact tier's 20k) and 400 queries
    near them, so recall means something (shared by the module's tests:
    read only)."""
    tmp_path = tmp_path_factory.mktemp("clustered")
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((40, 24))
    base = (centers[rng.integers(0, 40, 25000)] + 0.35 * rng.standard_normal((25000, 24)))
    query = (centers[rng.integers(0, 40, 400)] + 0.35 * rng.standard_normal((400, 24)))
    paths = {"base": str(tmp_path / "cbase.fvecs"), "query": str(tmp_path / "cquery.fvecs"),
             "dir": tmp_path}
    datalib.write_fvecs(paths["base"], base.astype(np.float32))
    datalib.write_fvecs(paths["query"], query.astype(np.float32))
    paths["base_arr"], paths["query_arr"] = base.astype(np.float32), query.astype(np.float32)
    return paths


@pytest.fixture(scope="module")
def index40(avq_bin, clustered):
    """A cosine index of 40 leaves over the clustered data (read only)."""
    path = str(clustered["dir"] / "c40.avq")
    subprocess.run([avq_bin, "build", "--base", clustered["base"], "--metric", "cos",
                    "--leaves", "40", "--out", path], check=True, capture_output=True)
    return path


# ---------------------------------------------------------------------------
# item 3: no option silently ignored
# ---------------------------------------------------------------------------

def test_search_metric_must_match_the_index(run_avq, tiny, index40, clustered):
    out = tiny.path("r.ivecs")
    q = clustered["query"]
    refused(run_avq("search", "--index", index40, "--query", q, "--metric", "l2", "--out", out),
            "squared_l2", "cosine", "built")
    refused(run_avq("search", "--index", index40, "--query", q, "--metric", "ip", "--out", out),
            "dot_product")
    # the index's own metric, by any of its names, in any case, is fine
    for name in ("cos", "COSINE", "Angular"):
        ok(run_avq("search", "--index", index40, "--query", q, "--metric", name, "--out", out))


def test_threads_without_batch_is_an_error(run_avq, index40, clustered, tiny):
    out = tiny.path("r.ivecs")
    args = ("search", "--index", index40, "--query", clustered["query"], "--out", out)
    refused(run_avq(*args, "--threads", 2), "--threads", "--batch", code=2)
    r = ok(run_avq(*args, "--threads", 2, "--batch"))
    assert "2 threads" in r.stderr, r.stderr
    r = ok(run_avq(*args))
    assert "one at a time on 1 thread" in r.stderr, r.stderr


def test_search_needs_an_output(run_avq, index40, clustered, tiny):
    refused(run_avq("search", "--index", index40, "--query", clustered["query"]), "--out",
            code=2)
    refused(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                    "--metric", "ip"), "--out", code=2)
    # the scores alone are an output
    ok(run_avq("search", "--index", index40, "--query", clustered["query"], "--scores",
               tiny.path("s.fvecs")))
    assert os.path.getsize(tiny.path("s.fvecs")) > 0


@pytest.mark.parametrize("opt", [("--batch",), ("--mmap",), ("--leaves-to-search", "3"),
                                 ("--reorder", "50")])
def test_index_options_refused_with_exact(run_avq, tiny, opt):
    r = refused(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query",
                        tiny.query_fvecs, "--metric", "ip", "--out", tiny.path("r.ivecs"), *opt),
                opt[0], "--index", code=2)
    assert not os.path.exists(tiny.path("r.ivecs")), r.stderr


def test_base_refused_with_index(run_avq, tiny, index40, clustered):
    refused(run_avq("search", "--index", index40, "--base", clustered["base"], "--query",
                    clustered["query"], "--out", tiny.path("r.ivecs")), "--base", code=2)


def test_replace_needs_an_hdf5_output(run_avq, tiny):
    refused(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                    "--metric", "ip", "--out", tiny.path("r.ivecs"), "--replace"),
            "--replace", "HDF5", code=2)


@pytest.mark.parametrize("opt", [("--threshold", "0.3"), ("--eta", "4"),
                                 ("--threshold-kind", "relative"), ("--center-eta", "2")])
def test_build_refuses_anisotropic_options_for_l2(run_avq, tiny, opt):
    refused(run_avq("build", "--base", tiny.base_fvecs, "--metric", "l2", "--out",
                    tiny.path("x.avq"), *opt), opt[0], "l2", code=2)
    assert not os.path.exists(tiny.path("x.avq"))


def test_build_refuses_eta_with_threshold(run_avq, tiny):
    refused(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out",
                    tiny.path("x.avq"), "--eta", "4", "--threshold", "0.2"),
            "--eta", "--threshold", code=2)


def test_build_warns_when_the_tier_makes_options_pointless(run_avq, tiny):
    # 300 rows: the exact tier trains nothing
    r = ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out",
                   tiny.path("x.avq"), "--leaves", 4, "--bits", 8))
    assert "warning" in r.stderr and "exact tier" in r.stderr, r.stderr
    assert "--leaves" in r.stderr and "--bits" in r.stderr, r.stderr
    # it keeps float vectors whatever --reorder says, and trains nothing to seed
    r = ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out",
                   tiny.path("x.avq"), "--reorder", "none", "--seed", 3))
    assert "--reorder" in r.stderr and "--seed" in r.stderr, r.stderr
    # one leaf: no k-means, so --iterations does nothing
    r = ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out",
                   tiny.path("y.avq"), "--brute-force-below", 100, "--iterations", 3))
    assert "warning" in r.stderr and "--iterations" in r.stderr, r.stderr
    # nothing said when every option takes effect
    r = ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out",
                   tiny.path("z.avq"), "--brute-force-below", 100, "--leaves", 4,
                   "--iterations", 3))
    assert "no effect" not in r.stderr, r.stderr


def test_tune_warns_that_a_seed_without_sampling_does_nothing(run_avq, index40, clustered):
    r = ok(run_avq("tune", "--index", index40, "--query", clustered["query"], "--seed", 5,
                   "--target", 0.5, "--runs", 1))
    assert "--seed has no effect" in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# item 4: help and info agree with the library
# ---------------------------------------------------------------------------

def info_fields(run_avq, path):
    out = ok(run_avq("info", path)).stdout
    return {line[:18].strip(): line[18:].strip() for line in out.splitlines()}


def test_search_help_reorder_default_is_the_index_default(run_avq, index40):
    help_text = ok(run_avq("search", "--help")).stdout
    m = re.search(r"index's, (\d+) unless built otherwise", help_text)
    assert m, help_text
    assert int(m.group(1)) == header_define("AVQ_DEFAULT_PRE_REORDER")
    info = info_fields(run_avq, index40)
    got = re.search(r"leaves_to_search (\d+), pre_reorder (\d+)", info["search defaults"])
    assert int(got.group(2)) == int(m.group(1)), (info, m.group(0))
    # and the leaves default: 35 per 1000 leaves, rounded up
    per_mille = re.search(r"(\d+) per 1000 leaves", help_text)
    assert per_mille, help_text
    assert int(got.group(1)) == -(-40 * int(per_mille.group(1)) // 1000)


def test_build_help_defaults_are_the_library_defaults(run_avq, tiny):
    help_text = ok(run_avq("build", "--help")).stdout
    below = int(re.search(r"default: 1 below (\d+) rows", help_text).group(1))
    assert below == header_define("AVQ_SINGLE_LEAF_BELOW")
    assert f"--training-sample N    rows used to train (default " \
           f"{header_define('AVQ_DEFAULT_TRAINING_SAMPLE')}" in help_text
    brute = int(re.search(r"--brute-force-below N  exact tier below N points \(default (\d+)\)",
                          help_text).group(1))
    bits = int(re.search(r"--bits 4\|8 +bits per code \(default (\d+)", help_text).group(1))
    dims = int(re.search(r"--dims-per-block N +dimensions per PQ code \(default (\d+)",
                         help_text).group(1))
    thr = re.search(r"anisotropic threshold T \(ip/cos; default ([0-9.]+)", help_text).group(1)
    # an index built with no options shows the same values
    n = brute + 10
    rng = np.random.default_rng(1)
    base = tiny.path("big.npy")
    np.save(base, rng.standard_normal((n, 8)).astype(np.float32))
    ok(run_avq("build", "--base", base, "--metric", "cos", "--out", tiny.path("d.avq")))
    info = info_fields(run_avq, tiny.path("d.avq"))
    assert info["quantizer"].startswith(f"{bits}-bit codes, {dims} dims per block"), info
    assert f"threshold {thr} " in info["quantizer"], info
    assert info["leaves"].split()[0] == "1", info  # n < AVQ_SINGLE_LEAF_BELOW
    # n just below the exact tier's bound: the exact tier
    np.save(base, rng.standard_normal((brute - 1, 8)).astype(np.float32))
    ok(run_avq("build", "--base", base, "--metric", "cos", "--out", tiny.path("e.avq")))
    assert info_fields(run_avq, tiny.path("e.avq"))["quantizer"].startswith("none: the exact")


def test_single_leaf_boundary_is_the_one_help_states(run_avq, tmp_path):
    """One leaf below AVQ_SINGLE_LEAF_BELOW rows, about sqrt(n) leaves from it on."""
    below = header_define("AVQ_SINGLE_LEAF_BELOW")
    rng = np.random.default_rng(2)
    data = rng.standard_normal((below, 4)).astype(np.float32)
    for n, leaves in ((below - 1, 1), (below, round(below ** 0.5))):
        np.save(tmp_path / "x.npy", data[:n])
        ok(run_avq("build", "--base", tmp_path / "x.npy", "--metric", "l2", "--out",
                   tmp_path / "x.avq", "--dims-per-block", 4, "--training-sample", 5000))
        assert info_fields(run_avq, str(tmp_path / "x.avq"))["leaves"].split()[0] == str(leaves)


def test_info_shows_the_derived_eta(run_avq, tmp_path):
    d, T = 100, 0.2
    rng = np.random.default_rng(4)
    np.save(tmp_path / "b.npy", rng.standard_normal((21000, d)).astype(np.float32))
    ok(run_avq("build", "--base", tmp_path / "b.npy", "--metric", "cos", "--out",
               tmp_path / "b.avq", "--threshold", T, "--training-sample", 3000,
               "--leaves", 1))
    q = info_fields(run_avq, str(tmp_path / "b.avq"))["quantizer"]
    eta = (d - 1) * T * T / (1 - T * T)          # 4.125, as the library derives it
    assert f"eta {eta:.4g} (derived from T" in q, q
    assert "eta 0" not in q, q


def test_info_of_the_exact_tier_shows_no_codes(run_avq, tiny):
    ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--out", tiny.path("x.avq")))
    info = info_fields(run_avq, tiny.path("x.avq"))
    assert "exact tier" in info["quantizer"], info
    assert "bit codes" not in info["quantizer"], info
    assert "exact" in info["search defaults"], info


def test_no_rate_for_a_tiny_run(run_avq, tiny):
    r = ok(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                   "--metric", "ip", "--k", 3, "--out", tiny.path("r.ivecs")))
    assert "too short to time" in r.stderr, r.stderr
    assert "queries/s" not in r.stderr, r.stderr
    assert re.match(r"qps [0-9.]+\n", r.stdout)          # the line scripts read stays


# ---------------------------------------------------------------------------
# item 5: tune samples the whole file
# ---------------------------------------------------------------------------

def test_tune_samples_evenly_not_the_first_rows(run_avq, index40, clustered, tmp_path):
    """The ground truth is right only for every 10th query (the others are
    another query's).  An even sample of 40 of the 400 queries takes rows
    0, 10, 20, ...: the target is reached.  The first 40 rows -- the old
    behaviour -- hold only 4 right rows; a random sample few more."""
    base, query = clustered["base_arr"], clustered["query_arr"]
    truth, _ = reference_topk(base, query, 10, "cos")
    wrong = np.roll(truth, 1, axis=0)
    mixed = np.where((np.arange(len(query)) % 10 == 0)[:, None], truth, wrong).astype(np.int32)
    gt = str(tmp_path / "mixed.ivecs")
    datalib.write_ivecs(gt, mixed)
    args = ("tune", "--index", index40, "--query", clustered["query"], "--gt", gt,
            "--queries", 40, "--target", 0.8, "--runs", 1)
    r = ok(run_avq(*args))
    assert "best leaves_to_search" in r.stdout, r.stdout
    assert "spread evenly" in r.stderr and "20 tuning" in r.stderr, r.stderr
    refused(run_avq(*args, "--seed", 7), "out of reach")


def test_tune_truth_from_the_index_equals_given_truth(run_avq, index40, clustered, tmp_path):
    gt = str(tmp_path / "gt.ivecs")
    ok(run_avq("gt", "--base", clustered["base"], "--query", clustered["query"], "--metric",
               "cos", "--k", 10, "--out", gt))
    common = ("tune", "--index", index40, "--query", clustered["query"], "--target", 0.9,
              "--runs", 1)
    a = ok(run_avq(*common, "--gt", gt))
    b = ok(run_avq(*common))
    c = ok(run_avq(*common, "--base", clustered["base"]))
    assert "best leaves_to_search" in a.stdout, a.stdout
    # the candidates (leaves, pre_reorder, recall) are the same; which one
    # is fastest is a timing, and may differ between runs
    table = [[line.split(",")[:3] for line in r.stdout.splitlines()[1:-1]] for r in (a, b, c)]
    assert table[0] and table[0] == table[1] == table[2], table


# ---------------------------------------------------------------------------
# item 6: one table of names, float16, HDF5 'distance', clamping
# ---------------------------------------------------------------------------

ALIASES = {"ip": ["dot_product", "dot", "ip", "inner_product", "mips", "DOT", "Ip"],
           "l2": ["squared_l2", "l2", "euclidean", "sqeuclidean", "L2", "Euclidean"],
           "cos": ["cosine", "cos", "angular", "COS", "Angular"]}


@pytest.mark.parametrize("metric", sorted(ALIASES))
def test_every_alias_in_every_command(run_avq, tiny, metric):
    ref, _ = reference_topk(tiny.base, tiny.query, 5, metric)
    for name in ALIASES[metric]:
        out = tiny.path("gt.ivecs")
        ok(run_avq("gt", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs, "--k", 5,
                   "--metric", name, "--out", out))
        np.testing.assert_array_equal(datalib.read_ivecs(out)[:, :3], ref[:, :3])
        ok(run_avq("search", "--exact", "--base", tiny.base_fvecs, "--query", tiny.query_fvecs,
                   "--k", 5, "--metric", name, "--out", out))
        ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", name, "--out",
                   tiny.path("x.avq")))


def test_help_lists_the_one_table(run_avq):
    listing = "dot_product|dot|ip|inner_product|mips, squared_l2|l2|euclidean|sqeuclidean, " \
              "cosine|cos|angular"
    assert listing in ok(run_avq("--help")).stdout
    for cmd in ("build", "gt", "search"):
        assert listing in ok(run_avq(cmd, "--help")).stdout.replace("\n", " "), cmd
    r = refused(run_avq("gt", "--base", "b", "--query", "q", "--out", "o", "--metric",
                        "hamming"), "hamming", "angular")


def test_float16_npy(run_avq, tiny):
    b16, q16 = tiny.base.astype(np.float16), tiny.query.astype(np.float16)
    np.save(tiny.path("b16.npy"), b16)
    np.save(tiny.path("q16.npy"), q16)
    ok(run_avq("gt", "--base", tiny.path("b16.npy"), "--query", tiny.path("q16.npy"), "--k", 5,
               "--metric", "l2", "--out", tiny.path("a.ivecs"), "--distances",
               tiny.path("a.fvecs")))
    ref_ids, ref_scores = reference_topk(b16.astype(np.float32), q16.astype(np.float32), 5, "l2")
    np.testing.assert_allclose(datalib.read_fvecs(tiny.path("a.fvecs")), ref_scores,
                               rtol=1e-4, atol=1e-3)
    ok(run_avq("build", "--base", tiny.path("b16.npy"), "--metric", "l2", "--out",
               tiny.path("x.avq")))


def test_float16_specials_are_refused(run_avq, tiny):
    b16 = tiny.base.astype(np.float16)
    b16[3, 2] = np.inf
    np.save(tiny.path("inf16.npy"), b16)
    refused(run_avq("build", "--base", tiny.path("inf16.npy"), "--metric", "l2", "--out",
                    tiny.path("x.avq")), "row 3", "column 2")


def ann_file(path, base, query, distance):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset("train", data=base)
        f.create_dataset("test", data=query)
        if distance is not None:
            f.attrs["distance"] = distance


@pytest.mark.parametrize("distance,metric", [("angular", "cosine"), ("euclidean", "squared_l2"),
                                             ("dot", "dot_product")])
def test_hdf5_distance_gives_the_metric(run_avq, tiny, distance, metric):
    h5 = tiny.path("ann.hdf5")
    ann_file(h5, tiny.base, tiny.query, distance)
    ok(run_avq("build", "--base", h5, "--out", tiny.path("x.avq")))
    assert info_fields(run_avq, tiny.path("x.avq"))["metric"] == metric
    r = ok(run_avq("gt", "--base", h5, "--query", h5 + ":test", "--k", 5, "--out",
                   tiny.path("g.ivecs")))
    assert metric in r.stderr, r.stderr
    short = {"cosine": "cos", "squared_l2": "l2", "dot_product": "ip"}[metric]
    ref, _ = reference_topk(tiny.base, tiny.query, 5, short)
    np.testing.assert_array_equal(datalib.read_ivecs(tiny.path("g.ivecs"))[:, :3], ref[:, :3])
    ok(run_avq("search", "--exact", "--base", h5, "--query", h5 + ":test", "--out",
               tiny.path("s.ivecs")))
    # the same metric by another name agrees; a different one is an error
    ok(run_avq("build", "--base", h5, "--out", tiny.path("y.avq"), "--metric", metric.upper()))
    other = "l2" if metric != "squared_l2" else "cos"
    refused(run_avq("build", "--base", h5, "--out", tiny.path("z.avq"), "--metric", other),
            "contradicts", distance)
    assert not os.path.exists(tiny.path("z.avq"))
    refused(run_avq("gt", "--base", h5, "--query", h5 + ":test", "--out", tiny.path("g.ivecs"),
                    "--metric", other), "contradicts")
    # an index searched with queries of a file declaring another metric
    ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", other, "--out",
               tiny.path("o.avq")))
    refused(run_avq("search", "--index", tiny.path("o.avq"), "--query", h5 + ":test", "--out",
                    tiny.path("s.ivecs")), "declare", metric)


def test_hdf5_without_distance_still_needs_metric(run_avq, tiny):
    h5 = tiny.path("plain.hdf5")
    ann_file(h5, tiny.base, tiny.query, None)
    refused(run_avq("build", "--base", h5, "--out", tiny.path("x.avq")), "--metric", code=2)
    ann_file(h5, tiny.base, tiny.query, "hamming")
    refused(run_avq("build", "--base", h5, "--out", tiny.path("x.avq")), "hamming", "--metric")
    ok(run_avq("build", "--base", h5, "--out", tiny.path("x.avq"), "--metric", "ip"))


def test_leaves_to_search_above_the_leaf_count_is_all_leaves(run_avq, index40, clustered,
                                                             tmp_path):
    a, b = str(tmp_path / "a.ivecs"), str(tmp_path / "b.ivecs")
    args = ("search", "--index", index40, "--query", clustered["query"])
    ok(run_avq(*args, "--leaves-to-search", 40, "--out", a))
    r = ok(run_avq(*args, "--leaves-to-search", 1000, "--out", b))
    assert "leaves_to_search=40," in r.stderr, r.stderr
    np.testing.assert_array_equal(datalib.read_ivecs(a), datalib.read_ivecs(b))


# ---------------------------------------------------------------------------
# item 7: threads follow the affinity mask
# ---------------------------------------------------------------------------

needs_taskset = pytest.mark.skipif(shutil.which("taskset") is None, reason="no taskset")


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


@needs_taskset
def test_default_threads_follow_the_affinity_mask(avq_bin, tiny):
    one = allowed_cpus()[0]
    r = subprocess.run(["taskset", "-c", str(one), avq_bin, "--version"], capture_output=True,
                       text=True, check=True)
    assert "1 worker thread by default" in r.stdout, r.stdout
    r = subprocess.run(["taskset", "-c", str(one), avq_bin, "search", "--exact", "--base",
                        tiny.base_fvecs, "--query", tiny.query_fvecs, "--metric", "ip", "--out",
                        tiny.path("r.ivecs")], capture_output=True, text=True, check=True)
    assert ", 1 thread:" in r.stderr, r.stderr
    r = subprocess.run(["taskset", "-c", str(one), avq_bin, "build", "--help"],
                       capture_output=True, text=True, check=True)
    assert "all 1 CPUs this process" in r.stdout, r.stdout
    if len(allowed_cpus()) >= 2:
        two = ",".join(map(str, allowed_cpus()[:2]))
        r = subprocess.run(["taskset", "-c", two, avq_bin, "--version"], capture_output=True,
                           text=True, check=True)
        assert "2 worker threads by default" in r.stdout, r.stdout


def cgroup_cpu_dir():
    """The directory holding this process's CPU quota files and whether it
    is cgroup v2, when the process sits at its hierarchy's root (so a tmpfs
    mounted there stands for its cgroup); else None."""
    v2 = None
    for line in open("/proc/self/cgroup", encoding="utf-8"):
        ident, controllers, path = line.rstrip("\n").split(":", 2)
        if path != "/":
            continue
        if "cpu" in controllers.split(","):
            for d in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"):
                if os.path.isdir(d):
                    return d, False
        if ident == "0" and controllers == "":
            v2 = ("/sys/fs/cgroup", True)
    return v2


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare (a private mount namespace)")
def test_default_threads_follow_the_cgroup_quota(avq_bin):
    """A CPU quota of 0.5 CPU gives 1 worker, 1.5 CPUs 2 (rounded up), none
    the affinity mask: a tmpfs in a private mount namespace stands for the
    cgroup file system."""
    where = cgroup_cpu_dir()
    if where is None:
        pytest.skip("this process is not at the root of a cgroup hierarchy")
    d, v2 = where
    write = (lambda q: f"echo '{q} 100000' > {d}/cpu.max") if v2 else \
        (lambda q: f"echo {q} > {d}/cpu.cfs_quota_us && echo 100000 > {d}/cpu.cfs_period_us")
    script = f"mount -t tmpfs none {d} || exit 77\n"
    for quota in ("50000", "150000", "max" if v2 else "-1"):
        script += write(quota) + f" && {avq_bin} --version\n"
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True)
    if r.returncode != 0 and ("Operation not permitted" in r.stderr or r.returncode == 77):
        pytest.skip(f"cannot make a private mount namespace: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    counts = [int(m) for m in re.findall(r"(\d+) worker threads? by default", r.stdout)]
    assert len(counts) == 3, r.stdout
    cpus = len(os.sched_getaffinity(0))
    assert counts == [1, min(2, cpus), cpus], r.stdout
