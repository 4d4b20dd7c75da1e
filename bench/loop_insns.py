#!/usr/bin/python3
"""Instruction counts of the LUT16 fast-scan inner loops, from the disassembly.

    bench/loop_insns.py LISTING LOOKUP [FUNCTION]

LISTING is `objdump -d --no-show-raw-insn` of a kernel object (the x86 or
the aarch64 objdump: both print "addr:<TAB>mnemonic operands").  Prints every
innermost loop (a backward branch with no other backward branch inside it)
of the functions whose name contains FUNCTION (default: lut16_sums16) that
contains the LOOKUP instruction (a regex: tbl, vpshufb, vpermb), with its
length and mnemonic histogram.  A compiled kernel has one such loop per
batch size (1, 2, 3 queries; some twice, for the full and the tail group);
bench/README.md turns them into instructions per 32-point group per code
block.  Static counts only: no timing, no port model.
"""
import collections
import re
import sys


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    listing, lookup = sys.argv[1], re.compile(sys.argv[2])
    wanted = sys.argv[3] if len(sys.argv) == 4 else "lut16_sums16"
    functions = collections.defaultdict(list)
    name = None
    with open(listing) as f:
        for line in f:
            m = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
            if m:
                name = m.group(1)
                continue
            m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
            if m and name:
                functions[name].append((int(m.group(1), 16), m.group(2), m.group(3)))
    seen = set()
    for fn, insns in functions.items():
        if wanted not in fn:
            continue
        index = {a: i for i, (a, _, _) in enumerate(insns)}
        # backward branches: x86 j*, aarch64 b / b.cond / cbz / cbnz / tbz / tbnz
        edges = []
        for i, (a, mnemonic, operands) in enumerate(insns):
            if not re.match(r"^(j|b\b|b\.|cbn?z|tbn?z)", mnemonic):
                continue
            t = re.search(r"\b([0-9a-f]+) <", operands)
            if t and int(t.group(1), 16) <= a and int(t.group(1), 16) in index:
                edges.append((index[int(t.group(1), 16)], i))
        for s, e in edges:
            if any(s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in edges):
                continue  # an outer loop
            body = insns[s:e + 1]
            hist = collections.Counter(mnemonic for _, mnemonic, _ in body)
            lookups = sum(v for k, v in hist.items() if lookup.fullmatch(k))
            key = (fn, tuple(sorted(hist.items())))
            if not lookups or key in seen:
                continue
            seen.add(key)
            mix = " ".join(f"{k}x{v}" for k, v in sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))
            print(f"{fn} {insns[s][0]:#x}: {len(body)} instructions, {lookups} lookups: {mix}")


if __name__ == "__main__":
    main()
