"""Signals declared once: what reads the declarations, and a new signal calibrated by them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate.cli import app
from knowgate.evals.calibrate import calibrate
from knowgate.graphs.policy import LogisticMap, Policy
from knowgate.signals import SIGNALS, SignalRegistry, SignalSpec
from knowgate.tests.test_eval_runs import PRICES, context, run, synthetic

PROBE_SCORE = SignalSpec(name="probe_score", stage="question", producer="a test prober",
                         meaning="the scripted prober's score (higher: knows)",
                         maps=("closed_book",))


def test_a_prefixed_signal_reads_as_its_base_on_another_model() -> None:
    spec = SIGNALS.get("critic_query_top_prob")
    assert spec is not None and spec.scale == "logit" and spec.stage == "question"
    assert spec.producer == "prober (critic's model)"
    assert SIGNALS.scale("answer_min_logprob") == "neglog"
    assert SIGNALS.get("critic_answer_min_logprob") is None  # answer signals have no prefix
    assert SIGNALS.scale("nobody_declared_this") == "raw"


def test_a_name_is_declared_once() -> None:
    registry = SignalRegistry([PROBE_SCORE])
    registry.declare(PROBE_SCORE)  # the same declaration again: nothing changes
    with pytest.raises(ValueError, match="already declared"):
        registry.declare(PROBE_SCORE.model_copy(update={"scale": "log"}))
    with pytest.raises(ValueError):
        SignalSpec(name="Bad Name", stage="draft", producer="x", meaning="y")


def test_the_policy_names_map_features_nothing_declares() -> None:
    policy = Policy(maps={"closed_book": LogisticMap(weights={"draft_logit": 1.0,
                                                              "answer_min_logprb": 2.0}),
                          "query": LogisticMap(weights={"critic_query_top_prob": 1.0})})
    assert policy.undeclared() == ["answer_min_logprb"]


async def test_calibrate_tries_a_declared_signal_in_the_maps_it_names(tmp_path: Path) -> None:
    items, scripts = synthetic(80, seed=3)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = Policy(max_searches=1, max_refines=1)
    assert "probe_score" not in base.maps["closed_book"].weights
    declared = SignalRegistry([*SIGNALS.all(), PROBE_SCORE])
    fitted, report = calibrate(tmp_path / "explore", "utility", base, PRICES, signals=declared)
    assert "probe_score" in fitted.maps["closed_book"].weights
    assert "probe_score" in report["features"]["closed_book"]
    assert "probe_score" not in fitted.maps["open_book"].weights  # not a map it names
    # Control: undeclared, the same run fits the base map's features alone.
    plain, _ = calibrate(tmp_path / "explore", "utility", base, PRICES,
                         signals=SignalRegistry(SIGNALS.all()))
    assert "probe_score" not in plain.maps["closed_book"].weights


def test_signal_list_shows_every_declaration_and_warns_of_an_undeclared_feature(
        tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["signal", "list", "--json", "--world", "synthetic"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    # The world's trained probes declared theirs as they loaded.
    assert rows["combined_logit"]["producer"] == "trained probe"
    assert rows["query_entropy"]["scale"] == "log"
    typo = tmp_path / "typo.json"
    typo.write_text(Policy(maps={"closed_book": LogisticMap(
        weights={"answer_min_logprb": 1.0})}).model_dump_json())
    warned = runner.invoke(app, ["signal", "list", "--world", "synthetic", "--config",
                                 str(_config(tmp_path, typo))])
    assert warned.exit_code == 0
    assert "nothing declares: answer_min_logprb" in warned.stderr


def _config(tmp_path: Path, policy: Path) -> Path:
    config = tmp_path / "knowgate.toml"
    config.write_text(f"policy = {json.dumps(str(policy))}\n")
    return config
