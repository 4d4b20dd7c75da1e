"""The CLI's files behave like files (issue 16, items 2 and 3).

- `avq search --index FIFO` (or a FIFO query) fails at once with a clear
  message instead of blocking;
- `--out` follows the path like cp: a symlink is written through, a
  character device or FIFO is written through and stays what it is, a new
  file gets 0666 & ~umask, a replaced one keeps its permission bits;
- a build killed during its save leaves no temporary file and the old index;
- `avq search` never overwrites an input: an output naming an input file is
  refused, an HDF5 output refuses to replace an existing dataset unless
  `--replace`, and HDF5 scores go to `distances` (not the float default
  `train`).
"""

import os
import resource
import signal
import stat
import threading

import numpy as np
import pytest

from conftest import datalib, ok, refused


@pytest.fixture
def built(run_avq, tiny):
    path = tiny.path("x.avq")
    ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "l2", "--out", path))
    return path


def search_args(tiny, index, *more):
    return ("search", "--index", index, "--query", tiny.query_fvecs, "--k", 5, *more)


def test_search_index_fifo_fails_fast(run_avq, tiny):
    fifo = tiny.path("f.avq")
    os.mkfifo(fifo)
    for extra in ((), ("--mmap",)):
        refused(run_avq(*search_args(tiny, fifo, "--out", tiny.path("r.ivecs"), *extra),
                        timeout=20), "f.avq", "FIFO")
    refused(run_avq("info", fifo, timeout=20), "FIFO")


def test_search_query_fifo_fails_fast(run_avq, tiny, built):
    fifo = tiny.path("q.fvecs.fifo.fvecs")
    os.mkfifo(fifo)
    refused(run_avq("search", "--index", built, "--query", fifo, "--k", 5, "--out",
                    tiny.path("r.ivecs"), timeout=20), "FIFO")


def test_out_symlink_is_written_through(run_avq, tiny, built):
    os.mkdir(tiny.path("sub"))
    real = tiny.path("sub/real.avq")
    os.rename(built, real)
    os.symlink("sub/real.avq", built)
    before = os.path.getsize(real)
    ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "ip", "--leaves", 3,
               "--out", built))
    assert os.path.islink(built)
    assert os.listdir(tiny.path("sub")) == ["real.avq"]
    r = ok(run_avq("info", built))
    assert "dot_product" in r.stdout, r.stdout
    # results through a symlink too
    os.symlink("sub/res.ivecs", tiny.path("res.ivecs"))
    open(tiny.path("sub/res.ivecs"), "wb").close()
    ok(run_avq(*search_args(tiny, built, "--out", tiny.path("res.ivecs"))))
    assert os.path.islink(tiny.path("res.ivecs"))
    assert datalib.read_ivecs(tiny.path("sub/res.ivecs")).shape == (len(tiny.query), 5)
    assert before > 0


def test_out_dangling_symlink_is_refused(run_avq, tiny):
    os.symlink("nowhere/x.avq", tiny.path("d.avq"))
    refused(run_avq("build", "--base", tiny.base_fvecs, "--metric", "l2",
                    "--out", tiny.path("d.avq")), "symbolic link to a missing file")
    assert os.path.islink(tiny.path("d.avq"))


def test_out_character_device_is_written_through(run_avq, tiny, built):
    dev = tiny.path("null")
    try:
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        dev = "/dev/null"  # written through, so a regression would fail here, not replace it
    for out in (dev,):
        ok(run_avq("build", "--base", tiny.base_fvecs, "--metric", "l2", "--out", out))
        st = os.stat(out)
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    if dev != "/dev/null":
        npy = dev + ".npy"
        os.mknod(npy, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        ok(run_avq(*search_args(tiny, built, "--out", npy)))
        assert stat.S_ISCHR(os.stat(npy).st_mode)
    leftovers = [n for n in os.listdir(tiny.dir) if ".tmp" in n]
    assert not leftovers


def test_out_fifo_is_written_through(run_avq, tiny, built):
    fifo = tiny.path("pipe.ivecs")
    os.mkfifo(fifo)
    got = {}

    def reader():
        with open(fifo, "rb") as f:
            got["bytes"] = f.read()

    t = threading.Thread(target=reader)
    t.start()
    ok(run_avq(*search_args(tiny, built, "--out", fifo), timeout=60))
    t.join(30)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    ok(run_avq(*search_args(tiny, built, "--out", tiny.path("res.ivecs"))))
    with open(tiny.path("res.ivecs"), "rb") as f:
        assert got["bytes"] == f.read()


def umask_runner(run_avq, mask):
    def run(*args):
        old = os.umask(mask)
        try:
            return run_avq(*args)
        finally:
            os.umask(old)
    return run


def test_saved_files_follow_umask(run_avq, tiny):
    for mask in (0o022, 0o077, 0o002):
        run = umask_runner(run_avq, mask)
        out = tiny.path(f"m{mask:o}.avq")
        ok(run("build", "--base", tiny.base_fvecs, "--metric", "l2", "--out", out))
        assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~mask
        res = tiny.path(f"m{mask:o}.ivecs")
        ok(run(*search_args(tiny, out, "--out", res)))
        assert stat.S_IMODE(os.stat(res).st_mode) == 0o666 & ~mask
    # a replaced file keeps its mode
    out = tiny.path("m22.avq")
    os.chmod(out, 0o640)
    ok(umask_runner(run_avq, 0o077)("build", "--base", tiny.base_fvecs, "--metric", "ip",
                                    "--out", out))
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_killed_build_leaves_no_temporary_file(avq_bin, tiny, built):
    """The save of a build hits a file-size limit mid-write: SIGXFSZ kills
    it (like a kill -9 during the save: no cleanup runs)."""
    import subprocess
    big = tiny.path("big.fvecs")
    rng = np.random.default_rng(5)
    datalib.write_fvecs(big, rng.standard_normal((6000, 32)).astype(np.float32))
    before = open(built, "rb").read()
    limit = len(before) + 4096  # the new index is ~6x larger

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    r = subprocess.run([avq_bin, "build", "--base", big, "--metric", "l2", "--out", built],
                       preexec_fn=limited, capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGXFSZ, (r.returncode, r.stderr)
    assert sorted(os.listdir(tiny.dir)) == sorted(
        ["base.fvecs", "query.fvecs", "base.npy", "query.npy", "x.avq", "big.fvecs"])
    assert open(built, "rb").read() == before


def test_search_never_overwrites_an_input_hdf5_dataset(run_avq, tiny, built):
    h5py = pytest.importorskip("h5py")
    h5 = tiny.path("d.hdf5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("train", data=tiny.base)
        f.create_dataset("test", data=tiny.query)
    for args in (("--out", h5 + ":train"), ("--out", h5 + ":test"), ("--scores", h5 + ":train")):
        refused(run_avq("search", "--index", built, "--query", h5 + ":test", "--k", 5, *args),
                "already has a dataset", "--replace")
    refused(run_avq("search", "--exact", "--base", h5, "--query", h5 + ":test", "--metric", "l2",
                    "--k", 5, "--out", h5 + ":train"), "already has a dataset 'train'")
    with h5py.File(h5, "r") as f:
        assert sorted(f) == ["test", "train"]
        assert (f["train"][()] == tiny.base).all()
    # a new dataset in the input file is fine; scores default to 'distances'
    ok(run_avq("search", "--index", built, "--query", h5 + ":test", "--k", 5,
               "--out", h5 + ":res", "--scores", h5))
    with h5py.File(h5, "r") as f:
        assert sorted(f) == ["distances", "res", "test", "train"]
        assert f["res"].shape == (len(tiny.query), 5)
    # a second run is refused, an explicit --replace replaces
    refused(run_avq("search", "--index", built, "--query", h5 + ":test", "--k", 5,
                    "--out", h5 + ":res"), "'res'")
    ok(run_avq("search", "--index", built, "--query", h5 + ":test", "--k", 3,
               "--out", h5 + ":res", "--scores", h5, "--replace"))
    with h5py.File(h5, "r") as f:
        assert f["res"].shape == (len(tiny.query), 3)
        assert f["distances"].shape == (len(tiny.query), 3)
        assert (f["train"][()] == tiny.base).all()
    # --out and --scores into one dataset
    refused(run_avq("search", "--index", built, "--query", h5 + ":test", "--k", 5,
                    "--out", h5 + ":same", "--scores", h5 + ":same"), "same dataset")


def test_search_never_overwrites_an_input_file(run_avq, tiny, built):
    before = open(tiny.query_npy, "rb").read()
    refused(run_avq("search", "--index", built, "--query", tiny.query_npy, "--k", 5,
                    "--out", tiny.query_npy), "--query", "input")
    refused(run_avq("search", "--exact", "--base", tiny.base_npy, "--query", tiny.query_fvecs,
                    "--metric", "l2", "--k", 5, "--out", tiny.path("r.npy"),
                    "--scores", tiny.base_npy), "--base")
    # through a symlink or a hard link it is the same file
    os.symlink(tiny.query_npy, tiny.path("alias.npy"))
    refused(run_avq("search", "--index", built, "--query", tiny.query_npy, "--k", 5,
                    "--out", tiny.path("alias.npy")), "input")
    assert open(tiny.query_npy, "rb").read() == before
    refused(run_avq("search", "--index", built, "--query", tiny.query_fvecs, "--k", 5,
                    "--out", tiny.path("r.npy"), "--scores", tiny.path("r.npy")), "same file")
