"""The solver's refusals arrive as SolverError (a ValueError) with the solver's message."""
import math
import pickle

import numpy as np
import pytest

import limpq_solver as ls
from conftest import CUT, CUT_LATENCY, RESNET20, ROOT


def toy(**kw):
    args = dict(
        names=["a", "b"],
        macs=[1000, 4000],
        params=[100, 400],
        weight_scale=[[0.1, 0.05, 0.03], [0.2, 0.1, 0.05]],
        act_scale=[[0.5, 0.3, 0.2], [0.4, 0.3, 0.1]],
        weight_bits=[2, 4, 8],
        act_bits=[2, 4, 8],
    )
    args.update(kw)
    return ls.Problem.from_arrays(**args)


def test_hierarchy():
    assert issubclass(ls.SolverError, ValueError)
    assert issubclass(ls.InfeasibleError, ls.SolverError)
    assert issubclass(ls.LimitReachedError, ls.SolverError)
    assert not issubclass(ls.LimitReachedError, ls.InfeasibleError)


def test_infeasible_names_the_budget_and_floors(limpq):
    with pytest.raises(ls.InfeasibleError) as e:
        ls.Problem.from_file(RESNET20).bitops(1000).solve()
    assert e.value.binding.startswith("the BitOps budget 1000")
    (floor,) = e.value.floors
    assert floor["name"] == "BitOps" and floor["budget"] == 1000 and floor["smallest"] > 1000
    cli = limpq.run("solve", RESNET20, "--bitops", "1000", expect=3)
    assert str(e.value) in cli.stderr


def test_malformed_input_carries_layer_and_field():
    with pytest.raises(ls.SolverError) as e:
        toy(weight_scale=np.array([[0.1, math.nan, 0.03], [0.2, 0.1, 0.05]])).bitops("w4a4").solve()
    assert (e.value.layer, e.value.field) == ("a", "weight_scale")
    assert str(e.value).startswith("layer `a`, field `weight_scale`:")
    with pytest.raises(ls.SolverError, match="layer `nope`"):
        toy().bitops("w4a4").pin("nope", 4, 4).solve()
    with pytest.raises(ls.SolverError, match="weight_scale"):
        toy(weight_scale=[[0.1, 0.05], [0.2, 0.1]]).bitops("w4a4").solve()
    with pytest.raises(ls.SolverError, match="2 entries for 3 layer names"):
        toy(names=["a", "b", "c"])
    with pytest.raises(ls.SolverError, match="no such layer"):
        toy(fixed={"c": (8, 8)})


def test_budgets_that_do_not_parse():
    with pytest.raises(ls.SolverError, match="BitOps budget `w3`"):
        toy().bitops("w3")
    with pytest.raises(ls.SolverError, match="cr:0"):
        toy().size("cr:0")
    with pytest.raises(ls.SolverError, match="a budget is a str or a non-negative int"):
        toy().bitops(1.5)
    # An int out of range names its value rather than its type.
    with pytest.raises(ls.SolverError, match="an int budget is 0 to 18446744073709551615, not -5"):
        toy().bitops(-5)
    with pytest.raises(ls.SolverError, match=f"not {2**70}"):
        toy().size(2**70)
    # A bool is an int to Python, but not a budget: `bitops(True)` was a budget of 1.
    for setter in (lambda p: p.bitops(True), lambda p: p.size(False)):
        with pytest.raises(ls.SolverError, match="a budget is a str or a non-negative int, not bool"):
            setter(toy())


def test_files_and_text(tmp_path):
    with pytest.raises(ls.SolverError, match="missing.ron"):
        ls.Problem.from_file("missing.ron")
    # A file's error names the file and the format once, then the parser's position.
    bad = tmp_path / "bad.ron"
    bad.write_text("(format_version: 1, layers: [")
    with pytest.raises(ls.SolverError) as e:
        ls.Problem.from_file(bad)
    assert str(e.value).startswith(f"{bad}: RON: 1:"), str(e.value)
    assert "cannot parse" not in str(e.value)
    with pytest.raises(ls.SolverError, match="cannot parse RON indicator set"):
        ls.Problem.from_text("IndicatorSet(model: 3)")
    with pytest.raises(ls.SolverError, match="format_version"):
        ls.Problem.from_text('{"format_version": 99, "model": "m", "weight_bits": [], '
                             '"act_bits": [], "layers": []}', "json")
    with pytest.raises(ls.SolverError, match="expected \"ron\" or \"json\""):
        ls.Problem.from_text("", "yaml")


def test_evaluate_refuses_unknown_or_missing_layers():
    p = toy().bitops("w4a4")
    with pytest.raises(ls.SolverError, match="layer missing from the policy"):
        p.evaluate({"a": (4, 4)})
    with pytest.raises(ls.SolverError, match="no such layer"):
        p.evaluate({"a": (4, 4), "b": (4, 4), "c": (4, 4)})


def test_not_proven_within_the_node_limit_is_an_answer_not_an_error():
    sol = ls.Problem.from_file(RESNET20).bitops("w3a3").size("cr:10").node_limit(0).solve()
    assert sol["bitops"] <= sol["bitops_budget"]
    assert sol["proof"]["lower_bound"] <= sol["objective"]


def test_no_policy_within_the_node_limit_is_limit_reached_not_infeasible(limpq):
    # The fixture's first policy breaks a budget: at a node limit of 0 there is none yet.
    p = ls.Problem.from_file(CUT).alpha(0.5).bitops(87337).resource(str(CUT_LATENCY), 28.25)
    with pytest.raises(ls.LimitReachedError) as e:
        p.copy().node_limit(0).solve()
    assert e.value.limit == "node limit of 0 states"
    cli = limpq.run("solve", CUT, "--bitops", "87337", "--resource", CUT_LATENCY,
                    "--max", "28.25", "--alpha", "0.5", "--node-limit", "0", expect=5)
    assert str(e.value) in cli.stderr
    sol = p.solve()
    assert sol["proof"]["optimal"] and sol["policy"] == {"l0": (8, 3), "l1": (4, 3)}


def test_pickled_tensors_are_refused_with_a_hint():
    class Tensorish:
        pass

    bad = {"layer_name": ["a"], "weight": {"a": {"2": Tensorish()}}, "act": {"a": {"2": 0.1}}}
    with pytest.raises(ls.SolverError, match="Tensorish in the indicators"):
        ls.Problem.from_limpq(bad, [("a", 10, 10)])


def test_the_same_problem_as_the_cli(limpq, tmp_path):
    """What the CLI refuses of a problem, Python refuses with the library's words; a file
    of measured sensitivity is searched with the CLI's alpha (1), and gives its policy."""
    sens = ROOT / "docs/results/controls/bits3to6/seed0/sensitivity.ron"
    cli = limpq.run("solve", sens, "--bitops", "w4a4", "--format", "json")
    import json

    want = json.loads(cli.stdout)
    sol = ls.Problem.from_file(sens).bitops("w4a4").solve()
    assert sol["objective"] == pytest.approx(want["objective"], rel=1e-12)
    assert {k: list(v) for k, v in sol["policy"].items()} == {
        l["name"]: [l["weight"], l["act"]] for l in want["layers"]
    }
    with pytest.raises(ls.SolverError, match="at most 18446744073709551614"):
        toy().bitops(2**64 - 1).solve()
    with pytest.raises(ls.SolverError, match="more bits than a 64-bit count holds|at most 2305843009213693951 bytes"):
        toy().bitops("w4a4").size(2**62).solve()
    # A ratio so small that the bits pass 2^64 is refused, not taken as no budget.
    with pytest.raises(ls.SolverError, match="compression ratio 1e-300 gives more bits"):
        toy().bitops("w4a4").size("cr:1e-300").solve()
    with pytest.raises(ls.SolverError, match="no effect with weight_only"):
        toy().bitops("w4a4").weight_only(8).act_bits([4]).solve()
    with pytest.raises(ls.SolverError, match="1 to 100000 points, not 0"):
        toy().sweep(0)
    # A resource may not take a budget's name, nor another resource's: Python's `usage`
    # and `ilp()` key rows by name, and one replaced the other.
    costs = {n: [(w, a, 1.0) for w in (2, 4, 8) for a in (2, 4, 8)] for n in ("a", "b")}
    with pytest.raises(ls.SolverError, match="the name is taken") as e:
        toy().bitops("w4a4").resource(costs, 40.0, name="size").solve()
    assert e.value.field == "resource `size`"
    with pytest.raises(ls.SolverError, match="the name is taken"):
        toy().bitops("w4a4").resource(costs, 40.0).resource(costs, 40.0).solve()
    two = toy().bitops("w4a4").resource(costs, 40.0).resource(costs, 40.0, name="energy")
    assert set(two.solve()["usage"]) == {"BitOps", "size", "resource", "energy"}


def test_every_solver_error_has_its_fields(tmp_path):
    """layer, field and reason exist on every SolverError: None where the error is not
    about malformed input."""
    with pytest.raises(ls.InfeasibleError) as e:
        toy().bitops(10).solve()
    assert (e.value.layer, e.value.field, e.value.reason) == (None, None, None)
    with pytest.raises(ls.SolverError) as e:
        ls.Problem.from_file("missing.ron")
    assert (e.value.layer, e.value.field, e.value.reason) == (None, None, None)
    # A file with a NaN value is refused when read, naming the file, layer and field.
    bad = tmp_path / "nan.ron"
    text = open(RESNET20).read().replace("weight_scale: [0.4217", "weight_scale: [NaN", 1)
    bad.write_text(text)
    with pytest.raises(ls.SolverError) as e:
        ls.Problem.from_file(bad)
    assert str(e.value).startswith(f"in {bad}: layer `layer1.0.conv1`, field `weight_scale`")
    assert (e.value.layer, e.value.field) == ("layer1.0.conv1", "weight_scale")


def test_a_policy_is_read_as_tuples_or_lists_and_refused_by_layer():
    p = toy().bitops("w4a4")
    sol = p.solve()
    import json

    through_json = json.loads(json.dumps(sol["policy"]))
    assert p.evaluate(through_json)["objective"] == sol["objective"]
    with pytest.raises(ls.SolverError, match="layer `a`: expected \\(weight bits, act bits\\)"):
        p.evaluate({"a": (-1, 8), "b": (4, 4)})
    with pytest.raises(ls.SolverError, match="a solution, not a policy"):
        p.evaluate(sol)
    with pytest.raises(ls.SolverError, match="not list \\(a solution's is its \"policy\"\\)"):
        p.evaluate([("a", (4, 4))])
    with pytest.raises(ls.SolverError, match="layer `a`: expected a list of"):
        p.resource({"a": [(8, 8, "x")]}, 1.0)
