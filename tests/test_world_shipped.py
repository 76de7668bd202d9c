"""The shipped default world meets every bound of `knowgate world check` on its test split."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from knowgate.cli import app
from knowgate.worlds.world import MODELS


@pytest.fixture(scope="module")
def figures(data_dir):
    result = CliRunner().invoke(app, ["world", "check", "--json"],
                                env={"KNOWGATE_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_fast_model_knows_only_fast_known(figures) -> None:
    closed = figures["splits"]["test"]["models"]["fast"]["closed_book"]
    assert closed["fast-known"] >= 0.95
    for kind in ("slow-known", "searchable", "unanswerable"):
        assert closed[kind] <= 0.05, kind


def test_slow_model_knows_fast_and_slow_known(figures) -> None:
    closed = figures["splits"]["test"]["models"]["slow"]["closed_book"]
    assert closed["fast-known"] >= 0.95 and closed["slow-known"] >= 0.95
    assert closed["searchable"] <= 0.05 and closed["unanswerable"] <= 0.05


def test_both_models_read_evidence(figures) -> None:
    k = figures["evidence_passages"]
    for name in MODELS:
        model = figures["splits"]["test"]["models"][name]
        assert model["open_book_gold"] >= 0.90, name
        assert model["open_book_search"][f"k={k}"] >= 0.85, name


def test_retrieval_finds_the_gold_passage(figures) -> None:
    assert figures["splits"]["test"]["retrieval"]["recall@3"] >= 0.95


def test_paraphrase_split_is_reported_and_bounds_all_met(figures) -> None:
    paraphrase = figures["splits"]["paraphrase"]
    assert paraphrase["questions"] > 0 and set(paraphrase["models"]) == set(MODELS)
    assert figures["passed"], [b for b in figures["bounds"] if not b["passed"]]


def test_shipped_world_fits_the_size_budget(shipped_world) -> None:
    size = sum(f.stat().st_size for f in shipped_world.path.rglob("*") if f.is_file())
    assert size <= 30 * 1024 * 1024


def test_default_build_plan_is_the_one_that_made_the_shipped_world(shipped_world) -> None:
    """Changing a recipe without rebuilding the shipped world would make `world build` lie."""
    import dataclasses

    from knowgate.worlds.build import BuildPlan

    plan = BuildPlan.create()
    card = shipped_world.card
    assert dataclasses.asdict(plan.spec) == card.spec
    assert plan.name == card.name
    for recipe in (plan.fast, plan.slow):
        recorded = dict(card.models[recipe.name]["recipe"])
        recorded["distractor_mix"] = tuple(recorded["distractor_mix"])
        assert dataclasses.asdict(recipe) == recorded, recipe.name
