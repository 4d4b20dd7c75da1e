#!/usr/bin/env python3
"""The MIPS -> nearest-neighbour reduction (Bachrach et al., RecSys 2014) against
avq's own inner-product index, on raw GloVe (issue "True MIPS").

The reduction appends sqrt(M^2 - |x|^2) to every data point (M = the largest
norm), so that all points have norm M, and a zero to every query: the inner
product is unchanged, and maximum inner product becomes maximum cosine, which a
partition of directions handles well.  Its cost: the extra coordinate dominates
the direction of small-norm points, so leaves follow the norm more than the
direction.  avq's answer to the same problem is in the index itself -- the
relative threshold, spherical k-means with anisotropic centers, and leaf ranking
by spread (avq_build_params.leaf_spread_z).

Both indexes are built with the library's `ip` defaults and the same number of
leaves, and searched with the same settings (leaves_to_search:pre_reorder);
recall@10 against gt_ip over evenly spaced queries (GloVe's query file is in
word-frequency order), and queries/s of one-thread batched searches (the same
code path for both, so the ratio is fair; absolute QPS is lower than one query
per call on this path).

Usage: /usr/bin/python3 bench/mips_reduction.py [--data-dir data] [--nq 2000]
           [--settings 20:80,40:120,70:150,140:300] [--module-dir build/python]
Output: a Markdown table on stdout; progress on stderr.
"""
import argparse
import os
import sys
import time

import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    if raw.size == 0:
        sys.exit(f"{path}: empty")
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].view(dtype).copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("--settings", default="20:80,40:120,70:150,140:300")
    ap.add_argument("--module-dir", default="build/python")
    a = ap.parse_args()
    sys.path.insert(0, os.path.abspath(a.module_dir))
    import avq  # noqa: E402  (the in-tree build: `make python`)

    g = os.path.join(a.data_dir, "glove-100")
    x = read_vecs(os.path.join(g, "base.fvecs"), np.float32)
    q = read_vecs(os.path.join(g, "query.fvecs"), np.float32)
    gt = read_vecs(os.path.join(g, "gt_ip.ivecs"), np.int32)[:, :10]
    pick = np.linspace(0, len(q) - 1, min(a.nq, len(q))).astype(np.int64)
    q, gt = q[pick], gt[pick]
    leaves = int(round(np.sqrt(len(x))))

    norms2 = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    extra = np.sqrt(np.maximum(norms2.max() - norms2, 0.0)).astype(np.float32)
    variants = {
        "avq ip defaults (raw)": (x, q),
        "MIPS->NN reduction": (np.hstack([x, extra[:, None]]),
                               np.hstack([q, np.zeros((len(q), 1), np.float32)])),
    }
    settings = [tuple(int(v) for v in s.split(":")) for s in a.settings.split(",")]
    rows = {}
    for name, (data, queries) in variants.items():
        t = time.time()
        index = avq.Index.build(np.ascontiguousarray(data), "ip", num_leaves=leaves, seed=42)
        print(f"# {name}: built in {time.time() - t:.1f} s", file=sys.stderr)
        queries = np.ascontiguousarray(queries)
        for lv, pre in settings:
            best = None
            for _ in range(2):
                t = time.process_time()
                ids, _ = index.search_batched(queries, k=10, leaves_to_search=lv, pre_reorder=pre,
                                              threads=1)
                dt = time.process_time() - t
                best = dt if best is None else min(best, dt)
            rows[(name, lv, pre)] = (avq.recall(ids, gt), len(queries) / best)
            print(f"# {name} {lv}:{pre} recall {rows[(name, lv, pre)][0]:.4f}", file=sys.stderr)
    print(f"Raw GloVe, {len(x):,} x {x.shape[1]}, {leaves} leaves, {len(q)} evenly spaced "
          "queries, recall@10 vs gt_ip; QPS: one-thread batched search, CPU clock\n")
    print("| setting | " + " | ".join(f"{n}: recall | QPS" for n in variants) + " |")
    print("|---|" + "---:|---:|" * len(variants))
    for lv, pre in settings:
        cells = []
        for n in variants:
            r, qps = rows[(n, lv, pre)]
            cells.append(f"{r:.4f} | {qps:,.0f}")
        print(f"| {lv}:{pre} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
