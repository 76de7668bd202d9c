"""Calibrate any graph: explore runs of the stock and cookbook graphs, fitted and replayed
through the graph itself, question by question (``knowgate.evals.explore``)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from knowgate import GRAPHS, register_graph
from knowgate.errors import UserError
from knowgate.evals.calibrate import calibrate, replay_all
from knowgate.evals.records import read_records
from knowgate.graphs.compose import graph_names
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy
from knowgate.roles import Passage
from knowgate.signals import SIGNALS, SignalRegistry
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedProber, ScriptedSearcher
from knowgate.tests.test_cookbook import _load
from knowgate.tests.test_eval_runs import (
    PRICES,
    explored_questions,
    graph_equals_replay,
    run,
    synthetic,
)

# Every graph the replay is checked for: the registered ones that choose through
# ``Policy.decide`` or by no policy at all, and two cookbook graphs with nodes of their own.
REPLAYED = ("triage", "fast-only", "always-search", "always-refine", "fast-slow",
            "second-search", "self-consistency")
# Chooses by the policy's query map in a gate of its own: calibrate refuses it.
REFUSED = ("probe-gated",)
# Two searches allowed (the cookbook's second search can run) and one sampling pass.
BASE = Policy.load().model_copy(update={"max_searches": 2, "rounds": {"sample": 1}})


def cookbook_graph(name: str) -> str:
    """The registered name of a graph (a cookbook one registered on first use)."""
    if name in ("second-search", "self-consistency") and name not in GRAPHS:
        register_graph(name, _load(name.replace("-", "_")).build)
    return name


def world(n: int, seed: int = 0, confident_wrong: float = 0.0
          ) -> tuple[list[Any], dict[str, Any]]:
    """The synthetic test world, plus a reformulated second search and answer samples that
    agree with a closed-book draft the model knows (and scatter otherwise).
    ``confident_wrong``: the share of known questions whose draft is wrong all the same, with
    the confidence and signals of a known one (only the samples tell); the known questions'
    passages are then not in the index either, so the closed book is their only way."""
    items, scripts = synthetic(n, seed=seed, trained=True)
    rng = random.Random(seed)
    scripts["sampled"] = {}
    for item in items:
        q = item.question
        gold, (said, confidence) = item.answers[0], scripts["closed"][q]
        if confident_wrong and item.kind == "fast-known":
            scripts["results"][q] = ([Passage(id=f"x{item.id}", text="Nothing relevant.")],
                                     rng.uniform(0.0, 0.5))
            scripts["opened"][q] = (f"Misread{item.id}", rng.uniform(0.4, 0.99))
            if said == gold and rng.random() < confident_wrong:
                said = f"Confused{item.id}"
                scripts["closed"][q] = (said, confidence)
        knows = said == gold
        scripts["sampled"][q] = ([said] * rng.randint(4, 5) if knows
                                 else [said, *(f"Guess{j}" for j in range(rng.randint(3, 4)))])
        scripts["sampled"][q] = (scripts["sampled"][q] + ["Elsewhere"] * 5)[:5]
        # The reformulated query ("Person7 born") finds the right passage.
        passages, _ = scripts["results"][q]
        scripts["results"][q.replace("Where was ", "").replace("?", "")] = (
            [p.model_copy(update={"id": p.id + "-b"}) for p in passages], 0.9)
    return items, scripts


def context(scripts: dict[str, Any], policy: Policy | None = None) -> TriageContext:
    """Fresh scripted roles (a sampling answerer's draws are taken in turn)."""
    return TriageContext(
        answerer=ScriptedAnswerer(closed=scripts["closed"], opened=scripts["opened"],
                                  sampled=scripts["sampled"]),
        searcher=ScriptedSearcher(results=scripts["results"]),
        critic=ScriptedCritic(verdicts=scripts["verdicts"]),
        prober=ScriptedProber(signals=scripts["signals"]), policy=policy or BASE, prices=PRICES,
        role_timeout_s=5.0)


def test_every_registered_graph_is_replayed_or_refused() -> None:
    stock = {name for name in graph_names() if GRAPHS[name].__module__.startswith("knowgate.graphs")}
    assert stock <= set(REPLAYED) | set(REFUSED)


@pytest.mark.parametrize("graph", REPLAYED)
async def test_the_replay_calibrate_optimises_is_the_graph_question_by_question(
        tmp_path: Path, graph: str) -> None:
    items, scripts = world(60, seed=2)
    name = cookbook_graph(graph)
    await run(items, name, tmp_path / "explore", context(scripts), tmp_path, explore=True)
    fitted, report = calibrate(tmp_path / "explore", "utility", BASE, PRICES)
    assert report["graph"] == name and report["calibration"]["n"] == len(items)
    # The graph run live with the base policy and with the one fitted for it: each record is
    # what calibrate's replay said, path, cost and correctness included.
    for i, policy in enumerate((BASE, fitted)):
        await graph_equals_replay(items, scripts, policy, tmp_path / f"live{i}", tmp_path,
                                  graph=name, make_context=context)
    if graph == "second-search":
        records = read_records(tmp_path / "live0")
        assert any("search_again" in r.path for r in records)


async def test_calibrate_fits_a_signal_only_a_cookbook_graph_produces(tmp_path: Path) -> None:
    """The self-consistency graph's ``sample_agreement`` (declared for the closed-book map by
    the example) enters the fitted map; the control is the same run fitted with the signal
    undeclared."""
    items, scripts = world(160, seed=9, confident_wrong=0.4)
    name = cookbook_graph("self-consistency")
    await run(items, name, tmp_path / "explore", context(scripts), tmp_path, explore=True)
    fitted, report = calibrate(tmp_path / "explore", "utility", BASE, PRICES)
    assert fitted.maps["closed_book"].weights["sample_agreement"] > 0
    assert "sample_agreement" in report["features"]["closed_book"]
    blind, _ = calibrate(tmp_path / "explore", "utility", BASE, PRICES,
                         signals=SignalRegistry([s for s in SIGNALS.all()
                                                 if s.name != "sample_agreement"]))
    assert "sample_agreement" not in blind.maps["closed_book"].weights
    explored = await explored_questions(tmp_path / "explore", BASE)
    with_signal, without = (replay_all(p, PRICES, explored, terms=BASE) for p in (fitted, blind))
    # Drafts the probes call known but the samples contradict are no longer answered, and the
    # drafts they agree with are (the passages hold none of these answers).
    assert with_signal["utility"] > without["utility"]
    assert with_signal["answered"] > without["answered"]
    assert with_signal["wrong"] <= without["wrong"]


async def test_a_graph_choosing_by_the_maps_outside_decide_is_refused(tmp_path: Path) -> None:
    items, scripts = world(8)
    await run(items, "probe-gated", tmp_path / "explore", context(scripts), tmp_path,
              explore=True)
    with pytest.raises(UserError, match=r"'probe-gated' chooses by the policy's maps outside "
                                        r"Policy.decide \(query_probability\)"):
        calibrate(tmp_path / "explore", "utility", BASE, PRICES)


async def test_a_call_the_explore_run_never_made_is_named(tmp_path: Path) -> None:
    """Explored with one search allowed, the second search never ran; calibrating for two
    needs it, and the error names the call instead of guessing its result."""
    items, scripts = world(12)
    name = cookbook_graph("second-search")
    one = BASE.model_copy(update={"max_searches": 1})
    await run(items, name, tmp_path / "explore", context(scripts, one), tmp_path, explore=True)
    calibrate(tmp_path / "explore", "utility", one, PRICES)  # the bounds it was explored with
    with pytest.raises(UserError, match=r"made a call its explore run did not record \(searcher "
                                        r"\{\"query\":\"Person\d+ born\"\}\)"):
        calibrate(tmp_path / "explore", "utility", BASE, PRICES)


async def test_a_run_without_explore_is_refused_with_what_to_run(tmp_path: Path) -> None:
    items, scripts = world(4)
    await run(items, "triage", tmp_path / "plain", context(scripts), tmp_path)
    with pytest.raises(UserError, match=r"not an explore run.*--graph triage --explore"):
        calibrate(tmp_path / "plain", "utility", BASE, PRICES)


async def test_calibrate_fits_a_node_signal_the_explore_run_predates(tmp_path: Path) -> None:
    """The maps are fitted on what the graph computes now from the recorded calls: an explore
    run whose records lack a node's signal (made before the node wrote it) fits the same policy
    as one that has it, without exploring again."""
    items, scripts = world(160, seed=9, confident_wrong=0.4)
    name = cookbook_graph("self-consistency")
    await run(items, name, tmp_path / "explore", context(scripts), tmp_path, explore=True)
    fitted, _ = calibrate(tmp_path / "explore", "utility", BASE, PRICES)
    assert fitted.maps["closed_book"].weights["sample_agreement"] > 0
    path = tmp_path / "explore" / "records.jsonl"
    stripped = []
    for record in read_records(tmp_path / "explore"):
        candidates = [c.model_copy(update={"features": {k: v for k, v in c.features.items()
                                                        if k != "sample_agreement"}})
                      for c in record.candidates]
        stripped.append(record.model_copy(update={"candidates": candidates}))
    assert sum("sample_agreement" in c.features for r in stripped for c in r.candidates) == 0
    path.write_text("".join(r.model_dump_json() + "\n" for r in stripped), encoding="utf-8")
    again, _ = calibrate(tmp_path / "explore", "utility", BASE, PRICES)
    assert again.maps == fitted.maps and again.success_maps == fitted.success_maps
    assert again.penalty_usd == fitted.penalty_usd


async def test_a_signal_the_run_never_recorded_does_not_leave_a_map_unfitted(
        tmp_path: Path) -> None:
    """A base map naming a declared signal no candidate carries (``answer_min_logprob``: the
    run's prober was not asked for it) is fitted over the features the run has; before, no
    candidate qualified and the base map's placeholder weights shipped as if fitted. A name
    nothing declares stays, and the map with it is left as it was (``Policy.undeclared``)."""
    items, scripts = world(120, seed=4)
    await run(items, "triage", tmp_path / "explore", context(scripts), tmp_path, explore=True)

    def base_naming(feature: str) -> Policy:
        closed = BASE.maps["closed_book"].model_copy(update={
            "weights": {**BASE.maps["closed_book"].weights, feature: 0.0}})
        return BASE.model_copy(update={"maps": {**BASE.maps, "closed_book": closed}})

    assert SIGNALS.get("answer_min_logprob") is not None
    fitted, report = calibrate(tmp_path / "explore", "utility", base_naming("answer_min_logprob"),
                               PRICES)
    assert "answer_min_logprob" not in fitted.maps["closed_book"].weights
    assert report["fitted_on"]["closed_book"] > 0
    same, _ = calibrate(tmp_path / "explore", "utility", BASE, PRICES)
    assert fitted.maps["closed_book"] == same.maps["closed_book"]
    typo = base_naming("answer_min_logprb")
    kept, report = calibrate(tmp_path / "explore", "utility", typo, PRICES)
    assert kept.maps["closed_book"] == typo.maps["closed_book"]
    assert report["fitted_on"]["closed_book"] == 0
