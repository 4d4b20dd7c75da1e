#!/usr/bin/env python3
"""Filtered search on GloVe-100 (cosine, k = 10): avq's tag filters against
what users of FAISS and hnswlib would write, measured interleaved in one run
(issue 13, `make bench-filter`).

Data (prepared once with numpy and cached under DATA_DIR/cache/filter/<key>/,
the key a hash of the recipe below and of the input files; MANIFEST.json there
lists the SHA-256 of every file written):
  queries  a random subset of --recipe nq (1,000) of GloVe's 10,000 queries
           (default_rng(seed)), kept in the drawn order -- the query file is in
           word-frequency order, and any prefix of the drawn order is again a
           random sample (--nq N uses the first N)
  (a) zipf 1,000 tags 0..999, Zipf-distributed (P(tag t) ~ 1 / (t + 1)^s, s = 1);
           every base vector draws 1..5 of them (uniform count; duplicates
           merged).  For each selectivity target the tag set whose union count
           is closest to target * n (greedy: add the tag that brings the union
           closest, while it helps -- one tag for 10 %, 1 %, 0.1 %; the biggest
           tag holds ~1/3 of the base, so 50 % needs a few); every query uses it.
  (b) corr  a second clustering: spherical k-means, k = 1,000, its own seed, on
           the normalised base (numpy); vector i carries the tag 1,000,000 +
           cluster(i).  Query q ranks the clusters by centroid similarity, skips
           its nearest clusters holding corr_skip_fraction (10 %) of the base
           and adds clusters from there on until the count is closest to
           target * n: the allowed vectors lie just beyond the query's own
           neighbourhood (its unfiltered top-10 is allowed less often than under a
           random filter of the same size), the hard case for a partitioned index.
           Reported per group: "depth" = the median number of base vectors
           scoring at least the 10th allowed neighbour (a random filter of
           selectivity s gives about 10 / s).
  Both tag families are in the same index (2..6 tags per vector).
  Ground truth: exact filtered top-10 by brute force (float32 matmul over the
  whole base, disallowed scores masked), per case and selectivity; plus a
  ladder of single (a) tags of ~150 .. ~40,000 vectors for the planner's
  crossover (exact scoring against the filtered scan).

Systems (one thread, one query per call, k = 10, CPU clock of the searching
thread as the headline, wall clock also recorded):
  avq         `avq build --metric cos` (defaults), tags set with
              avq_index_set_tags (build/bench/filter_avq tag), searched with
              avq_filter_tags_any; sweep leaves_to_search x pre_reorder x
              filter_min_scanned with filter_exact_below = 1 (scan forced),
              plus exact scoring forced (filter_exact_below = n) and the
              library's defaults (0:0:0:0)
  faiss-sel   native FAISS 1.7.3 IndexIVFPQ IVF{sqrt n},PQ25x8 (25 bytes of
              codes, as the 4-bit codes), SearchParametersIVF.sel =
              IDSelectorBitmap, exact refine of k * k_factor candidates
  faiss-post  native FAISS IVF{sqrt n},PQ50x4fs fast scan: 1.7.3's
              IndexIVFFastScan::search rejects every SearchParameters (no
              selector), so: ceil(k * k_factor / s) candidates, disallowed
              dropped, the rest re-scored exactly
  hnsw-post   hnswlib 0.6.2 (M 16, efConstruction 200, -march=native): k' =
              ceil(k * margin / s) results with ef = max(ef, k'), the allowed
              ones kept
  The baselines get each query's allow set as a ready bitmap (made before
  timing) and its exact selectivity s; avq builds its masks inside the search.

Protocol: round 1 runs every system's whole grid on every (case, selectivity)
group, the systems in an order rotated per group; later rounds (--runs, default
2) re-time each system's round-1 frontier (report.pareto) down to the lowest
target - 0.05 and avq's exact / default settings (the defaults count as a scan
setting where the planner scanned); each setting keeps its best round.  Caps, the same for every
system: a setting whose pass takes more than --max-seconds of CPU time stops
there (after at least 200 queries) and is reported over that prefix of the
queries (column nq); a family of settings stops growing once a setting reaches
recall --saturate or (baselines) measures below --min-qps.  QPS at a target
recall = best measured setting with recall >= target (bench/report.py's qps_at:
no interpolation).

Usage: /usr/bin/python3 bench/filter.py [--quick] [--nq N] [--runs 2]
           [--cases a,b] [--selectivities 0.5,0.1,0.01,0.001]
           [--systems avq,faiss-sel,faiss-post,hnsw-post] [--no-crossover]
           [--max-seconds 4] [--targets 0.90,0.95] [--prepare-only]
           [--out bench/out/filter] [--data-dir data] [--avq build/avq]
           [--filter-avq build/bench/filter_avq]
           [--baselines build/bench/filter_baselines]
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import datalib  # noqa: E402
import report  # noqa: E402  (pareto, qps_at, md_table)

K = 10
# Change anything here and the data is prepared again (new cache key).
RECIPE = dict(version=1, seed=1313, nq=1000, zipf_tags=1000, zipf_s=1.0, tags_min=1,
              tags_max=5, kmeans_k=1000, kmeans_iter=15, kmeans_seed=4242, corr_skip_fraction=0.10,
              corr_tag_base=1_000_000, selectivities=[0.5, 0.1, 0.01, 0.001],
              ladder=[150, 300, 600, 1200, 2400, 4800, 9600, 19200, 38400])
CSR_MAGIC = b"FLTCSR1\0"
BASELINE_BUILD_VERSION = 1   # bump when filter_baselines.cpp builds its indexes differently


def log(msg):
    print(msg, flush=True)


def run(args):
    r = subprocess.run([str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"filter.py: {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def git_rev():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src", "include"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (src/ or include/ modified)" if dirty else "")
    except OSError:
        return "?"


def sel_name(s):
    return f"{s * 100:g}%"


# ------------------------------------------------------------------ data

def write_csr(path, rows):
    """rows: a list of 1-D uint32 arrays (or lists) -> a FLTCSR1 file, atomically."""
    import numpy as np
    off = np.zeros(len(rows) + 1, dtype="<u8")
    off[1:] = np.cumsum([len(r) for r in rows])
    val = (np.concatenate([np.asarray(r, dtype="<u4") for r in rows])
           if rows else np.zeros(0, "<u4")).astype("<u4")
    write_csr_arrays(path, off, val)


def write_csr_arrays(path, off, val):
    import numpy as np
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(CSR_MAGIC + struct.pack("<QQ", len(off) - 1, len(val)))
        f.write(np.asarray(off, "<u8").tobytes())
        f.write(np.asarray(val, "<u4").tobytes())
    os.replace(tmp, path)


def normalise(x):
    import numpy as np
    x = x.astype(np.float32, copy=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def spherical_kmeans(x, k, iters, seed):
    """Spherical k-means: assign by largest inner product with unit centroids,
    centroid = normalised mean; an empty cluster is reseeded with a random point."""
    import numpy as np
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    c = x[rng.choice(n, k, replace=False)].copy()
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iters + 1):
        for s in range(0, n, 32768):
            labels[s:s + 32768] = np.argmax(x[s:s + 32768] @ c.T, axis=1)
        if it == iters:
            break
        sums = np.stack([np.bincount(labels, weights=x[:, j], minlength=k)
                         for j in range(x.shape[1])], axis=1)
        counts = np.bincount(labels, minlength=k)
        empty = np.nonzero(counts == 0)[0]
        sums[empty] = x[rng.choice(n, len(empty), replace=False)]
        c = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return labels, c


def cached_kmeans(data_dir, base, base_sha, p):
    """spherical_kmeans of the normalised base, kept in DATA_DIR/cache/filter/
    (keyed by its parameters and the base file) so a change elsewhere in the
    recipe does not redo it."""
    import numpy as np
    key = hashlib.sha256(json.dumps([p["kmeans_k"], p["kmeans_iter"], p["kmeans_seed"], base_sha])
                         .encode()).hexdigest()[:16]
    path = os.path.join(data_dir, "cache", "filter", f"kmeans-{key}.npz")
    if os.path.exists(path):
        z = np.load(path)
        if z["labels"].shape == (base.shape[0],):
            return z["labels"], z["centroids"]
    labels, cents = spherical_kmeans(base, p["kmeans_k"], p["kmeans_iter"], p["kmeans_seed"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, labels=labels, centroids=cents)
    os.replace(tmp, path)
    return labels, cents


def greedy_tag_set(postings, counts, target, n):
    """Tags whose union count is closest to target: start empty, add the tag
    that brings the union closest to target while that helps."""
    import numpy as np
    chosen, union, size = [], np.zeros(n, dtype=bool), 0
    while True:
        best = None
        for t, ids in enumerate(postings):
            if t in chosen or counts[t] == 0:
                continue
            new = size + counts[t] - (int(union[ids].sum()) if size else 0)
            if best is None or abs(new - target) < abs(best[1] - target):
                best = (t, new)
        if best is None or (chosen and abs(best[1] - target) >= abs(size - target)):
            return sorted(chosen), size
        chosen.append(best[0])
        union[postings[best[0]]] = True
        size = best[1]


def prepare(a):
    """Build (or reuse) the cached data set; returns its manifest dict with paths."""
    import numpy as np
    glove = os.path.join(a.data_dir, "glove-100")
    base_f, query_f = os.path.join(glove, "base.fvecs"), os.path.join(glove, "query.fvecs")
    for f in (base_f, query_f):
        if not os.path.exists(f):
            sys.exit(f"filter.py: {f} missing: run 'make data'")
    inputs = {"base.fvecs": datalib.sha256_file(base_f), "query.fvecs": datalib.sha256_file(query_f)}
    key = hashlib.sha256(json.dumps([RECIPE, inputs], sort_keys=True).encode()).hexdigest()[:16]
    out = os.path.join(a.data_dir, "cache", "filter", key)
    man_path = os.path.join(out, "MANIFEST.json")
    if os.path.exists(man_path):
        m = json.load(open(man_path))
        if m.get("recipe") == RECIPE and m.get("inputs") == inputs and all(
                os.path.exists(os.path.join(out, f)) and datalib.sha256_file(os.path.join(out, f)) == h
                for f, h in m["files"].items()):
            m["dir"] = out
            log(f"# data: {out} (cached)")
            return m
    log(f"# data: preparing {out}")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    p = RECIPE
    base = normalise(datalib.read_fvecs(base_f))
    n = base.shape[0]
    rng = np.random.default_rng(p["seed"])
    qrows = rng.choice(datalib.read_fvecs(query_f).shape[0], p["nq"], replace=False)
    queries = normalise(datalib.read_fvecs(query_f)[qrows])
    nq = queries.shape[0]

    # (a) Zipf tags
    z = 1.0 / np.arange(1, p["zipf_tags"] + 1) ** p["zipf_s"]
    z /= z.sum()
    per = rng.integers(p["tags_min"], p["tags_max"] + 1, n)
    draws = rng.choice(p["zipf_tags"], int(per.sum()), p=z)
    owner = np.repeat(np.arange(n), per)
    pairs = np.unique(owner.astype(np.int64) * p["zipf_tags"] + draws)
    z_owner, z_tag = pairs // p["zipf_tags"], (pairs % p["zipf_tags"]).astype(np.int64)
    z_counts = np.bincount(z_tag, minlength=p["zipf_tags"])
    order = np.argsort(z_tag, kind="stable")
    z_post = np.split(z_owner[order], np.cumsum(z_counts)[:-1])
    log(f"#   zipf tags: {len(pairs)} postings, largest tag {z_counts.max()} vectors "
        f"({z_counts.max() / n:.1%}), smallest {z_counts.min()} ({time.time() - t0:.0f} s)")

    # (b) clusters of a second clustering
    labels, cents = cached_kmeans(a.data_dir, base, inputs["base.fvecs"], p)
    c_counts = np.bincount(labels, minlength=p["kmeans_k"])
    log(f"#   k-means k={p['kmeans_k']}: cluster sizes {c_counts.min()}..{c_counts.max()} "
        f"(median {int(np.median(c_counts))}) ({time.time() - t0:.0f} s)")

    # base tags: Zipf tags, then the cluster tag
    z_per = np.bincount(z_owner, minlength=n)
    off = np.zeros(n + 1, dtype=np.int64)
    off[1:] = np.cumsum(z_per + 1)
    val = np.empty(off[-1], dtype=np.uint32)
    # positions of the zipf tags: row-major order of `pairs` is by owner then tag
    zpos = off[z_owner] + (np.arange(len(pairs)) - np.repeat(np.cumsum(z_per) - z_per, z_per))
    val[zpos] = z_tag
    val[off[1:] - 1] = p["corr_tag_base"] + labels
    files = {}
    write_csr_arrays(os.path.join(out, "base_tags.csr"), off, val)
    datalib.write_fvecs(os.path.join(out, "queries.fvecs"), queries)

    # filters: name -> (per-query tag lists, per-query allowed mask function)
    groups = {}
    for s in p["selectivities"]:
        tags, size = greedy_tag_set(z_post, z_counts, s * n, n)
        mask = np.zeros(n, dtype=bool)
        for t in tags:
            mask[z_post[t]] = True
        groups[f"a-{sel_name(s)}"] = dict(case="a", target=s, tags=[tags] * nq, masks=mask,
                                          desc=f"tags {tags if len(tags) <= 8 else str(len(tags)) + ' tags'}")
    qc = queries @ cents.T
    corder = np.argsort(-qc, axis=1)
    for s in p["selectivities"]:
        tag_lists, cl_lists = [], []
        for i in range(nq):
            # skip the nearest clusters up to corr_skip_fraction of the base
            # (the cluster crossing that mark included), take the next ones
            cum0 = np.cumsum(c_counts[corder[i]])
            j0 = int(np.searchsorted(cum0, p["corr_skip_fraction"] * n)) + 1
            seq = corder[i, j0:]
            cum = np.cumsum(c_counts[seq])
            j = int(np.searchsorted(cum, s * n))        # first prefix reaching the target
            j = min(j, len(seq) - 1)
            if j > 0 and abs(cum[j - 1] - s * n) <= abs(cum[j] - s * n):
                j -= 1
            cl = np.sort(seq[:j + 1])
            cl_lists.append(cl)
            tag_lists.append((p["corr_tag_base"] + cl).astype(np.uint32))
        groups[f"b-{sel_name(s)}"] = dict(
            case="b", target=s, tags=tag_lists, clusters=cl_lists,
            desc=f"clusters beyond the query's nearest {p['corr_skip_fraction']:.0%} of the base, "
                 f"by centroid similarity")
    ladder = []
    for c in p["ladder"]:
        t = int(np.argmin(np.abs(z_counts - c) + np.isin(np.arange(len(z_counts)), ladder) * n))
        ladder.append(t)
        groups[f"x-{z_counts[t]}"] = dict(case="x", target=z_counts[t] / n, tags=[[t]] * nq,
                                          masks=np.isin(np.arange(n), z_post[t]), desc=f"tag {t}")

    # exact filtered ground truth (and the unfiltered top-10 for the diagnostics)
    gts = {g: np.zeros((nq, K), dtype=np.int32) for g in groups}
    gt_all = np.zeros((nq, K), dtype=np.int32)
    allowed = {g: np.zeros(nq, dtype=np.int64) for g in groups}
    nn_allowed = {g: 0 for g in groups}
    depth = {g: np.zeros(nq, dtype=np.int64) for g in groups}
    for d in groups.values():
        if d["case"] != "b":
            d["ids"] = np.nonzero(d["masks"])[0]
    for s0 in range(0, nq, 64):
        sc = queries[s0:s0 + 64] @ base.T
        top_all = np.argpartition(-sc, K, axis=1)[:, :K]
        o = np.lexsort((top_all, -np.take_along_axis(sc, top_all, axis=1)), axis=1)
        gt_all[s0:s0 + len(sc)] = np.take_along_axis(top_all, o, axis=1)
        for g, d in groups.items():
            if d["case"] == "b":
                lut = np.zeros((len(sc), RECIPE["kmeans_k"]), dtype=bool)
                for r in range(len(sc)):
                    lut[r, d["clusters"][s0 + r]] = True
                mask = lut[:, labels]
                m = np.where(mask, sc, -np.inf)
                top = np.argpartition(-m, K, axis=1)[:, :K]
                tsc = np.take_along_axis(m, top, axis=1)
                allowed[g][s0:s0 + len(sc)] = mask.sum(axis=1)
                nn_allowed[g] += int(np.take_along_axis(mask, top_all, axis=1).sum())
            else:   # one allow set for every query: score only its columns
                ids = d["ids"]
                sub = sc[:, ids]
                top = np.argpartition(-sub, K, axis=1)[:, :K]
                tsc = np.take_along_axis(sub, top, axis=1)
                top = ids[top]
                allowed[g][s0:s0 + len(sc)] = len(ids)
                nn_allowed[g] += int(d["masks"][top_all].sum())
            if not np.isfinite(tsc).all():
                sys.exit(f"filter.py: group {g}: a query allows fewer than {K} vectors")
            o = np.lexsort((top, -tsc), axis=1)
            gts[g][s0:s0 + len(sc)] = np.take_along_axis(top, o, axis=1)
            # depth: base vectors scoring at least the 10th allowed one
            depth[g][s0:s0 + len(sc)] = (sc >= tsc.min(axis=1, keepdims=True)).sum(axis=1)
    # float64 spot check of the ground truth on a few queries
    for g in list(groups)[:2] + [g for g in groups if g.startswith("b-")][:1]:
        d = groups[g]
        for i in range(3):
            mask = np.isin(labels, d["clusters"][i]) if d["case"] == "b" else d["masks"]
            ids = np.nonzero(mask)[0]
            sc = base[ids].astype(np.float64) @ queries[i].astype(np.float64)
            ref = set(ids[np.argsort(-sc)[:K]].tolist())
            if len(ref & set(gts[g][i].tolist())) < K - 1:
                sys.exit(f"filter.py: ground truth of {g} query {i} disagrees with float64")

    datalib.write_ivecs(os.path.join(out, "gt_unfiltered.ivecs"), gt_all)
    meta = {}
    for g, d in groups.items():
        write_csr(os.path.join(out, f"filter_{g}.csr"), d["tags"])
        datalib.write_ivecs(os.path.join(out, f"gt_{g}.ivecs"), gts[g])
        al = allowed[g]
        meta[g] = dict(case=d["case"], target=d["target"], desc=d["desc"],
                       sel_mean=float(al.mean() / n), sel_min=float(al.min() / n),
                       sel_max=float(al.max() / n), allowed_mean=float(al.mean()),
                       tags_per_query=float(np.mean([len(t) for t in d["tags"]])),
                       nn_allowed=nn_allowed[g] / (nq * K),
                       depth_median=float(np.median(depth[g])), depth_random=K / (al.mean() / n))
        log(f"#   {g}: {d['desc']}: selectivity {al.mean() / n:.4%} "
            f"(min {al.min() / n:.4%}, max {al.max() / n:.4%}); unfiltered top-{K} allowed: "
            f"{nn_allowed[g] / (nq * K):.3f}; depth of the 10th allowed (median) "
            f"{int(np.median(depth[g]))} (random filter: ~{K / (al.mean() / n):.0f})")
    for f in os.listdir(out):
        if f != "MANIFEST.json" and ".tmp" not in f:
            files[f] = datalib.sha256_file(os.path.join(out, f))
    m = dict(recipe=RECIPE, inputs=inputs, n=n, nq=nq, query_rows=qrows.tolist(), groups=meta,
             files=files, seconds=round(time.time() - t0, 1))
    with open(man_path + ".tmp", "w") as f:
        json.dump(m, f, indent=1)
    os.replace(man_path + ".tmp", man_path)
    log(f"# data prepared in {time.time() - t0:.0f} s")
    m["dir"] = out
    return m


# ------------------------------------------------------------------ systems

AVQ_LEAVES = [3, 5, 8, 12, 18, 27, 40, 60, 90, 135, 200, 300, 450]
AVQ_REORDER = [40, 80, 160]
AVQ_MIN_SCANNED = [0]
FAISS_NPROBE = [2, 4, 8, 16, 32, 64, 128, 192, 288, 432, 576]
FAISS_KF = [2, 5, 10, 20]
HNSW_EF = [10, 40, 100, 300]
HNSW_MARGIN = [1, 1.5, 2, 3, 5]
QUICK = dict(leaves=[5, 12, 27, 60, 150, 300], reorder=[40, 160], nprobe=[4, 16, 64, 200], kf=[2, 10],
             ef=[40, 200], margin=[1, 2])


class System:
    def __init__(self, name, index, build_s, bpv, note):
        self.name, self.index, self.build_s, self.bpv, self.note = name, index, build_s, bpv, note
        self.rows = {}   # group -> {setting: dict(recall, cpu, wall, nq, extra)}

    def merge(self, group, setting, recall, cpu, wall, nq, extra):
        r = self.rows.setdefault(group, {}).get(setting)
        if r is None:
            self.rows[group][setting] = dict(recall=recall, cpu=cpu, wall=wall, nq=nq, extra=extra,
                                             passes=1)
            return
        if r["nq"] == nq and abs(r["recall"] - recall) > 1e-4:
            log(f"# WARNING {self.name} {group} {setting}: recall {recall} differs from "
                f"{r['recall']} in an earlier round")
        if nq >= r["nq"]:
            if nq > r["nq"]:
                r.update(recall=recall, cpu=0.0, wall=0.0, nq=nq)
            r["cpu"], r["wall"] = max(r["cpu"], cpu), max(r["wall"], wall)
            r["passes"] += 1

    def points(self, group, timer, kind="scan"):
        """(recall, qps) points of a group: kind scan = the frontier settings."""
        out = []
        for st, r in self.rows.get(group, {}).items():
            # avq's defaults count as a scan setting when the planner scanned
            k = avq_kind(st) if self.name == "avq" else "scan"
            if k == "default" and kind == "scan" and r["extra"] == 0:
                k = "scan"
            if self.name == "avq" and kind != "all" and k != kind:
                continue
            out.append(dict(recall=r["recall"], qps=r[timer], setting=st, nq=r["nq"]))
        return out


def avq_kind(setting):
    l, r, s, e = setting.split(":")
    if (l, r, s, e) == ("0", "0", "0", "0"):
        return "default"
    if e != "1":
        return "exact"
    return "scan"


def avq_grid(a, n):
    lv, ro = (QUICK["leaves"], QUICK["reorder"]) if a.quick else (AVQ_LEAVES, AVQ_REORDER)
    ms = [int(x) for x in a.avq_min_scanned.split(",")]
    grid = [f"{l}:{r}:{m}:1" for l in lv for r in ro for m in ms]
    return grid + [f"0:0:0:{n}", "0:0:0:0"]


def baseline_grid(a, system, sel):
    if system.startswith("faiss"):
        npr, kf = (QUICK["nprobe"], QUICK["kf"]) if a.quick else (FAISS_NPROBE, FAISS_KF)
        return [f"{p}:{f}" for p in npr for f in kf]
    efs, margins = (QUICK["ef"], QUICK["margin"]) if a.quick else (HNSW_EF, HNSW_MARGIN)
    grid, seen = [], set()
    for m in margins:
        for ef in efs:
            eff = max(ef, math.ceil(K * m / sel))   # the ef actually used (searchKnn takes max)
            if (m, eff) in seen:
                continue
            seen.add((m, eff))
            grid.append(f"{ef}:{m:g}")
    return grid


def build_avq(a, data, outdir):
    base = os.path.join(a.data_dir, "glove-100", "base.fvecs")
    plain = os.path.join(outdir, "glove.avq")
    tagged = os.path.join(outdir, "glove.tagged.avq")
    t0 = time.time()
    run([a.avq, "build", "--base", base, "--metric", "cos", "--out", plain])
    build_s = time.time() - t0
    out = run([a.filter_avq, "tag", plain, os.path.join(data["dir"], "base_tags.csr"), tagged])
    kv = dict(line.split("=", 1) for line in out.strip().split("\n"))
    info = run([a.avq, "info", tagged]).strip()
    n = data["n"]
    s = System("avq", tagged, build_s, os.path.getsize(tagged) / n,
               f"avq build --metric cos (defaults, {kv['leaves']} leaves), tags by "
               f"avq_index_set_tags ({float(kv['set_tags_s']):.2f} s; {kv['tag_postings']} postings, "
               f"{kv['distinct_tags']} distinct tags)")
    s.plain_bpv = os.path.getsize(plain) / n
    s.info = info
    s.leaves = int(kv["leaves"])
    log(f"# avq: built in {build_s:.1f} s, tagged in {float(kv['set_tags_s']):.2f} s; "
        f"{s.bpv:.1f} bytes/vector with tags ({s.plain_bpv:.1f} without)")
    return s


def build_baseline(a, data, name):
    """FAISS / hnswlib indexes are cached under DATA_DIR/cache/filter/indexes/
    (keyed by the base file, the parameters and the FAISS build)."""
    base = os.path.join(a.data_dir, "glove-100", "base.fvecs")
    if name.startswith("faiss"):
        kind = name.split("-")[1]
        cmd = ["build-faiss", "--base", base, "--kind", kind, "--threads", "2"]
        stamp = open(a.faiss_info).read() if a.faiss_info and os.path.exists(a.faiss_info) else ""
    else:
        cmd = ["build-hnsw", "--base", base, "--M", "16", "--efc", "200", "--threads", "2"]
        stamp = "hnswlib " + datalib.sha256_file("/usr/include/hnswlib/hnswalg.h")
    key = hashlib.sha256(json.dumps([BASELINE_BUILD_VERSION, cmd[1:], data["inputs"]["base.fvecs"],
                                     stamp]).encode()).hexdigest()[:12]
    cache = os.path.join(a.data_dir, "cache", "filter", "indexes")
    os.makedirs(cache, exist_ok=True)
    index = os.path.join(cache, f"{name}-{key}.index")
    meta = index + ".json"
    if os.path.exists(index) and os.path.exists(meta):
        kv = json.load(open(meta))
        log(f"# {name}: {index} (cached; built in {float(kv['build_s']):.1f} s)")
    else:
        kv = dict(line.split("=", 1) for line in run([a.baselines, *cmd, "--out", index]).strip().split("\n"))
        json.dump(kv, open(meta, "w"), indent=1)
        log(f"# {name}: built in {float(kv['build_s']):.1f} s")
    note = kv["description"]
    if name.startswith("faiss"):
        note += f" (FAISS {kv['faiss_version']}, {kv['compile_options'].strip()})"
        note += ", IDSelectorBitmap in SearchParametersIVF" if name == "faiss-sel" else \
            ", post-filtered (IndexIVFFastScan takes no SearchParameters in 1.7.3)"
    else:
        note += ", post-filtered (0.6.2 has no filter functor)"
    return System(name, index, float(kv["build_s"]), float(kv["bytes_per_vector"]), note)


def near_frontier(s, group, settings, timer, low):
    """The settings of `settings` on the frontier measured so far (report.pareto
    of the scan settings) with recall >= low, and avq's exact / default settings."""
    rows = s.rows.get(group, {})
    pts = [dict(recall=r["recall"], qps=r[timer], setting=st) for st, r in rows.items()
           if s.name != "avq" or avq_kind(st) == "scan"]
    front = {p["setting"] for p in report.pareto(pts) if p["recall"] >= low}
    return [st for st in settings if st in rows and
            (st in front or (s.name == "avq" and avq_kind(st) != "scan"))]


def time_system(a, s, data, group, settings, nq):
    d = data["dir"]
    q = os.path.join(d, "queries.fvecs")
    filt = os.path.join(d, f"filter_{group}.csr") if group != "u" else \
        os.path.join(d, f"filter_a-{sel_name(RECIPE['selectivities'][0])}.csr")
    gt = os.path.join(d, f"gt_{group}.ivecs") if group != "u" else os.path.join(d, "gt_unfiltered.ivecs")
    spec = ",".join(settings)
    if s.name == "avq":
        extra = ["--no-filter"] if group == "u" else []
        out = run([a.filter_avq, "search", s.index, q, filt, gt, "--settings", spec, "--k", K,
                   "--repeat", a.repeat, "--nq", nq, "--saturate", a.saturate,
                   "--max-seconds", a.max_seconds, "--min-queries", min(200, nq), *extra])
    else:
        out = run([a.baselines, "search", "--system", s.name, "--index", s.index,
                   "--base", os.path.join(a.data_dir, "glove-100", "base.fvecs"), "--query", q,
                   "--tags", os.path.join(d, "base_tags.csr"), "--filters", filt, "--gt", gt,
                   "--settings", spec, "--k", K, "--repeat", a.repeat, "--nq", nq,
                   "--max-seconds", a.max_seconds, "--min-queries", min(200, nq),
                   "--saturate", a.saturate, "--min-qps", a.min_qps])
    lines = out.strip().split("\n")[1:]
    if len(lines) != len(settings):
        sys.exit(f"filter.py: {s.name} {group}: expected {len(settings)} rows, got:\n{out}")
    for st, line in zip(settings, lines):
        f = line.split(",")
        if s.name == "avq":
            rec, qw, qc, n_, extra = float(f[4]), float(f[5]), float(f[6]), int(f[7]), float(f[8])
        else:
            rec, qw, qc, n_, extra = float(f[2]), float(f[3]), float(f[4]), int(f[5]), float(f[6])
        if rec < 0:
            continue   # skipped: a cheaper setting of the same family already reached --saturate
        s.merge(group, st, rec, qc, qw, n_, extra)


# ------------------------------------------------------------------ report

def fmt_qps(x):
    return f"{x:,.0f}"


def best_at(points, t):
    q, p = report.qps_at(points, t)
    return p


def crossover(rows, target):
    """Allowed count where exact scoring and the best filtered scan with recall >=
    target are equally fast (log-linear between the ladder points); rows =
    [(count, exact_qps, scan_qps or None)] by count."""
    prev = None
    for c, e, sq in rows:
        r = e / sq if sq else math.inf
        if prev and prev[1] >= 1 > r:
            (c0, r0), f = prev, (math.log(prev[1]) / (math.log(prev[1]) - math.log(r)))
            return round(math.exp(math.log(c0) + f * (math.log(c) - math.log(c0))))
        prev = (c, r)
    if rows and prev and prev[1] >= 1:
        return f"> {rows[-1][0]}"
    return f"< {rows[0][0]}" if rows else "-"


def write_report(a, data, systems, groups, targets, info, path_md, path_csv):
    timer = a.timer
    g_meta = data["groups"]
    avq = next(s for s in systems if s.name == "avq")
    baselines = [s for s in systems if s.name != "avq"]
    with open(path_csv, "w") as f:
        f.write("group,system,setting,recall,qps_cpu,qps_wall,nq,extra,passes\n")
        for s in systems:
            for g in s.rows:
                for st, r in sorted(s.rows[g].items()):
                    f.write(f"{g},{s.name},{st},{r['recall']:.4f},{r['cpu']:.1f},{r['wall']:.1f},"
                            f"{r['nq']},{r['extra']:g},{r['passes']}\n")
    md = [f"## Filtered search on GloVe-100 (cosine, k = {K}, recall@{K} against exact filtered top-{K})",
          "", info, "",
          "| system | index | build s | bytes/vector |", "|---|---|---:|---:|"]
    for s in systems:
        md.append(f"| {s.name} | {s.note} | {s.build_s:.1f} | {s.bpv:.1f} |")
    md += ["", f"QPS = queries/s on one thread, one query per call, timer {timer}; each cell is the "
           "best measured setting with recall >= the target (no interpolation), `-` = not reached; "
           "ratio = avq / system at that target. avq settings are leaves:pre_reorder:"
           "filter_min_scanned:filter_exact_below (`L:R:0:1` = filtered scan forced, `0:0:0:n` = "
           "exact plan forced, `0:0:0:0` = the library's defaults); avq's row takes the best of "
           "all of them. Baselines: faiss nprobe:k_factor, hnsw ef:margin; `nq` = queries "
           "measured when the time cap cut a setting short.", ""]
    verdict = []
    for case in ("a", "b"):
        cg = [g for g in groups if g.startswith(case + "-")]
        if not cg:
            continue
        md += [f"### ({case}) " + ("Zipf tags, one tag set per selectivity" if case == "a" else
                                    "cluster tags anti-correlated with the query"), ""]
        header = ["selectivity (actual)", "system"]
        for t in targets:
            header += [f"QPS @{t:.2f}", f"setting @{t:.2f}", f"avq ÷ it @{t:.2f}"]
        header += ["max recall"]
        body = []
        for g in cg:
            m = g_meta[g]
            sel = f"{sel_name(m['target'])} ({m['sel_mean']:.3%})"
            # avq at a target: its best setting of any kind (scan sweep, exact plan
            # forced, defaults) -- what a user can get
            ap = avq.points(g, timer, "all")
            for s in [avq] + baselines:
                pts = s.points(g, timer, "all")
                if not pts:
                    continue
                row = [sel, s.name]
                for t in targets:
                    p = best_at(pts, t)
                    pa = best_at(ap, t)
                    if p is None:
                        row += ["-", "-", "∞" if pa and s is not avq else "-"]
                        continue
                    row += [fmt_qps(p["qps"]), f"{p['setting']} ({p['recall']:.3f}"
                            + (f", nq {p['nq']})" if p["nq"] < data["nq_used"] else ")"),
                            f"{pa['qps'] / p['qps']:.2f}x" if pa and s is not avq else ("-" if s is not avq else "")]
                row.append(f"{max(p['recall'] for p in pts):.3f}")
                body.append(row)
                sel = ""
            for kind in ("exact", "default"):
                r = [v for st, v in avq.rows.get(g, {}).items() if avq_kind(st) == kind]
                if r:
                    v = r[0]
                    row = ["", f"avq {kind}" + (f" (planner: exact for {v['extra']:.0%})" if kind == "default" else " (forced)"),
                           fmt_qps(v[timer]), f"recall {v['recall']:.3f}", ""]
                    row += [""] * (len(header) - len(row))
                    body.append(row)
            # acceptance
            reach = max((p["recall"] for p in avq.points(g, timer)), default=0)
            dflt = [v for st, v in avq.rows.get(g, {}).items() if avq_kind(st) == "default"]
            verdict.append((g, "recall >= 0.90 reachable by the filtered scan", reach >= 0.90,
                            f"max {reach:.3f}"))
            if dflt:
                verdict.append((g, "recall >= 0.90 at the defaults (info)", dflt[0]["recall"] >= 0.90,
                                f"{dflt[0]['recall']:.3f} at {fmt_qps(dflt[0][timer])} QPS"))
            if abs(m["target"] - 0.01) < 1e-9:
                pa = best_at(ap, 0.90)
                for s in baselines:
                    p = best_at(s.points(g, timer), 0.90)
                    need = 3.0 if s.name.startswith("hnsw") else 1.0
                    if pa is None:
                        ok, why = False, "avq does not reach 0.90"
                    elif p is None:
                        ok, why = True, f"{s.name} does not reach 0.90 (avq {fmt_qps(pa['qps'])})"
                    else:
                        ok, why = pa["qps"] >= need * p["qps"], f"{pa['qps'] / p['qps']:.2f}x"
                    verdict.append((g, f"avq >= {need:g}x {s.name} at 0.90", ok, why))
        md += [report.md_table(header, body), ""]

    # frontiers
    md += ["### Frontiers (recall, QPS) per group", ""]
    for g in groups:
        if g.startswith("x-"):
            continue
        md.append(f"- **{g}** ({g_meta[g]['desc'] if g in g_meta else 'no filter'}):")
        for s in systems:
            pts = report.pareto(s.points(g, timer))
            if pts:
                md.append(f"  - {s.name}: " + ", ".join(
                    f"{p['setting']} {p['recall']:.3f}/{fmt_qps(p['qps'])}" for p in pts))
    md.append("")

    # planner crossover: exact scoring vs the filtered scan, by allowed count
    xg = sorted((g for g in avq.rows if g.startswith(("x-", "a-", "b-"))),
                key=lambda g: g_meta[g]["allowed_mean"])
    if any(g.startswith("x-") for g in xg):
        md += ["### Planner crossover: exact scoring of the allowed vectors vs filtered scan", "",
               "Exact = filter_exact_below = n (every allowed vector scored exactly); scan = "
               "filter_exact_below = 1, best setting of the sweep with recall >= the target.", ""]
        header = ["group", "allowed (mean)", "exact QPS (recall)"]
        for t in targets + [0.99]:
            header += [f"scan QPS @{t:.2f}", f"exact ÷ scan @{t:.2f}"]
        body, ladder = [], {t: [] for t in targets + [0.99]}
        for g in xg:
            ex = [v for st, v in avq.rows[g].items() if avq_kind(st) == "exact"]
            if not ex:
                continue
            e = ex[0]
            row = [g, f"{g_meta[g]['allowed_mean']:,.0f}", f"{fmt_qps(e[timer])} ({e['recall']:.3f})"]
            for t in targets + [0.99]:
                p = best_at(avq.points(g, timer), t)
                row += [fmt_qps(p["qps"]) if p else "-", f"{e[timer] / p['qps']:.2f}" if p else "∞"]
                if g.startswith(("x-", "a-")):
                    ladder[t].append((g_meta[g]["allowed_mean"], e[timer], p["qps"] if p else None))
            body.append(row)
        md += [report.md_table(header, body), ""]
        md.append("Crossover (allowed count where exact and scan are equally fast; tags of "
                  "case (a) and the ladder): " + ", ".join(
                      f"recall {t:.2f}: {crossover(sorted(ladder[t]), t)}" for t in targets + [0.99]))
        md.append("")
    if "u" in avq.rows:
        md += ["Unfiltered avq on the same queries (reference): " + ", ".join(
            f"{st} {v['recall']:.3f}/{fmt_qps(v[timer])}" for st, v in sorted(avq.rows["u"].items())), ""]
    md += ["### Acceptance", "", "| group | check | verdict | detail |", "|---|---|---|---|"]
    for g, what, ok, why in verdict:
        md.append(f"| {g} | {what} | {'PASS' if ok else 'FAIL'} | {why} |")
    md.append("")
    with open(path_md, "w") as f:
        f.write("\n".join(md) + "\n")
    return md


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "filter"))
    ap.add_argument("--avq", default=os.path.join(ROOT, "build", "avq"))
    ap.add_argument("--filter-avq", default=os.path.join(ROOT, "build", "bench", "filter_avq"))
    ap.add_argument("--baselines", default=os.path.join(ROOT, "build", "bench", "filter_baselines"))
    ap.add_argument("--faiss-info", default=None, help="BUILDINFO of the native FAISS (recorded)")
    ap.add_argument("--nq", type=int, default=0, help="use the first N of the drawn queries (0 = all)")
    ap.add_argument("--runs", type=int, default=2, help="rounds over every group")
    ap.add_argument("--repeat", type=int, default=1, help="passes per setting inside a round")
    ap.add_argument("--cases", default="a,b")
    ap.add_argument("--selectivities", default=",".join(f"{s:g}" for s in RECIPE["selectivities"]))
    ap.add_argument("--systems", default="avq,faiss-sel,faiss-post,hnsw-post")
    ap.add_argument("--avq-min-scanned", default=",".join(map(str, AVQ_MIN_SCANNED)),
                    help="filter_min_scanned values swept (0 = the library's default)")
    ap.add_argument("--no-crossover", action="store_true", help="skip the planner ladder")
    ap.add_argument("--max-seconds", type=float, default=1.5,
                    help="CPU seconds after which a baseline setting stops (0 = never)")
    ap.add_argument("--saturate", type=float, default=0.995,
                    help="skip a system's settings with more leaves / nprobe / ef once a cheaper "
                         "one of the same family reached this recall (0 = sweep everything)")
    ap.add_argument("--min-qps", type=float, default=20,
                    help="skip a baseline's settings with more nprobe / ef once one of the same "
                         "family measured fewer queries/s than this (0 = never)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report from the last run's OUT/filter.json")
    ap.add_argument("--timer", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--targets", default="0.90,0.95")
    ap.add_argument("--quick", action="store_true", help="small grids, 1 round")
    ap.add_argument("--prepare-only", action="store_true")
    a = ap.parse_args()
    a.baselines_src = os.path.join(ROOT, "bench", "filter_baselines.cpp")
    if a.quick:
        a.runs = 1
    targets = [float(t) for t in a.targets.split(",")]
    t_start = time.time()
    data = prepare(a)
    if a.prepare_only:
        return
    os.makedirs(a.out, exist_ok=True)
    if a.report_only:
        j = json.load(open(os.path.join(a.out, "filter.json")))
        systems = []
        for d in j["systems"]:
            s = System(d["name"], d["index"], d["build_s"], d["bpv"], d["note"])
            s.rows = d["rows"]
            systems.append(s)
        data["nq_used"] = j["nq"]
        md = write_report(a, data, systems, j["groups"], targets, j["info"],
                          os.path.join(a.out, "filter.md"), os.path.join(a.out, "filter.csv"))
        log("\n".join(md))
        return
    load0, rev0 = loadavg(), git_rev()
    nq = min(a.nq or data["nq"], data["nq"])
    data["nq_used"] = nq
    bindir = os.path.join(a.out, "bin")
    os.makedirs(bindir, exist_ok=True)
    for attr in ("filter_avq", "baselines"):
        dst = os.path.join(bindir, os.path.basename(getattr(a, attr)))
        shutil.copy2(getattr(a, attr), dst)
        setattr(a, attr, dst)
    log(f"# filtered search, GloVe-100 cosine, k = {K}, {nq} queries; load average {load0}; avq {rev0}")
    names = a.systems.split(",")
    systems = []
    if "avq" in names:
        systems.append(build_avq(a, data, a.out))
    for nm in names:
        if nm != "avq":
            systems.append(build_baseline(a, data, nm))
    sels = [float(x) for x in a.selectivities.split(",")]
    groups = [f"{c}-{sel_name(s)}" for c in a.cases.split(",") for s in sels]
    for g in groups:
        if g not in data["groups"]:
            sys.exit(f"filter.py: no prepared group {g} (selectivities of the recipe: "
                     f"{RECIPE['selectivities']})")
    xgroups = [] if a.no_crossover or a.quick or "avq" not in names else \
        [g for g in data["groups"] if g.startswith("x-")]
    n = data["n"]
    t0 = time.time()
    for r in range(a.runs):
        for gi, g in enumerate(groups + xgroups + ["u"]):
            sysl = systems if g in groups else [s for s in systems if s.name == "avq"]
            rot = (r + gi) % len(sysl)
            for s in sysl[rot:] + sysl[:rot]:
                if s.name == "avq":
                    settings = avq_grid(a, n) if g != "u" else ["0:0:0:0", "20:80:0:0"]
                else:
                    settings = baseline_grid(a, s.name, data["groups"][g]["sel_mean"])
                if r > 0:   # later rounds: only the settings near the first round's frontier
                    settings = near_frontier(s, g, settings, a.timer, min(targets) - 0.05)
                if not settings:
                    continue
                t1 = time.time()
                time_system(a, s, data, g, settings, nq)
                log(f"#   round {r + 1}/{a.runs} {g} {s.name}: {len(settings)} settings "
                    f"in {time.time() - t1:.0f} s")
    load1, rev1 = loadavg(), git_rev()
    info = (f"avq {rev0}{'' if rev1 == rev0 else ' at the start, ' + rev1 + ' at the end'}; "
            f"{nq} random queries of 10,000 (seed {RECIPE['seed']}); rounds {a.runs}, passes per "
            f"setting and round {a.repeat}; baseline settings capped at {a.max_seconds:g} CPU s; "
            f"timer {a.timer}; load average {load0} -> {load1}; "
            f"measuring {time.time() - t0:.0f} s, total {time.time() - t_start:.0f} s")
    with open(os.path.join(a.out, "filter.json"), "w") as f:
        json.dump(dict(info=info, groups=groups, nq=nq, systems=[
            dict(name=s.name, index=s.index, build_s=s.build_s, bpv=s.bpv, note=s.note, rows=s.rows)
            for s in systems]), f, indent=1)
    md = write_report(a, data, systems, groups, targets, info,
                      os.path.join(a.out, "filter.md"), os.path.join(a.out, "filter.csv"))
    log("\n".join(md))
    log(f"wrote {os.path.join(a.out, 'filter.md')} and {os.path.join(a.out, 'filter.csv')}")


if __name__ == "__main__":
    main()
