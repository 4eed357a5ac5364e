"""Indicators cached by the PyTorch reference code, read with Python's own pickle and
searched offline: the same answer as `limpq import-limpq` + `limpq solve`."""
import pickle
import re

import pytest

import limpq_solver as ls
from conftest import ROOT

REFERENCE = ROOT / "docs" / "results" / "reference_resnet50"

# The reference extractor's layout (docs/IMPORT.md), names as nn.DataParallel writes them.
NAMES = ["module.layer1.0.conv1", "module.layer1.0.conv2", "module.layer2.0.downsample.0"]
BITS = [6, 5, 4, 3, 2]
CACHED = {
    "layer_name": NAMES,
    "weight": {n: {str(b): 0.01 * (i + 1) / b for b in BITS} for i, n in enumerate(NAMES)},
    "act": {n: {str(b): 0.5 * (i + 1) / b for b in BITS} for i, n in enumerate(NAMES)},
}
TABLE_CSV = """name,macs,params,fixed_w,fixed_a
conv1,118013952,9408,,
layer1.0.conv1,115605504,36864
layer1.0.conv2,115605504,36864
layer2.0.downsample.0,6422528,8192
fc,512000,512000
"""
ROWS = [
    ("conv1", 118013952, 9408),
    ("layer1.0.conv1", 115605504, 36864),
    ("layer1.0.conv2", 115605504, 36864),
    ("layer2.0.downsample.0", 6422528, 8192),
    {"name": "fc", "macs": 512000, "params": 512000, "fixed": None},
]


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_load_then_solve_agrees_with_import_and_solve(limpq, tmp_path, protocol):
    pkl = tmp_path / "importance_indicators.pkl"
    with open(pkl, "wb") as f:
        pickle.dump(CACHED, f, protocol=protocol)
    table = tmp_path / "table.csv"
    table.write_text(TABLE_CSV)

    with open(pkl, "rb") as f:
        loaded = pickle.load(f)
    from_object = ls.Problem.from_limpq(loaded, ROWS, model="r").bitops("w4a4").size("cr:4")
    from_path = ls.Problem.from_limpq(pkl, str(table), model="r").bitops("w4a4").size("cr:4")
    sol = from_object.solve()
    assert sol == from_path.solve()
    assert sol["policy"]["conv1"] == sol["policy"]["fc"] == (8, 8)

    converted = tmp_path / "r.ron"
    limpq.run("import-limpq", pkl, "--layers", table, "--model", "r", "-o", converted)
    report = limpq.json("solve", converted, "--bitops", "w4a4", "--size", "cr:4")
    assert sol["policy"] == {l["name"]: (l["weight"], l["act"]) for l in report["layers"]}
    assert sol["objective"] == pytest.approx(report["objective"], rel=1e-12)
    assert sol["bitops"] == report["bitops"]


def test_matching_errors_are_the_importers():
    with pytest.raises(ls.SolverError, match="in the pickle but not the table: module.layer2.0"):
        ls.Problem.from_limpq(CACHED, ROWS[:3] + ROWS[4:])
    with pytest.raises(ls.SolverError, match="no 'layer_name' key"):
        ls.Problem.from_limpq({"weight": {}, "act": {}}, ROWS)
    # A missing searchable layer is kept at 8 bits only when asked.
    partial = {k: (v[:2] if k == "layer_name" else {n: v[n] for n in NAMES[:2]})
               for k, v in CACHED.items()}
    with pytest.raises(ls.SolverError, match="--fix-missing"):
        ls.Problem.from_limpq(partial, ROWS)
    p = ls.Problem.from_limpq(partial, ROWS, fix_missing=True).bitops("w4a4")
    assert p.solve()["policy"]["layer2.0.downsample.0"] == (8, 8)


def test_the_plain_data_reader_refuses_code(tmp_path):
    """Given the path, limpq's reader refuses a pickle that would run code."""
    import os

    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    pkl = tmp_path / "exploit.pkl"
    with open(pkl, "wb") as f:
        pickle.dump({"layer_name": ["a"], "weight": Exploit()}, f, protocol=2)
    with pytest.raises(ls.SolverError, match="GLOBAL|STACK_GLOBAL|REDUCE"):
        ls.Problem.from_limpq(pkl, ROWS)


def test_the_authors_resnet50_pickle_searched_offline_gives_their_published_policy():
    """The LIMPQ authors' own ImageNet ResNet-50 indicators (docs/results/reference_resnet50),
    read with Python's pickle, joined with the reference's BitOps counting and searched at
    the reference's default budgets: the policy the authors published, layer for layer."""
    with open(REFERENCE / "importance_indicators_resnet50.pkl", "rb") as f:
        cached = pickle.load(f)
    assert len(cached["layer_name"]) == 52
    problem = ls.Problem.from_limpq(cached, str(REFERENCE / "reference_counting.csv"))
    sol = problem.bitops("w3a4").size("cr:12.2").solve()
    assert sol["proof"]["optimal"]
    text = (REFERENCE / "published_w3a4_cr12.2.policy.ron").read_text()
    published = {n: (int(w), int(a)) for n, w, a in re.findall(
        r'name: "([^"]+)",\s*weight: (\d+),\s*act: (\d+)', text)}
    assert len(published) == 54
    assert sol["policy"] == published
