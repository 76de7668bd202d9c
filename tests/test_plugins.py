"""Plugins: the cookbook's package (``examples/cookbook/plugin_package``), built and installed
here, adds a graph, a world and a role factory, found by entry point; a broken package's entry
points are each named, and the rest works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from knowgate.api.serve import wait_until_up
from knowgate.tests.api_helpers import free_port

QUESTION = "In which city was Sebrurt Shenom born?"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cookbook" / "plugin_package"
BROKEN = "kg-broken"  # a second distribution, whose entry points all fail to load

BROKEN_PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "kg-broken"
version = "0.1.0"

[project.entry-points."knowgate.graphs"]
broken = "kg_broken.missing:build"

[project.entry-points."knowgate.worlds"]
nowhere = "kg_broken:no_world"

[project.entry-points."knowgate.roles"]
not-a-factory = "kg_broken:no_world"

[project.entry-points."knowgate.signals"]
not-a-signal = "kg_broken:no_world"

[tool.setuptools]
packages = ["kg_broken"]
"""

BROKEN_MODULE = '''\
def no_world():
    return "/nonexistent/world"
'''

NOTEBOOK_ENV = {
    "KNOWGATE_SEARCHER": "notebook",
    "KNOWGATE_ROLE_OPTIONS": json.dumps({"searcher": {
        "passages": {"nb-1": "Sebrurt Shenom was born in Haiora.",
                     "nb-2": "Zarovian Nights is a name nobody wrote."},
        "price_usd": 0.002}}),
}


def _install(source: Path, target: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--no-build-isolation", "--quiet", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cookbook's plugin package and a broken one, built from source and installed
    (dist-info, entry points) into a folder of their own: put on ``PYTHONPATH``, they are
    installed for the subprocesses only."""
    root = tmp_path_factory.mktemp("plugin")
    broken = root / "broken"
    (broken / "kg_broken").mkdir(parents=True)
    (broken / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (broken / "kg_broken" / "__init__.py").write_text(BROKEN_MODULE)
    source = root / "example"  # a copy: building writes into the source tree
    shutil.copytree(EXAMPLE, source)
    target = root / "site"
    _install(source, target)
    _install(broken, target)
    assert list(target.glob("kg_read_and_check-0.1.0.dist-info/entry_points.txt"))
    return target


def _env(plugin_path: Path, data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(plugin_path), "KNOWGATE_DATA_DIR": str(data_dir),
           "KNOWGATE_DEVICE": "cpu"}
    env.pop("KNOWGATE_CONFIG", None)
    return env


def _knowgate(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "knowgate", *args], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def test_an_installed_graph_plugin_reaches_the_cli_and_a_broken_one_is_named(
        plugin_path: Path, data_dir: Path, tmp_path: Path) -> None:
    env = _env(plugin_path, data_dir)

    listed = _knowgate(env, "graph", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "read-and-check" in listed.stdout.split() and "triage" in listed.stdout.split()
    assert "broken" not in listed.stdout.split()
    assert BROKEN in listed.stderr and "ModuleNotFoundError" in listed.stderr

    worlds = _knowgate(env, "world", "list", "--json", cwd=tmp_path)
    assert worlds.returncode == 0, worlds.stderr
    rows = {row["name"]: row for row in json.loads(worlds.stdout)}
    assert rows["lab"]["plugin"] is True and rows["synthetic"]["plugin"] is False
    assert "nowhere" not in rows and "no world.json" in worlds.stderr and BROKEN in worlds.stderr

    asked = _knowgate(env, "ask", "--world", "lab", "--graph", "read-and-check", "--json",
                      QUESTION, cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert result["graph"] == "read-and-check"
    assert result["path"][:3] == ["search", "draft", "refine"]
    assert result["outcome"] in ("answered", "abstained")

    dataset = tmp_path / "two.jsonl"
    items = [{"id": "q0", "question": QUESTION, "answers": ["Kudal"]},
             {"id": "q1", "question": "Who wrote Zarovian Nights?", "answers": []}]
    dataset.write_text("".join(json.dumps(item) + "\n" for item in items))
    run = tmp_path / "run"
    evaluated = _knowgate(env, "eval", "run", "--dataset", str(dataset), "--graph",
                          "read-and-check", "--out", str(run), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [r["graph"] for r in records] == ["read-and-check"] * 2
    assert all(r["path"][:3] == ["search", "draft", "refine"] for r in records)
    run = tmp_path / "run-notebook"
    evaluated = _knowgate({**env, **NOTEBOOK_ENV}, "eval", "run", "--dataset", str(dataset),
                          "--graph", "read-and-check", "--out", str(run), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [r["steps"][0]["cost_usd"] for r in records] == [0.002, 0.002]
    # Explored and calibrated for the plugin's graph: calibrate replays that graph.
    explored = tmp_path / "run-explore"
    evaluated = _knowgate(env, "eval", "run", "--dataset", str(dataset), "--graph",
                          "read-and-check", "--explore", "--world", "lab", "--out",
                          str(explored), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    records = [json.loads(line) for line in (explored / "records.jsonl").read_text().splitlines()]
    assert all(r["tape"]["calls"] and r["graph"] == "read-and-check" for r in records)
    fitted = _knowgate(env, "calibrate", str(explored), "--world", "lab", "--out",
                       str(tmp_path / "policy.json"), cwd=tmp_path)
    assert fitted.returncode == 0, fitted.stderr
    report = json.loads(fitted.stdout[:fitted.stdout.rindex("}") + 1])
    assert report["graph"] == "read-and-check" and report["calibration"]["n"] == 2

    roles = _knowgate(env, "role", "list", "--json", cwd=tmp_path)
    assert roles.returncode == 0, roles.stderr
    factories = {row["name"]: row for row in json.loads(roles.stdout)}
    assert factories["notebook"]["roles"] == ["searcher"] and "chroma" in factories
    assert "not-a-factory" not in factories
    assert BROKEN in roles.stderr and "not a knowgate.role_factories.RoleFactory" in roles.stderr

    signals = _knowgate(env, "signal", "list", "--json", "--world", "lab", cwd=tmp_path)
    assert signals.returncode == 0, signals.stderr
    declared = {row["name"]: row for row in json.loads(signals.stdout)}
    assert declared["notebook_overlap"]["producer"] == "kg-read-and-check"
    assert declared["notebook_overlap"]["maps"] == ["open_book"]
    assert "query_top_prob" in declared and "not-a-signal" not in signals.stdout
    assert BROKEN in signals.stderr and "not a knowgate.signals.SignalSpec" in signals.stderr

    # The plugin's searcher, chosen by name in the settings, in the plugin's graph.
    read = _knowgate({**env, **NOTEBOOK_ENV}, "ask", "--world", "lab", "--graph",
                     "read-and-check", "--json", QUESTION, cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    result = json.loads(read.stdout)
    search = result["steps"][0]
    assert (search["action"], search["role"], search["cost_usd"]) == ("search", "searcher", 0.002)
    assert set(result["citations"]) <= {"nb-1"}
    assert result["signals"]["notebook_overlap"] == round(5 / 7, 4)  # the plugin's own node
    bad_role = _knowgate({**env, "KNOWGATE_SEARCHER": "not-a-factory"}, "ask", QUESTION,
                         cwd=tmp_path)
    assert bad_role.returncode != 0 and BROKEN in bad_role.stderr + bad_role.stdout

    refused = _knowgate(env, "ask", "--graph", "broken", QUESTION, cwd=tmp_path)
    assert refused.returncode != 0
    assert BROKEN in refused.stderr + refused.stdout
    lost = _knowgate(env, "ask", "--world", "nowhere", QUESTION, cwd=tmp_path)
    assert lost.returncode != 0
    assert BROKEN in lost.stderr + lost.stdout and "no world.json" in lost.stderr + lost.stdout


def test_an_installed_graph_plugin_is_a_model_of_the_chat_server(
        plugin_path: Path, data_dir: Path, tmp_path: Path) -> None:
    env = {**_env(plugin_path, data_dir), "KNOWGATE_CHECKPOINT_DB": str(tmp_path / "t.sqlite"),
           **NOTEBOOK_ENV}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "knowgate", "serve", "--port", str(port),
                               "--log-level", "warning"], env=env, cwd=tmp_path,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", server, timeout_s=240)
        with httpx.Client(base_url=url, timeout=120) as client:
            models = [m["id"] for m in client.get("/v1/models").json()["data"]]
            assert "knowgate/read-and-check" in models and "knowgate/triage" in models
            reply = client.post("/v1/chat/completions", json={
                "model": "knowgate/read-and-check",
                "messages": [{"role": "user", "content": QUESTION}]})
            assert reply.status_code == 200, reply.text
            trace = reply.json()["knowgate"]
            assert trace["path"][:3] == ["search", "draft", "refine"]
            assert trace["steps"][0]["cost_usd"] == 0.002  # the plugin's searcher answered
            assert trace["signal_notes"]["notebook_overlap"].startswith(
                "evidence · raw · kg-read-and-check: share of the question's words")
            missing = client.post("/v1/chat/completions", json={
                "model": "knowgate/broken", "messages": [{"role": "user", "content": QUESTION}]})
            assert missing.status_code == 404
            assert BROKEN in missing.json()["error"]["message"]
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert BROKEN in stderr  # the server said at startup which plugin it could not load
