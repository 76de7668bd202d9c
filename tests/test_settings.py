"""Settings: TOML file, KNOWGATE_* environment, explicit overrides, typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowgate.errors import UserError
from knowgate.settings import load_settings


def test_precedence_overrides_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "knowgate.toml"
    config.write_text('search_candidates = 7\nevidence_passages = 2\ndevice = "cuda"\n')
    monkeypatch.setenv("KNOWGATE_EVIDENCE_PASSAGES", "3")
    monkeypatch.setenv("KNOWGATE_DEVICE", "cuda:1")
    settings = load_settings(config, device="cpu")
    assert settings.search_candidates == 7  # file
    assert settings.evidence_passages == 3  # env beats file
    assert settings.device == "cpu"  # explicit beats env


def test_default_data_dir_is_a_user_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KNOWGATE_DATA_DIR", raising=False)
    monkeypatch.chdir(Path(__file__).parent)
    settings = load_settings()
    assert "knowgate" in settings.data_dir.parts
    monkeypatch.setenv("KNOWGATE_DATA_DIR", "/tmp/elsewhere")
    assert load_settings().data_dir == Path("/tmp/elsewhere")


def test_invalid_values_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="evidence_passages"):
        load_settings(evidence_passages=0)
    with pytest.raises(UserError, match="search_candidates"):
        load_settings(search_candidates="many")
    with pytest.raises(UserError, match="device"):
        load_settings(device="tpu")
    with pytest.raises(UserError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    with pytest.raises(UserError, match="no_such_setting"):
        load_settings(bad)


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.search_candidates = 9  # type: ignore[misc]
