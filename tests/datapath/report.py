#!/usr/bin/python3
"""Reads the results of one tests/datapath/guest.sh run and prints the
side-by-side table (case | stock | ours) and the pyverbs counts of both
providers. Also writes, into the results directory:
  pyverbs.<p>.outcomes   one line per test: "<outcome> <test id>"
  pyverbs.<p>.summary    ran=.. ok=.. failures=.. errors=.. skipped=.. ...
  summary.txt            what it prints
Exits 1 when ours fails a case that stock passes, a pyverbs test passing
with stock fails or errors with ours, a run was not served by the provider
it names, or results are missing; 0 otherwise.

usage: report.py <results dir>
"""
import re
import sys
from pathlib import Path

OUTCOMES = ("ok", "FAIL", "ERROR", "skipped", "expected failure", "unexpected success")
TEST_ID = re.compile(r"^(test\w*) \(([\w.]+)\)")


def outcome_of(text):
    text = text.strip()
    for word in OUTCOMES:
        if text == word or text.startswith(word + " "):
            return word
    return None


def parse_pyverbs(text):
    """unittest -v output -> ({test id: outcome}, unittest's own totals)."""
    outcomes = {}
    pending = None
    for line in text.splitlines():
        m = TEST_ID.match(line)
        if m:
            pending = f"{m.group(1)} ({m.group(2)})"
            rest = line[m.end():]
            if " ... " in rest:
                o = outcome_of(rest.split(" ... ", 1)[1])
                if o:
                    outcomes[pending] = o
                    pending = None
            continue
        if pending is None:
            continue
        # A docstring line "<doc> ... <outcome>", or a bare outcome after
        # output the test printed.
        part = line.rsplit(" ... ", 1)[1] if " ... " in line else line
        o = outcome_of(part)
        if o:
            outcomes[pending] = o
            pending = None
    totals = {}
    m = re.search(r"^Ran (\d+) tests? in", text, re.M)
    if m:
        totals["ran"] = int(m.group(1))
    m = re.search(r"^(OK|FAILED)(?: \((.*)\))?\s*$", text, re.M)
    if m:
        totals["status"] = m.group(1)
        for kv in (m.group(2) or "").split(","):
            if "=" in kv:
                k, v = kv.strip().split("=")
                totals[k] = int(v)
    return outcomes, totals


def main():
    out = Path(sys.argv[1])
    problems = []
    cases, diags, pyv_runs = {}, {}, {}
    results = out / "results.txt"
    lines = results.read_text().splitlines() if results.exists() else []
    for line in lines:
        f = line.split()
        if len(f) >= 5 and f[0] == "CASE":
            cases.setdefault(f[1], {})[f[2]] = (f[3], f[4], dict(x.split("=", 1) for x in f[5:] if "=" in x))
        elif len(f) >= 5 and f[0] == "DIAG":
            diags[f[1]] = (f[3], f[4])
        elif len(f) >= 3 and f[0] == "PYVERBS":
            pyv_runs[f[1]] = dict(x.split("=", 1) for x in f[2:] if "=" in x)
            pyv_runs[f[1]]["seconds"] = f[3] if len(f) > 3 else "?"

    report = []
    w = max([len(n) for n in cases] + [4])
    report.append(f"{'case':<{w}} | {'stock':<11} | {'ours':<11}")
    report.append(f"{'-' * w}-+-{'-' * 11}-+-{'-' * 11}")
    regressions, not_served = [], []
    for name, by_p in cases.items():
        cell = {}
        for p in ("stock", "ours"):
            if p in by_p:
                verdict, secs, extra = by_p[p]
                cell[p] = f"{verdict} {secs}s"
                if extra.get("served") != "yes":
                    not_served.append(f"{name} {p}")
            else:
                cell[p] = "missing"
        note = ""
        sv = by_p.get("stock", ("missing",))[0]
        ov = by_p.get("ours", ("missing",))[0]
        if ov != "PASS" and sv == "PASS":
            regressions.append(name)
            note = "  <-- ours fails where stock passes"
            if name in diags:
                note += f" (re-run at log level 4: {diags[name][0]})"
        elif ov != "PASS":
            note = "  (fails with both)"
        report.append(f"{name:<{w}} | {cell['stock']:<11} | {cell['ours']:<11}{note}")
    n_pass = {p: sum(1 for c in cases.values() if c.get(p, ("",))[0] == "PASS") for p in ("stock", "ours")}
    report.append(f"{len(cases)} cases: stock {n_pass['stock']} pass, ours {n_pass['ours']} pass")

    report.append("")
    report.append("pyverbs (tests/run_tests.py --dev rxe0 --gid 1 -v):")
    parsed = {}
    for p in ("stock", "ours"):
        path = out / f"pyverbs.{p}.txt"
        if not path.exists():
            report.append(f"  {p}: no output")
            problems.append(f"pyverbs did not run through {p}")
            continue
        outcomes, totals = parse_pyverbs(path.read_text(errors="replace"))
        parsed[p] = outcomes
        count = lambda o: sum(1 for v in outcomes.values() if v == o)
        summary = {
            "ran": totals.get("ran", "?"),
            "ok": count("ok"),
            "failures": count("FAIL"),
            "errors": count("ERROR"),
            "skipped": count("skipped"),
            "expected_failures": count("expected failure"),
            "unexpected_successes": count("unexpected success"),
            "parsed": len(outcomes),
            "exit": pyv_runs.get(p, {}).get("exit", "?"),
            "seconds": pyv_runs.get(p, {}).get("seconds", "?"),
            "served": pyv_runs.get(p, {}).get("served", "?"),
        }
        (out / f"pyverbs.{p}.outcomes").write_text("".join(f"{o} {t}\n" for t, o in sorted(outcomes.items())))
        (out / f"pyverbs.{p}.summary").write_text(" ".join(f"{k}={v}" for k, v in summary.items()) + "\n")
        report.append(
            f"  {p:<5}: ran {summary['ran']}, ok {summary['ok']}, failures {summary['failures']}, "
            f"errors {summary['errors']}, skipped {summary['skipped']}"
            f" (exit {summary['exit']}, {summary['seconds']}s)"
        )
        if summary["ran"] != len(outcomes):
            problems.append(f"pyverbs {p}: parsed {len(outcomes)} outcomes but unittest ran {summary['ran']}")
        for key, word in (("failures", "FAIL"), ("errors", "ERROR"), ("skipped", "skipped")):
            if totals.get(key, 0) != count(word):
                problems.append(f"pyverbs {p}: unittest says {key}={totals.get(key, 0)}, parsed {count(word)}")
        if summary["served"] != "yes":
            not_served.append(f"pyverbs {p}")
    if "stock" in parsed and "ours" in parsed:
        pyv_reg = [t for t, o in sorted(parsed["stock"].items()) if o == "ok" and parsed["ours"].get(t) != "ok"]
        for t in pyv_reg:
            report.append(f"  REGRESSION {t}: stock ok, ours {parsed['ours'].get(t, 'missing')}")
            regressions.append(f"pyverbs {t}")
        for t, o in sorted(parsed["ours"].items()):
            if o in ("FAIL", "ERROR"):
                report.append(f"  ours {o}: {t} (stock: {parsed['stock'].get(t, 'missing')})")
        for t, o in sorted(parsed["stock"].items()):
            if o in ("FAIL", "ERROR"):
                report.append(f"  stock {o}: {t}")

    finished = (out / "finished").read_text().strip() if (out / "finished").exists() else "no"
    if finished != "ok":
        problems.append(f"the guest suite did not finish (finished: {finished})")
    if not cases:
        problems.append("no cases ran")
    if not_served:
        problems.append("runs not served by the provider they name: " + ", ".join(not_served))
    if regressions:
        problems.append("ours fails where stock passes: " + ", ".join(regressions))
    report.append("")
    report.extend(f"PROBLEM: {p}" for p in problems)
    report.append("verdict: " + ("FAIL" if problems else "ok"))
    text = "\n".join(report) + "\n"
    (out / "summary.txt").write_text(text)
    print(text, end="")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
