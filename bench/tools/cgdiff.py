#!/usr/bin/env python3
"""cgdiff.py DIR_SHORT DIR_LONG N - per-request instructions by function:
(long run - short run) / N, from callgrind_annotate of the nginx thread
(-01 file), plus the callers of memcpy/memset/calloc (the big copies)."""
import glob, re, subprocess, sys

def annotate(d, tree=False):
    f = sorted(glob.glob(d + "/callgrind.out.*-01"))[0]
    args = ["callgrind_annotate", "--inclusive=no", "--threshold=100"]
    if tree:
        args.append("--tree=caller")
    return subprocess.run(args + [f], capture_output=True, text=True).stdout

def self_cost(text):
    d = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            k = m.group(2).strip()
            d[k] = d.get(k, 0) + int(m.group(1).replace(",", ""))
    return d

def callers(text):
    out = {}
    for b in text.split("\n\n"):
        lines = b.strip("\n").split("\n")
        star = [l for l in lines if re.match(r"\s*[\d,]+ \([^)]*\)\s+\*", l)]
        if not star:
            continue
        name = star[0].split("*", 1)[1].strip()
        cs = {}
        for l in lines:
            m = re.match(r"\s*([\d,]+) \([^)]*\)\s+<\s+(.*?) \((\d+)x\)", l)
            if m:
                cs[m.group(2)] = int(m.group(1).replace(",", ""))
        out[name] = cs
    return out

short, long_, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
a, b = self_cost(annotate(short)), self_cost(annotate(long_))
diff = {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
print("per-request instructions, nginx thread: %.0f" % sum(diff.values()))
for k, v in sorted(diff.items(), key=lambda t: -t[1])[:30]:
    print("%8.1f  %s" % (v, k[:140]))
ta, tb = callers(annotate(short, True)), callers(annotate(long_, True))
print("\nlarge copies and allocations, per request, by caller:")
for fn in tb:
    if re.search(r"__mem(set|cpy|move)_avx|malloc.c:calloc", fn):
        for c, ir in tb[fn].items():
            v = (ir - ta.get(fn, {}).get(c, 0)) / n
            if v >= 5:
                print("%8.1f  %s  <-  %s" % (v, fn.split(":")[-1][:40], c[:80]))
