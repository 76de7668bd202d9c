"""docker-compose.yml: valid for docker-compose, and in agreement with the code it runs (the
commands exist, ports match, every KNOWGATE_* variable is a setting with a valid value)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from knowgate.api.guard import check_bind
from knowgate.cli import app
from knowgate.errors import UserError
from knowgate.settings import Settings, load_settings
from knowgate.tests.api_helpers import require_tool, which

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV = {"KNOWGATE_API_KEYS": '["sk-compose"]'}


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = which("docker-compose")
    require_tool(exe is not None, "docker-compose")
    assert exe is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KNOWGATE_", "POSTGRES_",
                                                                       "VLLM_"))}
    return subprocess.run([exe, "-f", str(COMPOSE), *args], capture_output=True, text=True,
                          timeout=60, env={**clean, **(env or {})}, cwd=ROOT)


@pytest.fixture(scope="module")
def resolved() -> dict:
    """The file as docker-compose resolves it, with the vllm profile on."""
    done = _compose("--profile", "vllm", "config", env=ENV)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_docker_compose_validates_the_file() -> None:
    ok = _compose("config", "-q", env=ENV)
    assert ok.returncode == 0, ok.stderr
    defaults = _compose("config", "-q")  # every variable has a default
    assert defaults.returncode == 0, defaults.stderr
    services = _compose("config", "--services", env=ENV).stdout.split()
    assert sorted(services) == ["api", "chroma", "postgres", "vllm"]


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_the_api_service_runs_knowgate_serve_on_its_published_port(resolved: dict) -> None:
    api = resolved["services"]["api"]
    command = api["command"]
    assert command[:2] == ["knowgate", "serve"]
    help_text = CliRunner().invoke(app, ["serve", "--help"]).output
    assert "--host" in help_text and "--port" in help_text
    port = int(_option(command, "--port"))
    assert [int(p["target"]) for p in api["ports"]] == [port]
    assert f":{port}/healthz" in " ".join(api["healthcheck"]["test"])


def test_every_knowgate_variable_is_a_setting_with_a_valid_value(resolved: dict,
                                                                 monkeypatch) -> None:
    env = resolved["services"]["api"]["environment"]
    names = [name for name in env if name.startswith("KNOWGATE_")]
    fields = {f"KNOWGATE_{name.upper()}" for name in Settings.model_fields}
    assert set(names) <= fields, set(names) - fields
    for name in list(os.environ):
        if name.startswith("KNOWGATE_"):
            monkeypatch.delenv(name)
    for name in names:
        monkeypatch.setenv(name, str(env[name]))
    settings = load_settings()
    assert settings.api_keys == ["sk-compose"]
    check_bind(_option(resolved["services"]["api"]["command"], "--host"), settings)

    chroma = resolved["services"]["chroma"]
    url = urlsplit(settings.chroma_url or "")
    assert url.hostname == "chroma"
    assert chroma["command"][:2] == ["chroma", "run"]  # the CLI tests/test_api_chroma.py runs
    assert url.port == int(_option(chroma["command"], "--port"))
    assert chroma["image"] == resolved["services"]["api"]["image"]  # same chromadb version

    postgres = resolved["services"]["postgres"]
    db = urlsplit(settings.checkpoint_url or "")
    assert db.scheme == "postgresql" and db.hostname == "postgres"
    assert str(db.port) in postgres["expose"]
    assert db.username == postgres["environment"]["POSTGRES_USER"]
    assert db.password == postgres["environment"]["POSTGRES_PASSWORD"]
    assert db.path.lstrip("/") == postgres["environment"]["POSTGRES_DB"]


def test_without_keys_the_api_refuses_to_start_in_one_line(monkeypatch) -> None:
    done = _compose("config")
    assert done.returncode == 0, done.stderr
    api = yaml.safe_load(done.stdout)["services"]["api"]
    for name in list(os.environ):
        if name.startswith("KNOWGATE_"):
            monkeypatch.delenv(name)
    for name, value in api["environment"].items():
        if name.startswith("KNOWGATE_"):
            monkeypatch.setenv(name, str(value))
    settings = load_settings()
    with pytest.raises(UserError, match="KNOWGATE_API_KEYS") as refused:
        check_bind(_option(api["command"], "--host"), settings)
    assert "\n" not in str(refused.value)


def test_the_vllm_profile_serves_an_openai_compatible_model(resolved: dict) -> None:
    vllm = resolved["services"]["vllm"]
    assert vllm["profiles"] == ["vllm"]  # started only with --profile vllm
    assert all("profiles" not in service for name, service in resolved["services"].items()
               if name != "vllm")
    assert "--model" in vllm["command"] and _option(vllm["command"], "--port") in vllm["expose"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    header = COMPOSE.read_text()
    assert f"http://vllm:{_option(vllm['command'], '--port')}/v1" in header
