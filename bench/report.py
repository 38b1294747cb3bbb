#!/usr/bin/env python3
"""Summarises the raw results of bench/compare.sh (a TSV file) as tables.

Columns of the input: test, variant, server, run, seconds, cpu_self,
cpu_children, bytes. Runs numbered 0 or below are warm-ups and are ignored.
"""

import csv
import statistics
import sys
from collections import defaultdict

SERVERS = ("gitmouth", "sshd")


def load(path):
    rows = defaultdict(list)
    order = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            if int(r["run"]) <= 0:
                continue
            key = (r["test"], r["variant"])
            if key not in order:
                order.append(key)
            rows[key + (r["server"],)].append(r)
    return rows, order


def med(rows, field):
    return statistics.median(float(r[field]) for r in rows)


def spread(rows):
    """Range of the wall times as a percentage of their median."""
    xs = [float(r["seconds"]) for r in rows]
    m = statistics.median(xs)
    return 100.0 * (max(xs) - min(xs)) / m if m else 0.0


def quantile(xs, q):
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def throughput_table(rows, order, test, title):
    keys = [k for k in order if k[0] == test]
    if not keys:
        return
    n = len(rows[keys[0] + ("gitmouth",)])
    mb = int(rows[keys[0] + ("gitmouth",)][0]["bytes"]) / 1e6
    print(f"\n{title} ({mb:.1f} MB pack), median of {n}; ratio = gitmouth time / sshd time")
    print(f"{'cipher':<46}{'gitmouth':>18}{'sshd':>18}{'ratio':>8}   spread gm/sshd")
    for k in keys:
        cells = []
        for s in SERVERS:
            t = med(rows[k + (s,)], "seconds")
            cells.append(f"{t:7.2f} s {mb / t:6.1f} MB/s")
        g, o = (med(rows[k + (s,)], "seconds") for s in SERVERS)
        sp = "/".join(f"{spread(rows[k + (s,)]):.0f}%" for s in SERVERS)
        print(f"{k[1]:<46}{cells[0]:>18}{cells[1]:>18}{g / o:8.2f}   {sp}")


def latency_table(rows, order):
    keys = [k for k in order if k[0] == "ls-remote"]
    if not keys:
        return
    n = len(rows[keys[0] + ("gitmouth",)])
    print(f"\nconnection set-up: `git ls-remote` of a tiny repository, ms, median (p10-p90) of {n}; "
          "ratio = gitmouth / sshd")
    print(f"{'key exchange':<46}{'gitmouth':>18}{'sshd':>18}{'ratio':>8}")
    for k in keys:
        cells, meds = [], []
        for s in SERVERS:
            xs = [1000 * float(r["seconds"]) for r in rows[k + (s,)]]
            m = statistics.median(xs)
            meds.append(m)
            cells.append(f"{m:5.0f} ({quantile(xs, 0.1):.0f}-{quantile(xs, 0.9):.0f})")
        print(f"{k[1]:<46}{cells[0]:>18}{cells[1]:>18}{meds[0] / meds[1]:8.2f}")


def cpu_table(rows, order):
    keys = [k for k in order if k[0] in ("clone", "push")]
    if not keys:
        return
    print("\nserver CPU seconds (user+system) per operation, median. gitmouth: its own process (own) and the"
          "\ngit it runs; sshd: all its processes, the login shell and git, and an estimate of its SSH part"
          "\n(sshd total - gitmouth's git: the same git does the same work). Ratios gitmouth / sshd.")
    print(f"{'operation':<58}{'gm own':>7}{'gm git':>7}{'gm tot':>7}{'sshd':>7}{'sshd-git':>9}"
          f"{'tot':>6}{'ssh part':>9}")
    for k in keys:
        g = rows[k + ("gitmouth",)]
        o = rows[k + ("sshd",)]
        own, kids = med(g, "cpu_self"), med(g, "cpu_children")
        gt = statistics.median(float(r["cpu_self"]) + float(r["cpu_children"]) for r in g)
        ot = statistics.median(float(r["cpu_self"]) + float(r["cpu_children"]) for r in o)
        est = ot - kids
        rt = f"{gt / ot:6.2f}" if ot else f"{'-':>6}"
        rs = f"{own / est:9.2f}" if est > 0 else f"{'-':>9}"
        print(f"{k[0] + ' ' + k[1]:<58}{own:7.2f}{kids:7.2f}{gt:7.2f}{ot:7.2f}{est:9.2f}{rt}{rs}")
    for k in [k for k in order if k[0] == "ls-remote"]:
        g = rows[k + ("gitmouth",)]
        o = rows[k + ("sshd",)]
        # Means, not medians: a connection costs a few ms, below the 10 ms clock tick.
        own = 1000 * statistics.mean(float(r["cpu_self"]) for r in g)
        kids = 1000 * statistics.mean(float(r["cpu_children"]) for r in g)
        ot = 1000 * statistics.mean(float(r["cpu_self"]) + float(r["cpu_children"]) for r in o)
        est = ot - kids
        rt = f"{(own + kids) / ot:6.2f}" if ot else f"{'-':>6}"
        rs = f"{own / est:9.2f}" if est > 0 else f"{'-':>9}"
        print(f"{'ls-remote ' + k[1] + ' (ms, mean)':<58}{own:7.1f}{kids:7.1f}{own + kids:7.1f}{ot:7.1f}"
              f"{est:9.1f}{rt}{rs}")


def main():
    rows, order = load(sys.argv[1])
    throughput_table(rows, order, "clone", "clone: `git clone --bare`")
    throughput_table(rows, order, "push", "push: `git push` into an empty repository")
    latency_table(rows, order)
    cpu_table(rows, order)


if __name__ == "__main__":
    main()
