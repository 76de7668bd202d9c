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


async def test_an_undeclared_signal_is_warned_once_and_a_run_keeps_the_declarations(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from knowgate.evals.records import read_manifest, read_records
    from knowgate.evals.report import render_report

    name = "mystery_score_of_this_test"
    items, scripts = synthetic(40, seed=1)
    for i, values in enumerate(scripts["signals"].values()):
        values[name] = values["probe_score"] + 0.01 * i
    with caplog.at_level("WARNING", logger="knowgate.signals"):
        # probe-gated probes every question and always answers: right and wrong answers.
        await run(items, "probe-gated", tmp_path / "run", context(scripts), tmp_path)
    warned = [r for r in caplog.records if name in r.getMessage()]
    assert len(warned) == 1 and "not declared" in warned[0].getMessage()
    manifest = read_manifest(tmp_path / "run")
    kept = {spec.name: spec for spec in manifest.signals}
    assert kept["query_top_prob"] == SIGNALS.get("query_top_prob") and name not in kept
    # A report reads the declarations the run was made with: a plugin's signal is described
    # where the plugin is not installed.
    records = read_records(tmp_path / "run")
    bare = render_report([(tmp_path / "run", manifest, records)], Policy.load())
    plugin = SignalSpec(name=name, stage="question", producer="a plugin not installed here",
                        meaning="what the plugin's run declared")
    declared = manifest.model_copy(update={"signals": [*manifest.signals, plugin]})
    page = render_report([(tmp_path / "run", declared, records)], Policy.load())
    assert "what the plugin&#x27;s run declared" in page
    assert f"<td>{name}</td>" in bare and "what the plugin" not in bare
