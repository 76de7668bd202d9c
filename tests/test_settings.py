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


def _cli_error(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run ``knowgate ARGS`` as a process; its exit code and what it printed."""
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith("KNOWGATE_")}
    done = subprocess.run([sys.executable, "-m", "knowgate", *args], env={**clean, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(("env", "toml", "named"), [
    ({"KNOWGATE_ANSWERR": "openai/gpt-4o-mini"}, None, "KNOWGATE_ANSWERR"),
    ({"KNOWGATE_API_KEYS": "sk-not-json"}, None, "KNOWGATE_API_KEYS"),
    ({}, 'answerer = "unterminated\n', "knowgate.toml"),
    ({"KNOWGATE_EVIDENCE_PASSAGES": "0"}, None, "evidence_passages"),
])
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, env: dict[str, str],
                                             toml: str | None, named: str) -> None:
    if toml is not None:
        (tmp_path / "knowgate.toml").write_text(toml)
    code, output = _cli_error(["serve", "--port", "0"], env, tmp_path)
    assert code == 2, output
    assert "Traceback" not in output and named in output
    assert len(output.strip().splitlines()) == 1, output


def test_a_misspelt_variable_says_what_it_probably_means(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("KNOWGATE_COLECTION", "docs")
    with pytest.raises(UserError, match="KNOWGATE_COLECTION; did you mean KNOWGATE_COLLECTION"):
        load_settings()


def test_a_missing_collection_is_named_not_searched_empty(tmp_path: Path) -> None:
    from knowgate.composition import open_collection
    from knowgate.roles import Passage

    settings = load_settings(data_dir=tmp_path, collection="shop-faq")
    made = open_collection(settings, create=True)  # what `knowgate index add` does
    made.add([Passage(id="p1", text="Quillberries are picked for jam.")])
    code, output = _cli_error(["index", "count", "--collection", "shop-fqa"],
                              {"KNOWGATE_DATA_DIR": str(tmp_path)}, tmp_path)
    assert code == 2 and "Traceback" not in output
    assert "'shop-fqa'" in output and "shop-faq" in output  # the name and what there is
    assert len(output.strip().splitlines()) == 1, output
    assert open_collection(settings).count() == 1


def test_the_process_keeps_a_bounded_number_of_sessions(tmp_path: Path) -> None:
    from knowgate.asking import MAX_SESSIONS, session

    made = [session(load_settings(data_dir=tmp_path, evidence_passages=n)) for n in range(1, MAX_SESSIONS + 3)]
    # The most recent ones are kept (the same object again); the oldest were let go.
    assert session(made[-1].settings) is made[-1]
    assert session(made[0].settings) is not made[0]
    assert len({id(session(s.settings)) for s in made[-MAX_SESSIONS + 1:]}) == MAX_SESSIONS - 1
