"""The sharded index on Open MPI (issue 14): avq-mpi (mpi/avq_mpi.c) and
avq.distributed (python/avq/distributed.py) under `mpirun --oversubscribe`.

The oracle is one avq.Index created from the sharded index's own
quantizer.avq with every vector added in ascending id order: the sharded
search must return its ids AND scores exactly, for every metric, with 4
ranks, with fewer ranks than shards and with more.  Then the bad inputs:
a missing, truncated, corrupted or foreign shard fails the job with one
message naming the shard and writes nothing; --allow-partial answers from
the rest and lists what is missing.

Skipped (with the reason) only when mpirun or mpicc is not installed;
scripts/deps.sh installs them (openmpi-bin libopenmpi-dev python3-mpi4py).
Data: a few thousand 16-d clustered vectors from fixed seeds.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, avq_module_dir, ok

MPIRUN = shutil.which("mpirun")
MPICC = shutil.which("mpicc")
pytestmark = pytest.mark.skipif(
    not (MPIRUN and MPICC),
    reason="Open MPI is not installed (mpirun/mpicc missing): apt-get install openmpi-bin "
           "libopenmpi-dev python3-mpi4py, or run scripts/deps.sh")

sys.path.insert(0, avq_module_dir())
import avq  # noqa: E402

N, DIM, NQ = 3000, 16, 60
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl="self,vader",
           PYTHONPATH=avq_module_dir())


def load_distributed():
    """avq.distributed from the source tree (the build tree links only the
    package's core files)."""
    spec = importlib.util.spec_from_file_location(
        "avq.distributed", os.path.join(REPO, "python", "avq", "distributed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def avq_mpi():
    path = os.environ.get("AVQ_MPI_BIN") or os.path.join(REPO, "build", "avq-mpi")
    if not os.access(path, os.X_OK):
        # the regular build, never a sanitizer one: Open MPI under ASan reports its own leaks
        r = subprocess.run(["make", "-C", REPO, "mpi", "BUILD=build", "SANITIZE="],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    return path


def mpirun(np_, *args, timeout=120):
    return subprocess.run([MPIRUN, "-np", str(np_), "--oversubscribe", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def data(seed=1, n=N, nq=NQ):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(24, DIM)).astype(np.float32) * 2
    x = centers[rng.integers(0, 24, n)] + rng.normal(size=(n, DIM)).astype(np.float32)
    q = centers[rng.integers(0, 24, nq)] + rng.normal(size=(nq, DIM)).astype(np.float32)
    return x.astype(np.float32), q.astype(np.float32)


def write_fvecs(path, x):
    d = np.full((x.shape[0], 1), x.shape[1], dtype=np.int32)
    np.hstack([d.view(np.float32), x]).tofile(path)


def single(directory, vectors, ids):
    """One index from the sharded index's quantizer, vectors in id order."""
    q = avq.Quantizer.load(os.path.join(directory, "quantizer.avq"))
    order = np.argsort(ids, kind="stable")
    x = avq.Index.create(q)
    x.add(vectors[order], np.asarray(ids, dtype=np.int64)[order])
    return x


def build(avq_mpi, tmp, name, base, metric, np_=4, shards=4, extra=()):
    out = os.path.join(tmp, name)
    ok(mpirun(np_, avq_mpi, "build", "--base", base, "--metric", metric, "--out", out,
              "--shards", shards, "--leaves", 20, "--brute-force-below", 100, "--threads", 1,
              *extra))
    return out


def search(avq_mpi, directory, queries, tmp, np_=4, k=10, leaves=3, reorder=40, extra=()):
    ids_path, sc_path = os.path.join(tmp, "ids.npy"), os.path.join(tmp, "scores.npy")
    for p in (ids_path, sc_path):
        if os.path.exists(p):
            os.unlink(p)
    r = mpirun(np_, avq_mpi, "search", "--index", directory, "--query", queries, "--k", k,
               "--leaves-to-search", leaves, "--reorder", reorder, "--out", ids_path,
               "--scores", sc_path, "--threads", 1, *extra)
    if r.returncode != 0:
        return r, None, None
    return r, np.load(ids_path), np.load(sc_path)


def assert_equal_single(idx, q, ids, scores, k=10, leaves=3, reorder=40):
    want_i, want_s = idx.search_batched(q, k=k, leaves_to_search=leaves, pre_reorder=reorder)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("mpi"))
    x, q = data()
    np.save(os.path.join(tmp, "base.npy"), x)
    write_fvecs(os.path.join(tmp, "base.fvecs"), x)
    np.save(os.path.join(tmp, "q.npy"), q)
    return tmp, x, q


@pytest.mark.parametrize("metric,fmt", [("cos", "fvecs"), ("ip", "npy"), ("l2", "npy")])
def test_sharded_equals_one_index(avq_mpi, files, metric, fmt):
    tmp, x, q = files
    d = build(avq_mpi, tmp, f"idx-{metric}", os.path.join(tmp, f"base.{fmt}"), metric)
    manifest = open(os.path.join(d, "manifest")).read()
    assert "shards 4" in manifest and "hash splitmix64-mod" in manifest
    counts = [int(line.split()[-1]) for line in manifest.splitlines() if line.startswith("shard ")]
    assert sum(counts) == N and min(counts) > 0
    one = single(d, x, np.arange(N))
    qpath = os.path.join(tmp, "q.npy")
    # 4 ranks for 4 shards; for cosine also 2 ranks serving 2 shards each and
    # 6 ranks, 2 of them idle
    for np_ in ((4, 2, 6) if metric == "cos" else (4,)):
        r, ids, scores = search(avq_mpi, d, qpath, tmp, np_=np_)
        ok(r)
        assert ids.shape == (NQ, 10)
        assert_equal_single(one, q, ids, scores)
    # a larger candidate list and a single leaf (the chosen leaf may hold
    # fewer than k: the search goes on by the counts of the whole index)
    r, ids, scores = search(avq_mpi, d, qpath, tmp, np_=3, k=100, leaves=1, reorder=150)
    ok(r)
    assert_equal_single(one, q, ids, scores, k=100, leaves=1, reorder=150)


def test_sharded_float16_equals_one_index(avq_mpi, files):
    """--reorder float16 reaches every shard: each keeps half rows, and the
    sharded search is the one index's built from the same quantizer."""
    tmp, x, q = files
    d = build(avq_mpi, tmp, "idx-f16", os.path.join(tmp, "base.npy"), "ip",
              extra=("--reorder", "float16"))
    one = single(d, x, np.arange(N))
    assert one.build_params["reorder"] == "float16"
    np.testing.assert_array_equal(one.get([3]), x[[3]].astype(np.float16).astype(np.float32))
    r, ids, scores = search(avq_mpi, d, os.path.join(tmp, "q.npy"), tmp)
    ok(r)
    assert_equal_single(one, q, ids, scores)


def test_shard_placement_follows_the_documented_hash(avq_mpi, files):
    tmp, x, q = files
    dist = load_distributed()
    d = os.path.join(tmp, "idx-cos")
    if not os.path.exists(d):
        d = build(avq_mpi, tmp, "idx-cos", os.path.join(tmp, "base.fvecs"), "cos")
    want = np.bincount(dist.shard_of(np.arange(N), 4), minlength=4)
    for s in range(4):
        shard = avq.load(os.path.join(d, f"shard-{s:04d}.avq"))
        assert len(shard) == want[s]
        for i in (0, 1, 2, 17, 2999):
            assert (i in shard) == (dist.shard_of([i], 4)[0] == s)


def test_exact_tier_and_topk_merge(avq_mpi, files):
    tmp, x, q = files
    out = os.path.join(tmp, "idx-exact")
    # default brute_force_below (20000) > N: every shard is exact
    ok(mpirun(2, avq_mpi, "build", "--base", os.path.join(tmp, "base.npy"), "--metric", "l2",
              "--out", out, "--shards", 3, "--threads", 1))
    one = single(out, x, np.arange(N))
    r, ids, scores = search(avq_mpi, out, os.path.join(tmp, "q.npy"), tmp, np_=3, leaves=0,
                            reorder=0)
    ok(r)
    want_i, want_s = one.search_batched(q, k=10)
    np.testing.assert_array_equal(ids, want_i)
    np.testing.assert_array_equal(scores, want_s)
    # --merge topk: per-shard top k merged: at least as good as one index
    d = os.path.join(tmp, "idx-ip")
    if not os.path.exists(d):
        d = build(avq_mpi, tmp, "idx-ip", os.path.join(tmp, "base.npy"), "ip")
    one = single(d, x, np.arange(N))
    r, ids, scores = search(avq_mpi, d, os.path.join(tmp, "q.npy"), tmp, extra=("--merge", "topk"))
    ok(r)
    _, want_s = one.search_batched(q, k=10, leaves_to_search=3, pre_reorder=40)
    assert (scores >= want_s - 1e-6).all()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_add_and_remove_route_by_id(avq_mpi, files):
    tmp, x, q = files
    d = build(avq_mpi, tmp, "idx-living", os.path.join(tmp, "base.npy"), "cos", np_=2)
    more, _ = data(seed=7, n=400, nq=1)
    np.save(os.path.join(tmp, "more.npy"), more)
    r = ok(mpirun(3, avq_mpi, "add", "--index", d, "--base", os.path.join(tmp, "more.npy")))
    assert "added 400" in r.stdout and f"next id {N + 400}" in r.stdout
    gone = np.arange(0, N + 400, 7, dtype=np.int64)
    np.save(os.path.join(tmp, "gone.npy"), gone)
    r = ok(mpirun(4, avq_mpi, "remove", "--index", d, "--ids", os.path.join(tmp, "gone.npy")))
    assert f"removed {len(gone)} of {len(gone)}" in r.stdout
    # adding an id that is present changes nothing and says so
    np.save(os.path.join(tmp, "dup_ids.npy"), np.array([5, 1], dtype=np.int64))
    r = mpirun(2, avq_mpi, "add", "--index", d, "--base", os.path.join(tmp, "more2.npy"),
               "--ids", os.path.join(tmp, "dup_ids.npy"))
    assert r.returncode != 0
    np.save(os.path.join(tmp, "more2.npy"), more[:2])
    r = mpirun(2, avq_mpi, "add", "--index", d, "--base", os.path.join(tmp, "more2.npy"),
               "--ids", os.path.join(tmp, "dup_ids.npy"))
    assert r.returncode != 0 and "id 1 is already in shard" in r.stderr, r.stderr
    ok(mpirun(1, avq_mpi, "info", "--index", d, "--verify"))
    allx = np.vstack([x, more])
    one = single(d, allx, np.arange(N + 400))
    one.remove(gone)
    r, ids, scores = search(avq_mpi, d, os.path.join(tmp, "q.npy"), tmp, np_=4)
    ok(r)
    assert not np.isin(ids, gone).any()
    assert_equal_single(one, q, ids, scores)


def copy_index(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def set_manifest_shard(directory, shard, path):
    """Make the manifest describe `path` as shard `shard` (size and CRC32C
    as avq-mpi computes them) -- a manifest that agrees with a foreign shard."""
    import zlib  # noqa: F401  (crc32, not crc32c: computed below)
    data_ = open(path, "rb").read()
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data_:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    lines = open(os.path.join(directory, "manifest")).read().splitlines()
    for i, line in enumerate(lines):
        f = line.split()
        if f[0] == "shard" and int(f[1]) == shard:
            f[3], f[4] = str(len(data_)), f"{crc:08x}"
            lines[i] = " ".join(f)
    open(os.path.join(directory, "manifest"), "w").write("\n".join(lines) + "\n")


def test_bad_shards_fail_the_job_naming_the_shard(avq_mpi, files):
    tmp, x, q = files
    good = os.path.join(tmp, "idx-cos")
    if not os.path.exists(good):
        good = build(avq_mpi, tmp, "idx-cos", os.path.join(tmp, "base.fvecs"), "cos")
    qpath = os.path.join(tmp, "q.npy")
    ids_path = os.path.join(tmp, "ids.npy")

    def fails(directory, shard, words, np_=4):
        r, ids, _ = search(avq_mpi, directory, qpath, tmp, np_=np_)
        assert r.returncode != 0, r.stderr
        assert ids is None and not os.path.exists(ids_path)
        assert f"shard {shard}" in r.stderr and words in r.stderr, r.stderr
        assert "nothing written" in r.stderr

    # a manifest naming a missing shard
    d = copy_index(good, os.path.join(tmp, "bad-missing"))
    os.unlink(os.path.join(d, "shard-0002.avq"))
    fails(d, 2, "missing")
    fails(d, 2, "missing", np_=2)  # served by a rank with two shards
    # --allow-partial: the answer of the other shards, and the list of missing ones
    dist = load_distributed()
    r, ids, scores = search(avq_mpi, d, qpath, tmp, extra=("--allow-partial",))
    ok(r)
    assert "missing shards: 2" in r.stderr, r.stderr
    keep = np.flatnonzero(dist.shard_of(np.arange(N), 4) != 2)
    assert_equal_single(single(d, x[keep], keep), q, ids, scores)
    # a truncated shard
    d = copy_index(good, os.path.join(tmp, "bad-truncated"))
    p = os.path.join(d, "shard-0001.avq")
    os.truncate(p, os.path.getsize(p) // 2)
    fails(d, 1, "truncated")
    # a flipped byte (same size): the library's checksums
    d = copy_index(good, os.path.join(tmp, "bad-corrupt"))
    p = os.path.join(d, "shard-0003.avq")
    blob = bytearray(open(p, "rb").read())
    blob[len(blob) // 2] ^= 0x40
    open(p, "wb").write(bytes(blob))
    fails(d, 3, "shard-0003.avq")
    # a shard built with another quantizer, with a manifest that agrees on
    # its size and checksum
    other = os.path.join(tmp, "idx-other")
    if not os.path.exists(other):
        build(avq_mpi, tmp, "idx-other", os.path.join(tmp, "base.fvecs"), "cos",
              extra=("--seed", 9))
    d = copy_index(good, os.path.join(tmp, "bad-foreign"))
    shutil.copy(os.path.join(other, "shard-0000.avq"), os.path.join(d, "shard-0000.avq"))
    set_manifest_shard(d, 0, os.path.join(d, "shard-0000.avq"))
    fails(d, 0, "different quantizer")
    r = mpirun(2, avq_mpi, "info", "--index", d)
    assert r.returncode != 0 and "different quantizer" in r.stderr
    # queries of the wrong dimension
    np.save(os.path.join(tmp, "q8.npy"), q[:, :8].copy())
    r = mpirun(2, avq_mpi, "search", "--index", good, "--query", os.path.join(tmp, "q8.npy"),
               "--out", ids_path)
    assert r.returncode != 0 and "dimension 8, the index has 16" in r.stderr
    # not an index
    r = mpirun(2, avq_mpi, "search", "--index", tmp, "--query", qpath, "--out", ids_path)
    assert r.returncode != 0 and "manifest" in r.stderr
    # build into an existing index is refused
    r = mpirun(2, avq_mpi, "build", "--base", os.path.join(tmp, "base.npy"), "--out", good)
    assert r.returncode != 0 and "already holds" in r.stderr


def test_help_for_every_command(avq_mpi):
    for cmd in ("build", "search", "add", "remove", "info"):
        r = ok(mpirun(1, avq_mpi, cmd, "--help"))
        assert r.stdout.startswith("usage: mpirun -np N avq-mpi " + cmd)
    r = mpirun(1, avq_mpi, "frobnicate")
    assert r.returncode != 0 and "unknown command" in r.stderr


JOB = r"""
import importlib.util, os, sys
import numpy as np
import avq
spec = importlib.util.spec_from_file_location("avq.distributed", sys.argv[1])
dist = importlib.util.module_from_spec(spec); spec.loader.exec_module(dist)
from mpi4py import MPI
comm = MPI.COMM_WORLD
x = np.load(sys.argv[2]); q = np.load(sys.argv[3]); out = sys.argv[4]; metric = sys.argv[5]
n = len(x); a, b = n * comm.rank // comm.size, n * (comm.rank + 1) // comm.size
index = dist.ShardedIndex.build(x[a:b], metric=metric, shards=5, num_leaves=20,
                                brute_force_below=100, threads=1)
assert len(index) == n
res = index.search(q if comm.rank == 0 else None, k=10, leaves_to_search=3, pre_reorder=40,
                   threads=1)
if comm.rank == 0:
    index.quantizer.save(os.path.join(out, "quantizer.avq"))
    np.save(os.path.join(out, "ids.npy"), res[0]); np.save(os.path.join(out, "scores.npy"), res[1])
else:
    assert res is None
index.close()
"""


@pytest.mark.parametrize("metric", ["cosine", "squared_l2"])
def test_python_distributed_under_mpirun(files, tmp_path, metric):
    pytest.importorskip("mpi4py")
    tmp, x, q = files
    job = tmp_path / "job.py"
    job.write_text(JOB)
    r = mpirun(3, sys.executable, job, os.path.join(REPO, "python", "avq", "distributed.py"),
               os.path.join(tmp, "base.npy"), os.path.join(tmp, "q.npy"), tmp_path, metric)
    ok(r)
    one = single(str(tmp_path), x, np.arange(N))
    assert_equal_single(one, q, np.load(tmp_path / "ids.npy"), np.load(tmp_path / "scores.npy"))


def test_python_merge_topk():
    dist = load_distributed()
    a_i = np.array([[5, 1, -1]]); a_s = np.array([[0.9, 0.5, np.nan]], dtype=np.float32)
    b_i = np.array([[3, 2]]); b_s = np.array([[0.9, 0.1]], dtype=np.float32)
    ids, scores = dist.merge_topk("cos", [a_i, b_i], [a_s, b_s], 5)
    assert ids.tolist() == [[3, 5, 1, 2, -1]]
    assert np.isnan(scores[0, 4]) and scores[0, 0] == np.float32(0.9)
