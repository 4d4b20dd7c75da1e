#!/usr/bin/python3
"""Plot the score-aware weights experiment (doc/RESULTS.md, "Score-aware
weights (issue 19)").

Usage: weights_plot.py OUT.png LABEL=RUN.csv [LABEL=RUN.csv ...]

Each RUN.csv is what `avq-paper --weights ... --csv RUN.csv` writes.  One
row of panels per run, one column per bit rate: the held-out Recall1@10 of
every variant against its eta at the base's median norm, one marker per
weight kind, the reconstruction codes as a dashed line.  The x axis is
logarithmic: on data of one norm every weight is a single eta, and the
panels show whether any kind leaves the step's curve.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"step": ("o", "C0"), "pow": ("s", "C1"), "exp": ("^", "C2"), "logistic": ("D", "C3")}


def read_run(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def main(argv):
    if len(argv) < 3 or any("=" not in a for a in argv[2:]):
        sys.stderr.write("usage: weights_plot.py OUT.png LABEL=RUN.csv [LABEL=RUN.csv ...]\n")
        return 2
    runs = [(a.split("=", 1)[0], read_run(a.split("=", 1)[1])) for a in argv[2:]]
    bits = sorted({int(r["bits"]) for _, rows in runs for r in rows})
    fig, axes = plt.subplots(len(runs), len(bits), figsize=(4.2 * len(bits), 3.0 * len(runs)),
                             squeeze=False)
    for i, (label, rows) in enumerate(runs):
        for j, b in enumerate(bits):
            ax = axes[i][j]
            sel = [r for r in rows if int(r["bits"]) == b]
            for r in sel:
                if r["weight"] == "reconstruction":
                    ax.axhline(float(r["held_r1_at_10"]), ls="--", color="grey", lw=1)
            for kind, (m, c) in MARKERS.items():
                pts = sorted((float(r["eta"]), float(r["held_r1_at_10"]))
                             for r in sel if r["weight"] == kind)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=m, color=c,
                            ls="-" if kind == "step" else ":", lw=1, ms=5, label=kind)
            ax.set_xscale("log")
            ax.set_title(f"{label}, {b} bits", fontsize=9)
            ax.set_xlabel("eta at the median norm", fontsize=8)
            ax.set_ylabel("held-out Recall1@10", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=7, title="dashed: reconstruction", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(argv[1], dpi=80, metadata={"Software": None})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
