"""What python/bench/solver_peers.py builds on: the benchmark's instances, the in-process
timer and the ILP handed to HiGHS, each checked against another route to the same answer."""
import itertools
import json
import math

import pytest

import limpq_solver as ls
from conftest import RESNET20, TINY


def bench_size(p):
    """The benchmark's size budget as `limpq solve --size` text (gen::bench_budgets: 3.5
    bits a weight on average, 4.5 with six or more weight bit-widths)."""
    avg = 3.5 if len(json.loads(p.indicators_text("json"))["weight_bits"]) <= 5 else 4.5
    return f"cr:{32 / avg!r}"


def test_kinds():
    assert ls.BENCH_KINDS == (
        "resnet18", "resnet50", "resnet18-real", "resnet50-real", "random200", "random1000",
    )
    assert ls.BENCH_KINDS_LATENCY == ("resnet50+lat", "resnet50-real+lat")
    with pytest.raises(ls.SolverError, match="expected one of resnet18"):
        ls.bench_problem("resnet19")
    with pytest.raises(ls.SolverError, match="resnet50-real\\+lat"):
        ls.bench_problem("resnet18+lat")


@pytest.mark.parametrize("kind", ls.BENCH_KINDS_LATENCY)
def test_latency_kinds_have_a_third_budget(kind):
    """The latency kinds are the ResNet-50 kinds with a third row that the optimum keeps
    and that binds: the same instance without it solves to a cheaper policy over it."""
    p = ls.bench_problem(kind, 1)
    assert list(p.ilp()["rows"]) == ["BitOps", "size", "latency"]
    sol = p.solve()
    assert sol["proof"]["optimal"]
    lat = sol["usage"]["latency"]
    assert lat["used"] <= lat["budget"]
    two = ls.bench_problem(kind.removesuffix("+lat"), 1).solve()
    assert two["objective"] < sol["objective"]
    over = p.evaluate(two["policy"])
    assert not over["feasible"] and any("latency" in v for v in over["violations"])


@pytest.mark.parametrize("kind", ls.BENCH_KINDS)
def test_bench_problem_like_the_cli(limpq, tmp_path, kind):
    """An instance's indicator set handed to `limpq solve` with the benchmark's budgets
    written out (BitOps W4A4, 32 / 3.5 or 32 / 4.5 compression) gives the same answer, and
    so does the same set read back in Python with `bench_budgets()`."""
    p = ls.bench_problem(kind, 1)
    sol = p.solve()
    f = tmp_path / f"{kind}.indicators.json"
    f.write_text(p.indicators_text("json"))
    report = limpq.json("solve", f, "--bitops", "w4a4", "--size", bench_size(p))
    assert sol["policy"] == {l["name"]: (l["weight"], l["act"]) for l in report["layers"]}
    assert math.isclose(sol["objective"], report["objective"], rel_tol=1e-12)
    assert sol["bitops_budget"] == report["bitops_budget"]
    assert sol["size_budget_bits"] == report["size_budget_bits"]
    assert sol["proof"]["optimal"] and report["proof"]["optimal"]
    again = ls.Problem.from_file(f).bench_budgets().solve()
    assert again == sol
    # A different seed is a different instance.
    assert ls.bench_problem(kind, 2).indicators_text() != p.indicators_text()


def test_bench_budgets_replaces_only_the_budgets():
    p = ls.Problem.from_file(RESNET20).alpha(1.0).bitops("w8a8").size("cr:4").bench_budgets()
    q = ls.Problem.from_file(RESNET20).alpha(1.0).bitops("w4a4").size(f"cr:{32 / 3.5!r}")
    assert p.solve() == q.solve()


def test_time_solve():
    p = ls.bench_problem("resnet18", 0)
    t = p.time_solve(5)
    assert t["repeats"] == 5
    for k in ("total_ns", "compile_ns", "solve_ns"):
        assert isinstance(t[k], int) and t[k] > 0
    # Every run's total is its compile plus its solve, so the medians keep that order.
    assert t["total_ns"] >= t["compile_ns"] and t["total_ns"] >= t["solve_ns"]
    assert t["solution"] == p.solve()
    assert ls.Problem.from_file(RESNET20).bitops("w3a3").time_solve(1)["solution"] == \
        ls.Problem.from_file(RESNET20).bitops("w3a3").solve()
    with pytest.raises(ls.SolverError, match="1 to 10000000 repeats"):
        p.time_solve(0)
    with pytest.raises(ls.InfeasibleError):
        ls.Problem.from_file(RESNET20).bitops(1).time_solve(3)


def brute_force(ilp):
    """The ILP's optimum by enumeration: (objective, picked choice per group)."""
    start = ilp["start"]
    best = (math.inf, None)
    for pick in itertools.product(*(range(start[g], start[g + 1]) for g in range(len(start) - 1))):
        if all(sum(r["coef"][c] for c in pick) <= r["capacity"] for r in ilp["rows"].values()):
            obj = sum(ilp["objective"][c] for c in pick)
            if obj < best[0]:
                best = (obj, pick)
    return best


@pytest.mark.parametrize("tie", [False, True])
def test_ilp_is_the_problem(tie):
    """The ILP's optimum by enumeration is `solve()`'s objective and policy, and its rows
    account exactly what the solution reports."""
    p = ls.Problem.from_file(TINY).bitops("w3a3").size("cr:9")
    if tie:
        p.tie_weights(["layer1.conv1", "layer1.conv2"])
    ilp = p.ilp()
    sol = p.solve()
    start = ilp["start"]
    assert len(start) == len(ilp["groups"]) + 1 and start[0] == 0
    assert start[-1] == len(ilp["objective"]) == len(ilp["bits"])
    assert [len(g) for g in ilp["groups"]] == ([2, 1, 1] if tie else [1, 1, 1, 1])
    assert list(ilp["rows"]) == ["BitOps", "size"]
    for r in ilp["rows"].values():
        assert len(r["coef"]) == len(ilp["objective"])
    obj, pick = brute_force(ilp)
    assert math.isclose(obj, sol["objective"], rel_tol=1e-12)
    policy = {}
    for g, c in enumerate(pick):
        for layer, bits in zip(ilp["groups"][g], ilp["bits"][c]):
            policy[layer] = bits
    assert {k: v for k, v in sol["policy"].items() if k in policy} == policy
    for name, r in ilp["rows"].items():
        use = sol["usage"][name]
        fixed = use["budget"] - r["capacity"]
        assert sum(r["coef"][c] for c in pick) + fixed == use["used"]


def test_ilp_of_a_bench_instance():
    """resnet18: a group per searchable layer, 25 choices each, the solution's choices
    priced by the ILP's coefficients give its objective."""
    p = ls.bench_problem("resnet18", 0)
    ilp = p.ilp()
    sol = p.solve()
    assert len(ilp["groups"]) == 19 and len(ilp["objective"]) == 19 * 25
    total = 0.0
    for g, (layer,) in enumerate(ilp["groups"]):
        (c,) = [c for c in range(ilp["start"][g], ilp["start"][g + 1])
                if ilp["bits"][c] == [sol["policy"][layer]]]
        total += ilp["objective"][c]
    assert math.isclose(total, sol["objective"], rel_tol=1e-12)


def test_bench_entry_and_its_budgets():
    """A benchmark file entry as `limpq bench solver --indicators` reads it: the path, and
    the budgets after its `@`, which `bench_budgets` sets as `bitops`/`size` would."""
    assert ls.bench_entry(str(RESNET20)) == (str(RESNET20), None)
    assert ls.bench_entry("a@b/x.ron@w3a4,cr:8") == ("a@b/x.ron", "w3a4,cr:8")
    path, budgets = ls.bench_entry(f"{RESNET20}@w3a4,cr:8")
    p = ls.Problem.from_file(path).bitops("w8a8").bench_budgets(budgets)
    q = ls.Problem.from_file(RESNET20).bitops("w3a4").size("cr:8")
    assert p.solve() == q.solve()
    with pytest.raises(ls.SolverError, match="BitOps budget `w3x4`"):
        ls.Problem.from_file(RESNET20).bench_budgets("w3x4,cr:8")
