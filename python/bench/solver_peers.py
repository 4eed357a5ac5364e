#!/usr/bin/env python3
"""The exact solver in-process, called from Python, and HiGHS, on the same instances.

Run from a virtual environment with the package and highspy installed:

    pip install ./python highspy
    python python/bench/solver_peers.py [--instances N] [--repeats R] [--rounds K]

One row per instance kind of `limpq bench solver` (seeds 0..N-1, the same generator and
budgets: `limpq_solver.bench_problem`) and one per indicator file (`--file`; default
examples/resnet20.indicators.ron, and the method's authors' ResNet-50 file twice) under
the benchmark's budgets (`Problem.bench_budgets`), or under those a `PATH@BITOPS,SIZE`
entry names (e.g. `--file
docs/results/reference_resnet50/reference_resnet50.indicators.ron@w3a4,cr:12.2`, the
budgets of the authors' own search). What each column times is printed under
the table. HiGHS gets exactly the model the solver compiles (`Problem.ilp()`: a binary per
allowed choice, one choice per layer, every budget row: BitOps, size and, for
the latency kinds, the latency table), solved to a zero gap.
Without highspy the HiGHS columns are skipped with a note. This is a benchmark, not a test:
nothing here fails on a slow figure.
"""
import argparse
import datetime
import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import limpq_solver as ls

try:
    import highspy
    import numpy as np
except ImportError as e:  # the HiGHS columns need both
    highspy = None
    HIGHS_MISSING = str(e)

ROOT = Path(__file__).resolve().parents[2]
RESNET20 = ROOT / "examples" / "resnet20.indicators.ron"
# The method's authors' ImageNet ResNet-50 indicators, under the bench's budgets and under
# those of their own search (docs/results/reference_resnet50).
REFERENCE = ROOT / "docs" / "results" / "reference_resnet50" / "reference_resnet50.indicators.ron"
DEFAULT_FILES = [str(RESNET20), str(REFERENCE), f"{REFERENCE}@w3a4,cr:12.2"]


def python_calls(p, repeats):
    """Median wall time (ns) of `p.solve()` called from Python, `repeats` calls."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        p.solve()
        ts.append(time.perf_counter_ns() - t)
    return statistics.median(ts)


def highs_model(ilp):
    """The ILP of `Problem.ilp()` as a HighsLp; budget rows scaled so their largest
    possible use is about 1 (as the solver does for microlp)."""
    start = ilp["start"]
    groups = len(start) - 1
    cost = np.asarray(ilp["objective"], dtype=float)
    n = len(cost)
    rows = list(ilp["rows"].values())
    group_of = np.repeat(np.arange(groups), np.diff(start))
    coefs, caps = [], []
    for r in rows:
        c = np.asarray(r["coef"], dtype=float)
        mx = sum(c[start[g]:start[g + 1]].max() for g in range(groups))
        s = mx if mx > 0 else 1.0
        coefs.append(c / s)
        caps.append(r["capacity"] / s)
    # Column-wise: column j has its group's row, then each budget row it uses.
    per_col = [group_of[:, None]] + [np.full((n, 1), groups + k) for k in range(len(rows))]
    index = np.hstack(per_col)
    value = np.hstack([np.ones((n, 1))] + [c[:, None] for c in coefs])
    keep = value != 0
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = groups + len(rows)
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.array([1.0] * groups + [-highspy.kHighsInf] * len(rows))
    lp.row_upper_ = np.array([1.0] * groups + caps)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
    lp.a_matrix_.index_ = index[keep].astype(np.int32)
    lp.a_matrix_.value_ = value[keep]
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    return lp


def highs_solve(ilp, lp, time_limit):
    """One HiGHS solve of `lp`: (seconds in run(), status, objective of its policy, the
    policy within every budget (unscaled, the solver's tolerance))."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("time_limit", float(time_limit))
    h.passModel(lp)
    t = time.perf_counter_ns()
    h.run()
    dt = time.perf_counter_ns() - t
    status = h.modelStatusToString(h.getModelStatus())
    x = np.asarray(h.getSolution().col_value)
    start = ilp["start"]
    if len(x) != len(ilp["objective"]):
        return dt, status, math.nan, False
    pick = [start[g] + int(np.argmax(x[start[g]:start[g + 1]])) for g in range(len(start) - 1)]
    obj = math.fsum(ilp["objective"][c] for c in pick)
    feasible = all(
        math.fsum(r["coef"][c] for c in pick) <= r["capacity"] + 1e-9 + abs(r["capacity"]) * 1e-12
        for r in ilp["rows"].values()
    )
    return dt, status, obj, feasible


def fmt_ns(ns):
    if ns is None or math.isnan(ns):
        return "-"
    if ns < 10_000_000:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns / 1e6:.2f} ms"


def file_case(entry):
    """(row name, [problem]) of a `--file` entry: `PATH` under the benchmark's budgets, or
    `PATH@BITOPS,SIZE` under those (`limpq_solver.bench_entry`)."""
    path, budgets = ls.bench_entry(entry)
    name = Path(path).name + (f"@{budgets}" if budgets else "")
    return name, [ls.Problem.from_file(path).bench_budgets(budgets)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=5, help="seeds per kind (default 5)")
    ap.add_argument("--repeats", type=int, default=50,
                    help="solves per timed batch, in-process and from Python (default 50)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating in-process / Python batches per instance (default 3)")
    ap.add_argument("--highs-repeats", type=int, default=3,
                    help="HiGHS solves per instance (default 3)")
    ap.add_argument("--highs-limit", type=float, default=20.0,
                    help="HiGHS time limit per solve, seconds (default 20)")
    ap.add_argument("--kinds", default=",".join(ls.BENCH_KINDS + ls.BENCH_KINDS_LATENCY),
                    help="comma-separated kinds (default: all of BENCH_KINDS and "
                         "BENCH_KINDS_LATENCY)")
    ap.add_argument("--file", action="append", default=None, metavar="PATH[@BITOPS,SIZE]",
                    help="an indicator file to time under the benchmark's budgets, or under "
                         "BITOPS and SIZE as `limpq solve` spells them (repeat for more; "
                         "default: examples/resnet20.indicators.ron and the authors' ResNet-50 "
                         "file under both budgets)")
    ap.add_argument("--no-file", action="store_true", help="skip the file rows")
    a = ap.parse_args()

    cases = []
    for kind in a.kinds.split(","):
        cases.append((kind, [ls.bench_problem(kind, s) for s in range(a.instances)]))
    if not a.no_file:
        for entry in a.file or DEFAULT_FILES:
            cases.append(file_case(entry))

    highs_version = "-"
    if highspy is not None:
        highs_version = importlib.metadata.version("highspy")
        # The first Highs object prints a banner on stdout before any option can be set.
        sys.stdout.flush()
        saved = os.dup(1)
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            try:
                highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"limpq_solver {ls.__version__}, Python {platform.python_version()}, "
          f"highspy {highs_version}, "
          f"{now}, {os.cpu_count()} CPUs, load average {load}")
    print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
    if highspy is None:
        print(f"note: HiGHS skipped ({HIGHS_MISSING}); pip install highspy numpy")
    print()
    w = max([24] + [len(name) for name, _ in cases])
    head = (f"{'instance':<{w}} {'groups':>6} {'choices':>7} {'in-process':>11} {'Python call':>11} "
            f"{'Py/in':>6} {'worst':>6} {'HiGHS':>11} {'HiGHS/in':>9} {'HiGHS status':>16} {'agree':>6}")
    print(head, flush=True)
    for name, problems in cases:
        inproc, pycall, highs, statuses, ratios = [], [], [], {}, []
        agree, compared = 0, 0
        groups = choices = 0
        for p in problems:
            ilp = p.ilp()
            groups = len(ilp["start"]) - 1
            choices = len(ilp["objective"])
            ours = p.solve()
            mine, theirs = [], []
            for _ in range(a.rounds):
                t = p.time_solve(a.repeats)
                mine.append(t["total_ns"])
                assert t["solution"]["objective"] == ours["objective"]
                theirs.append(python_calls(p, a.repeats))
            inproc += mine
            pycall += theirs
            ratios.append(statistics.median(theirs) / statistics.median(mine))
            if highspy is None:
                continue
            lp = highs_model(ilp)
            for _ in range(a.highs_repeats):
                dt, status, obj, feasible = highs_solve(ilp, lp, a.highs_limit)
                highs.append(dt)
                key = status if feasible or math.isnan(obj) else status + " (over budget)"
                statuses[key] = statuses.get(key, 0) + 1
            compared += 1
            a_, b_ = obj, ours["objective"]
            if abs(a_ - b_) <= 1e-9 * max(1.0, abs(b_)) and ours["proof"]["optimal"]:
                agree += 1
        mi = statistics.median(inproc)
        mp = statistics.median(pycall)
        mh = statistics.median(highs) if highs else None
        status = ", ".join(f"{k} {v}" for k, v in statuses.items()) if statuses else "-"
        print(f"{name:<{w}} {groups:>6} {choices:>7} {fmt_ns(mi):>11} {fmt_ns(mp):>11} "
              f"{mp / mi:>6.2f} {max(ratios):>6.2f} {fmt_ns(mh):>11} "
              f"{'-' if mh is None else f'{mh / mi:.0f}×':>9} {status:>16} "
              f"{f'{agree}/{compared}' if highs else '-':>6}", flush=True)
    print()
    print(f"in-process: Problem.time_solve({a.repeats}): compile + exact solve timed inside Rust "
          f"(std::time::Instant, no Python in the loop); the median over {a.rounds} batches per "
          f"instance × {a.instances} instances of each batch's median.")
    print(f"Python call: time.perf_counter_ns() around p.solve() on a prebuilt Problem (compile "
          f"+ solve + building the answer dict); batches of {a.repeats} alternating with the "
          f"in-process ones, the same medians. Py/in: their ratio; worst: the largest ratio of "
          f"one instance's own medians.")
    print(f"HiGHS: highspy's Highs.run() alone on the same 0-1 model (Problem.ilp(): a binary "
          f"per allowed choice, one per layer, every budget row scaled to ~1), passed "
          f"in beforehand (building it is not timed), fresh Highs object each time, "
          f"mip_rel_gap = mip_abs_gap = 0, feasibility tolerances 1e-9, time limit "
          f"{a.highs_limit:g} s; median of {a.highs_repeats} solves per instance. "
          f"HiGHS/in: HiGHS over in-process.")
    print("agree: instances where HiGHS's policy (largest column per layer) has our proven "
          "optimal objective within 1e-9 relative; HiGHS status: model status per solve, "
          "'over budget' if its policy breaks a budget beyond the solver's tolerance.")
    if hasattr(os, "getloadavg"):
        print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
