"""The design's one-way dependencies hold, and the check would catch a forbidden import.

Surfaces (``api``, ``evals``, the CLI) -> the composition root (``composition``, ``runtime``)
-> ``graphs`` -> the role protocols (``knowgate.roles``); concrete ``agents``, ``tools`` and
``worlds`` are reached only through the composition root. The contracts live in
``pyproject.toml`` (``[tool.importlinter]``) and run with import-linter's own CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import knowgate

ROOT = Path(knowgate.__file__).resolve().parent
CONFIG = ROOT / "pyproject.toml"
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not CONFIG.is_file() or not LINT.is_file(),
    reason="needs the source tree's pyproject.toml and import-linter (the test extra)")


def _lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the ``knowgate`` package found first on ``package_parent``."""
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT), str(config), "--no-cache"], cwd=package_parent,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_package_keeps_every_contract() -> None:
    done = _lint(ROOT.parent, CONFIG)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 kept, 0 broken" in done.stdout


def _copy_of_the_package(tmp_path: Path) -> Path:
    copy = tmp_path / "knowgate"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".*", "build", "bench", "tests", "examples", "worlds", "__pycache__", "*.egg-info"))
    # The worlds' data (models, corpora) is large and has no imports; their modules are enough.
    (copy / "worlds").mkdir()
    for module in (ROOT / "worlds").glob("*.py"):
        shutil.copy(module, copy / "worlds" / module.name)
    return copy


@pytest.mark.parametrize(("module", "forbidden", "contract"), [
    ("graphs/nodes.py", "knowgate.agents.llm",
     "Graphs know roles only through their protocols"),
    ("graphs/policy.py", "knowgate.composition",
     "Graphs know roles only through their protocols"),
    ("agents/critic.py", "knowgate.graphs.state",
     "Roles know nothing of graphs or of how they are composed"),
    ("tools/searcher.py", "knowgate.evals.records", "Nothing below the surfaces imports them"),
    ("api/metrics.py", "knowgate.evals.metrics",
     "The chat server and the eval runner are independent of each other"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, forbidden: str,
                                                contract: str) -> None:
    copy = _copy_of_the_package(tmp_path)
    assert _lint(tmp_path, copy / "pyproject.toml").returncode == 0  # the copy starts clean
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + f"\nimport {forbidden}  # noqa\n",
                      encoding="utf-8")
    done = _lint(tmp_path, copy / "pyproject.toml")
    assert done.returncode == 1, done.stdout
    assert f"{contract} BROKEN" in done.stdout
    importer = "knowgate." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {forbidden}" in done.stdout
