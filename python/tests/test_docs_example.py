"""docs/SOLVER.md's "From Python" example is this test: it is run as written."""
import re

from conftest import ROOT


def test_solver_md_python_example(capsys):
    text = (ROOT / "docs" / "SOLVER.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "one python block in the From Python section"
    exec(compile(blocks[0], "docs/SOLVER.md", "exec"), {"__name__": "solver_md"})
    out = capsys.readouterr().out
    assert "objective 12.0165" in out and "infeasible: the BitOps budget 1" in out
