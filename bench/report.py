#!/usr/bin/env python3
"""Summarises the raw results of bench/compare.sh (a TSV file) as tables.

    report.py [--ncpu N] RAW.tsv

prints RAW.tsv.header first when it exists (compare.sh writes it beside
the raw file: the machine, the versions, the limits of the run).

Columns of the input: test, variant, server, run, n, seconds, cpu_server,
cpu_own, cpu_client, cpu_ssh, value, pss0, pss1 ("-" where a column does not
apply). Runs numbered 0 or below are warm-ups and are ignored. CPU columns
are seconds: the server's control group (its whole process tree, git
included), the server's own process (gitmouth without git), the client's
group (git, xargs, the ssh wrapper) and the client's ssh's group.

Every figure is a median over runs, with its spread (range / median) where
it is a time; ratios are gitmouth / sshd from the same run.
"""

import csv
import os
import statistics
import sys
from collections import defaultdict

SERVERS = ("gitmouth", "sshd")
GM, OS = SERVERS
TARGET_KIB = 24


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


def col(rows, field, per_n=False):
    xs = [float(r[field]) for r in rows]
    if per_n:
        xs = [x / int(r["n"]) for x, r in zip(xs, rows)]
    return xs


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    """Range as a percentage of the median."""
    m = med(xs)
    return 100.0 * (max(xs) - min(xs)) / m if xs and m else 0.0


def quantile(xs, q):
    xs = sorted(xs)
    i = q * (len(xs) - 1)
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def client_cpu(rows, per_n=False):
    """The client's whole CPU: git and the rest, and its ssh."""
    return [a + b for a, b in zip(col(rows, "cpu_client", per_n), col(rows, "cpu_ssh", per_n))]


def ratio(a, b):
    return a / b if b else float("nan")


class Summary:
    """The final table: one line per figure of issue 10."""

    def __init__(self):
        self.lines = []

    def add(self, figure, sshd, gm, r, target, met):
        self.lines.append((figure, sshd, gm, r, target, met))

    def print(self):
        if not self.lines:
            return
        print("\nsummary: every figure, ratio = gitmouth / sshd from this run")
        print(f"{'figure':<56}{'sshd':>14}{'gitmouth':>14}{'ratio':>8}  {'target':<26}met")
        for figure, o, g, r, target, met in self.lines:
            m = "yes" if met is True else "NO" if met is False else met
            print(f"{figure:<56}{o:>14}{g:>14}{r:>8}  {target:<26}{m}")


def packet_table(rows, order, summary):
    keys = [k for k in order if k[0] == "packet"]
    if not keys:
        return
    print("\npacket layer, 32 KiB payload per packet, one core (taskset), MB/s (10^6 B/s), median of runs:"
          "\nseal/open: the cipher alone (encrypt+MAC, verify+decrypt); write/read: through the framing"
          "\n(PacketWriter/PacketReader); openssl: `openssl speed -evp` (CTR: with -hmac, combined)")
    print(f"{'cipher':<44}{'seal':>7}{'open':>7}{'write':>7}{'read':>7}{'ossl enc':>9}{'ossl dec':>9}"
          f"{'write%':>8}{'read%':>7}{'spread':>8}")
    for k in keys:
        v = {s[2]: med(col(rows[k + (s[2],)], "value")) for s in rows if s[:2] == k}
        sp = max(spread(col(rows[k + (w,)], "value")) for w in ("write", "read") if k + (w,) in rows)
        enc, dec = v.get("openssl-enc", float("nan")), v.get("openssl-dec", float("nan"))
        wp, rp = 100 * ratio(v["write"], enc), 100 * ratio(v["read"], dec)
        print(f"{k[1]:<44}{v['seal']:7.0f}{v['open']:7.0f}{v['write']:7.0f}{v['read']:7.0f}{enc:9.0f}{dec:9.0f}"
              f"{wp:7.0f}%{rp:6.0f}%{sp:7.0f}%")
        if "gcm" in k[1] or "chacha" in k[1]:
            for what, p, o in (("encrypt+MAC", wp, enc), ("decrypt+verify", rp, dec)):
                g = v["write"] if what.startswith("enc") else v["read"]
                summary.add(f"packet {what} {k[1].split('@')[0]} (MB/s)", f"openssl {o:.0f}", f"{g:.0f}",
                            f"{p:.0f}%", ">= 60% of openssl", p >= 60)


def setup_table(rows, order, summary):
    keys = [k for k in order if k[0] == "setup"]
    if not keys:
        return
    n = len(rows[keys[0] + (GM,)])
    print(f"\nsequential connection set-up: `git ls-remote` of a one-commit repository, ms, median (p10-p90) of {n};"
          "\nserver CPU per connection (its process tree: gitmouth and git; sshd, its per-connection processes, the"
          "\nshell and git), the client's (git + ssh, with sshd) and its ssh's alone, ms, median")
    print(f"{'key exchange':<38}{'gitmouth':>16}{'sshd':>16}{'ratio':>7}{'srv cpu gm':>11}{'sshd':>7}{'ratio':>7}"
          f"{'gm own':>7}{'client':>8}{'ssh':>6}")
    for k in keys:
        cells, meds, cpu = [], [], []
        for s in SERVERS:
            xs = [1000 * x for x in col(rows[k + (s,)], "seconds")]
            meds.append(med(xs))
            cells.append(f"{med(xs):.0f} ({quantile(xs, 0.1):.0f}-{quantile(xs, 0.9):.0f})")
            cpu.append(1000 * med(col(rows[k + (s,)], "cpu_server")))
        g = rows[k + (GM,)]
        own = 1000 * statistics.mean(col(g, "cpu_own"))  # clock ticks: a mean
        cl = 1000 * med(client_cpu(rows[k + (OS,)]))
        sh = 1000 * med(col(rows[k + (OS,)], "cpu_ssh"))
        print(f"{k[1]:<38}{cells[0]:>16}{cells[1]:>16}{ratio(*meds):7.2f}{cpu[0]:11.1f}{cpu[1]:7.1f}"
              f"{ratio(*cpu):7.2f}{own:7.1f}{cl:8.1f}{sh:6.1f}")
        kex = k[1].split("@")[0]
        r = ratio(*meds)
        summary.add(f"sequential set-up {kex} (ms)", f"{meds[1]:.0f}", f"{meds[0]:.0f}", f"{r:.2f}", "<= 0.2",
                    r <= 0.2)
        gcl = 1000 * med(client_cpu(rows[k + (GM,)]))
        summary.add(f"  client CPU per connection {kex} (ms)", f"{cl:.1f}", f"{gcl:.1f}", "",
                    "in every set-up above", "")
        r = ratio(*cpu)
        summary.add(f"server CPU per connection {kex} (ms)", f"{cpu[1]:.1f}", f"{cpu[0]:.1f}", f"{r:.2f}",
                    "<= 0.1", r <= 0.1)


def parallel_table(rows, order, summary, ncpu):
    keys = [k for k in order if k[0] == "parallel"]
    if not keys:
        return
    g0 = rows[keys[0] + (GM,)]
    print(f"\nconnection set-up with many in flight: {g0[0]['n']} `git ls-remote` per run, connections/s, median of"
          f" {len(g0)} (spread);\nCPU per connection (ms): the server's tree, the client's (git + ssh) and its ssh's;"
          f"\nbound: the connections/s {ncpu} CPUs allow at that client + server CPU per connection"
          f"\n(ssh: what they allow the ssh client alone, talking to gitmouth)")
    print(f"{'key exchange':<38}{'gitmouth':>14}{'sshd':>14}{'ratio':>7}{'srv gm':>8}{'sshd':>6}"
          f"{'cli gm':>8}{'sshd':>6}{'ssh':>6}{'bound gm':>10}{'sshd':>6}{'ssh':>6}")
    for k in keys:
        cps, cells, srv, cli, bound = [], [], [], [], []
        for s in SERVERS:
            rs = rows[k + (s,)]
            xs = [int(r["n"]) / float(r["seconds"]) for r in rs]
            cps.append(med(xs))
            cells.append(f"{med(xs):.1f} ({spread(xs):.0f}%)")
            srv.append(1000 * med(col(rs, "cpu_server", per_n=True)))
            cli.append(1000 * med(client_cpu(rs, per_n=True)))
            bound.append(ncpu * 1000 / (srv[-1] + cli[-1]) if srv[-1] + cli[-1] else float("nan"))
        ssh_ms = 1000 * med(col(rows[k + (GM,)], "cpu_ssh", per_n=True))
        r = ratio(*cps)
        print(f"{k[1]:<38}{cells[0]:>14}{cells[1]:>14}{r:7.2f}{srv[0]:8.1f}{srv[1]:6.1f}{cli[0]:8.1f}{cli[1]:6.1f}"
              f"{ssh_ms:6.1f}{bound[0]:10.1f}{bound[1]:6.1f}{ncpu * 1000 / ssh_ms if ssh_ms else 0:6.0f}")
        kex = k[1].split("@")[0]
        client_bound = cps[0] >= 0.75 * bound[0]
        met = r >= 3 or client_bound
        summary.add(f"connections/s, 8 in flight, {kex}", f"{cps[1]:.1f}", f"{cps[0]:.1f}", f"{r:.2f}",
                    ">= 3, or >= 75% of bound", met if r >= 3 or not client_bound else "bound")
        summary.add(f"  client CPU per connection {kex} (ms)", f"{cli[1]:.1f}", f"{cli[0]:.1f}", "",
                    f"bound {bound[0]:.0f}/s; ssh {ncpu * 1000 / ssh_ms:.0f}/s" if ssh_ms else "", "")


def transfer_table(rows, order, test, title, summary, cpu_target):
    keys = [k for k in order if k[0] == test]
    if not keys:
        return
    g0 = rows[keys[0] + (GM,)]
    mb = int(g0[0]["n"]) / 1e6
    print(f"\n{title} ({mb:.1f} MB pack), median of {len(g0)}; wall time and server CPU (process tree, git included)")
    print(f"{'cipher':<42}{'gitmouth':>19}{'sshd':>19}{'ratio':>6}{'spread':>10}{'cpu gm':>8}{'gm own':>7}"
          f"{'sshd':>6}{'ratio':>6}")
    for k in keys:
        t, cells, sp, cpu = [], [], [], []
        for s in SERVERS:
            rs = rows[k + (s,)]
            xs = col(rs, "seconds")
            t.append(med(xs))
            cells.append(f"{med(xs):.2f} s {mb / med(xs):5.1f} MB/s")
            sp.append(f"{spread(xs):.0f}%")
            cpu.append(med(col(rs, "cpu_server")))
        own = med(col(rows[k + (GM,)], "cpu_own"))
        print(f"{k[1]:<42}{cells[0]:>19}{cells[1]:>19}{ratio(*t):6.2f}{'/'.join(sp):>10}{cpu[0]:8.2f}{own:7.2f}"
              f"{cpu[1]:6.2f}{ratio(*cpu):6.2f}")
        c = k[1].split("@")[0].split(":")[0]
        r = ratio(*t)
        summary.add(f"{test} wall time {c} (s)", f"{t[1]:.2f}", f"{t[0]:.2f}", f"{r:.2f}", "<= 1.0", r <= 1.0)
        r = ratio(*cpu)
        summary.add(f"{test} server CPU {c} (s)", f"{cpu[1]:.2f}", f"{cpu[0]:.2f}", f"{r:.2f}",
                    f"<= {cpu_target}", r <= cpu_target)


def memory_table(rows, order, summary):
    keys = [k for k in order if k[0] in ("memory", "loadgen")]
    if not keys:
        return
    print("\nmemory per idle authenticated session (key exchange + publickey auth, no channel): (PSS of the"
          "\nserver's process group with N sessions - PSS with none) / N; real ssh clients, or gm-loadgen")
    print(f"{'sessions':<24}{'server':<10}{'asked':>7}{'held':>7}{'open s':>8}{'PSS 0 MiB':>10}{'PSS N MiB':>10}"
          f"{'KiB/session':>12}{'runs':>5}{'spread':>7}  stopped by")
    for k in keys:
        per = {}
        for s in SERVERS:
            rs = rows.get(k + (s,))
            if not rs:
                continue
            asked = k[1].rsplit("-", 1)[1]
            held = med([int(r["n"]) for r in rs])
            p0 = med(col(rs, "pss0"))
            p1 = med(col(rs, "pss1"))
            kibs = [(float(r["pss1"]) - float(r["pss0"])) / int(r["n"]) for r in rs if int(r["n"])]
            kib = med(kibs)
            per[s] = (kib, held, asked, rs[0]["value"])
            print(f"{k[1]:<24}{s:<10}{asked:>7}{held:>7.0f}{med(col(rs, 'seconds')):8.1f}{p0 / 1024:10.1f}"
                  f"{p1 / 1024:10.1f}{kib:12.1f}{len(rs):5}{spread(kibs):6.0f}%  {rs[0]['value']}")
        if GM not in per:
            continue
        gk, gheld, asked, _ = per[GM]
        if OS in per:
            ok, oheld, _, why = per[OS]
            oc = f"{ok:.0f} KiB" if int(oheld) == int(asked) else f"{ok:.0f}K@{oheld:.0f}"
            r = f"{ratio(gk, ok):.3f}"
        else:
            oc, r = "-", ""
        met = gk <= TARGET_KIB and int(gheld) == int(asked)
        summary.add(f"memory per idle session, {k[1]}", oc, f"{gk:.1f} KiB", r,
                    f"<= {TARGET_KIB} KiB, all held", met)
        if OS in per and int(per[OS][1]) < int(asked):
            summary.add(f"  sshd reached (of {asked}): stopped by {per[OS][3]}", f"{per[OS][1]:.0f}", "", "", "", "")


def main():
    args = sys.argv[1:]
    ncpu = os.cpu_count() or 1
    if args[:1] == ["--ncpu"]:
        ncpu, args = int(args[1]), args[2:]
    if os.path.exists(args[0] + ".header"):  # machine, versions, limits
        with open(args[0] + ".header") as f:
            print(f.read(), end="")
    rows, order = load(args[0])
    summary = Summary()
    packet_table(rows, order, summary)
    setup_table(rows, order, summary)
    parallel_table(rows, order, summary, ncpu)
    transfer_table(rows, order, "clone", "clone: `git clone --bare`", summary, 0.7)
    transfer_table(rows, order, "push", "push: `git push` into an empty repository", summary, 1.0)
    memory_table(rows, order, summary)
    summary.print()


if __name__ == "__main__":
    main()
