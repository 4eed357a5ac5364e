"""The module and `limpq solve` give the same answers on the shipped examples."""
import math

import numpy as np
import pytest

import limpq_solver as ls
from conftest import LATENCY, RESNET20, TINY


def assert_same(sol, report):
    """A solution dict against the CLI's JSON report (or a sweep point)."""
    assert sol["policy"] == {l["name"]: (l["weight"], l["act"]) for l in report["layers"]}
    assert math.isclose(sol["objective"], report["objective"], rel_tol=1e-12, abs_tol=1e-12)
    assert sol["bitops"] == report["bitops"]
    assert sol["weight_bits_total"] == report["weight_bits_total"]
    assert sol["fixed_bitops"] == report["fixed_bitops"]
    assert sol["bitops_budget"] == report["bitops_budget"]
    assert sol["proof"]["optimal"] == report["proof"]["optimal"] is True


@pytest.mark.parametrize(
    "flags",
    [
        ["--bitops", "w3a3"],
        ["--bitops", "w4a4", "--size", "cr:10"],
        ["--bitops", "w3a3", "--alpha", "0.5"],
        ["--bitops", "w2a6", "--pin", "layer2.0.conv1=6,2"],
        ["--bitops", "w3a8", "--weight-only=8"],
        ["--bitops", "200000000", "--weight-bits", "2,3,4", "--act-bits", "3,4"],
        ["--bitops", "w3a3", "--tie-weights", "layer1.0.conv1,layer1.0.conv2", "--allow-non-monotone"],
    ],
)
def test_resnet20_like_the_cli(limpq, flags):
    report = limpq.json("solve", RESNET20, *flags)
    p = ls.Problem.from_file(RESNET20)
    it = iter(flags)
    for flag in it:
        if flag.startswith("--weight-only"):
            p.weight_only(int(flag.split("=")[1]))
            continue
        if flag == "--allow-non-monotone":
            p.non_monotone_rule(False)
            continue
        v = next(it)
        if flag == "--bitops":
            p.bitops(int(v) if v.isdigit() else v)
        elif flag == "--size":
            p.size(v)
        elif flag == "--alpha":
            p.alpha(float(v))
        elif flag == "--pin":
            layer, bits = v.split("=")
            w, a = map(int, bits.split(","))
            p.pin(layer, w, a)
        elif flag == "--weight-bits":
            p.weight_bits([int(b) for b in v.split(",")])
        elif flag == "--act-bits":
            p.act_bits([int(b) for b in v.split(",")])
        elif flag == "--tie-weights":
            p.tie_weights(v.split(","))
        else:
            raise AssertionError(flag)
    sol = p.solve()
    assert_same(sol, report)
    assert sol["usage"]["BitOps"]["used"] == report["bitops"]
    if "--size" in flags:
        assert sol["size_budget_bits"] == report["size_budget_bits"]
        assert sol["usage"]["size"]["budget"] == report["size_budget_bits"]


def test_json_indicator_file_and_resource(limpq, tmp_path):
    """The same set as JSON (written by the module, read by both), with an extra resource."""
    j = tmp_path / "tiny.indicators.json"
    j.write_text(ls.Problem.from_file(TINY).indicators_text("json"))
    report = limpq.json("solve", j, "--bitops", "w3a3", "--size", "cr:9",
                        "--resource", LATENCY, "--max", "60")
    sol = ls.Problem.from_file(j).bitops("w3a3").size("cr:9").resource(str(LATENCY), 60).solve()
    assert_same(sol, report)
    (res,) = report["resources"]
    assert sol["usage"][res["name"]] == {"used": pytest.approx(res["used"]), "budget": res["max"]}


def test_sweep_like_the_cli(limpq):
    report = limpq.json("solve", RESNET20, "--sweep", "5", "--size", "cr:8")
    points = ls.Problem.from_file(RESNET20).size("cr:8").bitops("w2a2").sweep(5)
    assert len(points) == len(report["points"]) == 5
    for sol, pt in zip(points, report["points"]):
        assert_same(sol, pt)
    budgets = [s["bitops_budget"] for s in points]
    assert budgets == sorted(budgets)
    objectives = [s["objective"] for s in points]
    assert objectives == sorted(objectives, reverse=True)


def test_threads_search_one_problem_at_once(limpq):
    # solve() and sweep() release the GIL while they search (SOLVER.md, "From Python"):
    # four threads searching one Problem all get the CLI's answer.
    import threading

    report = limpq.json("solve", RESNET20, "--bitops", "w3a4", "--size", "cr:8")
    p = ls.Problem.from_file(RESNET20).bitops("w3a4").size("cr:8")
    got, errors = [], []

    def search():
        try:
            for _ in range(20):
                got.append(p.solve())
            p.sweep(2)
        except Exception as e:  # noqa: BLE001 - any failure is the test's to report
            errors.append(e)

    threads = [threading.Thread(target=search) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(got) == 80
    for sol in got:
        assert_same(sol, report)


def test_numpy_arrays_give_the_files_answer(limpq):
    """The indicator file taken apart into numpy arrays and rebuilt solves the same."""
    import json

    d = json.loads(ls.Problem.from_file(RESNET20).indicators_text("json"))
    layers = d["layers"]
    p = ls.Problem.from_arrays(
        names=[l["name"] for l in layers],
        macs=np.array([l["macs"] for l in layers], dtype=np.int64),
        params=np.array([l["params"] for l in layers], dtype=np.uint64),
        weight_scale=np.array([l["weight_scale"] for l in layers]),
        act_scale=np.array([l["act_scale"] for l in layers], dtype=np.float64),
        weight_bits=np.array(d["weight_bits"]),
        act_bits=d["act_bits"],
        fixed={l["name"]: tuple(l["fixed"]) for l in layers if l["fixed"]},
        model=d["model"],
    )
    assert p.layers == [l["name"] for l in layers] and p.model == "resnet20"
    report = limpq.json("solve", RESNET20, "--bitops", "w3a3", "--size", "cr:9")
    assert_same(p.bitops("w3a3").size("cr:9").solve(), report)


def test_evaluate_prices_like_the_solver():
    p = ls.Problem.from_file(RESNET20).bitops("w3a3")
    sol = p.solve()
    ev = p.evaluate(sol["policy"])
    assert ev["feasible"] and ev["violations"] == []
    assert ev["objective"] == pytest.approx(sol["objective"], rel=1e-12)
    assert (ev["bitops"], ev["weight_bits_total"]) == (sol["bitops"], sol["weight_bits_total"])
    assert ev["usage"] == sol["usage"]
    everything_at_6 = {n: ((8, 8) if n in ("conv1", "fc") else (6, 6)) for n in p.layers}
    ev = p.evaluate(everything_at_6)
    assert not ev["feasible"]
    assert any("BitOps" in v and "over its budget" in v for v in ev["violations"]), ev["violations"]
    assert ev["objective"] < sol["objective"]
