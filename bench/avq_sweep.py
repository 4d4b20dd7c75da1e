#!/usr/bin/env python3
"""Recall@10 / QPS sweep of avq on the GloVe default, written as CSV rows in
the schema of bench/baselines (system,params,recall,qps,build_s,
bytes_per_vector,threads,batched) so bench/report.py can put avq next to
hnswlib and FAISS.

Protocol: cosine, k = 10, one query at a time on one thread (the CLI's
default search mode), sweeping (leaves_to_search, pre_reorder); one batched
2-thread row.  Two indexes with the same settings: anisotropic (T = 0.2,
system "avq") and reconstruction loss (system "avq-recon").
Usage: /usr/bin/python3 bench/avq_sweep.py [--csv bench/out/avq.csv] [--quick]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import datalib  # noqa: E402

AVQ = os.environ.get("AVQ_BIN", os.path.join(ROOT, "build", "avq"))
SETTINGS = [(5, 40), (10, 50), (15, 60), (20, 80), (30, 100), (40, 100), (60, 120),
            (80, 150), (120, 200), (200, 300), (400, 500)]


def run(args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"avq_sweep: {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def recall_at_10(result_path, gt):
    res = datalib.read_ivecs(result_path)[:, :10]
    truth = gt[:, :10]
    hits = sum(len(np.intersect1d(a, b)) for a, b in zip(res, truth))
    return hits / (10.0 * len(res))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "glove-100"))
    ap.add_argument("--csv", default=os.path.join(ROOT, "bench", "out", "avq.csv"))
    ap.add_argument("--leaves", default="2000")
    ap.add_argument("--quick", action="store_true", help="fewer settings, anisotropic only")
    a = ap.parse_args()
    os.makedirs(os.path.dirname(a.csv), exist_ok=True)
    base, query = os.path.join(a.data, "base.fvecs"), os.path.join(a.data, "query.fvecs")
    gt = datalib.read_ivecs(os.path.join(a.data, "gt_cos.ivecs"))
    n = datalib.read_fvecs(base).shape[0]
    variants = [("avq", "0.2")] + ([] if a.quick else [("avq-recon", "none")])
    settings = SETTINGS[::3] if a.quick else SETTINGS
    rows = []
    for system, threshold in variants:
        index = os.path.join(os.path.dirname(a.csv), f"{system}.avq")
        t0 = time.time()
        run([AVQ, "build", "--base", base, "--metric", "cos", "--leaves", a.leaves,
             "--threshold", threshold, "--out", index])
        build_s = time.time() - t0
        bpv = os.path.getsize(index) / n
        res = os.path.join(os.path.dirname(a.csv), "sweep.ivecs")
        for leaves, pre in settings:
            out = run([AVQ, "search", "--index", index, "--query", query, "--k", "10",
                       "--leaves-to-search", str(leaves), "--reorder", str(pre), "--out", res])
            qps = float(out.split()[1])
            rec = recall_at_10(res, gt)
            print(f"{system:10s} leaves={leaves:4d} reorder={pre:4d} recall@10={rec:.4f} qps={qps:9.1f}",
                  flush=True)
            rows.append(f"{system},leaves={leaves} reorder={pre},{rec:.4f},{qps:.1f},{build_s:.1f},{bpv:.1f},1,0")
        if system == "avq":
            out = run([AVQ, "search", "--index", index, "--query", query, "--k", "10",
                       "--leaves-to-search", "40", "--reorder", "100", "--batch", "--threads", "2",
                       "--out", res])
            qps = float(out.split()[1])
            rec = recall_at_10(res, gt)
            print(f"{system:10s} batched 2 threads leaves=40 reorder=100 recall@10={rec:.4f} qps={qps:.1f}")
            rows.append(f"avq-batch,leaves=40 reorder=100,{rec:.4f},{qps:.1f},{build_s:.1f},{bpv:.1f},2,1")
    with open(a.csv, "w") as f:
        f.write("system,params,recall,qps,build_s,bytes_per_vector,threads,batched\n")
        f.write("\n".join(rows) + "\n")
    print(f"wrote {a.csv}")


if __name__ == "__main__":
    main()
