#!/usr/bin/env python3
"""True maximum inner product search (raw, un-normalised vectors): avq against a
FAISS compiled for this CPU, measured interleaved in one run.

Systems (all k = 10, one thread, one query per call, exact re-ranking of the
candidates with the float vectors):
  avq         `avq build --metric ip` with the library's ip defaults
  avq-recon   the same with `--threshold none` (reconstruction-loss PQ codes)
  faiss       IVF{L},PQ{M}x4fs,RFlat, METRIC_INNER_PRODUCT, L = round(sqrt n),
              M = d/2 (4 bits, 2 dims per code), FAISS's spherical k-means for
              the lists, PQ on residuals (--faiss-by-residual), implem 0 (FAISS's
              choice); build/bench/mips_faiss, linked against bench/faiss_native.sh's
              build, never Debian's generic libfaiss
  faiss-i11   the same index searched with IndexIVFFastScan::implem = 11 (each
              query's probed lists scanned in turn into a reservoir top-k) instead
              of FAISS's automatic choice (13 when k * k_factor > 20: query/list
              pairs grouped by list, made for batches); --faiss-implem
  faiss-l2km  (--faiss-coarse ip,l2) the same with plain L2 k-means lists (much
              less even on GloVe: imbalance 9 against 1.5)
The ratios are against the best FAISS variant at each target.
The settings are the same grid for both libraries: leaves_to_search = nprobe
over fractions of the leaf count up to all of them, pre_reorder = k_factor * k
from 20 to 800.

Protocol: (1) screening: every setting of every system once over a random
subset of the queries (--screen-nq, default 2000, fixed seed; GloVe's query
file is in word-frequency order, so its first rows are not a sample), in groups
of settings, the systems alternating group by group; (2) for each target recall
the fastest few settings of each system whose screening recall is at least
target - 0.015, the fastest two at target + 0.01, and up to six near the
screening frontier (recall in [target - 0.015, target + 0.04], no setting at
least as accurate more than 10 % faster) are timed over the whole
query set (or --nq random queries) --runs rounds, the systems in rotated order
each round.  Recall is that of the whole set (it does not depend on the
timing).  A system's QPS at a target is its best pass over the stage-2
settings with recall >= target (no interpolation).  Every timing process first
runs an untimed warm-up setting (1/16 of the leaves, pre_reorder 80) and
times each setting ceil(2500 / queries) passes (best kept).  Timers:
the CPU clock of the searching thread (FAISS: CLOCK_THREAD_CPUTIME_ID; avq's
recall_qps: the process CPU clock, one thread) is the headline on this shared
machine (--timer cpu); the wall clock is also reported.

Data sets:
  glove  DATA_DIR/glove-100: base.fvecs, query.fvecs, gt_ip.ivecs (`make data`)
  synth  DATA_DIR/mips-synth-64: generated here on first use (numpy, fixed seed;
         recipe in synth() and bench/README.md), ground truth by `avq gt --metric ip`
  sif    DATA_DIR/sif-2m-100 (`make data-large`): 2M unit-norm sentence-like vectors
         (issue 15's scale set), gt_cos.ivecs; avq builds with --metric cos (the
         vectors are normalised, so FAISS's inner product is the same ranking), and
         only the default avq variant is built (a 2M build costs minutes)

Usage: /usr/bin/python3 bench/mips.py [--dataset glove|synth] [--quick] [--runs 3]
           [--nq N] [--screen-nq 2000] [--timer cpu|wall] [--targets 0.90,0.95] [--faiss-coarse ip]
           [--out bench/out/mips] [--data-dir data] [--avq build/avq]
           [--recall-qps build/bench/recall_qps] [--faiss build/bench/mips_faiss]
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import datalib  # noqa: E402

K = 10
LEAF_FRACTIONS = [0.005, 0.007, 0.01, 0.014, 0.02, 0.028, 0.04, 0.056, 0.08, 0.11, 0.16,
                  0.22, 0.32, 0.45, 0.64, 1.0]
REORDERS = [20, 30, 50, 80, 120, 200, 300, 500, 800]   # pre_reorder = k_factor * k
QUICK_FRACTIONS = [0.007, 0.014, 0.028, 0.056, 0.11, 0.22, 0.45, 1.0]
QUICK_REORDERS = [30, 80, 200, 500]
GROUP = 16                                      # settings per timing process in screening
PER_TARGET = 4                                  # settings per target re-timed in stage 2
SAFE_PER_TARGET = 2                             # ... and with screening recall >= target + 0.01
FRONTIER_PER_TARGET = 6                         # ... and near the screening frontier around it
MIN_QUERIES_PER_CALL = 2500                     # timed passes per process: ceil(this / queries)

# The synthetic MIPS set: change anything here and the files are regenerated.
SYNTH = dict(name="mips-synth-64", seed=20200, n=200_000, nq=1_000, d=64, components=64,
             spread_lo=0.4, spread_hi=1.2, norm_sigma=0.6, gt_k=100)


def log(msg):
    print(msg, flush=True)


def run(args, env=None):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"mips.py: {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def count_rows(path):
    """Rows of an .fvecs file, from its size and first dimension."""
    with open(path, "rb") as f:
        dim = int.from_bytes(f.read(4), "little")
    return os.path.getsize(path) // (4 * (1 + dim))


def sha256(path):
    return datalib.sha256_file(path)


# ----------------------------------------------------------------- data sets

def synth(data_dir, avq):
    """200k x 64 MIPS set.  Points: a Gaussian mixture (64 components, means
    N(0, I), isotropic spread per component uniform in [0.4, 1.2], mixture
    weights Dirichlet(1)), then each base vector's norm multiplied by a
    log-normal factor exp(N(0, 0.6^2)) -- so the norms are heavy-tailed and
    the largest inner products are not the nearest neighbours.  Queries: 1,000
    more draws from the same mixture, norms left as drawn (a query's norm does
    not change its ranking).  float32; ground truth: exact top-100 by inner
    product, `avq gt --metric ip` (brute force, ties to the lower id)."""
    import numpy as np
    p = SYNTH
    out = os.path.join(data_dir, p["name"])
    os.makedirs(out, exist_ok=True)
    files = {f: os.path.join(out, f) for f in ("base.fvecs", "query.fvecs", "gt_ip.ivecs")}
    manifest = os.path.join(out, "MANIFEST.json")
    if os.path.exists(manifest):
        m = json.load(open(manifest))
        if m.get("recipe") == p and all(
                os.path.exists(files[f]) and sha256(files[f]) == m["sha256"].get(f) for f in files):
            return out
    log(f"# generating {out} (seed {p['seed']})")
    rng = np.random.default_rng(p["seed"])
    c, d = p["components"], p["d"]
    means = rng.standard_normal((c, d))
    spread = rng.uniform(p["spread_lo"], p["spread_hi"], c)
    weights = rng.dirichlet(np.ones(c))
    total = p["n"] + p["nq"]
    comp = rng.choice(c, size=total, p=weights)
    x = means[comp] + spread[comp, None] * rng.standard_normal((total, d))
    base, query = x[:p["n"]], x[p["n"]:]
    base = base * rng.lognormal(0.0, p["norm_sigma"], p["n"])[:, None]
    datalib.write_fvecs(files["base.fvecs"], base.astype(np.float32))
    datalib.write_fvecs(files["query.fvecs"], query.astype(np.float32))
    run([avq, "gt", "--base", files["base.fvecs"], "--query", files["query.fvecs"],
         "--k", str(p["gt_k"]), "--metric", "ip", "--out", files["gt_ip.ivecs"]])
    # spot check of the ground truth in float64
    b = datalib.read_fvecs(files["base.fvecs"]).astype(np.float64)
    q = datalib.read_fvecs(files["query.fvecs"]).astype(np.float64)[:50]
    gt = datalib.read_ivecs(files["gt_ip.ivecs"])[:50, :K]
    top = np.argsort(-(q @ b.T), axis=1)[:, :K]
    agree = np.mean([len(set(gt[i]) & set(top[i])) / K for i in range(len(q))])
    if agree < 0.99:
        sys.exit(f"mips.py: avq gt and numpy disagree on the synthetic top-{K} ({agree:.3f})")
    norms = np.linalg.norm(b, axis=1)
    log(f"# base norms: min {norms.min():.2f} median {np.median(norms):.2f} "
        f"p99 {np.percentile(norms, 99):.2f} max {norms.max():.2f}; numpy agrees on top-{K}: {agree:.3f}")
    json.dump({"recipe": p, "sha256": {f: sha256(files[f]) for f in files}},
              open(manifest, "w"), indent=1)
    return out


def dataset(a):
    """(name, directory, ground-truth file name, avq metric)"""
    for key, name, gt, metric, make in (("glove", "glove-100", "gt_ip.ivecs", "ip", "make data"),
                                        ("sif", "sif-2m-100", "gt_cos.ivecs", "cos",
                                         "make data-large")):
        if a.dataset != key:
            continue
        d = os.path.join(a.data_dir, name)
        for f in ("base.fvecs", "query.fvecs", gt):
            if not os.path.exists(os.path.join(d, f)):
                sys.exit(f"mips.py: {d}/{f} missing: run '{make}'")
        return name, d, gt, metric
    return SYNTH["name"], synth(a.data_dir, a.avq), "gt_ip.ivecs", "ip"


# ------------------------------------------------------------------- systems

class System:
    def __init__(self, name, kind, index, build_s, bpv, note):
        self.name, self.kind, self.index = name, kind, index
        self.build_s, self.bpv, self.note = build_s, bpv, note
        self.screen = {}  # (leaves, reorder) -> [recall, best qps_cpu, best qps_wall, passes]
        self.rows = {}    # the same over the stage-2 query set

    def time(self, a, q, gt, settings, warm, rows):
        """One timing process over the queries q (ground truth gt): the warm-up
        setting (not kept), then settings; results merged into rows."""
        allset = [warm] + list(settings)
        nq = []
        # passes per process: at least ~2,500 queries per setting in all, so
        # short query sets (the 1,000 synthetic queries) are not timed on one
        # 30 ms pass
        repeat = str(max(1, math.ceil(MIN_QUERIES_PER_CALL / count_rows(q))))
        if self.kind == "avq":
            spec = ",".join(f"{l}:{r}" for l, r in allset)
            # --load copy: the index in memory, as FAISS holds its own
            out = run([a.recall_qps, self.index, q, gt, "--settings", spec, "--k", str(K),
                       "--repeat", repeat, "--load", "copy", *nq])
        else:
            spec = ",".join(f"{l}:{r / K:g}" for l, r in allset)
            out = run([a.faiss, "search", "--index", self.index, "--query", q, "--gt", gt,
                       "--settings", spec, "--k", str(K), "--repeat", repeat, "--implem", self.implem,
                       *nq])
        lines = out.strip().split("\n")[1:]
        if len(lines) != len(allset):
            sys.exit(f"mips.py: {self.name}: expected {len(allset)} rows, got:\n{out}")
        for (l, r), line in zip(allset[1:], lines[1:]):
            _, _, rec, qw, qc = line.split(",")
            row = rows.setdefault((l, r), [float(rec), 0.0, 0.0, 0])
            if abs(row[0] - float(rec)) > 1e-4:
                log(f"# WARNING {self.name} {l}:{r}: recall {rec} differs from {row[0]} in an earlier pass")
            row[1] = max(row[1], float(qc))
            row[2] = max(row[2], float(qw))
            row[3] += 1

    def best(self, target, timer):
        col = 1 if timer == "cpu" else 2
        ok = [(v[col], s, v) for s, v in self.rows.items() if v[0] >= target]
        return max(ok) if ok else None


def avq_info(avq, index):
    return run([avq, "info", index]).strip()


def build_systems(a, name, data, outdir, metric):
    base = os.path.join(data, "base.fvecs")
    with open(base, "rb") as f:
        dim = int.from_bytes(f.read(4), "little")
    n = os.path.getsize(base) // (4 * (1 + dim))
    systems = []
    variants = (("avq", []), ("avq-recon", ["--threshold", "none"]))
    for sname, extra in variants[:1] if metric == "cos" else variants:
        index = os.path.join(outdir, f"{name}.{sname}.avq")
        t0 = time.time()
        run([a.avq, "build", "--base", base, "--metric", metric, *extra, "--out", index])
        build_s = time.time() - t0
        info = avq_info(a.avq, index)
        systems.append(System(sname, "avq", index, build_s, os.path.getsize(index) / n,
                              f"avq build --metric {metric} {' '.join(extra)}".strip()))
        log(f"# {sname}: built in {build_s:.1f} s, {os.path.getsize(index) / n:.1f} bytes/vector")
        systems[-1].info = info
    for coarse in a.faiss_coarse.split(","):
        cname = "faiss" if coarse == "ip" else f"faiss-{coarse}km"
        index = os.path.join(outdir, f"{name}.{cname}.faiss")
        out = run([a.faiss, "build", "--base", base, "--out", index, "--coarse", coarse,
                   "--by-residual", str(a.faiss_by_residual), "--threads", "2"])
        kv = dict(line.split("=", 1) for line in out.strip().split("\n"))
        log(f"# {cname}: {kv['description']} (FAISS {kv['faiss_version']}, "
            f"{kv['compile_options'].strip()}): built in {float(kv['build_s']):.1f} s, "
            f"{float(kv['bytes_per_vector']):.1f} bytes/vector")
        for implem in a.faiss_implem.split(","):
            sname = cname + ("" if implem == "0" else f"-i{implem}")
            s = System(sname, "faiss", index, float(kv["build_s"]), float(kv["bytes_per_vector"]),
                       f"{kv['description']}, implem {implem} (FAISS {kv['faiss_version']}, "
                       f"{kv['compile_options'].strip()})")
            s.implem = implem
            s.info = out.strip()
            systems.append(s)
    return systems, n


def leaf_count(info, n):
    for line in info.split("\n"):
        words = line.replace(":", " ").replace("=", " ").split()
        for i, w in enumerate(words[:-1]):
            if w == "leaves" and words[i + 1].isdigit():
                return int(words[i + 1])
    return round(math.sqrt(n))


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


def subset(qfile, gtfile, count, seed, prefix):
    """(query file, gt file, rows): the whole set when count is 0 or not smaller,
    else `count` rows drawn without replacement (numpy default_rng(seed)),
    in their original order, written to prefix.{query.fvecs,gt.ivecs}."""
    import numpy as np
    q = datalib.read_fvecs(qfile)
    if not count or count >= q.shape[0]:
        return qfile, gtfile, q.shape[0]
    rows = np.sort(np.random.default_rng(seed).choice(q.shape[0], count, replace=False))
    gt = datalib.read_ivecs(gtfile)
    datalib.write_fvecs(prefix + ".query.fvecs", q[rows])
    datalib.write_ivecs(prefix + ".gt.ivecs", gt[rows])
    return prefix + ".query.fvecs", prefix + ".gt.ivecs", count


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["glove", "synth", "sif"], default="glove")
    ap.add_argument("--max-fraction", type=float, default=1.0,
                    help="leave out leaves_to_search fractions above this (a 2M set's whole-index "
                         "scans cost minutes and are far past every target)")
    ap.add_argument("--data-dir", default=os.path.join(ROOT, "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "mips"))
    ap.add_argument("--avq", default=os.path.join(ROOT, "build", "avq"))
    ap.add_argument("--recall-qps", default=os.path.join(ROOT, "build", "bench", "recall_qps"))
    ap.add_argument("--faiss", default=os.path.join(ROOT, "build", "bench", "mips_faiss"))
    ap.add_argument("--faiss-info", default=None, help="BUILDINFO of the native FAISS (recorded)")
    ap.add_argument("--faiss-coarse", default="ip", help="ip, l2 or ip,l2 (FAISS list training)")
    ap.add_argument("--faiss-by-residual", type=int, default=1, choices=[0, 1],
                    help="PQ codes of residuals from the list centroid (1) or of the vectors (0, "
                         "IndexIVFPQFastScan's default; lower recall on GloVe)")
    ap.add_argument("--faiss-implem", default="0,11",
                    help="IndexIVFFastScan::implem values, one system each (0 = FAISS's own choice; "
                         "11 was the fastest for one query per call here)")
    ap.add_argument("--runs", type=int, default=3, help="stage-2 rounds")
    ap.add_argument("--nq", type=int, default=0,
                    help="stage-2 queries: a random subset of N (0 = all)")
    ap.add_argument("--screen-nq", type=int, default=2000,
                    help="screening queries: a random subset of N (0 = all)")
    ap.add_argument("--timer", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--targets", default="0.90,0.95")
    ap.add_argument("--quick", action="store_true",
                    help="small grid, screening only (its numbers are on the subset)")
    a = ap.parse_args()
    targets = [float(t) for t in a.targets.split(",")]
    name, data, gt_name, metric = dataset(a)
    os.makedirs(a.out, exist_ok=True)
    load0 = loadavg()
    rev0 = git_rev()
    what = "true MIPS (raw vectors, gt_ip)" if metric == "ip" else f"{metric} ({gt_name})"
    log(f"# {name}: {what}, k = {K}; load average {load0}; avq {rev0}")
    # Private copies of the timing programs (recall_qps links libavq statically):
    # a rebuild of build/ by someone else during the run cannot change them.
    bindir = os.path.join(a.out, "bin")
    os.makedirs(bindir, exist_ok=True)
    for attr in ("recall_qps", "faiss"):
        src = getattr(a, attr)
        dst = os.path.join(bindir, os.path.basename(src))
        shutil.copy2(src, dst)
        setattr(a, attr, dst)

    qfile, gtfile = os.path.join(data, "query.fvecs"), os.path.join(data, gt_name)
    nq_all = datalib.read_fvecs(qfile).shape[0]
    screen_q, screen_gt, nq_screen = subset(qfile, gtfile, a.screen_nq, 7,
                                            os.path.join(a.out, f"{name}.screen"))
    final_q, final_gt, nq_final = subset(qfile, gtfile, a.nq, 8, os.path.join(a.out, f"{name}.final"))
    systems, n = build_systems(a, name, data, a.out, metric)
    leaves = leaf_count(systems[0].info, n)
    fr, ro = (QUICK_FRACTIONS, QUICK_REORDERS) if a.quick else (LEAF_FRACTIONS, REORDERS)
    lv = sorted({max(1, round(leaves * f)) for f in fr if f <= a.max_fraction})
    grid = [(l, r) for l in lv for r in ro]
    warm = (max(1, round(leaves / 16)), 80)
    log(f"# {leaves} leaves / lists; grid: leaves_to_search = nprobe in {lv}, "
        f"pre_reorder = k_factor*{K} in {ro}; warm-up setting {warm[0]}:{warm[1]}")

    # stage 1 (screening): the whole grid once on the subset, systems alternating per group
    t0 = time.time()
    groups = [grid[i:i + GROUP] for i in range(0, len(grid), GROUP)]
    for gi, g in enumerate(groups):
        order = systems[gi % len(systems):] + systems[:gi % len(systems)]
        for s in order:
            s.time(a, screen_q, screen_gt, g, warm, s.screen)
        log(f"#   screening: group {gi + 1}/{len(groups)} done ({time.time() - t0:.0f} s)")
    log(f"# screening: {len(grid)} settings x {len(systems)} systems on {nq_screen} random queries "
        f"in {time.time() - t0:.0f} s")

    col = 1 if a.timer == "cpu" else 2
    if a.quick:
        for s in systems:
            s.rows = s.screen
        rounds, nq_used = 0, nq_screen
    else:
        # stage 2: per target the fastest few screened settings near or above it,
        # over the stage-2 queries, --runs rounds in rotated order
        picks = {}
        for s in systems:
            chosen = []
            for t in targets:
                # near-frontier settings of the screening around t: recall in
                # [t - 0.015, t + 0.04] and no setting at least as accurate is
                # more than 10 % faster (one screening pass is noisy) ...
                near = [(v[col], st) for st, v in s.screen.items() if t - 0.015 <= v[0] <= t + 0.04]
                near = [(q, st) for q, st in near
                        if not any(v[0] >= s.screen[st][0] and v[col] > 1.1 * q
                                   for v in s.screen.values())]
                chosen += [st for _, st in sorted(near, reverse=True)[:FRONTIER_PER_TARGET]]
                # ... and the fastest ones safely above t (the screening
                # recall is that of a 2,000-query sample)
                # (at a high target such as 0.99 the fastest within 0.015 can all
                # fall short; the fastest at or above it are always kept too)
                for margin, count in ((-0.015, PER_TARGET), (0.0, PER_TARGET),
                                      (0.01, SAFE_PER_TARGET)):
                    ok = sorted(((v[col], st) for st, v in s.screen.items() if v[0] >= t + margin),
                                reverse=True)
                    chosen += [st for _, st in ok[:count]]
            if not chosen:   # nothing near the targets: the most accurate settings
                chosen = [st for _, st in sorted(((v[0], st) for st, v in s.screen.items()),
                                                 reverse=True)[:PER_TARGET]]
            picks[s.name] = sorted(set(chosen))
            log(f"#   {s.name}: stage 2 settings {' '.join(f'{l}:{r}' for l, r in picks[s.name])}")
        t0 = time.time()
        for r in range(a.runs):
            order = systems[r % len(systems):] + systems[:r % len(systems)]
            for s in order:
                s.time(a, final_q, final_gt, picks[s.name], warm, s.rows)
            log(f"#   stage 2: round {r + 1}/{a.runs} done ({time.time() - t0:.0f} s)")
        log(f"# stage 2: {a.runs} rounds on {nq_final} queries in {time.time() - t0:.0f} s")
        rounds, nq_used = a.runs, nq_final
    load1 = loadavg()

    # results
    csv = os.path.join(a.out, f"{name}.csv")
    for path, attr in ((csv, "rows"), (os.path.join(a.out, f"{name}.screen.csv"), "screen")):
        with open(path, "w") as f:
            f.write("system,params,recall,qps,build_s,bytes_per_vector,threads,batched,"
                    "qps_cpu,qps_wall,passes\n")
            for s in systems:
                for (l, r), (rec, qc, qw, passes) in sorted(getattr(s, attr).items()):
                    p = f"leaves={l} reorder={r}" if s.kind == "avq" else f"nprobe={l} k_factor={r / K:g}"
                    qps = qc if a.timer == "cpu" else qw
                    f.write(f"{s.name},{p},{rec:.4f},{qps:.1f},{s.build_s:.1f},{s.bpv:.1f},1,0,"
                            f"{qc:.1f},{qw:.1f},{passes}\n")
    title = (f"True MIPS on {name} (k = {K}, recall@{K} against exact inner-product top-{K})"
             if metric == "ip" else f"{name}, {metric} (k = {K}, recall@{K} against {gt_name})")
    md = [f"## {title}", "",
          f"avq {rev0}{'' if git_rev() == rev0 else ' at the start, ' + git_rev() + ' at the end'}; timer: {a.timer} (headline), wall also shown; "
          f"queries: {nq_used} of {nq_all}{' (screening subset only: --quick)' if a.quick else ''}; "
          f"stage-2 rounds: {rounds}; load average {load0} -> {load1}", "",
          "| system | index | build s | bytes/vector |", "|---|---|---|---|"]
    for s in systems:
        md.append(f"| {s.name} | {s.note} | {s.build_s:.1f} | {s.bpv:.1f} |")
    md += ["", "| target | system | setting | recall | QPS (cpu) | QPS (wall) | vs best FAISS |",
           "|---|---|---|---|---|---|---|"]
    summary = []
    for t in targets:
        fb = [s.best(t, a.timer) for s in systems if s.kind == "faiss"]
        fb = max((b for b in fb if b), default=None)
        for s in systems:
            b = s.best(t, a.timer)
            if not b:
                md.append(f"| {t:.2f} | {s.name} | - | - | - | - | - |")
                continue
            qps, (l, r), v = b
            p = f"{l}:{r}" if s.kind == "avq" else f"nprobe {l}, k_factor {r / K:g}"
            ratio = f"{qps / fb[0]:.2f}x" if fb else "-"
            md.append(f"| {t:.2f} | {s.name} | {p} | {v[0]:.4f} | {v[1]:,.0f} | {v[2]:,.0f} | {ratio} |")
            summary.append((t, s.name, qps, ratio))
    md += ["", "Native FAISS build:", "", "```"]
    if a.faiss_info and os.path.exists(a.faiss_info):
        md += open(a.faiss_info).read().strip().split("\n")
    md += ["```", "", "avq index (avq info):", "", "```", systems[0].info, "```"]
    with open(os.path.join(a.out, f"{name}.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    log("\n".join(md[:md.index("Native FAISS build:")]))
    log(f"wrote {csv} and {os.path.join(a.out, name + '.md')}")


if __name__ == "__main__":
    main()
