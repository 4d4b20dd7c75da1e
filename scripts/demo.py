#!/usr/bin/env python3
"""The avq demo: the main job on the default data, start to finish.

  1. fetch and prepare GloVe-100 (scripts/data.py; instant when cached)
  2. build a cosine index (k-means leaves + anisotropic 4-bit PQ + reorder)
  3. search the 10,000 held-out queries one at a time, print recall@10 and QPS
  4. show nearest words for a few words, from the index and from exact search

Everything goes through the `avq` command-line tool (env AVQ_BIN), so this
script is also an example of using it.  Run with /usr/bin/python3.
"""
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import datalib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AVQ = os.environ.get("AVQ_BIN", os.path.join(ROOT, "build", "avq"))
DATA = os.environ.get("DATA_DIR", os.path.join(ROOT, "data"))
WORDS = ["king", "paris", "computer", "music", "river", "einstein"]


def run(args, capture=False):
    """Run a command, echoing it; stop the demo with its message if it fails."""
    print("$ " + " ".join(args), flush=True)
    result = subprocess.run(args, stdout=subprocess.PIPE if capture else None, text=True)
    if result.returncode != 0:
        sys.exit(f"demo: command failed with exit code {result.returncode}")
    return result.stdout if capture else None


def main():
    run([sys.executable, os.path.join(ROOT, "scripts", "data.py"), "glove",
         "--data-dir", DATA, "--avq-bin", AVQ])
    g = os.path.join(DATA, "glove-100")
    base, query = os.path.join(g, "base.fvecs"), os.path.join(g, "query.fvecs")
    index = os.path.join(g, "demo.avq")

    if not os.path.exists(index) or os.path.getmtime(index) < os.path.getmtime(base):
        t0 = time.time()
        run([AVQ, "build", "--base", base, "--metric", "cos", "--threshold", "0.2",
             "--out", index])
        print(f"built in {time.time() - t0:.1f} s")
    else:
        print(f"(reusing {index}; delete it to rebuild)")
    run([AVQ, "info", index])

    result = os.path.join(g, "demo_result.ivecs")
    out = run([AVQ, "search", "--index", index, "--query", query, "--k", "10",
               "--leaves-to-search", "20", "--reorder", "80", "--out", result], capture=True)
    qps = float(out.split()[1])
    out = run([AVQ, "eval", "--result", result, "--gt", os.path.join(g, "gt_cos.ivecs"),
               "--k", "10", "--recall1-at", "10"], capture=True)
    print(out.strip())
    print(f"one query at a time, one thread: {qps:,.0f} queries/s")

    # Nearest words: take a few words' own vectors as queries.
    words = open(os.path.join(g, "base_words.txt"), encoding="utf-8").read().split("\n")
    where = {w: i for i, w in enumerate(words)}
    chosen = [w for w in WORDS if w in where]
    vectors = datalib.read_fvecs(base)
    probe = os.path.join(g, "demo_words.fvecs")
    datalib.write_fvecs(probe, vectors[[where[w] for w in chosen]])
    approx, exact = os.path.join(g, "demo_words_index.ivecs"), os.path.join(g, "demo_words_exact.ivecs")
    run([AVQ, "search", "--index", index, "--query", probe, "--k", "8", "--out", approx],
        capture=True)
    run([AVQ, "search", "--exact", "--base", base, "--query", probe, "--metric", "cos",
         "--k", "8", "--out", exact], capture=True)
    a, e = datalib.read_ivecs(approx), datalib.read_ivecs(exact)
    print("\nnearest words (index; '=' where exact search agrees at that rank):")
    for row, w in enumerate(chosen):
        names = [words[i] + ("=" if i == e[row][r] else "") for r, i in enumerate(a[row]) if r > 0]
        print(f"  {w:10s} {', '.join(names)}")


if __name__ == "__main__":
    main()
