"""Measured classes and the empirical oracle, from a real explore run over scripted roles whose
knowledge is known: the class is the cheapest help that produced a right answer, and the oracle
pays exactly that path's recorded price."""

from __future__ import annotations

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
