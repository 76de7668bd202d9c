"""The repository root is the package: folders install as knowgate.x and code imports knowgate.x."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import knowgate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["agents", "api", "evals", "graphs", "tools", "worlds", "tests"])
def test_folders_import_as_subpackages(name: str) -> None:
    module = importlib.import_module(f"knowgate.{name}")
    assert Path(module.__file__).parent == ROOT / name


def test_public_api_is_reexported() -> None:
    for name in knowgate.__all__:
        assert hasattr(knowgate, name), name
    assert knowgate.default_world_dir().parent == ROOT / "worlds"


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import agents\n", True),
        ("from worlds.world import World\n", True),
        ("from .settings import Settings\n", True),
        ("from knowgate.worlds.world import World\n", False),
    ],
)
def test_ruff_enforces_knowgate_imports(source: str, flagged: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "TID",
         "--stdin-filename", str(ROOT / "probe.py"), "-"],
        input=source, capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert (result.returncode != 0) is flagged, result.stdout
    if flagged:
        assert "TID25" in result.stdout
