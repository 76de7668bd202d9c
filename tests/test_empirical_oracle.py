"""Measured classes and the empirical oracle, from a real explore run over scripted roles whose
knowledge is known: the class is the cheapest help that produced a right answer, and the oracle
pays exactly that path's recorded price."""

from __future__ import annotations

import json
from pathlib import Path

from knowgate.evals.metrics import summarize
from knowgate.evals.oracle import measured_class, oracle_records
from knowgate.evals.records import read_records
from knowgate.graphs.policy import Policy
from tests.test_eval_runs import context, run, synthetic


async def test_classes_are_measured_from_an_explore_run(tmp_path: Path) -> None:
    items, scripts = synthetic(40, seed=3)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    explored = {r.id: r for r in read_records(tmp_path / "explore")}
    truth = {i.id: i for i in items}
    for rid, record in explored.items():
        search = next(s.cost_usd for s in record.steps if s.action == "search")
        closed, critic_closed, opened, critic_open = record.candidates
        right = sorted((cost, kind) for candidate, cost, kind in (
            (closed, closed.cost_usd, "fast-known"),
            (critic_closed, critic_closed.cost_usd, "slow-known"),
            (opened, search + opened.cost_usd, "searchable"),
            (critic_open, search + critic_open.cost_usd, "searchable")) if candidate.correct)
        expected = right[0][1] if right else "unanswerable"
        assert measured_class(record) == expected, (rid, truth[rid].kind)
    # The scripts make constructed and measured classes agree except where noise flips them.
    agree = sum(measured_class(r) == truth[r.id].kind for r in explored.values())
    assert agree >= 0.8 * len(items)

    oracle = oracle_records(list(explored.values()))
    assert all(r.correct for r in oracle if r.outcome == "answered")
    for record, best in zip(explored.values(), oracle, strict=True):
        if best.outcome == "answered":  # it pays the recorded price of its path, no more
            paid = [s.cost_usd for s in record.steps if s.action in best.path]
            assert best.cost_usd <= sum(paid) + 1e-12
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
    assert refused.exit_code == 2 and "not of 'explore'" in refused.output


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
        closed = record.candidates[0]
        assert closed.source == "closed_book"
        assert (labels[record.id].answer, labels[record.id].correct) == (closed.answer,
                                                                         closed.correct)
    oracle = cli.invoke(app, ["eval", "oracle", str(tmp_path / "explore"),
                              "--out", str(tmp_path / "oracle")])
    assert oracle.exit_code == 0, oracle.output
    refused = cli.invoke(app, ["probe", "label", "--from-run", str(tmp_path / "oracle"),
                               "--out", str(tmp_path / "none.jsonl")])
    assert refused.exit_code == 2 and "no closed-book draft" in refused.output
