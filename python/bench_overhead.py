#!/usr/bin/env python3
"""Per-query overhead of `index.search` from Python over the C API.

Three loops search the same queries on the same index, one query at a time
on one thread:

  C (CLI)      `avq search --index I --query Q`, the latency protocol of the
               command-line tool (prints `qps <n>`; wall clock, separate
               process, keeps all nq x k results) -- for reference
  C (loop)     avq_index_search called from C in this process
               (Index._c_search_loop: same index object, same query memory,
               results into one reused buffer)
  Python       `index.search(q, k, leaves, pre_reorder)` over row views of a
               C-contiguous float32 array (the zero-copy path)

C (loop) and Python alternate every 100 queries, `--repeat` rounds over
all queries; by default they are timed in thread CPU time, which a busy
shared machine disturbs far less than wall time (`--timer wall` to change).

    overhead per query = median over rounds of
                         (Python time/query - C (loop) time/query)

Two indexes: a tiny brute-force one (64 vectors of dimension 8, a search
costs ~1 us, so the fixed cost of the call dominates) and the GloVe-100
cosine index with the default ~sqrt(n) = 576 leaves (the real workload).

    /usr/bin/python3 python/bench_overhead.py [--nq 2000] [--repeat 7] [--timer cpu|wall]
"""
import argparse
import os
import subprocess
import tempfile
import time

import numpy as np

from bench_common import AVQ_BIN, GLOVE, glove_index, import_avq, read_fvecs, write_fvecs


def cli_seconds_per_query(index_path, queries, k, leaves, reorder):
    with tempfile.TemporaryDirectory() as tmp:
        qpath = os.path.join(tmp, "q.fvecs")
        write_fvecs(qpath, queries)
        args = [AVQ_BIN, "search", "--index", index_path, "--query", qpath, "--k", str(k),
                "--out", os.path.join(tmp, "r.ivecs")]
        if leaves:
            args += ["--leaves-to-search", str(leaves)]
        if reorder:
            args += ["--reorder", str(reorder)]
        r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("qps "):
        print(f"  (the CLI failed, exit {r.returncode}: {r.stderr.strip()[:200]})")
        return float("nan")
    return 1.0 / float(r.stdout.split()[1])


def py_seconds_per_query(index, rows, k, leaves, reorder, clock):
    search = index.search
    t0 = clock()
    for q in rows:
        search(q, k, leaves, reorder)
    return (clock() - t0) / len(rows)


def measure(avq, name, index_path, queries, k, leaves, reorder, repeat, cpu, chunk=100):
    """Alternate C and Python over chunks of `chunk` queries, `repeat`
    rounds over all queries; a round's overhead is its Python time minus its
    C time on the very same chunks, which cancels most of the drift of a
    shared machine.  Reports the best round of each and the median paired
    overhead."""
    clock = time.thread_time if cpu else time.perf_counter
    index = avq.load(index_path)
    rows = list(queries)                     # row views: C-contiguous float32, no copy
    blocks = [(queries[a:a + chunk], rows[a:a + chunk]) for a in range(0, len(rows), chunk)]
    py_seconds_per_query(index, rows[:500], k, leaves, reorder, clock)       # warm up
    index._c_search_loop(queries[:500], k, leaves or 0, reorder or 0, cpu)
    c_runs, py_runs = [], []
    for _ in range(repeat):
        c_t = py_t = 0.0
        for block, block_rows in blocks:
            c_t += index._c_search_loop(block, k, leaves or 0, reorder or 0, cpu) * len(block)
            py_t += py_seconds_per_query(index, block_rows, k, leaves, reorder, clock) * \
                len(block_rows)
        c_runs.append(c_t / len(rows))
        py_runs.append(py_t / len(rows))
    index.close()
    cli = cli_seconds_per_query(index_path, queries, k, leaves, reorder)
    c, py = min(c_runs), min(py_runs)
    over = float(np.median(np.array(py_runs) - np.array(c_runs))) * 1e6
    print(f"{name}  ({len(queries)} queries)")
    for label, t in (("C (CLI)", cli), ("C (loop)", c), ("Python", py)):
        print(f"  {label:9s} {t * 1e6:9.3f} us/query {1 / t:11.0f} qps")
    print(f"  overhead  {over:+9.3f} us/query (median of {repeat} paired rounds; "
          f"best-vs-best {(py - c) * 1e6:+.3f})")
    return over


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nq", type=int, default=2000, help="GloVe queries per round (default 2000)")
    ap.add_argument("--repeat", type=int, default=7, help="alternating rounds, best kept")
    ap.add_argument("--timer", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--leaves-to-search", type=int, default=20)
    ap.add_argument("--reorder", type=int, default=80)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--no-glove", action="store_true", help="only the tiny index")
    args = ap.parse_args()
    avq = import_avq()
    cpu = args.timer == "cpu"
    print(f"avq {avq.__version__}, SIMD {avq.isa()}, one thread, one query at a time, "
          f"{args.timer} time, best of {args.repeat}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        tiny_path = os.path.join(tmp, "tiny.avq")
        avq.Index.build(rng.standard_normal((64, 8)).astype(np.float32)).save(tiny_path)
        q = rng.standard_normal((50000, 8)).astype(np.float32)
        results["tiny"] = measure(avq, "tiny brute force (64 x 8)", tiny_path, q, args.k, None,
                                  None, args.repeat, cpu)
    if not args.no_glove:
        path = glove_index(avq)
        queries = read_fvecs(os.path.join(GLOVE, "query.fvecs"), args.nq)
        results["glove"] = measure(
            avq, f"GloVe-100 cosine, leaves_to_search {args.leaves_to_search}, "
            f"pre_reorder {args.reorder}", path, queries, args.k, args.leaves_to_search,
            args.reorder, args.repeat, cpu)
    worst = max(results.values())
    print(f"per-query overhead of Python over C: at most {worst:.2f} us "
          f"({'meets' if worst < 5 else 'misses'} the < 5 us target)")


if __name__ == "__main__":
    main()
