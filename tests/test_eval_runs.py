"""Batch evaluation through its public API (``run_eval``, ``calibrate``, the CLI) with scripted
roles: datasets, records, resume, the response cache, the oracle, metrics, calibration."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from knowgate import load_settings
from knowgate.cli import app
from knowgate.errors import UserError
from knowgate.evals.calibrate import (
    calibrate,
    replay_all,
    success_cases,
    success_terms,
    threshold_of,
    with_threshold,
)
from knowgate.evals.datasets import EvalItem, load_dataset
from knowgate.evals.explore import End, ExploredQuestion, Point, bounds, replay_trees
from knowgate.evals.graphs import compile_eval_graph
from knowgate.evals.metrics import summarize
from knowgate.evals.records import CandidateRecord, EvalRecord, read_manifest, read_records
from knowgate.evals.runner import run_eval
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import LogisticMap, Policy, Prices, logit
from knowgate.roles import Passage
from knowgate.signals import SIGNALS
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedProber, ScriptedSearcher
from knowgate.tools.search_role import PricedSearcher

KINDS = ("fast-known", "slow-known", "searchable", "unanswerable")
PRICES = Prices(draft=0.000003, search=0.00003, refine=0.00015)


def synthetic(n: int, seed: int = 0, trained: bool = False, critic_signal: bool = False
              ) -> tuple[list[EvalItem], dict[str, Any]]:
    """A labelled toy world: scripts for every role, with some noise so calibration has work.
    ``trained``: the prober also gives the trained probes' logits the shipped maps read;
    ``critic_signal``: and the critic model's own pre-generation confidence."""
    rng = random.Random(seed)
    items, closed, opened, results, verdicts, signals = [], {}, {}, {}, {}, {}
    for i in range(n):
        kind = KINDS[i % 4]
        q, gold, wrong = f"Where was Person{i} born?", f"City{i}", f"Other{i}"
        items.append(EvalItem(id=f"q{i}", question=q, answers=[gold], kind=kind))
        knows = kind == "fast-known" and rng.random() > 0.1
        closed[q] = (gold, rng.uniform(0.85, 1.0)) if knows else (wrong, rng.uniform(0.1, 0.9))
        signals[q] = {"query_top_prob": rng.uniform(0.8, 1.0) if knows else rng.uniform(0.3, 0.9),
                      "probe_score": rng.uniform(0.6, 1.0) if knows else rng.uniform(0.0, 0.7)}
        if trained:
            logit = rng.gauss(3.0, 1.0) if knows else rng.gauss(-1.0, 1.5)
            signals[q] |= {"query_combined_logit": logit, "combined_logit": logit}
        if critic_signal:
            signals[q]["critic_query_top_prob"] = (rng.uniform(0.85, 1.0) if kind == "slow-known"
                                                   else rng.uniform(0.1, 0.8))
        found = kind in ("searchable", "fast-known")
        text = f"Person{i} was born in {gold if found else wrong}."
        results[q] = ([Passage(id=f"p{i}", text=text, score=1.0)],
                      rng.uniform(0.8, 1.0) if found else rng.uniform(0.0, 0.6))
        opened[q] = (gold, rng.uniform(0.8, 1.0)) if found else (wrong, rng.uniform(0.4, 0.99))
        verdicts[q] = (("revise", gold, rng.uniform(0.9, 1.0)) if kind == "slow-known"
                       else ("revise", wrong, rng.uniform(0.05, 0.7)) if rng.random() < 0.5
                       else ("abstain", "", 0.1))
    return items, {"closed": closed, "opened": opened, "results": results,
                   "verdicts": verdicts, "signals": signals}


class CountingBackend:
    """A search backend that counts the searches it is paid for."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.calls: list[str] = []

    async def search(self, query: str, k: int) -> list[Passage]:
        self.calls.append(query)
        return list(self.results[query][0])[:k]


def context(scripts: dict[str, Any], policy: Policy | None = None,
            backend: CountingBackend | None = None) -> TriageContext:
    searcher: Any = (PricedSearcher(backend, 0.00003, k=1, timeout_s=5.0) if backend
                     else ScriptedSearcher(results=scripts["results"]))
    return TriageContext(answerer=ScriptedAnswerer(closed=scripts["closed"],
                                                   opened=scripts["opened"]),
                         searcher=searcher, critic=ScriptedCritic(verdicts=scripts["verdicts"]),
                         prober=ScriptedProber(signals=scripts["signals"]),
                         policy=policy or Policy.load(), prices=PRICES, role_timeout_s=5.0)


async def run(items, graph, out, ctx, tmp_path: Path, **kw):
    from knowgate.evals.datasets import Dataset

    settings = kw.pop("settings", None) or load_settings(data_dir=tmp_path / "data")
    return await run_eval(Dataset("toy", items), graph, out, settings, context=ctx,
                          cache_path=tmp_path / "cache.sqlite", **kw)


def strip_latency(record: EvalRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data.pop("latency_s")
    for step in data["steps"]:
        step.pop("latency_s")
    return data


# -- datasets --------------------------------------------------------------------------------


def test_a_bad_dataset_line_is_named(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    path = tmp_path / "qs.jsonl"
    path.write_text('{"id": "a", "question": "Q?", "answers": ["x"]}\n'
                    '{"id": "b", "question": "Q2?", "answers": "x"}\n')
    with pytest.raises(UserError, match=r"qs.jsonl:2: invalid record: answers"):
        load_dataset(str(path), settings)
    path.write_text('{"id": "a", "question": "Q?", "answers": ["x"]}\nnot json\n')
    with pytest.raises(UserError, match=r"qs.jsonl:2"):
        load_dataset(str(path), settings)
    path.write_text('{"id": "a", "question": "Q?", "answers": ["x"]}\n' * 2)
    with pytest.raises(UserError, match="duplicate id 'a'"):
        load_dataset(str(path), settings)
    with pytest.raises(UserError, match="neither a file nor a world split"):
        load_dataset("nope", settings)
    split = load_dataset("test", settings, limit=5)
    assert len(split.items) == 5 and split.items[0].kind in KINDS
    assert split.name.endswith(":test")


# -- runs, records, resume -------------------------------------------------------------------


async def test_records_manifest_and_resume(tmp_path: Path) -> None:
    items, scripts = synthetic(12)
    out = tmp_path / "run"
    first = await run(items[:8], "triage", out, context(scripts), tmp_path)
    assert (first.total, first.skipped, first.done) == (8, 0, 8)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["graph"] == "triage" and manifest["items"] == 8
    assert manifest["versions"]["litellm"] and len(manifest["dataset_sha256"]) == 64
    records = read_records(out)
    assert sorted(r.id for r in records) == sorted(i.id for i in items[:8])
    assert all(r.outcome in ("answered", "abstained") for r in records)
    assert all(r.kind in KINDS and r.steps and r.candidates for r in records)
    answered = [r for r in records if r.outcome == "answered"]
    assert all(r.correct is not None for r in answered)

    # Same command again: nothing to do, no role called.
    ctx = context(scripts)
    again = await run(items[:8], "triage", out, ctx, tmp_path)
    assert (again.skipped, again.done) == (8, 0) and ctx.answerer.calls == []
    # A line torn by a crash is cut off and its question redone.
    data = (out / "records.jsonl").read_bytes()
    (out / "records.jsonl").write_bytes(data[:-40])
    lost = read_records(out, repair=False)
    assert len(lost) == 7
    redone = await run(items[:8], "triage", out, context(scripts), tmp_path)
    assert (redone.skipped, redone.done) == (7, 1)
    assert sorted(r.id for r in read_records(out)) == sorted(i.id for i in items[:8])


async def test_another_graph_or_dataset_on_an_existing_run_is_refused(tmp_path: Path) -> None:
    items, scripts = synthetic(4)
    out = tmp_path / "run"
    await run(items, "fast-only", out, context(scripts), tmp_path)
    with pytest.raises(UserError, match="another graph"):
        await run(items, "triage", out, context(scripts), tmp_path)
    with pytest.raises(UserError, match="another dataset"):
        await run(items[:2], "fast-only", out, context(scripts), tmp_path)
    with pytest.raises(UserError, match="critic = 'local/slow', not 'openai/gpt-4o'"):
        await run(items, "fast-only", out, context(scripts), tmp_path,
                  settings=load_settings(data_dir=tmp_path / "data", critic="openai/gpt-4o"))
    with pytest.raises(UserError, match="unknown graph"):
        await run(items, "nope", tmp_path / "other", context(scripts), tmp_path)


async def test_the_manifest_keeps_no_credentials(tmp_path: Path) -> None:
    items, scripts = synthetic(2)
    settings = load_settings(data_dir=tmp_path / "data", litellm_params={
        "openai/gpt-4o": {"api_key": "sk-secret-value", "api_base": "http://127.0.0.1:1/v1"},
        "anthropic/x": {"api_key": "os.environ/ANTHROPIC_API_KEY"}})
    await run(items, "fast-only", tmp_path / "run", context(scripts), tmp_path, settings=settings)
    text = (tmp_path / "run" / "manifest.json").read_text()
    assert "sk-secret-value" not in text
    params = json.loads(text)["settings"]["litellm_params"]
    assert params["openai/gpt-4o"] == {"api_key": "***", "api_base": "http://127.0.0.1:1/v1"}
    assert params["anthropic/x"]["api_key"] == "os.environ/ANTHROPIC_API_KEY"


async def test_searches_are_paid_once_across_runs(tmp_path: Path) -> None:
    items, scripts = synthetic(8)
    backend = CountingBackend(scripts["results"])
    await run(items, "always-search", tmp_path / "a", context(scripts, backend=backend), tmp_path)
    assert sorted(backend.calls) == sorted(i.question for i in items)
    backend.calls.clear()
    await run(items, "always-search", tmp_path / "b", context(scripts, backend=backend), tmp_path)
    assert backend.calls == []  # every search came from the SQLite cache
    a = {r.id: strip_latency(r) for r in read_records(tmp_path / "a")}
    b = {r.id: strip_latency(r) for r in read_records(tmp_path / "b")}
    assert a == b  # same records, search prices included: a question costs what it cost


async def test_the_oracle_follows_the_class_label(tmp_path: Path) -> None:
    items, scripts = synthetic(8)
    unlabelled = EvalItem(id="x", question="Where was Nobody born?", answers=["Nowhere"])
    await run([*items, unlabelled], "oracle", tmp_path / "o", context(scripts), tmp_path)
    records = {r.id: r for r in read_records(tmp_path / "o")}
    paths = {r.kind: r.path for r in records.values() if r.kind}
    assert paths == {"fast-known": ["draft", "answer"], "slow-known": ["refine", "answer"],
                     "searchable": ["search", "draft", "answer"], "unanswerable": ["abstain"]}
    assert records["x"].outcome == "error" and "class label" in (records["x"].error or "")


# -- metrics ---------------------------------------------------------------------------------


def rec(i: int, outcome: str, correct: bool | None, confidence: float, cost: float = 0.0,
        **signals: float) -> EvalRecord:
    return EvalRecord(id=str(i), question="q", answers=["a"], graph="g", outcome=outcome,
                      correct=correct, confidence=confidence, cost_usd=cost, signals=signals)


def test_metrics_of_known_records() -> None:
    records = [rec(0, "answered", True, 0.9, 0.001, s=0.9), rec(1, "answered", False, 0.8, 0.0, s=0.1),
               rec(2, "answered", True, 0.7, 0.0, s=0.8), rec(3, "abstained", None, 0.2)]
    policy = Policy(reward_usd=0.01, penalty_usd=0.02)
    s = summarize(records, policy, alpha=0.5, resamples=200)
    assert (s["accuracy"], s["coverage"], s["wrong_rate_answered"]) == (0.5, 0.75, 0.3333)
    # ranked by confidence: right, wrong, right -> risks 0, 1/2, 1/3
    assert s["risk_coverage"]["risk"] == [0.0, 0.5, 0.3333]
    assert s["aurc"] == pytest.approx((0 + 0.5 + 1 / 3) / 3, abs=1e-4)
    assert s["utility"] == pytest.approx((0.01 - 0.02 + 0.01 + 0.0 - 0.001) / 4)
    assert s["auroc"]["s"] == 1.0 and s["auroc"]["confidence"] == 0.5
    assert s["brier"] == pytest.approx((0.01 + 0.64 + 0.09) / 3, abs=1e-4)
    assert s["by_class"]["unlabelled"]["n"] == 4
    assert 0.0 < s["guarantee"]["share_of_resamples_within"] <= 1.0


# -- calibration -----------------------------------------------------------------------------


def base_with_probe() -> Policy:
    """The shipped policy, its closed-book map also reading a signal it did not know before."""
    base = Policy.load()
    maps = dict(base.maps)
    maps["closed_book"] = LogisticMap(weights={**maps["closed_book"].weights, "probe_score": 0.0})
    return base.model_copy(update={"maps": maps})


@pytest.mark.parametrize("trained", [True, False], ids=["trained-probes", "fallback"])
async def test_calibrate_fits_the_base_features_and_its_replay_is_the_triage_graph(
        tmp_path: Path, trained: bool) -> None:
    items, scripts = synthetic(120, trained=trained)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = base_with_probe()
    policy, report = calibrate(tmp_path / "explore", "utility", base, PRICES)
    # Each map (and fallback) keeps a subset of its base map's features and of the signals
    # declared for it (``SignalSpec.maps``).
    for maps, old_maps in ((policy.maps, base.maps), (policy.fallback_maps, base.fallback_maps)):
        assert set(maps) == set(old_maps)
        for name, old in old_maps.items():
            declared = {s.name for s in SIGNALS.all() if name in s.maps}
            assert maps[name].weights and set(maps[name].weights) <= set(old.weights) | declared
    # Every closed-book draft the walk reached is fitted on: one per question, and those
    # drafted after the critic abstained first.
    closed = [c for r in read_records(tmp_path / "explore") for c in r.candidates
              if c.source == "closed_book"]
    assert len({c.path[-1] for c in closed}) == 1 and len(closed) >= 120
    if trained:
        assert policy.maps["closed_book"].weights["probe_score"] > 0  # the new signal is fitted
        assert report["fitted_on"]["closed_book"] == len(closed)
    else:
        # Without the trained probes' signals only the fallback maps can be fitted.
        assert report["fitted_on"]["closed_book"] == 0
        assert policy.maps["closed_book"] == base.maps["closed_book"]
        assert report["fallbacks_fitted_on"]["closed_book"] == len(closed)
        assert policy.fallback_maps["closed_book"] != base.fallback_maps["closed_book"]
    # The replay that calibration optimises is what the triage graph does, question by question,
    # with the fitted policy and with the shipped one (which searches first below 0.69).
    first_moves = set()
    for i, tried in enumerate((policy, Policy.load())):
        records = await graph_equals_replay(items, scripts, tried, tmp_path / f"triage{i}",
                                             tmp_path)
        first_moves |= {r.path[1] for r in records}
    assert first_moves == {"search", "draft"}  # search-first routing was replayed too


async def explored_questions(run_dir: Path, policy: Policy) -> list[ExploredQuestion]:
    """The explore run's walks rebuilt over its tapes, as ``calibrate`` replays them."""
    records = [r for r in read_records(run_dir) if r.outcome != "error"]
    graph = compile_eval_graph(read_manifest(run_dir).graph)
    return await replay_trees(graph, records, policy, PRICES)


async def graph_equals_replay(items: list[EvalItem], scripts: dict[str, Any], policy: Policy,
                              out: Path, tmp_path: Path, graph: str = "triage",
                              make_context: Callable[..., TriageContext] = context
                              ) -> list[EvalRecord]:
    """Run ``graph`` with ``policy`` (roles from ``make_context(scripts, policy)``, fresh) and
    check each record against the replay of the explore run in ``tmp_path / "explore"``;
    returns the records."""
    explored = {e.record.id: e for e in await explored_questions(tmp_path / "explore", policy)}
    await run(items, graph, out, make_context(scripts, policy), tmp_path,
              settings=load_settings(data_dir=tmp_path / "data", policy=None))
    records = read_records(out)
    assert len(records) == len(explored) == len(items)
    for record in records:
        replayed = explored[record.id].replay(policy, PRICES)
        assert replayed.answered == (record.outcome == "answered"), record.path
        assert replayed.correct == record.right, record.path
        assert replayed.cost_usd == pytest.approx(record.cost_usd), record.path
        assert list(replayed.path) == record.path
    return records


async def test_the_critics_own_signal_sends_questions_to_the_critic_first(
        tmp_path: Path) -> None:
    items, scripts = synthetic(240, seed=11, trained=True, critic_signal=True)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = Policy.load()
    policy, report = calibrate(tmp_path / "explore", "utility", base, PRICES)
    # This world's open-book drafts carry no ``evidence_match``, a feature of the stock
    # after-search map: it cannot be fitted here, and the measured rate stands in for it.
    assert set(policy.success_maps) == {"refine_unsearched"}
    assert "evidence_match" in Policy.load().success_maps["refine_searched"].weights
    assert policy.success_maps["refine_unsearched"].weights["critic_query_top_prob"] > 0
    assert "critic_query_top_prob" in report["success_features"]["refine_unsearched"]
    records = await graph_equals_replay(items, scripts, policy, tmp_path / "triage", tmp_path)
    first = {kind: [r.path[1] for r in records if r.kind == kind] for kind in KINDS}
    # The critic knows the slow-known questions: they skip the draft and the search ...
    assert first["slow-known"].count("refine") >= 0.9 * len(first["slow-known"])
    # ... and no other question is sent to it first.
    assert all(m != "refine" for k in ("fast-known", "searchable", "unanswerable")
               for m in first[k])
    # The same policy without the critic's signal falls back to the measured rates: it never
    # goes to the critic first, and so it pays more for the same questions.
    blind = {**scripts, "signals": {q: {k: v for k, v in s.items()
                                        if not k.startswith("critic_")}
                                    for q, s in scripts["signals"].items()}}
    blind_out = tmp_path / "blind"
    await run(items, "triage", blind_out, context(blind, policy), tmp_path,
              settings=load_settings(data_dir=tmp_path / "data", policy=None))
    blind_records = read_records(blind_out)
    assert all(r.path[1] != "refine" for r in blind_records)
    # Without the signal the after-search critic is not skipped on a map fitted for the case
    # with it: slow-known questions are still answered, through a search and the critic.
    slow = [r for r in blind_records if r.kind == "slow-known"]
    assert sum(r.right and "refine" in r.path for r in slow) >= 0.9 * len(slow)
    assert sum(r.cost_usd for r in records) < sum(r.cost_usd for r in blind_records)


async def test_a_success_map_with_nothing_to_fit_leaves_the_measured_rate(
        tmp_path: Path) -> None:
    # At a threshold no candidate reaches, no action yields a trusted answer: every success
    # case is a failure. The base maps' placeholder weights (0: probability 0.5) must not be
    # kept as if fitted, or the policy would expect the critic asked first to succeed half the
    # time and send every question there (risk mode's strict thresholds did).
    items, scripts = synthetic(120, seed=11, trained=True, critic_signal=True)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = Policy.load()
    assert base.success_maps["refine_unsearched"].weights  # the stock map a fit would replace
    explored = await explored_questions(tmp_path / "explore", base)
    strict = with_threshold(base, 0.999999)
    cases = success_cases(strict, explored)
    assert cases["refine_unsearched"] and not any(ok for rows in cases.values() for _, ok in rows)
    policy = strict.model_copy(update=success_terms(strict, explored, base, PRICES))
    assert policy.success_maps == {}
    assert policy.success.refine_unsearched == 0.0 and policy.success.search_first == 0.0
    first = {e.replay(policy, PRICES).path[1] for e in explored}
    assert "refine" not in first
    # At the calibrated threshold the same cases hold successes, and the maps are fitted.
    fitted = base.model_copy(update=success_terms(base, explored, base, PRICES))
    assert fitted.success_maps["refine_unsearched"] != base.success_maps["refine_unsearched"]


async def test_search_first_is_chosen_by_replayed_utility_within_the_guard(
        tmp_path: Path) -> None:
    from knowgate.agents.probes import ProbeSet
    from knowgate.signals import TRAINED_PROBE
    from knowgate.worlds.world import World

    # The synthetic world's probes loaded: their signals are declared for the maps calibrate
    # tries them in, as in any process whose prober reads them.
    ProbeSet.load(World("synthetic").path / "probes")
    items, scripts = synthetic(400, seed=5, trained=True)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = Policy.load().model_copy(update={"search_first_below": None})
    policy, report = calibrate(tmp_path / "explore", "utility", base, PRICES)
    probe_signals = {s.name for s in SIGNALS.all() if s.producer == TRAINED_PROBE}
    assert "query_combined_logit" in probe_signals
    # A fallback map judges when the prober runs without its probes: it reads none of theirs.
    assert all(not probe_signals & set(m.weights) for m in policy.fallback_maps.values())
    first = policy.search_first_below
    assert first is not None and report["search_first"]["routed"] > 0
    explored = await explored_questions(tmp_path / "explore", policy)
    never = policy.model_copy(update={"search_first_below": None})
    # Routing pays on the calibration questions ...
    assert replay_all(policy, PRICES, explored)["utility"] > \
        replay_all(never, PRICES, explored)["utility"]
    # ... and sends at most 1% of those answered right without help to search first.
    def routed(e: ExploredQuestion) -> bool:
        p = policy.query_probability(e.query)
        return p is not None and p < first

    right = [e for e in explored if e.replay(never, PRICES).right_without_help]
    assert sum(routed(e) for e in right) <= 0.01 * len(right)
    # The same holds for a prober without trained probes (the query map's fallback).
    bare = [policy.query_probability({k: v for k, v in e.query.items()
                                      if k != "query_combined_logit"}) for e in right]
    assert all(p is not None for p in bare)
    assert sum(p < first for p in bare if p is not None) <= 0.01 * len(right)
    # Questions the routing sends to search really search before any draft.
    low = [e for e in explored if routed(e)]
    assert low and all(e.replay(policy, PRICES).path[:2] == ("probe", "search") for e in low)


async def test_risk_mode_certifies_alpha_or_says_it_cannot(tmp_path: Path) -> None:
    items, scripts = synthetic(200, seed=3)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    base = Policy.load()
    policy, report = calibrate(tmp_path / "explore", "risk", base, PRICES, alpha=0.1, delta=0.1)
    stats = report["calibration"]
    assert stats["p_value"] <= 0.1 and stats["wrong_rate_answered"] <= 0.1
    assert threshold_of(policy) == pytest.approx(stats["threshold"], abs=1e-4)
    assert threshold_of(policy) >= threshold_of(base)
    with pytest.raises(UserError, match="no answer threshold"):
        calibrate(tmp_path / "explore", "risk", base, PRICES, alpha=0.0001, delta=0.01)
    with pytest.raises(UserError, match="alpha and delta"):
        calibrate(tmp_path / "explore", "risk", base, PRICES, alpha=1.5)


def test_risk_mode_skips_thresholds_too_strict_to_be_certified() -> None:
    """Three very confident drafts, one wrong, then sixty right ones: the strictest thresholds
    answer too few questions to be certified whatever their answers, so Learn-then-Test skips
    them (they can make no false rejection) instead of stopping there."""
    from knowgate.evals.calibrate import learn_then_test
    from knowgate.graphs.state import Candidate, Step, TriageState
    from knowgate.roles import Draft

    policy = Policy(maps={"query": LogisticMap(), "closed_book": LogisticMap(
        weights={"draft_logit": 1.0}), "open_book": LogisticMap(), "critic": LogisticMap()},
        max_searches=0, max_refines=0)

    def explored(confidence: float, correct: bool) -> ExploredQuestion:
        """A fast-only question: one draft, then answer or abstain."""
        draft = CandidateRecord(source="closed_book", answer="A", confidence=confidence,
                                features={"draft_logit": logit(confidence)}, correct=correct,
                                path=["draft"])
        record = EvalRecord(id="q", question="Q?", answers=["A"], graph="fast", outcome="error",
                            candidates=[draft])
        state = TriageState(question="Q?", draft=Draft(answer="A", confidence=confidence,
                                                       label="sure"),
                            candidate=Candidate(answer="A", source="closed_book"),
                            steps=[Step(action="draft", reason="closed book")])
        tree = {(): Point(state, False, False, ("answer", "abstain")),
                ("answer",): End("answered", "A", 0.0, ("draft", "answer")),
                ("abstain",): End("abstained", "", 0.0, ("draft", "abstain"))}
        return ExploredQuestion(record, tree, bounds(policy), (draft,))

    cases = [explored(0.995, i != 0) for i in range(3)] + [explored(0.9, True)] * 60
    chosen, stats = learn_then_test(policy, PRICES, cases, policy, alpha=0.1, delta=0.1)
    assert stats["answered"] == 63 and stats["wrong"] == 1 and stats["p_value"] <= 0.1
    assert stats["threshold"] < 0.9
    with pytest.raises(UserError, match="no answer threshold"):  # three answered: never enough
        learn_then_test(policy, PRICES, cases[:3], policy, alpha=0.1, delta=0.1)


async def test_the_calibrate_command_tries_the_settings_probes_signals(tmp_path: Path) -> None:
    """A fresh process: ``knowgate calibrate`` reads the settings' trained probes (the default
    world's) before fitting, so their signals are tried in the maps they are declared for."""
    import os
    import subprocess
    import sys

    items, scripts = synthetic(200, seed=3, trained=True)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    shipped = Policy.load()
    base = shipped.model_copy(update={"maps": {
        **shipped.maps, "query": LogisticMap(weights={"query_top_prob": 0.0}),
        "closed_book": LogisticMap(weights={"draft_logit": 1.0})}})
    (tmp_path / "base.json").write_text(base.model_dump_json())
    done = subprocess.run([sys.executable, "-m", "knowgate", "calibrate", str(tmp_path / "explore"),
                           "--out", str(tmp_path / "p.json"), "--base", str(tmp_path / "base.json"),
                           "--allow-other-roles"],
                          env={**os.environ, "KNOWGATE_DATA_DIR": str(tmp_path / "data")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[:done.stdout.rindex("}") + 1])
    probe_signals = {"query_combined_logit", "combined_logit"}
    assert probe_signals & {*report["features"]["query"], *report["features"]["closed_book"]}
    fitted = Policy.load(tmp_path / "p.json")
    assert all(not probe_signals & set(m.weights) for m in fitted.fallback_maps.values())


async def test_calibrate_and_summary_through_the_cli(tmp_path: Path) -> None:
    items, scripts = synthetic(60)
    await run(items, "explore", tmp_path / "explore", context(scripts), tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["calibrate", str(tmp_path / "explore"), "--out",
                               str(tmp_path / "p.json"), "--mode", "risk", "--alpha", "0.2"])
    assert done.exit_code == 0, done.output
    assert Policy.load(tmp_path / "p.json").source.startswith("knowgate calibrate")
    # Settings naming another critic than the run's: calibrate says what to run instead.
    other = tmp_path / "other.toml"
    other.write_text('critic = "off"\n')
    refused = runner.invoke(app, ["calibrate", str(tmp_path / "explore"), "--out",
                                  str(tmp_path / "q.json"), "--config", str(other)])
    assert refused.exit_code == 2
    said = " ".join(refused.output.split())
    assert "critic: 'litellm:local/slow' in the run, 'off' now" in said
    assert "knowgate eval run --graph triage --explore --dataset toy --out NEW_RUN" in said
    assert not (tmp_path / "q.json").exists()
    forced = runner.invoke(app, ["calibrate", str(tmp_path / "explore"), "--out",
                                 str(tmp_path / "q.json"), "--config", str(other),
                                 "--allow-other-roles"])
    assert forced.exit_code == 0, forced.output
    summary = runner.invoke(app, ["eval", "summary", str(tmp_path / "explore"), "--json",
                                  "--alpha", "0.05"])
    assert summary.exit_code == 0, summary.output
    data = json.loads(summary.stdout)
    assert data["graph"] == "triage" and data["n"] == 60 and "guarantee" in data
    assert set(data["by_class"]) == set(KINDS)
    table = runner.invoke(app, ["eval", "summary", str(tmp_path / "explore")])
    assert table.exit_code == 0 and "wrong_rate_answered" in table.stdout
    missing = runner.invoke(app, ["calibrate", str(tmp_path / "nope"), "--out", "p.json"])
    assert missing.exit_code == 2 and "no run at" in missing.output
    bad = runner.invoke(app, ["eval", "run", "--dataset", str(tmp_path / "nope.jsonl"),
                              "--graph", "triage", "--out", str(tmp_path / "r")])
    assert bad.exit_code == 2 and "neither a file nor a world split" in bad.output
