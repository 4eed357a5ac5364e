"""The stubs match the module (mypy's stubtest) and type the docs example (mypy --strict).
Skips without mypy; .ci/run installs it."""
import re
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)


def test_stubs_match_the_module():
    # The compiled submodule is reached through the package, whose stubs these are.
    r = run("mypy.stubtest", "--ignore-missing-stub", "limpq_solver")
    assert r.returncode == 0, r.stdout + r.stderr


def test_docs_example_type_checks(tmp_path):
    text = (ROOT / "docs" / "SOLVER.md").read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    example = tmp_path / "example.py"
    example.write_text(block)
    r = run("mypy", "--strict", "--no-incremental", str(example))
    assert r.returncode == 0, r.stdout + r.stderr
