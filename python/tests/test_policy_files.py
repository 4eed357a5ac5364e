"""Policies and sweeps as the files `limpq solve -o` writes: `policy_text` and
`frontier_text` give the CLI's bytes, `read_policy` reads its files, and the CLI reads
what the module writes."""
import json

import pytest

import limpq_solver as ls
from conftest import RESNET20


def problem():
    return ls.Problem.from_file(RESNET20).bitops("w4a4").size("cr:8")


@pytest.mark.parametrize("fmt", ["ron", "json"])
def test_a_solution_is_the_file_the_cli_writes(limpq, tmp_path, fmt):
    out = tmp_path / f"policy.{fmt}"
    limpq.run("solve", RESNET20, "--bitops", "w4a4", "--size", "cr:8", "-o", out)
    text = out.read_text()
    assert ls.policy_text(problem().solve(), fmt) == text
    # Read back, the file's fields write the same bytes again.
    read = ls.read_policy(out)
    assert read["optimal"] is True
    assert ls.policy_text(read, fmt) == text
    assert ls.policy_text(read, "json" if fmt == "ron" else "ron") != text


@pytest.mark.parametrize("fmt", ["ron", "json"])
def test_a_sweep_is_the_frontier_the_cli_writes(limpq, tmp_path, fmt):
    out = tmp_path / f"frontier.{fmt}"
    limpq.run("solve", RESNET20, "--size", "cr:8", "--sweep", "4", "-o", out)
    assert ls.frontier_text(problem().sweep(4), fmt) == out.read_text()


def test_the_cli_reads_what_the_module_writes(limpq, tmp_path):
    p = problem()
    sol = p.solve()
    # A priced policy with one layer changed: its file says it is not proven optimal.
    bits = dict(sol["policy"])
    bits["layer3.2.conv2"] = (2, 2)
    ev = p.evaluate(bits)
    path = tmp_path / "priced.ron"
    path.write_text(ls.policy_text(ev))
    read = ls.read_policy(path)
    assert read["optimal"] is False
    assert read["policy"] == bits
    assert read["objective"] == ev["objective"]
    assert (read["bitops"], read["weight_bits_total"]) == (ev["bitops"], ev["weight_bits_total"])
    # `limpq export` reads it as a policy file.
    exported = json.loads(limpq.run("export", path, "--format", "json").stdout)
    assert {l["layer"]: (l["weight_bits"], l["act_bits"]) for l in exported["layers"]} == bits
    # And the policy prices the same through the module's own reader.
    again = p.evaluate(read["policy"])
    assert again["objective"] == ev["objective"]


def test_what_cannot_be_written_is_refused_with_the_reason():
    sol = problem().solve()
    cases = [
        (lambda: ls.policy_text(5), "a policy to write is a dict (from solve, sweep, evaluate or read_policy), not int"),
        (lambda: ls.policy_text(sol, "xml"), 'format `xml`: expected "ron" or "json"'),
        (lambda: ls.policy_text({k: v for k, v in sol.items() if k != "bitops"}), "the policy has no `bitops`"),
        (lambda: ls.policy_text({**sol, "model": 3}), "`model`: expected a str, not 3"),
        (lambda: ls.policy_text({**sol, "bitops": -1}), "`bitops`: expected an int 0 to 18446744073709551615, not -1"),
        (lambda: ls.policy_text({**sol, "policy": {"conv1": 8}}), "`policy`: layer `conv1`: expected (weight bits, act bits), two ints 0 or more, not 8"),
        (lambda: ls.policy_text({**sol, "policy": {1: (8, 8)}}), "`policy`: a layer name is a str, not int"),
        (lambda: ls.policy_text({**sol, "proof": {}}), "the policy has no `optimal`"),
        (lambda: ls.policy_text({**sol, "size_budget_bits": -2}), "`size_budget_bits`: expected None or an int 0 to 18446744073709551615, not -2"),
        (lambda: ls.frontier_text([]), "a frontier needs at least one sweep point"),
        (lambda: ls.frontier_text([sol, {**sol, "model": "other"}]), "sweep point 1 is of model `other`, point 0 of `resnet20`"),
        (lambda: ls.frontier_text([sol, 7]), "sweep point 1: a policy to write is a dict (from solve, sweep, evaluate or read_policy), not int"),
        (lambda: ls.read_policy("/nonexistent/p.ron"), "cannot read /nonexistent/p.ron"),
    ]
    for call, message in cases:
        with pytest.raises(ls.SolverError) as e:
            call()
        assert str(e.value).startswith(message), (str(e.value), message)
