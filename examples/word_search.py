#!/usr/bin/env python3
"""Nearest words and analogies over GloVe-100 with the avq Python module.

    make data && make python
    /usr/bin/python3 examples/word_search.py [--words king,paris,...] [--rebuild]

1. loads the GloVe default prepared by `make data`: data/glove-100/base.fvecs
   (331,479 vectors) whose row i is the word on line i+1 of base_words.txt,
   plus the 10,000 held-out query vectors (query.fvecs / query_words.txt) so
   that every word of the vocabulary has a vector;
2. builds a cosine index over the base vectors (once: ~30 s on 2 cores,
   then cached as data/glove-100/word_search.avq and memory-mapped);
3. prints each word's nearest words from the index, marking with '=' the
   ranks where exact (brute-force) search agrees;
4. solves analogies "a is to b as c is to ?" as the nearest words to
   b - a + c (king - man + woman), by the index and by exact search.

Only the base words are indexed: a held-out word (e.g. "woman") can be part
of a question but never an answer.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("AVQ_PYTHON_PATH", os.path.join(ROOT, "build", "python"))
if os.path.isdir(os.path.join(BUILD, "avq")):
    sys.path.insert(0, BUILD)                 # the in-tree build (make python)
import avq  # noqa: E402

DATA = os.path.join(os.environ.get("DATA_DIR", os.path.join(ROOT, "data")), "glove-100")
WORDS = "king,paris,computer,music,river,einstein"
ANALOGIES = [("man", "king", "woman"), ("france", "paris", "germany"),
             ("good", "better", "bad"), ("walk", "walked", "swim")]


def read_fvecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    return np.ascontiguousarray(raw.reshape(-1, dim + 1)[:, 1:]).view(np.float32)


def read_words(path, count):
    with open(path, encoding="utf-8") as f:
        words = f.read().split("\n")[:count]
    if len(words) != count:
        sys.exit(f"{path}: {len(words)} words for {count} vectors")
    return words


def load_or_build(base, path, rebuild):
    src = os.path.join(DATA, "base.fvecs")
    if not rebuild and os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(src):
        t0 = time.perf_counter()
        index = avq.load(path, mmap=True)
        print(f"loaded {path} (mmap) in {1e3 * (time.perf_counter() - t0):.1f} ms")
        return index
    print(f"building a cosine index over {base.shape[0]:,} vectors ...")
    t0 = time.perf_counter()
    index = avq.Index.build(base, "cosine", progress=avq.progress_bar())
    print(f"built in {time.perf_counter() - t0:.1f} s: {index.num_leaves} leaves, "
          f"{index.nbytes / 2**20:.0f} MB; saved to {path}")
    index.save(path)
    return index


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--words", default=WORDS, help=f"comma-separated (default {WORDS})")
    ap.add_argument("--k", type=int, default=8, help="neighbours per word (default 8)")
    ap.add_argument("--index", default=os.path.join(DATA, "word_search.avq"))
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(DATA, "base.fvecs")):
        sys.exit(f"{DATA}/base.fvecs not found: run 'make data' first")

    base = read_fvecs(os.path.join(DATA, "base.fvecs"))
    held = read_fvecs(os.path.join(DATA, "query.fvecs"))
    words = read_words(os.path.join(DATA, "base_words.txt"), len(base))
    held_words = read_words(os.path.join(DATA, "query_words.txt"), len(held))
    vector = {w: held[i] for i, w in enumerate(held_words)}
    vector.update({w: base[i] for i, w in enumerate(words)})
    index = load_or_build(base, args.index, args.rebuild)
    print(f"avq {avq.__version__}, SIMD {index.isa}, search defaults "
          f"{index.default_search_params}\n")

    # 1. nearest words: index vs exact
    chosen = [w for w in args.words.split(",") if w in vector]
    missing = [w for w in args.words.split(",") if w not in vector]
    if missing:
        print(f"(not in the vocabulary: {', '.join(missing)})")
    Q = np.stack([vector[w] for w in chosen])
    k = args.k + 1                                      # the word itself comes first
    t0 = time.perf_counter()
    found = [index.search(q, k)[0] for q in Q]
    per_query = (time.perf_counter() - t0) / len(Q)
    exact, _ = avq.exact_search(base, Q, k, "cosine")
    print(f"nearest words (index, {1e6 * per_query:.0f} us/query; '=' where exact search "
          "agrees at that rank):")
    for w, ids, ex in zip(chosen, found, exact):
        shown = [(i, e) for i, e in zip(ids, ex) if words[i] != w][:args.k]
        print(f"  {w:10s} " + ", ".join(words[i] + ("=" if i == e else "") for i, e in shown))
    print(f"  recall@{k} of the index against exact search: {avq.recall(np.stack(found), exact):.3f}\n")

    # 2. analogies: b - a + c
    print("analogies, a : b = c : ? as the nearest words to b - a + c (index | exact):")
    for a, b, c in ANALOGIES:
        if not all(x in vector for x in (a, b, c)):
            print(f"  ({a}, {b}, {c}: not in the vocabulary)")
            continue
        q = vector[b] / np.linalg.norm(vector[b]) - vector[a] / np.linalg.norm(vector[a]) \
            + vector[c] / np.linalg.norm(vector[c])
        ids, scores = index.search(q, 8, pre_reorder=200)
        ex_ids, ex_scores = avq.exact_search(base, q, 8, "cosine")

        def answers(ids, scores):
            return [(words[i], s) for i, s in zip(ids, scores) if words[i] not in (a, b, c)][:3]

        got, want = answers(ids, scores), answers(ex_ids, ex_scores)
        fmt = ", ".join(f"{w} ({s:.3f})" for w, s in got)
        agree = "same" if [w for w, _ in got] == [w for w, _ in want] else \
            "exact: " + ", ".join(f"{w} ({s:.3f})" for w, s in want)
        print(f"  {a} : {b} = {c} : {fmt}   | {agree}")
    index.close()


if __name__ == "__main__":
    main()
