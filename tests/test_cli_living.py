"""End-to-end tests of the commands that change an index file: add, remove,
upsert, compact, and what `avq info` reports about them (live and dead
counts, leaf balance, next automatic id).

One small index (2,000 clustered points, dim 16, 8 leaves, squared L2, fixed
seeds) is built per module; every test works on its own copy.  Searches scan
every leaf with a generous re-ranking, so a vector added to the index is its
own nearest neighbour (distance 0).  Every refused input must leave the
index file byte for byte as it was, and leave no stray file behind.

Also here: the CLI's link hygiene (it runs on the libavq next to it, never
on another one) and the move of `avq paper` to avq-paper.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, datalib, ok, refused

N, DIM, LEAVES, NQ = 2000, 16, 8, 50


def clustered(rng, n, dim=DIM, centers=None):
    if centers is None:
        centers = rng.standard_normal((20, dim)).astype(np.float32) * 3
    x = centers[rng.integers(0, len(centers), n)] + rng.standard_normal((n, dim))
    return x.astype(np.float32), centers


@pytest.fixture(scope="module")
def built(tmp_path_factory, avq_bin):
    d = tmp_path_factory.mktemp("living")
    rng = np.random.default_rng(11)
    base, centers = clustered(rng, N)
    new, _ = clustered(rng, NQ, centers=centers)
    datalib.write_fvecs(str(d / "base.fvecs"), base)
    path = str(d / "index.avq")
    r = subprocess.run([avq_bin, "build", "--base", str(d / "base.fvecs"), "--metric", "l2",
                        "--leaves", str(LEAVES), "--brute-force-below", "0", "--seed", "5",
                        "--out", path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return {"index": path, "base": base, "new": new, "centers": centers}


class Work:
    """A private copy of the module's index in tmp_path, and helpers."""

    def __init__(self, built, tmp_path, run_avq):
        self.dir = tmp_path
        self.index = str(tmp_path / "index.avq")
        shutil.copyfile(built["index"], self.index)
        self.base, self.new, self.centers = built["base"], built["new"], built["centers"]
        self.run = run_avq

    def path(self, name):
        return str(self.dir / name)

    def vectors(self, name, x):
        p = self.path(name)
        if name.endswith(".npy"):
            np.save(p, x)
        else:
            datalib.write_fvecs(p, x)
        return p

    def ids(self, name, ids):
        p = self.path(name)
        ids = np.asarray(ids)
        if name.endswith(".npy"):
            np.save(p, ids)
        elif name.endswith(".ivecs"):
            datalib.write_ivecs(p, ids.reshape(-1, 1).astype(np.int32))
        else:
            with open(p, "w") as f:
                f.write("".join(f"{int(i)}\n" for i in ids))
        return p

    def search(self, queries, k=10, index=None):
        """(ids, scores) of every query: all leaves, wide re-ranking, int64
        ids through .npy."""
        q = self.vectors("q.npy", np.asarray(queries, np.float32))
        out, sc = self.path("res.npy"), self.path("scores.npy")
        ok(self.run("search", "--index", index or self.index, "--query", q, "--k", k,
                    "--leaves-to-search", LEAVES, "--reorder", 300, "--out", out,
                    "--scores", sc))
        return np.load(out), np.load(sc)

    def info(self, index=None):
        out = ok(self.run("info", index or self.index)).stdout
        fields = {}
        for line in out.splitlines():
            key, _, value = line.partition("  ")
            fields[key.strip()] = value.strip()
        return out, fields

    def snapshot(self):
        return open(self.index, "rb").read(), sorted(os.listdir(self.dir))

    def assert_unchanged(self, snap):
        data, names = snap
        assert open(self.index, "rb").read() == data, "the index file changed"
        assert sorted(os.listdir(self.dir)) == names, "a file was left behind"


@pytest.fixture
def w(built, tmp_path, run_avq):
    return Work(built, tmp_path, run_avq)


def number(text, label):
    m = re.search(label + r" (-?\d+)", text)
    assert m, f"no '{label} N' in: {text}"
    return int(m.group(1))


# --------------------------------------------------------------------------
# add
# --------------------------------------------------------------------------

BIG = 10**12  # ids beyond int32: the index keeps 64 bits


@pytest.mark.parametrize("ids_file,first", [
    ("ids.npy", BIG),           # int64
    ("ids32.npy", 5000),        # int32
    ("ids.ivecs", 7000),
    ("ids.txt", BIG + 17),
])
def test_add_then_search_finds_the_new_vectors(w, ids_file, first):
    ids = np.arange(first, first + NQ, dtype=np.int32 if ids_file == "ids32.npy" else np.int64)
    r = ok(w.run("add", "--index", w.index, "--base", w.vectors("new.fvecs", w.new),
                 "--ids", w.ids(ids_file, ids), "--threads", 2))
    assert number(r.stdout, "added") == NQ
    assert number(r.stdout, "size") == N + NQ
    assert w.index in r.stderr
    found, scores = w.search(w.new, k=3)
    assert np.array_equal(found[:, 0], ids), found[:, 0]
    np.testing.assert_allclose(scores[:, 0], 0, atol=1e-3)
    _, info = w.info()
    assert info["live"] == str(N + NQ) and info["dead"].split()[0] == "0"
    assert info["next id"] == str(int(ids[-1]) + 1)
    # the old vectors are still found under their row numbers
    old, _ = w.search(w.base[:20], k=1)
    assert np.array_equal(old[:, 0], np.arange(20))


def test_add_automatic_ids_continue_after_the_largest(w):
    r = ok(w.run("add", "--index", w.index, "--base", w.vectors("new.npy", w.new)))
    assert f"ids {N}..{N + NQ - 1}" in r.stdout, r.stdout
    found, _ = w.search(w.new, k=1)
    assert np.array_equal(found[:, 0], np.arange(N, N + NQ))
    # after explicit big ids, automatic ones follow the largest ever held
    ok(w.run("add", "--index", w.index, "--base", w.vectors("one.fvecs", w.new[:1] + 5),
             "--ids", w.ids("one.txt", [BIG])))
    r = ok(w.run("add", "--index", w.index, "--base", w.vectors("two.fvecs", w.new[:2] - 5)))
    assert f"ids {BIG + 1}..{BIG + 2}" in r.stdout, r.stdout
    assert w.info()[1]["next id"] == str(BIG + 3)


def test_add_to_out_leaves_the_index_alone(w):
    snap = w.snapshot()
    out = w.path("grown.avq")
    r = ok(w.run("add", "--index", w.index, "--base", w.vectors("new.fvecs", w.new),
                 "--out", out))
    assert out in r.stderr
    assert open(w.index, "rb").read() == snap[0]
    assert w.info(out)[1]["live"] == str(N + NQ)
    assert w.info()[1]["live"] == str(N)


def test_ids_file_formats_text_details(w):
    """Text ids: blank lines, '#' comments, CRLF and surrounding spaces."""
    p = w.path("ids.txt")
    with open(p, "w", newline="") as f:
        f.write("# ids of the new rows\r\n\r\n")
        f.write("".join(f"  {BIG + i}\t\r\n" for i in range(NQ - 1)))
        f.write(f"{BIG + NQ - 1}")          # no final newline
    ok(w.run("add", "--index", w.index, "--base", w.vectors("new.fvecs", w.new), "--ids", p))
    found, _ = w.search(w.new[-3:], k=1)
    assert list(found[:, 0]) == [BIG + NQ - 3, BIG + NQ - 2, BIG + NQ - 1]


# --------------------------------------------------------------------------
# remove, compact, info
# --------------------------------------------------------------------------

def test_remove_then_search_never_returns_removed_ids(w):
    rng = np.random.default_rng(4)
    gone = rng.choice(N, 300, replace=False)
    absent = [N + 10, N + 11, BIG, -5, 123456]
    listed = np.concatenate([gone, absent, gone[:3]])   # 3 repeated
    r = ok(w.run("remove", "--index", w.index, "--ids", w.ids("gone.npy", listed)))
    assert number(r.stdout, "removed") == 300
    assert number(r.stdout, "not present") == len(absent)
    assert number(r.stdout, "size") == N - 300
    assert "3 repeated" in r.stdout
    # the removed vectors themselves as queries: their ids never come back
    found, _ = w.search(w.base[gone[:NQ]], k=20)
    assert not np.isin(found, gone).any()
    assert (found >= 0).all()
    kept = np.setdiff1d(np.arange(N), gone)
    found, scores = w.search(w.base[kept[:NQ]], k=1)
    assert np.array_equal(found[:, 0], kept[:NQ])
    out, info = w.info()
    assert info["live"] == str(N - 300), out
    assert info["dead"].split()[0] == "300", out
    assert info["vectors"].startswith(f"{N - 300} x {DIM}")


def test_info_reports_leaf_balance(w):
    out, info = w.info()
    for key in ("live", "dead", "next id", "leaf sizes", "leaf balance"):
        assert key in info, out
    assert info["next id"] == str(N)
    sizes = re.match(r"min (\d+), max (\d+), mean ([\d.]+)", info["leaf sizes"])
    assert sizes, info["leaf sizes"]
    lo, hi, mean = int(sizes.group(1)), int(sizes.group(2)), float(sizes.group(3))
    assert lo <= mean <= hi and abs(mean - N / LEAVES) < 0.1
    bal = re.match(r"cv ([\d.]+) .*, (\d+) empty leaves, max dead share ([\d.]+)",
                   info["leaf balance"])
    assert bal, info["leaf balance"]
    assert float(bal.group(1)) >= 0 and float(bal.group(3)) == 0.0
    assert bal.group(2) == "0"
    # after removing most of one leaf's neighbourhood the dead share shows
    gone = np.arange(0, N, 2)
    ok(w.run("remove", "--index", w.index, "--ids", w.ids("half.ivecs", gone[:400])))
    _, info = w.info()
    share = float(re.search(r"max dead share ([\d.]+)", info["leaf balance"]).group(1))
    assert 0 < share <= 1


def test_compact_reclaims_dead_slots(w):
    gone = np.arange(100, 400)
    ok(w.run("remove", "--index", w.index, "--ids", w.ids("gone.txt", gone)))
    assert w.info()[1]["dead"].split()[0] == "300"
    # no leaf is 90 % dead: nothing to do at that threshold
    r = ok(w.run("compact", "--index", w.index, "--min-dead", "0.9"))
    assert number(r.stdout, "compacted") == 0, r.stdout
    assert "dead 300 -> 300" in r.stdout
    r = ok(w.run("compact", "--index", w.index))
    assert number(r.stdout, "compacted") >= 1
    assert "dead 300 -> 0" in r.stdout, r.stdout
    assert number(r.stdout, "size") == N - 300
    out, info = w.info()
    assert info["dead"].split()[0] == "0" and info["live"] == str(N - 300), out
    found, _ = w.search(w.base[:NQ], k=5)
    assert not np.isin(found, gone).any()
    assert np.array_equal(found[:, 0], np.arange(NQ))
    assert w.info()[1]["next id"] == str(N)        # ids never reused


def test_upsert_replaces_and_adds(w):
    ids = np.concatenate([np.arange(10, 20), [BIG, BIG + 1, BIG + 2]])
    vecs = np.concatenate([w.new[:10], w.new[10:13]])
    r = ok(w.run("upsert", "--index", w.index, "--base", w.vectors("u.fvecs", vecs),
                 "--ids", w.ids("u.npy", ids)))
    assert "replaced 10, added 3" in r.stdout, r.stdout
    assert number(r.stdout, "size") == N + 3
    found, scores = w.search(vecs, k=1)
    assert np.array_equal(found[:, 0], ids)
    np.testing.assert_allclose(scores[:, 0], 0, atol=1e-3)
    # the replaced vectors are gone: their old rows no longer score 0
    found, scores = w.search(w.base[10:20], k=1)
    assert not np.isin(found[:, 0], np.arange(10, 20)).any() or (scores[:, 0] > 1e-3).all()
    assert w.info()[1]["live"] == str(N + 3)


def test_search_results_beyond_int32_need_npy(w):
    ok(w.run("add", "--index", w.index, "--base", w.vectors("new.fvecs", w.new[:2]),
             "--ids", w.ids("ids.npy", np.array([BIG, BIG + 1]))))
    q = w.vectors("q.fvecs", w.new[:2])
    out = w.path("r.ivecs")
    refused(w.run("search", "--index", w.index, "--query", q, "--k", 1, "--leaves-to-search",
                  LEAVES, "--out", out), "int32", ".npy")
    assert not os.path.exists(out)


# --------------------------------------------------------------------------
# refused inputs leave the index as it was
# --------------------------------------------------------------------------

def bad_cases(w):
    """(name, argv, needles) of inputs every one of which must be refused."""
    new = w.vectors("new.fvecs", w.new)
    narrow = w.vectors("narrow.fvecs", w.new[:, :8])
    ids = w.ids("ids.npy", np.arange(BIG, BIG + NQ))
    short = w.ids("short.npy", np.arange(BIG, BIG + NQ - 1))
    dup = np.arange(BIG, BIG + NQ)
    dup[7] = dup[3]
    dup = w.ids("dup.txt", dup)
    taken = w.ids("taken.ivecs", np.arange(NQ) + 100)          # ids already present
    reserved = w.ids("reserved.txt", np.r_[np.arange(3000, 3000 + NQ - 1), -1])
    junk = w.path("junk.txt")
    with open(junk, "w") as f:
        f.write("1\n2\nthree\n")
    wide = w.path("wide.npy")
    np.save(wide, np.arange(2 * NQ, dtype=np.int64).reshape(NQ, 2))
    nan = w.new.copy()
    nan[4, 2] = np.nan
    nan = w.vectors("nan.npy", nan)
    missing = w.path("nothere.avq")
    A = ("add", "--index", w.index)
    return [
        ("dimension", (*A, "--base", narrow), ["dimension", "16", "8"]),
        ("count mismatch", (*A, "--base", new, "--ids", short), ["mismatch", str(NQ), str(NQ - 1)]),
        ("duplicate ids", (*A, "--base", new, "--ids", dup), [re.compile(r"twice|duplicate", re.I)]),
        ("id present", (*A, "--base", new, "--ids", taken), ["already", "upsert"]),
        ("reserved id", (*A, "--base", new, "--ids", reserved), ["-1"]),
        ("bad text", (*A, "--base", new, "--ids", junk), ["junk.txt", "line 3", "three"]),
        ("two columns", (*A, "--base", new, "--ids", wide), ["one column"]),
        ("nan", (*A, "--base", nan), ["row 4", "NaN"]),
        ("vectors as ids", (*A, "--base", new, "--ids", new), ["integer ids"]),
        ("missing base", (*A, "--base", w.path("none.fvecs")), ["none.fvecs"]),
        ("missing index", ("add", "--index", missing, "--base", new), ["nothere.avq"]),
        ("upsert without ids", ("upsert", "--index", w.index, "--base", new), ["--ids"]),
        ("upsert mismatch", ("upsert", "--index", w.index, "--base", new, "--ids", short),
         ["mismatch"]),
        ("upsert duplicate", ("upsert", "--index", w.index, "--base", new, "--ids", dup),
         [re.compile(r"twice|duplicate", re.I)]),
        ("remove without ids", ("remove", "--index", w.index), ["--ids"]),
        ("remove bad ids", ("remove", "--index", w.index, "--ids", junk), ["line 3"]),
        ("remove missing index", ("remove", "--index", missing, "--ids", ids), ["nothere.avq"]),
        ("remove takes no base", ("remove", "--index", w.index, "--ids", ids, "--base", new),
         ["--base"]),
        ("compact fraction", ("compact", "--index", w.index, "--min-dead", "1.5"), ["--min-dead"]),
        ("compact missing index", ("compact", "--index", missing), ["nothere.avq"]),
        ("no index", ("add", "--base", new), ["--index"]),
        ("stray argument", (*A, "--base", new, "extra"), ["unexpected argument"]),
        ("threads", (*A, "--base", new, "--threads", "-2"), ["--threads"]),
    ]


def test_refused_inputs_leave_the_index_unchanged(w):
    cases = bad_cases(w)
    snap = w.snapshot()
    for name, argv, needles in cases:
        r = w.run(*argv)
        try:
            refused(r, *needles)
        except AssertionError as e:
            raise AssertionError(f"case '{name}': {e}") from None
        w.assert_unchanged(snap)
    assert not os.path.exists(w.path("nothere.avq"))
    # and the index still works
    assert w.info()[1]["live"] == str(N)


def test_refused_add_with_out_writes_nothing(w):
    out = w.path("out.avq")
    narrow = w.vectors("narrow.fvecs", w.new[:, :8])
    refused(w.run("add", "--index", w.index, "--base", narrow, "--out", out), "dimension")
    assert not os.path.exists(out)


def test_corrupt_index_is_refused(w):
    raw = bytearray(open(w.index, "rb").read())
    raw[len(raw) // 2] ^= 0x10
    bad = w.path("bad.avq")
    open(bad, "wb").write(bytes(raw))
    new = w.vectors("new.fvecs", w.new)
    for argv in (("add", "--index", bad, "--base", new),
                 ("remove", "--index", bad, "--ids", w.ids("i.txt", [1, 2])),
                 ("compact", "--index", bad)):
        refused(w.run(*argv), "bad.avq")
        assert open(bad, "rb").read() == bytes(raw)


# --------------------------------------------------------------------------
# help, and commands moved away
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd,options", [
    ("add", ["--index", "--base", "--ids", "--out", "--threads"]),
    ("remove", ["--index", "--ids", "--out"]),
    ("upsert", ["--index", "--base", "--ids", "--out", "--threads"]),
    ("compact", ["--index", "--min-dead", "--out"]),
    ("info", ["--help"]),
])
def test_help(run_avq, cmd, options):
    out = ok(run_avq(cmd, "--help")).stdout
    assert out.startswith("usage: avq " + cmd)
    for opt in options:
        assert opt in out, f"avq {cmd} --help does not mention {opt}"


def test_paper_moved_to_its_own_program(run_avq):
    for args in (("paper",), ("paper", "--help"), ("paper", "--threads", "2")):
        r = run_avq(*args)
        assert r.returncode == 2
        assert "avq-paper" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "paper" not in ok(run_avq("--help")).stdout.split("commands:")[1].split("\n\n")[0]


def paper_bin():
    path = os.environ.get("AVQ_PAPER_BIN") or os.path.join(REPO, "build", "avq-paper")
    if not os.access(path, os.X_OK):
        pytest.skip(f"{path} not built ('make paper')")
    return path


def test_avq_paper_runs(tmp_path):
    exe = paper_bin()
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: avq-paper"), r.stdout + r.stderr
    r = subprocess.run([exe, "--frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2 and "avq-paper" in r.stderr
    rng = np.random.default_rng(2)
    base = rng.standard_normal((600, 8)).astype(np.float32)
    datalib.write_fvecs(str(tmp_path / "b.fvecs"), base)
    datalib.write_fvecs(str(tmp_path / "q.fvecs"), base[:20] + 0.1)
    r = subprocess.run([exe, "--base", str(tmp_path / "b.fvecs"), "--query",
                        str(tmp_path / "q.fvecs"), "--queries", "20", "--sample", "600",
                        "--iters", "2", "--thresholds", "0.2", "--dims-per-block", "2",
                        "--threads", "1", "--csv", str(tmp_path / "p.csv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "anisotropic" in open(tmp_path / "p.csv").read()


# --------------------------------------------------------------------------
# link hygiene
# --------------------------------------------------------------------------

def test_cli_uses_the_library_beside_it(avq_bin, tmp_path):
    """build/avq links libavq.so.0 with an RPATH of $ORIGIN: it runs from any
    directory, reports the library next to it, and an LD_LIBRARY_PATH
    holding another libavq.so.0 does not replace it."""
    here = os.path.dirname(os.path.realpath(avq_bin))
    r = ok(subprocess.run([avq_bin, "--version"], capture_output=True, text=True, cwd="/"))
    lib = re.search(r"library (\S+)\)", r.stdout)
    assert lib, r.stdout
    assert os.path.dirname(os.path.realpath(lib.group(1))) == here, r.stdout
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        fake = tmp_path / "fake.c"
        fake.write_text('const char *avq_version(void) { return "9.9.9"; }\n'
                        'unsigned avq_version_number(void) { return 90909; }\n')
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(tmp_path / "libavq.so.0"), str(fake)],
                       check=True)
        env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path))
        r = ok(subprocess.run([avq_bin, "--version"], capture_output=True, text=True, env=env))
        assert "9.9.9" not in r.stdout
        assert str(tmp_path) not in r.stdout


def test_cli_is_a_client_of_the_public_header_only(avq_bin):
    readelf = shutil.which("readelf")
    if readelf:
        dyn = subprocess.run([readelf, "-d", avq_bin], capture_output=True, text=True).stdout
        assert re.search(r"NEEDED.*\[libavq\.so\.0\]", dyn), dyn
        assert re.search(r"R(UN)?PATH.*\$ORIGIN", dyn), dyn
    nm = shutil.which("nm")
    if nm:
        syms = subprocess.run([nm, "--defined-only", avq_bin], capture_output=True,
                              text=True).stdout
        own = [l.split()[-1] for l in syms.splitlines() if re.search(r" [Tt] avq_", l)]
        assert not own, f"library code linked into the CLI: {own[:5]}"
    src_headers = {f for f in os.listdir(os.path.join(REPO, "src")) if f.endswith(".h")}
    tools = os.path.join(REPO, "tools")
    for name in sorted(os.listdir(tools)):
        if not name.endswith((".c", ".h")) or name in ("cmd_paper.c",):
            continue
        for inc in re.findall(r'#\s*include\s*"([^"]+)"', open(os.path.join(tools, name)).read()):
            assert "src/" not in inc and os.path.basename(inc) not in src_headers, \
                f"tools/{name} includes {inc}"


def test_tune_from_base_needs_ids_that_are_row_numbers(w):
    ok(w.run("remove", "--index", w.index, "--ids", w.ids("one.txt", [7])))
    kept = w.vectors("kept.fvecs", np.delete(w.base, 7, axis=0))
    q = w.vectors("q.fvecs", w.new)
    refused(w.run("tune", "--index", w.index, "--query", q, "--base", kept, "--runs", 1),
            "row numbers", "--gt")


# ---- the flat-eta warning of `avq build` (issue "True MIPS") ------------------

@pytest.mark.parametrize("metric,dim,scale,extra,warns", [
    ("ip", 64, 8.0, ["--threshold-kind", "absolute"], True),   # |x| >> T: eta = 1
    ("ip", 64, 8.0, [], False),                                # relative default
    ("cos", 16, 1.0, [], True),                                # T = 0.2 < 1/sqrt(16)
    ("cos", 64, 1.0, [], False),
])
def test_build_warns_when_the_loss_is_off(run_avq, tmp_path, metric, dim, scale, extra, warns):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((600, dim)) * scale).astype(np.float32)
    base = tmp_path / "b.fvecs"
    datalib.write_fvecs(str(base), x)
    r = run_avq("build", "--base", base, "--metric", metric, "--out", tmp_path / "i.avq",
                "--brute-force-below", 100, *extra)
    ok(r)
    assert ("warning" in r.stderr) == warns, r.stderr
