"""Prints tests/bench/run.sh's tables from the files its VM wrote.

usage: report.py <out dir> <rounds>"""
import math
import pathlib
import random
import re
import statistics
import sys

out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
PROVIDERS = ("stock", "ours")
# icount.c's regions, in the order.
VERBS = [
    ("post_send.SEND", "ibv_post_send SEND"),
    ("wr.SEND", "ibv_wr_* SEND"),
    ("post_send.RDMA_WRITE", "ibv_post_send RDMA_WRITE"),
    ("wr.RDMA_WRITE", "ibv_wr_* RDMA_WRITE"),
    ("post_send.inline_SEND", "ibv_post_send inline SEND"),
    ("wr.inline_SEND", "ibv_wr_* inline SEND"),
    ("post_send.UD_SEND", "ibv_post_send UD SEND"),
    ("wr.UD_SEND", "ibv_wr_* UD SEND"),
    ("post_recv", "ibv_post_recv"),
    ("post_srq_recv", "ibv_post_srq_recv"),
    ("poll_cq.per_completion", "ibv_poll_cq, per completion"),
    ("poll_cq.empty", "ibv_poll_cq, empty CQ"),
    ("poll_cq_ex.per_completion", "ibv_start/next_poll, per completion"),
    ("req_notify_cq", "ibv_req_notify_cq"),
    ("reg_mr.4KiB", "reg_mr+dereg_mr 4KiB"),
    ("reg_mr.1MiB", "reg_mr+dereg_mr 1MiB"),
    ("reg_mr.64MiB", "reg_mr+dereg_mr 64MiB"),
]


# A cost line starts with its position: a line number, or with
# --compress-pos a difference (+N, -N) or * for the same line.
COST_LINE_START = tuple("0123456789+-*")


def programs_own(text):
    """The instructions the benchmark program executed itself (its loop,
    building the WRs, reading the results), from a callgrind dump: the
    self cost of its own object. Every other instruction of a region ran
    below the application, in libibverbs, the provider or libc."""
    names = {}  # compressed object ids -> paths
    here = ""
    own = None  # stays None if the program's object never shows
    skip_next = False
    for line in text.splitlines():
        if skip_next:  # a call's inclusive cost, not the caller's own
            skip_next = False
        elif line.startswith("ob="):
            m = re.match(r"ob=\((\d+)\)(?: (.*))?$", line)
            if m and m[2]:
                names[m[1]] = m[2]
            here = names.get(m[1], "") if m else line[3:]
            if here.endswith("/icount") and own is None:
                own = 0
        elif line.startswith("cob="):
            m = re.match(r"cob=\((\d+)\) (.*)$", line)
            if m:
                names[m[1]] = m[2]
        elif line.startswith("calls="):
            skip_next = True
        elif here.endswith("/icount") and line[:1] in COST_LINE_START:
            fields = line.split()  # position, then Ir
            if len(fields) > 1:
                own += int(fields[1])
    return own


def icount():
    """{(region, provider): (instructions per call, of which below the
    application)} from callgrind's dumps."""
    sums = {}
    cg = out / "cg"
    if not cg.is_dir():
        return {}
    for f in cg.iterdir():
        m = re.match(r"(stock|ours)\.\d+\.\d+$", f.name)
        if not m:
            continue
        text = f.read_text(errors="replace")
        d = re.search(r"^desc: Trigger: Client Request: (\S+) (\d+) (\d+)$", text, re.M)
        s = re.search(r"^summary: (\d+)$", text, re.M)
        if not d or not s or int(d[3]) or not int(d[2]):
            continue  # not a region, or one that met an empty poll
        own = programs_own(text)
        acc = sums.setdefault((d[1], m[1]), [0, 0, 0])
        acc[0] += int(s[1])
        acc[1] = None if own is None or acc[1] is None else acc[1] + int(s[1]) - own
        acc[2] += int(d[2])
    return {k: (v[0] / v[2], None if v[1] is None else v[1] / v[2]) for k, v in sums.items()}


def table(title, unit, rows):
    if not rows:
        return
    print(f"{title:44} {'stock':>10} {'ours':>10} {'ours/stock':>10}")
    for name, s, o in rows:
        if s is None or o is None:
            print(f"{name:44} {'-' if s is None else f'{s:10.1f}':>10} {'-' if o is None else f'{o:10.1f}':>10} {'missing':>10}")
        else:
            print(f"{name:44} {s:10.1f} {o:10.1f} {o / s:10.2f}")
    print()


ic = icount()
def ic_rows(part):
    def get(k, p):
        v = ic.get((k, p))
        return None if v is None else v[part]  # None: not measured, or not attributable
    return [(label, get(k, "stock"), get(k, "ours")) for k, label in VERBS if (k, "stock") in ic or (k, "ours") in ic]
table("instructions per call (callgrind)", "", ic_rows(0))
table("of which below the application", "", ic_rows(1))

rows = {}
rounds_of = {}  # name -> provider -> {round: value}, for the paired ratios
def add(name, p, v, r=None):
    rows.setdefault(name, {}).setdefault(p, []).append(v)
    if r is not None:
        rounds_of.setdefault(name, {}).setdefault(p, {})[r] = v

for p in PROVIDERS:
    for r in range(1, rounds + 1):
        for stem in ("mt", "micro"):
            f = out / f"{stem}.{p}.{r}"
            if not f.exists():
                continue
            for line in f.read_text().splitlines():
                m = re.match(r"bench (\S+) ([\d.]+)", line)
                if not m:
                    continue
                name = m[1]
                if name.startswith("post_rate."):
                    posters, pollers = name.split(".")[1].split("x")
                    name = f"WRs/s, {posters} posting, {pollers} polling"
                elif name.startswith("reg_mr."):
                    name = f"reg_mr+dereg_mr {name.split('.')[1]} (usec)"
                else:
                    name += " (ns/op)"
                add(name, p, float(m[2]), r)
        f = out / f"send_lat.{r}.{p}.cli"
        if f.exists():
            m = re.search(r"^\s*2\s+\d+\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+([\d.]+)", f.read_text(), re.M)
            if m:
                add("ib_send_lat typical (usec)", p, float(m[1]))
        f = out / f"write_bw.{r}.{p}.cli"
        if f.exists():
            m = re.search(r"^\s*65536\s+\d+\s+[\d.]+\s+([\d.]+)", f.read_text(), re.M)
            if m:
                add("ib_write_bw average (MB/s)", p, float(m[1]))

def med(v, p):
    return statistics.median(v[p]) if p in v else None


def geo_mean_interval(ratios):
    """The geometric mean of the ratios and its 95% interval, by a
    percentile bootstrap of the mean log ratio (a fixed seed, so a report
    of the same files prints the same figures). The interval says whether
    the rounds tell the providers apart: one that holds 1.00 does not."""
    resamples = 10000
    logs = [math.log(x) for x in ratios]
    rng = random.Random(1)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(resamples))
    lo, hi = means[int(resamples * 0.025)], means[int(resamples * 0.975) - 1]
    return math.exp(statistics.fmean(logs)), math.exp(lo), math.exp(hi)


def paired(title, names):
    """Each round's ours/stock ratio (the two ran back to back, so the
    emulated machine's drift between rounds cancels): their median, range,
    in how many rounds ours was ahead (a higher rate, or less time), and
    their geometric mean with its 95% interval."""
    rows_out = []
    for n in names:
        by = rounds_of.get(n, {})
        common = sorted(set(by.get("stock", {})) & set(by.get("ours", {})))
        if not common:
            continue
        ratios = [by["ours"][r] / by["stock"][r] for r in common]
        ahead = sum(1 for x in ratios if (x > 1 if n.startswith("WRs/s") else x < 1))
        rows_out.append((n, statistics.median(ratios), min(ratios), max(ratios), ahead, len(ratios), *geo_mean_interval(ratios)))
    if not rows_out:
        return
    print(f"{title:44} {'median':>10} {'range':>14} {'ours ahead':>11} {'geo mean':>9} {'95% interval':>13}")
    for n, m, lo, hi, ahead, k, g, glo, ghi in rows_out:
        print(f"{n:44} {m:10.2f} {f'{lo:.2f}-{hi:.2f}':>14} {f'{ahead} of {k}':>11} {g:9.2f} {f'{glo:.2f}-{ghi:.2f}':>13}")
    print()


contention = [(n, med(v, "stock"), med(v, "ours")) for n, v in rows.items() if n.startswith("WRs/s")]
table("contention, posted WRs/s (higher is better)", "", contention)
paired("contention, ours/stock per round", [n for n, _, _ in contention])
regs = [(n, med(v, "stock"), med(v, "ours")) for n, v in rows.items() if n.startswith("reg_mr")]
table("registration, median", "", regs)
paired("registration, ours/stock per round", [n for n, _, _ in regs])
times = [(n, med(v, "stock"), med(v, "ours")) for n, v in rows.items() if not n.startswith(("WRs/s", "reg_mr"))]
table("time (median of rounds)", "", times)
