#!/usr/bin/python3
"""bench/report.py -- turn benchmark CSVs into the recall/QPS comparison.

Reads one or more CSVs with the columns
    system,params,recall,qps,build_s,bytes_per_vector,threads,batched
(bench/baselines.cpp writes hnswlib and FAISS rows, avq's benchmark writes
rows named "avq", "avq-recon", "avq-batch", ...), and prints:

  * QPS at recall@10 >= 0.80 / 0.90 / 0.95 / 0.99 per system, with the
    ratio to the reference system ("avq" unless --ref says otherwise);
  * build time and bytes/vector per system;
  * the batched / multi-threaded rows, which are kept out of the frontier.

Why this way: a system's frontier is its Pareto set (the best QPS for
recall >= r).  QPS at a target recall is the best QPS among measured points
whose recall is at least the target -- never interpolated between points,
because an interpolated setting was not measured and may not exist.  A system
that never reaches a target gets "-".  Only single-thread, one-query-at-a-time
rows (threads == 1, batched == 0) enter the frontier, so every system is
compared in the same mode; batched rows are listed separately.

Outputs: the tables on stdout (Markdown, readable as text), optionally the
same Markdown in --md FILE (for doc/RESULTS.md) and a PNG (--png FILE):
log-scale QPS against recall, one line per system frontier, all measured
points drawn faintly behind (--plot-systems picks and orders the lines,
--small is the size committed as doc/img/frontier.png; `make bench` draws
that one too).  Needs only the standard library and, for the
PNG, matplotlib (Debian's python3-matplotlib; run with /usr/bin/python3).
"""

import argparse
import csv
import math
import sys

COLUMNS = ["system", "params", "recall", "qps", "build_s", "bytes_per_vector",
           "threads", "batched"]
DEFAULT_TARGETS = "0.80,0.90,0.95,0.99"


def read_rows(paths):
    """All rows of all files, numeric columns converted; files without the
    expected header are an error (named), a malformed row is skipped with a
    warning."""
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                sys.exit(f"report.py: {path}: missing column(s) {', '.join(missing)}")
            for lineno, r in enumerate(reader, start=2):
                try:
                    rows.append({
                        "system": r["system"].strip(),
                        "params": (r["params"] or "").strip(),
                        "recall": float(r["recall"]),
                        "qps": float(r["qps"]),
                        "build_s": float(r["build_s"]) if r["build_s"] not in ("", None) else math.nan,
                        "bytes_per_vector": float(r["bytes_per_vector"]) if r["bytes_per_vector"] not in ("", None) else math.nan,
                        "threads": int(r["threads"]),
                        "batched": int(r["batched"]) != 0,
                        "file": path,
                    })
                except (TypeError, ValueError) as e:
                    print(f"report.py: {path}:{lineno}: skipped ({e})", file=sys.stderr)
    return rows


def is_frontier_row(r):
    return r["threads"] == 1 and not r["batched"]


def pareto(points):
    """The Pareto frontier of (recall, qps) points: those that no other point
    beats on both recall and QPS.  Returned by increasing recall (and so
    decreasing QPS)."""
    best = []
    for r in sorted(points, key=lambda p: (-p["recall"], -p["qps"])):
        if not best or r["qps"] > best[-1]["qps"]:
            best.append(r)
    return best[::-1]


def qps_at(points, target):
    """Best QPS among points with recall >= target (no interpolation), with
    the point itself; (None, None) if the target is never reached."""
    ok = [p for p in points if p["recall"] >= target]
    if not ok:
        return None, None
    p = max(ok, key=lambda p: p["qps"])
    return p["qps"], p


def system_order(systems, ref):
    """Reference first, then other avq variants, then the rest, by name."""
    return sorted(systems, key=lambda s: (s != ref, not s.startswith("avq"), s))


def fmt_range(values, fmt):
    vals = sorted({v for v in values if not math.isnan(v)})
    if not vals:
        return "-"
    if len(vals) == 1 or math.isclose(vals[0], vals[-1], rel_tol=1e-3):
        return fmt.format(vals[0])
    return fmt.format(vals[0]) + " - " + fmt.format(vals[-1])


def md_table(header, body, align=None):
    """A Markdown table; align is one letter per column, l or r (default:
    first column left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def build_report(rows, targets, ref, k_label):
    single = [r for r in rows if is_frontier_row(r)]
    systems = system_order({r["system"] for r in rows}, ref)
    by_sys = {s: [r for r in single if r["system"] == s] for s in systems}
    ref_points = by_sys.get(ref, [])
    out = []

    out.append(f"### QPS at fixed {k_label} (single thread, one query at a time)\n")
    header = ["system"] + [f"{k_label} >= {t:.2f}" for t in targets]
    body = []
    for s in systems:
        if not by_sys[s]:
            continue
        cells = [s]
        for t in targets:
            q, _ = qps_at(by_sys[s], t)
            if q is None:
                cells.append("-")
                continue
            rq, _ = qps_at(ref_points, t)
            if s == ref or rq is None:
                cells.append(f"{q:,.0f}")
            else:
                cells.append(f"{q:,.0f} ({q / rq:.2f}x)")
        body.append(cells)
    out.append(md_table(header, body))
    out.append(f"\nRatios are QPS / QPS of `{ref}` at the same target; "
               "each value is the best measured point with recall >= the target "
               "(no interpolation); \"-\" = never reached.")

    out.append("\n### Settings behind those numbers\n")
    body = []
    for s in systems:
        for t in targets:
            q, p = qps_at(by_sys[s], t)
            if p is not None:
                body.append([s, f"{t:.2f}", p["params"], f"{p['recall']:.4f}", f"{p['qps']:,.0f}"])
    out.append(md_table(["system", "target", "params", "recall", "QPS"], body, "lrlrr"))

    out.append("\n### Build and size\n")
    body = []
    for s in systems:
        rs = [r for r in rows if r["system"] == s]
        fr = pareto(by_sys[s]) if by_sys[s] else []
        best_recall = max((r["recall"] for r in by_sys[s]), default=math.nan)
        body.append([s, fmt_range([r["build_s"] for r in rs], "{:.1f}"),
                     fmt_range([r["bytes_per_vector"] for r in rs], "{:.1f}"),
                     str(len(by_sys[s])), str(len(fr)),
                     "-" if math.isnan(best_recall) else f"{best_recall:.4f}"])
    out.append(md_table(["system", "build s", "bytes/vector", "points", "frontier points",
                         f"max {k_label}"], body))

    batched = [r for r in rows if not is_frontier_row(r)]
    if batched:
        out.append("\n### Batched / multi-threaded rows (not in the frontier)\n")
        body = [[r["system"], r["params"], str(r["threads"]), "yes" if r["batched"] else "no",
                 f"{r['recall']:.4f}", f"{r['qps']:,.0f}"]
                for r in sorted(batched, key=lambda r: systems.index(r["system"]))]
        out.append(md_table(["system", "params", "threads", "batched", k_label, "QPS"], body,
                            "llrlrr"))
    return "\n".join(out) + "\n"


# Legend text of the systems the benchmarks write (others: their name).
LABELS = {
    "avq": "avq (anisotropic codes, T = 0.2)",
    "avq-recon": "avq, reconstruction-loss codes",
    "faiss-native": "FAISS IVF-PQ fast scan + refine, native build",
    "faiss-ivfpqfs": "FAISS IVF-PQ fast scan + refine, Debian's generic build",
    "hnswlib-M16": "hnswlib M = 16",
    "hnswlib-M32": "hnswlib M = 32",
}


def draw(rows, ref, path, k_label, title, systems=None, small=False):
    """The frontier plot; systems: only these (in this order), else all;
    small: the size committed under doc/img/ (about 40-70 KB)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in rows if is_frontier_row(r)]
    present = {r["system"] for r in single}
    if systems:
        missing = [s for s in systems if s not in present]
        if missing:
            print(f"report.py: note: no single-thread rows for {', '.join(missing)}: "
                  "not in the plot", file=sys.stderr)
        systems = [s for s in systems if s in present]
        single = [r for r in single if r["system"] in systems]
    else:
        systems = system_order(present, ref)
    if small:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    else:
        fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for i, s in enumerate(systems):
        pts = [r for r in single if r["system"] == s]
        color = f"C{i % 10}"
        ax.scatter([p["recall"] for p in pts], [p["qps"] for p in pts], s=14,
                   color=color, alpha=0.35, linewidths=0)
        fr = pareto(pts)
        ax.plot([p["recall"] for p in fr], [p["qps"] for p in fr], marker="o", ms=3.5,
                lw=2.2 if s == ref else 1.4, color=color,
                label=LABELS.get(s, s) if small else s)
    ax.set_yscale("log")
    ax.set_xlabel(k_label)
    ax.set_ylabel("queries per second (log scale)")
    lo = min((r["recall"] for r in single), default=0.5)
    # the small picture shows the part of the frontier people tune for
    ax.set_xlim(0.6 if small else max(0.0, min(lo, 0.8) - 0.02), 1.005)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8 if small else 9)
    ax.set_title(title, fontsize=9 if small else 10)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", help="benchmark CSV files")
    ap.add_argument("--ref", default="avq", help="system the ratios are relative to (default avq)")
    ap.add_argument("--targets", default=DEFAULT_TARGETS,
                    help=f"comma-separated recall targets (default {DEFAULT_TARGETS})")
    ap.add_argument("--k", type=int, default=10, help="k of recall@k, for the labels (default 10)")
    ap.add_argument("--md", help="also write the tables as Markdown to this file")
    ap.add_argument("--png", help="draw QPS vs recall frontiers to this PNG")
    ap.add_argument("--title", default="GloVe-100 cosine, k=10, single thread, one query at a time",
                    help="plot title")
    ap.add_argument("--plot-systems",
                    help="comma-separated systems to draw, in this order (default: all)")
    ap.add_argument("--small", action="store_true",
                    help="the small PNG committed as doc/img/frontier.png (longer legend labels)")
    a = ap.parse_args()

    try:
        targets = [float(t) for t in a.targets.split(",") if t.strip()]
    except ValueError:
        sys.exit(f"report.py: bad --targets {a.targets!r}")
    rows = read_rows(a.csv)
    if not rows:
        sys.exit("report.py: no rows in " + ", ".join(a.csv))
    k_label = f"recall@{a.k}"
    if a.ref not in {r["system"] for r in rows}:
        print(f"report.py: note: no rows for reference system '{a.ref}'; ratios omitted",
              file=sys.stderr)
    text = build_report(rows, targets, a.ref, k_label)
    print(text, end="")
    if a.md:
        with open(a.md, "w") as f:
            f.write(f"<!-- generated by bench/report.py from {', '.join(a.csv)} -->\n\n")
            f.write(text)
    if a.png:
        systems = [x.strip() for x in a.plot_systems.split(",") if x.strip()] \
            if a.plot_systems else None
        draw(rows, a.ref, a.png, k_label, a.title, systems, a.small)
        print(f"wrote {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
