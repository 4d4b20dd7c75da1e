#!/usr/bin/env python3
"""ann-benchmarks-protocol runner for avq, hnswlib and FAISS.

    /usr/bin/python3 bench/annb/run.py --dataset data/glove-100/glove-100-angular.hdf5
    /usr/bin/python3 bench/annb/run.py --dataset ... --quick        # ~2-3 minutes

The dataset is an ann-benchmarks HDF5 file: `train` (indexed), `test`
(queries), `neighbors` and `distances` (the exact top-100 of every query),
attribute `distance` ('angular' or 'euclidean').  `make data` writes
data/glove-100/glove-100-angular.hdf5 from the GloVe default.

Protocol (that of ann-benchmarks):
  * every build configuration of config.yml runs in a fresh process: fit()
    on `train`, timed; index size = process RSS after fit - before fit;
  * every query setting: each `test` vector is searched alone with
    query(q, 10), each call timed separately, on one thread;
    QPS = 1 / mean time per query (best of --runs passes);
  * recall@10 as ann-benchmarks computes it: the distances from each query
    to the 10 returned points are recomputed, and a returned point counts
    when its distance <= the true 10th distance + 1e-3; averaged over
    queries.  The plain set recall (`avq.recall` against `neighbors`) is
    reported too.
  * --quick: the first 30,000 train rows, 1,000 queries, smaller sweeps
    (quick-run-groups); the ground truth of the subset is recomputed
    exactly with avq.exact_search.

Output (bench/out/annb/, or --out): results.csv (results-quick.csv), one
row per (algorithm, build, query setting); recall_qps.png, the recall/QPS
plot with each algorithm's Pareto frontier; table.md, the best QPS at
recall@10 >= 0.90 / 0.95.
"""
import argparse
import csv
import itertools
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import algorithms  # noqa: E402

QUICK_TRAIN, QUICK_QUERIES = 30000, 1000
TARGETS = (0.90, 0.95)
FIELDS = ["algorithm", "build", "query_args", "recall", "set_recall", "qps", "p50_ms", "p99_ms",
          "build_s", "index_kb", "nq", "batched"]


# --------------------------------------------------------------------------
# dataset
# --------------------------------------------------------------------------

def distances(metric, q, X):
    """ann-benchmarks distances: angular = 1 - cosine, euclidean = L2."""
    if metric == "angular":
        qn = q / np.linalg.norm(q)
        Xn = X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-30)
        return 1.0 - Xn @ qn
    return np.sqrt(np.maximum(((X - q) ** 2).sum(-1), 0.0))


def prepare(args, workdir):
    """Read the HDF5 file (and subsample for --quick) into .npy files the
    worker processes map: train, test, neighbors, distances."""
    import h5py
    with h5py.File(args.dataset, "r") as f:
        metric = f.attrs.get("distance", "angular")
        metric = metric.decode() if isinstance(metric, bytes) else str(metric)
        train = np.asarray(f["train"], dtype=np.float32)
        test = np.asarray(f["test"], dtype=np.float32)
        neighbors = np.asarray(f["neighbors"])
        dist = np.asarray(f["distances"], dtype=np.float32)
    if args.quick:
        train, test = train[:QUICK_TRAIN], test[:QUICK_QUERIES]
        avq = algorithms._import_avq()
        m = "cosine" if metric == "angular" else "squared_l2"
        neighbors, scores = avq.exact_search(train, test, 100, m)
        dist = (1.0 - scores) if metric == "angular" else np.sqrt(np.maximum(scores, 0))
    if args.queries:
        test, neighbors, dist = test[:args.queries], neighbors[:args.queries], dist[:args.queries]
    paths = {}
    for name, arr in (("train", train), ("test", test), ("neighbors", neighbors),
                      ("distances", dist)):
        paths[name] = os.path.join(workdir, name + ".npy")
        np.save(paths[name], np.ascontiguousarray(arr))
    return metric, paths, train.shape, test.shape[0]


# --------------------------------------------------------------------------
# one build configuration (in its own process)
# --------------------------------------------------------------------------

def knn_recall(metric, test, train, found, true_dist, k):
    """ann-benchmarks' k-nn recall: returned points within the true k-th
    distance + 1e-3."""
    total = 0.0
    for i, ids in enumerate(found):
        ids = np.asarray(ids[:k], dtype=np.int64)
        ids = ids[ids >= 0]
        if len(ids) == 0:
            continue
        d = distances(metric, test[i], train[ids])
        total += np.count_nonzero(d <= true_dist[i, k - 1] + 1e-3) / k
    return total / len(found)


def run_build(spec):
    """Build one configuration, sweep its query settings; returns rows."""
    paths, metric, k, runs, batch = (spec["paths"], spec["metric"], spec["k"], spec["runs"],
                                     spec["batch"])
    clock = time.thread_time if spec["timer"] == "cpu" else time.perf_counter
    train = np.load(paths["train"], mmap_mode="r")
    test = np.ascontiguousarray(np.load(paths["test"]))
    neighbors = np.load(paths["neighbors"])
    true_dist = np.load(paths["distances"])
    avq = algorithms._import_avq()
    cls = algorithms.CONSTRUCTORS[spec["constructor"]]
    X = np.ascontiguousarray(train, dtype=np.float32)
    mem0 = algorithms.rss_kb()
    algo = cls(metric, *spec["args"])
    t0 = time.perf_counter()
    algo.fit(X)
    build_s = time.perf_counter() - t0
    index_kb = algo.get_memory_usage() - mem0
    print(f"  {algo}: built in {build_s:.1f} s, {index_kb / 1024:.0f} MB", flush=True)
    rows = []
    queries = list(test)
    for qargs in spec["query_args"]:
        algo.set_query_arguments(*qargs)
        best, found = None, None
        for _ in range(runs):
            times = np.empty(len(queries))
            results = []
            for i, q in enumerate(queries):
                t = clock()
                ids = algo.query(q, k)
                times[i] = clock() - t
                results.append(ids)
            if best is None or times.mean() < best.mean():
                best, found = times, results
        rec = knn_recall(metric, test, train, found, true_dist, k)
        srec = avq.recall(np.array([np.asarray(r[:k]) for r in found]), neighbors, k)
        row = dict(algorithm=spec["label"], build=str(algo), query_args=algo.query_args_str(),
                   recall=round(rec, 5), set_recall=round(srec, 5),
                   qps=round(1.0 / best.mean(), 1), p50_ms=round(1e3 * np.median(best), 4),
                   p99_ms=round(1e3 * np.percentile(best, 99), 4), build_s=round(build_s, 2),
                   index_kb=round(index_kb), nq=len(queries), batched=0)
        rows.append(row)
        print(f"    {row['query_args']:34s} recall {rec:.4f}  {row['qps']:9.0f} qps", flush=True)
        if batch:
            t = time.perf_counter()
            algo.batch_query(test, k)
            secs = time.perf_counter() - t
            res = algo.get_batch_results()
            rows.append(dict(row, recall=round(knn_recall(metric, test, train, res, true_dist, k), 5),
                             set_recall=round(avq.recall(np.asarray(res)[:, :k], neighbors, k), 5),
                             qps=round(len(queries) / secs, 1), p50_ms="", p99_ms="", batched=1))
    algo.done()
    return rows


# --------------------------------------------------------------------------
# sweeps, results, plot
# --------------------------------------------------------------------------

def expand(groups):
    """[(args, [query_args...])] from run-groups (cartesian products)."""
    out = []
    for group in groups.values():
        qargs = [list(c) for c in itertools.product(*group.get("query-args", [[]]))]
        for args in itertools.product(*group.get("args", [[]])):
            out.append((list(args), qargs))
    return out


def frontier(rows):
    """The Pareto frontier (recall up, QPS up) of single-query rows."""
    pts = sorted(((r["recall"], r["qps"], r) for r in rows), key=lambda t: (-t[0], -t[1]))
    best, out = -1.0, []
    for rec, qps, r in pts:
        if qps > best:
            out.append(r)
            best = qps
    return sorted(out, key=lambda r: r["recall"])


def table(rows, labels, notes):
    lines = ["| algorithm | " + " | ".join(f"QPS @ recall@10 >= {t:.2f}" for t in TARGETS)
             + " |", "|---" * (len(TARGETS) + 1) + "|"]
    for label in labels:
        mine = [r for r in rows if r["algorithm"] == label and not r["batched"]]
        cells = []
        for t in TARGETS:
            ok = [r for r in mine if r["recall"] >= t]
            if ok:
                r = max(ok, key=lambda r: r["qps"])
                cells.append(f"{r['qps']:,.0f} ({r['query_args']}; recall {r['recall']:.3f})")
            else:
                cells.append("not reached")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def plot(rows, labels, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, label in enumerate(labels):
        mine = [r for r in rows if r["algorithm"] == label and not r["batched"]]
        if not mine:
            continue
        color = f"C{i}"
        ax.scatter([r["recall"] for r in mine], [r["qps"] for r in mine], s=8, alpha=0.3,
                   color=color)
        f = frontier(mine)
        builds = sorted({r["build"] for r in mine})
        ax.plot([r["recall"] for r in f], [r["qps"] for r in f], marker="o", ms=3,
                label=", ".join(builds), color=color)
    for t in TARGETS:
        ax.axvline(t, color="grey", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (ann-benchmarks k-nn recall)")
    ax.set_ylabel("queries per second, one at a time, 1 thread (log)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=os.path.join(REPO, "data", "glove-100",
                                                      "glove-100-angular.hdf5"))
    ap.add_argument("--config", default=os.path.join(HERE, "config.yml"))
    ap.add_argument("--algorithms", default="avq,hnswlib,faiss",
                    help="comma-separated labels of config.yml (default: all three)")
    ap.add_argument("--quick", action="store_true", help="small subset and sweeps (a smoke run)")
    ap.add_argument("--queries", type=int, default=0, help="use only the first N test queries")
    ap.add_argument("--runs", type=int, default=1, help="passes per query setting, best kept")
    ap.add_argument("--batch", action="store_true", help="also time batch_query (all cores)")
    ap.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                    help="time each query by the wall clock (the protocol) or by the "
                         "thread's CPU time (steadier on a shared machine)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "annb"))
    args = ap.parse_args()
    if not os.path.exists(args.dataset):
        sys.exit(f"{args.dataset} not found (make data writes the GloVe-100 one)")
    import yaml
    with open(args.config) as f:
        config = yaml.safe_load(f)
    os.makedirs(args.out, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    t_start = time.time()
    with tempfile.TemporaryDirectory() as work:
        metric, paths, train_shape, nq = prepare(args, work)
        labels = [a for a in args.algorithms.split(",") if a]
        unknown = [a for a in labels if a not in config.get(metric, {})]
        if unknown:
            sys.exit(f"not in {args.config} for metric {metric}: {unknown}")
        notes = []
        print(f"dataset {os.path.basename(args.dataset)}: train {train_shape[0]} x "
              f"{train_shape[1]}, {nq} queries, {metric}, k={args.k}"
              f"{' (quick subset)' if args.quick else ''}", flush=True)
        rows = []
        ctx = mp.get_context("spawn")
        for label in labels:
            entry = config[metric][label]
            groups = entry.get("quick-run-groups" if args.quick else "run-groups") or \
                entry["run-groups"]
            note = algorithms.library_note(entry["constructor"])
            notes.append(note)
            print(f"{label}: {note}", flush=True)
            for build_args, qargs in expand(groups):
                spec = dict(paths=paths, metric=metric, k=args.k, runs=args.runs,
                            batch=args.batch, timer=args.timer, constructor=entry["constructor"], label=label,
                            args=build_args, query_args=qargs)
                with ctx.Pool(1) as pool:
                    rows += pool.apply(run_build, (spec,))
    csv_path = os.path.join(args.out, f"results{suffix}.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    command = "/usr/bin/python3 " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:])
    notes.append(f"{nq} queries one at a time on one thread, {args.timer} time, best of "
                 f"{args.runs} pass(es); "
                 f"{os.cpu_count()} CPUs; {time.time() - t_start:.0f} s in all; command: "
                 f"`{command}`")
    md = table(rows, labels, notes)
    with open(os.path.join(args.out, f"table{suffix}.md"), "w") as f:
        f.write(md)
    png = os.path.join(args.out, f"recall_qps{suffix}.png")
    plot(rows, labels, png, f"{os.path.basename(args.dataset)}"
         f"{' (quick subset)' if args.quick else ''}: recall@10 vs QPS (ann-benchmarks protocol)")
    print("\n" + md)
    print(f"wrote {csv_path}, {png}, {os.path.join(args.out, f'table{suffix}.md')}")


if __name__ == "__main__":
    main()
