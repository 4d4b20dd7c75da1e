#!/usr/bin/python3
"""paper_plot.py -- draw Recall1@N curves written by `avq paper --plot`.

Usage: paper_plot.py CURVES.csv OUT.png

The CSV has a header "N,<variant 1>,<variant 2>,..." and one row per N
(1..100) holding the fraction of queries whose true top-1 neighbour is among
the N best estimates.  The C side writes the numbers; this script only draws
them, so the plot can be regenerated or restyled without rerunning the
experiment.  One panel per bit rate (the "(NNN bits)" suffix of a column),
log-scaled N as in Figure 3 of Guo et al. 2020.  Run it with /usr/bin/python3
(Debian's matplotlib).  The size (about 1040 x 390 pixels, under 100 KB) is
the one committed as doc/img/paper.png (`avq-paper --plot doc/img/paper.png`).
"""
import csv
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curves(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, data = rows[0], rows[1:]
    ns = [int(r[0]) for r in data]
    curves = {name: [float(r[i + 1]) for r in data] for i, name in enumerate(header[1:])}
    return ns, curves


def split_by_bits(curves):
    panels = {}
    for name, ys in curves.items():
        m = re.search(r"\((\d+) bits\)\s*$", name)
        bits = int(m.group(1)) if m else 0
        label = re.sub(r"\s*\(\d+ bits\)\s*$", "", name)
        panels.setdefault(bits, []).append((label, ys))
    return dict(sorted(panels.items()))


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: paper_plot.py CURVES.csv OUT.png\n")
        return 2
    ns, curves = read_curves(argv[1])
    panels = split_by_bits(curves)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False)
    for ax, (bits, series) in zip(axes[0], panels.items()):
        for label, ys in series:
            if label.startswith("reconstruction"):
                # drawn on top, dashed black: at eta = 1 an anisotropic curve
                # coincides with it and must not hide it
                ax.plot(ns, ys, "k--", label=label, linewidth=1.8, zorder=5)
            else:
                ax.plot(ns, ys, "-", label=label, linewidth=1.6)
        ax.set_xscale("log")
        ax.set_xlabel("N")
        ax.set_ylabel("Recall1@N")
        ax.set_title(f"GloVe-100, {bits} bits per point" if bits else "Recall1@N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=100, metadata={"Software": None})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
