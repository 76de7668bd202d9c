"""Measured classes and the empirical oracle, from a real explore run over scripted roles whose
knowledge is known: the class is the cheapest help that produced a right answer, and the oracle
pays exactly that path's recorded price."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowgate.evals.metrics import summarize
from knowgate.evals.oracle import MEASURED_CLASSES, measured_class, oracle_records
from knowgate.evals.records import read_records
from knowgate.graphs.policy import Policy
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedSearcher
from tests.test_eval_runs import context, run, synthetic


async def test_classes_are_measured_from_an_explore_run(tmp_path: Path) -> None:
    items, scripts = synthetic(40, seed=3)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    explored = {r.id: r for r in read_records(tmp_path / "explore")}
    truth = {i.id: i for i in items}
    price = {"probe": 0.0, "draft": ScriptedAnswerer.price_usd,
             "search": ScriptedSearcher.price_usd, "refine": ScriptedCritic.price_usd}
    for rid, record in explored.items():
        # Every branch's candidate, with what its path costs at the scripted prices.
        assert {(c.source, c.searched > 0) for c in record.candidates} == {
            ("closed_book", False), ("critic", False), ("open_book", True), ("critic", True)}
        right = []
        for c in record.candidates:
            assert c.spent_usd == pytest.approx(sum(price[a] for a in c.path)), c.path
            kind = ("searchable" if "search" in c.path else
                    "slow-known" if c.source == "critic" else "fast-known")
            if c.correct:
                right.append((c.spent_usd, MEASURED_CLASSES.index(kind), kind))
        expected = min(right)[2] if right else "unanswerable"
        assert measured_class(record) == expected, (rid, truth[rid].kind)
    # The scripts make constructed and measured classes agree except where noise flips them.
    agree = sum(measured_class(r) == truth[r.id].kind for r in explored.values())
    assert agree >= 0.8 * len(items)

    oracle = oracle_records(list(explored.values()))
    assert all(r.correct for r in oracle if r.outcome == "answered")
    for best in oracle:
        if best.outcome == "answered":  # it pays the price of its path, no more
            assert best.cost_usd == pytest.approx(sum(price[a] for a in best.path[:-1]))
            assert best.path[-1] == "answer" and best.path[0] == "probe"
        else:
            assert best.kind == "unanswerable" and best.cost_usd == 0.0
    policy = Policy.load()
    ceiling = summarize(oracle, policy, resamples=0)["utility"]
    assert ceiling >= summarize(list(explored.values()), policy, resamples=0)["utility"]
    assert summarize(oracle, policy, resamples=0)["wrong_rate_answered"] == 0.0


async def test_the_oracle_is_a_run_folder_the_cli_reads(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knowgate.cli import app

    items, scripts = synthetic(12, seed=4)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    cli = CliRunner()
    made = cli.invoke(app, ["eval", "oracle", str(tmp_path / "explore"),
                            "--out", str(tmp_path / "oracle")])
    assert made.exit_code == 0, made.output
    summary = cli.invoke(app, ["eval", "summary", str(tmp_path / "oracle"), "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["wrong_rate_answered"] == 0.0
    refused = cli.invoke(app, ["eval", "oracle", str(tmp_path / "oracle"),
                               "--out", str(tmp_path / "again")])
    assert refused.exit_code == 2 and "without --explore" in refused.output


def test_a_seeded_sample_is_the_same_for_every_graph(tmp_path: Path) -> None:
    from knowgate import load_settings
    from knowgate.evals.datasets import load_dataset

    settings = load_settings(data_dir=tmp_path, world="factbook")
    first = load_dataset("test", settings, sample=50, seed=3)
    again = load_dataset("test", settings, sample=50, seed=3)
    other = load_dataset("test", settings, sample=50, seed=4)
    assert [i.id for i in first.items] == [i.id for i in again.items] and len(first.items) == 50
    assert [i.id for i in first.items] != [i.id for i in other.items]
    assert first.name.endswith("[sample 50, seed 3]")


async def test_probe_labels_come_from_an_explore_run_without_a_model_call(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from knowgate.agents.probe_training import read_records as read_labels
    from knowgate.cli import app

    items, scripts = synthetic(20, seed=5)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    cli = CliRunner()
    made = cli.invoke(app, ["probe", "label", "--from-run", str(tmp_path / "explore"),
                            "--out", str(tmp_path / "labels.jsonl")])
    assert made.exit_code == 0, made.output
    labels = {r.id: r for r in read_labels(tmp_path / "labels.jsonl")}
    explored = read_records(tmp_path / "explore")
    assert set(labels) == {r.id for r in explored}
    for record in explored:
        closed = next(c for c in record.candidates
                      if c.source == "closed_book" and c.searched == 0)
        assert (labels[record.id].answer, labels[record.id].correct) == (closed.answer,
                                                                         closed.correct)
    # --exclude leaves out the questions of another run or dataset (here: of a dataset file).
    held = tmp_path / "held.jsonl"
    held.write_text("".join(item.model_dump_json() + "\n" for item in items[:3]))
    kept = cli.invoke(app, ["probe", "label", "--from-run", str(tmp_path / "explore"),
                            "--exclude", str(held), "--out", str(tmp_path / "rest.jsonl")])
    assert kept.exit_code == 0, kept.output
    rest = {r.id for r in read_labels(tmp_path / "rest.jsonl")}
    assert rest == set(labels) - {item.id for item in items[:3]} and len(rest) == 17
    oracle = cli.invoke(app, ["eval", "oracle", str(tmp_path / "explore"),
                              "--out", str(tmp_path / "oracle")])
    assert oracle.exit_code == 0, oracle.output
    refused = cli.invoke(app, ["probe", "label", "--from-run", str(tmp_path / "oracle"),
                               "--out", str(tmp_path / "none.jsonl")])
    assert refused.exit_code == 2 and "no closed-book draft" in refused.output
