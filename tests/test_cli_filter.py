"""End-to-end tests of tags and filtered search in the CLI: `avq build/add/upsert
--tags`, `avq tag`, `avq get-tags`, `avq search --allow-ids/--deny-ids/--tags-any/
--tags-all`, and what `avq info` says about tags and the filter planner.

The oracle is numpy: the allowed set is computed from the tags and id lists the test
wrote, and the reference answer is a brute-force top-k over the allowed vectors only
(conftest.reference_topk), padded with id -1 / score NaN when fewer than k are
allowed.  Two kinds of index, both from fixed seeds:

* a small one (600 vectors) in the exact tier, where every answer must be exact;
* a quantized one (3,000 clustered vectors, 8 leaves, 4-bit PQ) searched over every
  leaf with a wide re-ranking, through both plans of the filter planner: exact
  scoring of the allowed vectors (the default here, since every filter allows fewer
  than 4,096) and the filtered scan (--filter-exact-below 1).

Refused inputs (bad tag files, bad id files, two filters at once, too many tags)
must give one clear message, a non-zero exit status and no file written.
"""

import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import assert_topk_equal, datalib, reference_topk, ok, refused

K = 10
BIG_TAG = 2**32 - 1
POOL = [0, 1, 2, 3, 17, 1000, 65536, BIG_TAG]  # the common tags
RARE = 99                                        # on about 1.5 % of the vectors


def random_tags(rng, n):
    """A list of n sets: 0..3 tags from POOL each, RARE on a few."""
    tags = []
    for _ in range(n):
        t = set(rng.choice(POOL, size=rng.integers(0, 4), replace=True).tolist())
        if rng.random() < 0.015:
            t.add(RARE)
        tags.append(t)
    return tags


def write_tags(path, tags, comments=True):
    """A tag file for `tags` (list of sets) in every syntax the format allows:
    commas, blanks, both, a repeated tag, comment lines, a CRLF line, no final
    newline when the last line is not empty."""
    lines = ["# tags, one line per vector"] if comments else []
    for i, t in enumerate(tags):
        t = sorted(t)
        style = i % 4
        if t and style == 0:
            line = ",".join(map(str, t))
        elif t and style == 1:
            line = "  ".join(map(str, t)) + " "
        elif t and style == 2:
            line = ", ".join(map(str, t + [t[0]]))       # a repeat counts once
        else:
            line = " ".join(map(str, t))
        if comments and i == len(tags) // 2:
            lines.append("   # a comment in the middle")
        lines.append(line + ("\r" if i == 3 else ""))
    text = "\n".join(lines)
    # a final newline ends the last line; without one, a last line that is
    # empty would not exist, so only a non-empty last line may omit it
    if not lines or not lines[-1].strip():
        text += "\n"
    with open(path, "w", newline="") as f:
        f.write(text)
    return path


def write_ids(path, ids):
    ids = np.asarray(ids, dtype=np.int64)
    if path.endswith(".npy"):
        np.save(path, ids)
    elif path.endswith(".ivecs"):
        datalib.write_ivecs(path, ids.reshape(-1, 1).astype(np.int32))
    else:
        with open(path, "w") as f:
            f.write("# allowed ids\n\n")
            f.write("".join(f"{int(i)}\n" for i in ids))
    return path


def filtered_reference(base, query, k, metric, mask, ids=None):
    """Exact top-(k+1) of query over base[mask] (ids[mask]), padded with -1/NaN."""
    ids = np.arange(len(base)) if ids is None else np.asarray(ids)
    sel = np.flatnonzero(mask)
    out_ids = np.full((len(query), k + 1), -1, np.int64)
    out_sc = np.full((len(query), k + 1), np.nan)
    if len(sel):
        m = min(k + 1, len(sel))
        ri, rs = reference_topk(base[sel], query, m, metric)
        out_ids[:, :m] = ids[sel][ri]
        out_sc[:, :m] = rs
    return out_ids, out_sc


def has_any(tags, wanted):
    return np.array([bool(t & set(wanted)) for t in tags])


def has_all(tags, wanted):
    return np.array([set(wanted) <= t for t in tags])


class Work:
    def __init__(self, run, directory, index, base, query, tags, metric):
        self.run, self.dir, self.index = run, directory, index
        self.base, self.query, self.tags, self.metric = base, query, tags, metric
        self.n = len(base)

    def path(self, name):
        return str(self.dir / name)

    def search(self, *extra, index=None, query=None, k=K):
        q = self.path("q.npy")
        np.save(q, self.query if query is None else query)
        out, sc = self.path("res.npy"), self.path("scores.npy")
        for f in (out, sc):
            if os.path.exists(f):
                os.remove(f)
        r = ok(self.run("search", "--index", index or self.index, "--query", q, "--k", k,
                        "--out", out, "--scores", sc, *extra))
        return np.load(out).astype(np.int64), np.load(sc), r

    def filters(self, rng):
        """(name, CLI args, allowed mask) of one filter of every kind."""
        n = self.n
        allow = np.sort(rng.choice(n, n * 3 // 10, replace=False))
        few = rng.choice(n, 25, replace=False)
        deny = rng.choice(n, n * 4 // 10, replace=False)
        m_allow = np.isin(np.arange(n), allow)
        m_few = np.isin(np.arange(n), few)
        with open(self.path("any.txt"), "w") as f:
            f.write(f"# tags of the filter\n1000\n{BIG_TAG}, 1000\n")
        return [
            ("allow-txt", ["--allow-ids", write_ids(self.path("allow.txt"), allow)], m_allow),
            # duplicates and ids not in the index are fine
            ("allow-npy", ["--allow-ids", write_ids(self.path("few.npy"),
                                                    np.r_[few, few[:5], 10**12, n + 7])], m_few),
            ("deny", ["--deny-ids", write_ids(self.path("deny.ivecs"), deny)],
             ~np.isin(np.arange(n), deny)),
            ("tags-any", ["--tags-any", "3,17"], has_any(self.tags, [3, 17])),
            ("tags-any-file", ["--tags-any", "@" + self.path("any.txt")],
             has_any(self.tags, [1000, BIG_TAG])),
            ("tags-all", ["--tags-all", "1,2"], has_all(self.tags, [1, 2])),
            ("tags-all-0", ["--tags-all", f"0 {BIG_TAG}"], has_all(self.tags, [0, BIG_TAG])),
            # fewer than k allowed: the tail is -1 / NaN
            ("rare", ["--tags-any", str(RARE)], has_any(self.tags, [RARE])),
        ]


def build(avq_bin, directory, base, tags, metric, *extra):
    datalib.write_fvecs(str(directory / "base.fvecs"), base)
    tpath = write_tags(str(directory / "tags.txt"), tags)
    index = str(directory / "index.avq")
    r = subprocess.run([avq_bin, "build", "--base", str(directory / "base.fvecs"),
                        "--metric", metric, "--tags", tpath, "--seed", "3", "--out", index,
                        *map(str, extra)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return index


# ------------------------------------------------------------------ fixtures

N_SMALL, DIM_SMALL = 600, 12
N_Q, DIM_Q, LEAVES = 3000, 16, 8


@pytest.fixture(scope="module")
def small_data():
    rng = np.random.default_rng(2024)
    base = (rng.standard_normal((N_SMALL, DIM_SMALL)) *
            rng.uniform(0.3, 2.5, (N_SMALL, 1))).astype(np.float32)
    query = rng.standard_normal((15, DIM_SMALL)).astype(np.float32)
    tags = random_tags(rng, N_SMALL)
    assert 1 <= sum(RARE in t for t in tags) < K   # so "rare" pads
    return base, query, tags


@pytest.fixture(scope="module")
def small_indexes(tmp_path_factory, avq_bin, small_data):
    base, _, tags = small_data
    out = {}
    for metric in ("l2", "ip", "cos"):
        d = tmp_path_factory.mktemp("small_" + metric)
        out[metric] = build(avq_bin, d, base, tags, metric)
    return out


@pytest.fixture(scope="module")
def quant_data():
    rng = np.random.default_rng(77)
    centers = rng.standard_normal((24, DIM_Q)).astype(np.float32) * 3
    base = (centers[rng.integers(0, 24, N_Q)] +
            rng.standard_normal((N_Q, DIM_Q))).astype(np.float32)
    query = (centers[rng.integers(0, 24, 20)] +
             rng.standard_normal((20, DIM_Q))).astype(np.float32)
    tags = random_tags(rng, N_Q)
    return base, query, tags


@pytest.fixture(scope="module")
def quant_indexes(tmp_path_factory, avq_bin, quant_data):
    base, _, tags = quant_data
    out = {}
    for metric in ("l2", "ip"):
        d = tmp_path_factory.mktemp("quant_" + metric)
        out[metric] = build(avq_bin, d, base, tags, metric, "--leaves", LEAVES,
                            "--brute-force-below", 0)
    return out


def small_work(run_avq, tmp_path, small_data, small_indexes, metric="l2", copy=False):
    base, query, tags = small_data
    index = small_indexes[metric]
    if copy:
        index = shutil.copyfile(index, str(tmp_path / "index.avq"))
    return Work(run_avq, tmp_path, index, base, query, tags, metric)


# ------------------------------------------------------- filtered = exact filtered

@pytest.mark.parametrize("metric", ["l2", "ip", "cos"])
def test_exact_tier_filters_equal_brute_force(run_avq, tmp_path, small_data, small_indexes,
                                              metric):
    w = small_work(run_avq, tmp_path, small_data, small_indexes, metric)
    for name, args, mask in w.filters(np.random.default_rng(5)):
        ref_ids, ref_sc = filtered_reference(w.base, w.query, K, metric, mask)
        for mode in ([], ["--batch", "--threads", "2"]):
            ids, sc, _ = w.search(*args, *mode)
            try:
                assert_topk_equal(ids, sc, ref_ids, ref_sc)
                assert np.isin(ids[ids >= 0], np.flatnonzero(mask)).all()
            except AssertionError as e:
                raise AssertionError(f"filter {name} {mode}: {e}") from None


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("plan", ["exact-scoring", "filtered-scan"])
def test_quantized_filters_equal_brute_force(run_avq, tmp_path, quant_data, quant_indexes,
                                             metric, plan):
    base, query, tags = quant_data
    w = Work(run_avq, tmp_path, quant_indexes[metric], base, query, tags, metric)
    extra = ["--leaves-to-search", LEAVES, "--reorder", 300]
    if plan == "filtered-scan":
        extra += ["--filter-exact-below", 1]
    for name, args, mask in w.filters(np.random.default_rng(6)):
        ref_ids, ref_sc = filtered_reference(base, query, K, metric, mask)
        ids, sc, r = w.search(*args, *extra)
        try:
            assert_topk_equal(ids, sc, ref_ids, ref_sc)
        except AssertionError as e:
            raise AssertionError(f"filter {name}: {e}\n{r.stderr}") from None


def test_rare_filter_visits_more_leaves(run_avq, tmp_path, quant_data, quant_indexes):
    """One leaf asked for, the scan plan forced: the filter's few vectors lie in
    many leaves, and the search must go on until it has seen enough of them
    (filter_min_scanned), so the answer is still the exact filtered one."""
    base, query, tags = quant_data
    w = Work(run_avq, tmp_path, quant_indexes["l2"], base, query, tags, "l2")
    mask = has_any(tags, [RARE])
    ids, sc, _ = w.search("--tags-any", RARE, "--leaves-to-search", 1, "--reorder", 60,
                          "--filter-exact-below", 1)
    assert_topk_equal(ids, sc, *filtered_reference(base, query, K, "l2", mask))
    # the same through the planner's default (exact scoring)
    ids, sc, _ = w.search("--tags-any", RARE, "--leaves-to-search", 1)
    assert_topk_equal(ids, sc, *filtered_reference(base, query, K, "l2", mask))
    # a large id allow-list through exact scoring and through the scan
    allow = np.random.default_rng(8).choice(N_Q, 40, replace=False)
    f = write_ids(w.path("allow.txt"), allow)
    ref = filtered_reference(base, query, K, "l2", np.isin(np.arange(N_Q), allow))
    for extra in ([], ["--filter-exact-below", 1, "--filter-min-scanned", 5000]):
        ids, sc, _ = w.search("--allow-ids", f, "--leaves-to-search", 1, "--reorder", 60,
                              *extra)
        assert_topk_equal(ids, sc, *ref)


def test_filter_allowing_everything_equals_unfiltered(run_avq, tmp_path, quant_data,
                                                      quant_indexes):
    base, query, tags = quant_data
    w = Work(run_avq, tmp_path, quant_indexes["ip"], base, query, tags, "ip")
    extra = ["--leaves-to-search", LEAVES, "--reorder", 100]
    plain_ids, plain_sc, _ = w.search(*extra)
    empty = w.path("none.txt")
    open(empty, "w").close()
    everyone = write_ids(w.path("all.npy"), np.arange(N_Q))
    # the scan plan (a filter allowing all 3,000 would otherwise be scored
    # exactly, which is better than the unfiltered search, not equal to it)
    for args in (["--deny-ids", empty, "--filter-exact-below", 1],
                 ["--allow-ids", everyone, "--filter-exact-below", 1]):
        ids, sc, _ = w.search(*args, *extra)
        np.testing.assert_array_equal(ids, plain_ids, err_msg=str(args))
        np.testing.assert_array_equal(sc, plain_sc, err_msg=str(args))


def test_nothing_allowed_gives_no_results(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    empty = w.path("empty.txt")
    with open(empty, "w") as f:
        f.write("# nobody\n\n")
    absent = write_ids(w.path("absent.npy"), [10**12, 10**12 + 1])
    for args in (["--allow-ids", empty], ["--allow-ids", absent],
                 ["--tags-any", "12345"], ["--tags-all", f"{RARE},{BIG_TAG},0,1,2,3"]):
        ids, sc, r = w.search(*args)
        assert (ids == -1).all(), (args, ids)
        assert np.isnan(sc).all(), (args, sc)
        assert "qps" in r.stdout


def test_mmap_and_summary_line(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    mask = has_any(w.tags, [3])
    ids, sc, r = w.search("--tags-any", "3", "--mmap")
    assert_topk_equal(ids, sc, *filtered_reference(w.base, w.query, K, "l2", mask))
    assert "filter tags-any of 1 tag" in r.stderr, r.stderr


def test_max_filter_tags(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    many = list(range(5000, 5000 + 4095)) + [3]               # 4096: the most allowed
    ids, sc, _ = w.search("--tags-any", ",".join(map(str, many)))
    assert_topk_equal(ids, sc, *filtered_reference(w.base, w.query, K, "l2",
                                                   has_any(w.tags, [3])))
    refused(w.run("search", "--index", w.index, "--query", w.path("q.npy"), "--out",
                  w.path("r.npy"), "--tags-all", ",".join(map(str, range(4097)))),
            "--tags-all", "4097", "4096")


def test_tag_list_from_a_fifo_is_refused_not_waited_on(run_avq, tmp_path, small_data,
                                                      small_indexes):
    # issue 16 item 2 for tag files: opening a FIFO for reading waits for a
    # writer; the CLI must refuse it instead of hanging
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    fifo = str(tmp_path / "tags.fifo")
    os.mkfifo(fifo)
    r = w.run("search", "--index", w.index, "--query", w.path("q.npy"), "--out",
              w.path("r.npy"), "--tags-any", "@" + fifo)
    refused(r, "tags.fifo", "not a regular file")


# ------------------------------------------------------------ tags in the index

def parse_get_tags(stdout):
    out = {}
    for line in stdout.splitlines():
        i, _, t = line.partition("\t")
        out[int(i)] = set(map(int, t.split(","))) if t else set()
    return out


def tag_stats(info_stdout):
    m = re.search(r"^tags\s+(\d+) of (\d+) live vectors tagged, (\d+) distinct tags, "
                  r"(\d+) postings", info_stdout, re.M)
    assert m, info_stdout
    return tuple(map(int, m.groups()))


def expected_stats(tags_by_id):
    live = len(tags_by_id)
    tagged = sum(1 for t in tags_by_id.values() if t)
    distinct = len(set().union(*tags_by_id.values())) if tags_by_id else 0
    postings = sum(len(t) for t in tags_by_id.values())
    return tagged, live, distinct, postings


def test_build_tags_and_info(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    ids_file = write_ids(w.path("all.txt"), np.arange(w.n))
    got = parse_get_tags(ok(w.run("get-tags", w.index, "--ids", ids_file)).stdout)
    assert got == dict(enumerate(w.tags))
    # positional ids, in the order given
    r = ok(w.run("get-tags", w.index, 5, 0, 5))
    assert [int(l.split("\t")[0]) for l in r.stdout.splitlines()] == [5, 0, 5]
    info = ok(w.run("info", w.index)).stdout
    assert tag_stats(info) == expected_stats(dict(enumerate(w.tags)))
    planner = re.search(r"^filter planner\s+(.*)$", info, re.M)
    assert planner and "1500" in planner.group(1) and "640" in planner.group(1), info
    # 'cut -f2' of get-tags is a tag file: build a second index from it
    col = w.path("col.txt")
    with open(col, "w") as f:
        f.write("".join(line.split("\t")[1] + "\n" for line in
                        ok(w.run("get-tags", w.index, "--ids", ids_file)).stdout.splitlines()))
    datalib.write_fvecs(w.path("b.fvecs"), w.base)
    ok(w.run("build", "--base", w.path("b.fvecs"), "--metric", "l2", "--tags", col,
             "--out", w.path("again.avq")))
    again = parse_get_tags(ok(w.run("get-tags", w.path("again.avq"), "--ids", ids_file)).stdout)
    assert again == got


def test_index_without_tags(run_avq, tmp_path, small_data):
    base, query, _ = small_data
    datalib.write_fvecs(str(tmp_path / "b.fvecs"), base)
    index = str(tmp_path / "plain.avq")
    ok(run_avq("build", "--base", tmp_path / "b.fvecs", "--metric", "l2", "--out", index))
    assert tag_stats(ok(run_avq("info", index)).stdout) == (0, N_SMALL, 0, 0)
    assert ok(run_avq("get-tags", index, 3)).stdout == "3\t\n"
    w = Work(run_avq, tmp_path, index, base, query, [set()] * N_SMALL, "l2")
    ids, _, _ = w.search("--tags-any", "1")
    assert (ids == -1).all()
    # an allow list works without tags
    allow = np.arange(0, N_SMALL, 7)
    ids, sc, _ = w.search("--allow-ids", write_ids(w.path("a.txt"), allow))
    assert_topk_equal(ids, sc, *filtered_reference(base, query, K, "l2",
                                                   np.isin(np.arange(N_SMALL), allow)))


def test_tags_through_add_upsert_tag_remove_compact(run_avq, tmp_path, small_data,
                                                    small_indexes):
    """Each writer command, then every filter kind against brute force over the
    live vectors as the test's own model holds them."""
    w = small_work(run_avq, tmp_path, small_data, small_indexes, copy=True)
    rng = np.random.default_rng(99)
    vecs = {i: w.base[i] for i in range(w.n)}
    tags = {i: set(t) for i, t in enumerate(w.tags)}

    def check():
        live = np.array(sorted(vecs))
        got = parse_get_tags(ok(w.run("get-tags", w.index, "--ids",
                                      write_ids(w.path("live.txt"), live))).stdout)
        assert got == tags
        assert tag_stats(ok(w.run("info", w.index)).stdout) == expected_stats(tags)
        base = np.stack([vecs[i] for i in live])
        tl = [tags[i] for i in live]
        deny = rng.choice(live, 50, replace=False)
        for args, mask in ((["--tags-any", "777,3"], has_any(tl, [777, 3])),
                           (["--tags-all", "777,778"], has_all(tl, [777, 778])),
                           (["--tags-any", str(RARE)], has_any(tl, [RARE])),
                           (["--deny-ids", write_ids(w.path("deny.txt"), deny)],
                            ~np.isin(live, deny))):
            ids, sc, _ = w.search(*args)
            assert_topk_equal(ids, sc, *filtered_reference(base, w.query, K, "l2", mask, live))

    # add: automatic ids 600..619, tags 777 (and 778 on some)
    new = rng.standard_normal((20, DIM_SMALL)).astype(np.float32)
    new_tags = [{777} | ({778} if i % 3 == 0 else set()) for i in range(20)]
    new_tags[4] = set()
    datalib.write_fvecs(w.path("new.fvecs"), new)
    r = ok(w.run("add", "--index", w.index, "--base", w.path("new.fvecs"), "--tags",
                 write_tags(w.path("new_tags.txt"), new_tags)))
    assert "19 tagged" in r.stdout, r.stdout
    for i in range(20):
        vecs[N_SMALL + i], tags[N_SMALL + i] = new[i], new_tags[i]
    check()

    # upsert without --tags: replaced vectors keep their tags; a new id has none
    rep = rng.standard_normal((6, DIM_SMALL)).astype(np.float32)
    rep_ids = [0, 1, 2, 3, 4, 5000]
    datalib.write_fvecs(w.path("rep.fvecs"), rep)
    ok(w.run("upsert", "--index", w.index, "--base", w.path("rep.fvecs"), "--ids",
             write_ids(w.path("rep.txt"), rep_ids)))
    for i, v in zip(rep_ids, rep):
        vecs[i] = v
    tags[5000] = set()
    check()

    # upsert with --tags: every row gets exactly the tags given
    rep_tags = [{777, 778}, set(), {RARE}, {3}, {1, 2}, {778}]
    rep_ids = [10, 11, 12, 13, 600, 5001]
    ok(w.run("upsert", "--index", w.index, "--base", w.path("rep.fvecs"), "--ids",
             write_ids(w.path("rep2.txt"), rep_ids), "--tags",
             write_tags(w.path("rep_tags.txt"), rep_tags, comments=False)))
    for i, v, t in zip(rep_ids, rep, rep_tags):
        vecs[i], tags[i] = v, t
    check()

    # tag: replace the tags of existing ids (an empty line clears them)
    tag_ids = [20, 21, 601, 5000]
    tag_new = [set(), {42, 777}, {BIG_TAG}, {778, 777, 0}]
    r = ok(w.run("tag", "--index", w.index, "--ids", write_ids(w.path("t.npy"), tag_ids),
                 "--tags", write_tags(w.path("t.txt"), tag_new, comments=False)))
    assert "set the tags of 4 vectors (3 with tags, 6 tags in all)" in r.stdout, r.stdout
    for i, t in zip(tag_ids, tag_new):
        tags[i] = t
    check()

    # remove every vector carrying RARE, and some more; then compact
    gone = [i for i, t in tags.items() if RARE in t] + [600, 602, 7]
    ok(w.run("remove", "--index", w.index, "--ids", write_ids(w.path("gone.txt"), gone)))
    for i in gone:
        del vecs[i], tags[i]
    check()
    ids, _, _ = w.search("--tags-any", str(RARE))
    assert (ids == -1).all()
    ok(w.run("compact", "--index", w.index))
    check()


# ------------------------------------------------------------ refused inputs

def bad_tag_files(d, n):
    """(name, file, needles) of tag files for n vectors that must be refused."""
    def put(name, lines):
        p = str(d / name)
        with open(p, "w") as f:
            f.write("\n".join(lines) + "\n")
        return p
    good = [str(i % 5) for i in range(n)]
    return [
        ("too few", put("short.txt", ["# header"] + good[:-1]),
         ["short.txt", f"{n - 1} lines", f"line {n}", f"{n} rows"]),
        ("too many", put("long.txt", ["# header"] + good + ["1"]),
         ["long.txt", f"line {n + 2}", f"{n} rows"]),
        ("not a number", put("word.txt", ["# header"] + good[:4] + ["3,abc"] + good[5:]),
         ["word.txt", "line 6", "'abc'", "not a tag"]),
        ("too large", put("large.txt", good[:2] + ["1 4294967296"] + good[3:]),
         ["large.txt", "line 3", "4294967296"]),
        ("negative", put("neg.txt", good[:1] + ["-1"] + good[2:]),
         ["neg.txt", "line 2", "'-1'"]),
        ("hex", put("hex.txt", ["0x10"] + good[1:]), ["hex.txt", "line 1", "0x10"]),
        ("empty tag", put("comma.txt", good[:3] + ["3,,4"] + good[4:]),
         ["comma.txt", "line 4", "missing"]),
        ("trailing comma", put("trail.txt", good[:3] + ["3,"] + good[4:]),
         ["trail.txt", "line 4", "missing"]),
        ("too many tags", put("many.txt", good[:3] + [",".join(map(str, range(1025)))]
                              + good[4:]),
         ["many.txt", "line 4", "1025", "1024"]),
        ("missing file", str(d / "nothere.txt"), ["nothere.txt"]),
    ]


def test_build_refuses_bad_tag_files(run_avq, tmp_path, small_data):
    base = small_data[0][:50]
    datalib.write_fvecs(str(tmp_path / "b.fvecs"), base)
    out = tmp_path / "out.avq"
    for name, path, needles in bad_tag_files(tmp_path, 50):
        r = run_avq("build", "--base", tmp_path / "b.fvecs", "--metric", "l2", "--tags", path,
                    "--out", out)
        try:
            refused(r, *needles, code=1)
            assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        except AssertionError as e:
            raise AssertionError(f"case '{name}': {e}") from None
        assert not out.exists()
    # a good file with every allowed detail still builds
    ok(run_avq("build", "--base", tmp_path / "b.fvecs", "--metric", "l2", "--tags",
               write_tags(str(tmp_path / "fine.txt"), random_tags(np.random.default_rng(1), 50)),
               "--out", out))


def test_writers_refuse_bad_tags_and_leave_the_index(run_avq, tmp_path, small_data,
                                                     small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes, copy=True)
    new = small_data[0][:8] + 0.5
    datalib.write_fvecs(w.path("new.fvecs"), new)
    ids8 = write_ids(w.path("ids8.txt"), np.arange(1000, 1008))
    present = write_ids(w.path("present.txt"), [1, 2, 3])
    absent = write_ids(w.path("absent.txt"), [1, 2, 10**9])
    twice = write_ids(w.path("twice.txt"), [1, 2, 1])
    t3 = write_tags(w.path("t3.txt"), [{1}, {2}, {3}], comments=False)
    before = open(w.index, "rb").read()
    names = sorted(os.listdir(w.dir))
    cases = [(("add", "--index", w.index, "--base", w.path("new.fvecs"), "--tags", path), nd)
             for _, path, nd in bad_tag_files(tmp_path, 8)]
    cases += [
        (("upsert", "--index", w.index, "--base", w.path("new.fvecs"), "--ids", ids8,
          "--tags", t3), ["t3.txt", "8 rows"]),
        (("tag", "--index", w.index, "--ids", ids8, "--tags", t3), ["t3.txt", "ids8.txt"]),
        (("tag", "--index", w.index, "--ids", absent, "--tags", t3), ["1000000000"]),
        (("tag", "--index", w.index, "--ids", twice, "--tags", t3), []),
        (("tag", "--index", w.index, "--tags", t3), ["--ids"]),
        (("tag", "--index", w.index, "--ids", present), ["--tags"]),
        (("remove", "--index", w.index, "--ids", present, "--tags", t3), ["--tags"]),
    ]
    names = sorted(os.listdir(w.dir))
    for argv, needles in cases:
        refused(w.run(*argv), *needles)
        assert open(w.index, "rb").read() == before, f"{argv} changed the index"
        assert sorted(os.listdir(w.dir)) == names, f"{argv} left a file"


def test_search_refuses_bad_filters(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    q = w.path("q.npy")
    np.save(q, w.query)
    out = w.path("r.npy")
    S = ("search", "--index", w.index, "--query", q, "--out", out)
    junk = w.path("junk.txt")
    with open(junk, "w") as f:
        f.write("# ids\n1\nseven\n")
    datalib.write_fvecs(w.path("v.fvecs"), w.query)
    tlist = w.path("tlist.txt")
    with open(tlist, "w") as f:
        f.write("1\n2,x\n")
    cases = [
        ((*S, "--allow-ids", junk, "--tags-any", "3"), ["--allow-ids", "--tags-any",
                                                        "exclude"], 2),
        ((*S, "--tags-all", "3", "--deny-ids", junk), ["--tags-all", "--deny-ids"], 2),
        ((*S, "--tags-any", "3", "--tags-any", "4"), ["--tags-any", "twice"], 2),
        ((*S, "--tags-any", ""), ["--tags-any"], 2),
        ((*S, "--tags-any", "3,x"), ["--tags-any", "'x'", "not a tag"], 1),
        ((*S, "--tags-any", "4294967296"), ["4294967296"], 1),
        ((*S, "--tags-all", ","), ["--tags-all", "missing"], 1),
        ((*S, "--tags-any", "@" + tlist), ["tlist.txt", "line 2", "'x'"], 1),
        ((*S, "--tags-any", "@" + w.path("nothere.txt")), ["nothere.txt"], 1),
        ((*S, "--tags-any", "@"), ["--tags-any", "file name"], 1),
        ((*S, "--tags-any", "@" + str(w.dir)), ["not a regular file"], 1),
        ((*S, "--allow-ids", junk), ["junk.txt", "line 3", "seven"], 1),
        ((*S, "--deny-ids", w.path("gone.txt")), ["gone.txt"], 1),
        ((*S, "--allow-ids", w.path("v.fvecs")), ["integer ids"], 1),
        ((*S, "--tags-any", "3", "--filter-exact-below", "0"), ["--filter-exact-below"], 2),
        ((*S, "--tags-any", "3", "--filter-min-scanned", "x"), ["--filter-min-scanned"], 2),
        ((*S, "--filter-exact-below", "10"), ["--filter-exact-below", "filtered"], 2),
        (("search", "--exact", "--base", q, "--query", q, "--metric", "l2", "--out", out,
          "--tags-any", "3"), ["--tags-any", "--index"], 2),
    ]
    for argv, needles, code in cases:
        try:
            refused(w.run(*argv), *needles, code=code)
        except AssertionError as e:
            raise AssertionError(f"{argv[7:]}: {e}") from None
        assert not os.path.exists(out)


def test_get_tags_errors(run_avq, tmp_path, small_data, small_indexes):
    w = small_work(run_avq, tmp_path, small_data, small_indexes)
    r = refused(w.run("get-tags", w.index, 1, 123456), "123456", code=1)
    assert r.stdout == ""
    refused(w.run("get-tags", w.index, "abc"), "'abc'", code=2)
    refused(w.run("get-tags", w.index), "id", code=2)
    refused(w.run("get-tags"), "index", code=2)
    refused(w.run("get-tags", w.index, 1, "--ids", w.path("x.txt")), "not both", code=2)
    refused(w.run("get-tags", w.path("nothere.avq"), 1), "nothere.avq", code=1)
    refused(w.run("get-tags", w.index, "--", -42), "-42", code=1)


@pytest.mark.parametrize("cmd,options", [
    ("search", ["--allow-ids", "--deny-ids", "--tags-any", "--tags-all",
                "--filter-min-scanned", "--filter-exact-below", "one id per line"]),
    ("build", ["--tags", "one line per vector", "empty line"]),
    ("add", ["--tags", "one line per vector"]),
    ("upsert", ["--tags", "keeps its tags"]),
    ("tag", ["--index", "--ids", "--tags", "--out"]),
    ("get-tags", ["--ids", "--mmap"]),
    ("info", ["tags", "filter planner"]),
])
def test_help(run_avq, cmd, options):
    out = ok(run_avq(cmd, "--help")).stdout
    assert out.startswith("usage: avq " + cmd)
    for opt in options:
        assert opt in out, f"avq {cmd} --help does not mention {opt!r}"
