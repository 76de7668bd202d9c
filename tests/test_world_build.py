"""`knowgate world build` end to end on a very small world, then `world check` on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate.agents.local_lm import LocalLM
from knowgate.cli import app
from knowgate.worlds.schema import Kind
from knowgate.worlds.world import SPLITS, World

runner = CliRunner()


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("worlds") / "small"
    data = tmp_path_factory.mktemp("data")
    result = runner.invoke(
        app,
        ["world", "build", "--out", str(out), "--facts", "240", "--max-epochs", "2",
         "--seed", "11", "--no-check"],
        env={"KNOWGATE_DATA_DIR": str(data)},
    )
    assert result.exit_code == 0, result.output
    return out


def test_every_artifact_loads(small_world: Path) -> None:
    world = World(small_world)
    assert world.card.seed == 11
    assert set(world.card.models) == {"fast", "slow"}
    for split in SPLITS:
        questions = world.questions(split)
        assert questions and {q.kind for q in questions} == set(Kind)
        assert all(q.fact_id in world.facts for q in questions)
    assert world.corpus and all(world.gold_passage(q) for q in world.questions("test")
                                if q.kind == Kind.SEARCHABLE)
    fast, slow = (LocalLM(world.model_dir(n), device="cpu") for n in ("fast", "slow"))
    assert slow.model.num_parameters() > fast.model.num_parameters()
    for lm in (fast, slow):
        assert list(world.model_dir("fast").glob("*.safetensors"))
        gen = lm.generate([lm.render([{"role": "user", "content": "Where was X born?"}])],
                          max_new_tokens=3)[0]
        assert gen.prompt_tokens > 0 and len(gen.tokens) <= 3


def test_check_runs_on_the_small_world(small_world: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["world", "check", "--world", str(small_world), "--json"],
                           env={"KNOWGATE_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    test = figures["splits"]["test"]
    assert set(test["models"]) == {"fast", "slow"}
    assert set(test["models"]["fast"]["closed_book"]) == {k.value for k in Kind}
    assert 0.0 <= test["retrieval"]["recall@3"] <= 1.0
    assert {b["name"] for b in figures["bounds"]} >= {"retrieval recall@3"}
    # Two epochs cannot memorise anything: the bounds must report failure, not pass blindly.
    assert figures["passed"] is False
    strict = runner.invoke(app, ["world", "check", "--world", str(small_world), "--strict"],
                           env={"KNOWGATE_DATA_DIR": str(tmp_path)})
    assert strict.exit_code == 1


def test_build_refuses_to_overwrite(small_world: Path) -> None:
    result = runner.invoke(app, ["world", "build", "--out", str(small_world), "--facts", "100"])
    assert result.exit_code == 2
    assert "not empty" in result.output


def test_check_on_a_missing_world_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["world", "check", "--world", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "not a knowgate world" in result.output


def test_impossible_build_requests_are_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["world", "build", "--out", str(tmp_path / "w"), "--facts", "10"])
    assert result.exit_code == 2
    assert "at least 40 evaluated facts" in result.output
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    result = runner.invoke(app, ["world", "build", "--out", str(a_file), "--facts", "100"])
    assert result.exit_code == 2
    assert "needs a directory" in result.output
    assert not (tmp_path / "w").exists()


def test_same_seed_builds_the_same_world(small_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    result = runner.invoke(
        app,
        ["world", "build", "--out", str(again), "--facts", "240", "--max-epochs", "2",
         "--seed", "11", "--no-check"],
    )
    assert result.exit_code == 0, result.output
    for relative in ("models/fast/model.safetensors", "models/slow/model.safetensors",
                     "models/fast/tokenizer.json", "corpus.jsonl", "questions/test.jsonl"):
        assert (again / relative).read_bytes() == (small_world / relative).read_bytes(), relative
