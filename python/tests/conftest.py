"""Shared fixtures: the repository root, and the `limpq` binary to agree with."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESNET20 = ROOT / "examples" / "resnet20.indicators.ron"
TINY = ROOT / "tests" / "fixtures" / "solver" / "tiny.indicators.ron"
LATENCY = ROOT / "tests" / "fixtures" / "solver" / "latency.ron"
# Two layers whose first policy breaks a budget (a node limit of 0 finds no policy).
CUT = ROOT / "tests" / "fixtures" / "solver" / "cut.indicators.ron"
CUT_LATENCY = ROOT / "tests" / "fixtures" / "solver" / "cut.latency.ron"


def _find_limpq():
    env = os.environ.get("LIMPQ_BIN")
    if env:
        return Path(env)
    for profile in ("debug", "release"):
        p = ROOT / "target" / profile / "limpq"
        if p.is_file():
            return p
    return None


class Cli:
    """Runs the `limpq` binary (LIMPQ_BIN, else target/debug or target/release)."""

    def __init__(self, path):
        self.path = path

    def run(self, *args, expect=0):
        r = subprocess.run(
            [str(self.path), *map(str, args)], cwd=ROOT, capture_output=True, text=True
        )
        assert r.returncode == expect, f"limpq {' '.join(map(str, args))}: {r.returncode}\n{r.stderr}"
        return r

    def json(self, *args, expect=0):
        return json.loads(self.run(*args, "--format", "json", expect=expect).stdout)


@pytest.fixture(scope="session")
def limpq():
    path = _find_limpq()
    if path is None or not path.is_file():
        pytest.skip(
            "no limpq binary to compare with: set LIMPQ_BIN or build it (cargo build); "
            ".ci/run sets LIMPQ_BIN to the binary `cargo test --workspace` built"
        )
    return Cli(path)


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    """Relative paths (as in docs/SOLVER.md) are the repository's."""
    monkeypatch.chdir(ROOT)
