"""The triage graph and the baselines, driven through the public API with scripted roles."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from knowgate import GRAPHS, Knowgate, UserError, load_settings
from knowgate.cli import app
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.roles import Passage
from knowgate.testing import (
    Fail,
    Hang,
    ScriptedAnswerer,
    ScriptedCritic,
    ScriptedProber,
    ScriptedSearcher,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
Q = "Where was Ada Vell born?"
GOLD = Passage(id="p1", text="Ada Vell was born in Kedal.", score=1.5, support=1.0)
PRICES = Prices(draft=0.000003, search=0.00003, refine=0.0003)


def make(answerer=None, searcher=None, critic=None, prober=None, policy=None,
         timeout_s: float = 5.0, settings=None) -> Knowgate:
    context = TriageContext(
        answerer=answerer or ScriptedAnswerer(), searcher=searcher or ScriptedSearcher(),
        critic=critic or ScriptedCritic(), prober=prober, policy=policy or Policy.load(),
        prices=PRICES, role_timeout_s=timeout_s,
    )
    return Knowgate(settings or load_settings(), context=context)


async def test_a_sure_draft_is_answered_without_help() -> None:
    searcher, critic = ScriptedSearcher(), ScriptedCritic()
    kg = make(ScriptedAnswerer(closed={Q: ("Kedal", 0.999)}), searcher, critic)
    result = await kg.ask(Q)
    assert (result.outcome, result.answer, result.path) == ("answered", "Kedal", ["draft", "answer"])
    assert searcher.calls == [] and critic.calls == []
    assert result.confidence > 0.9
    assert result.cost_usd == pytest.approx(0.000003)


async def test_an_unsure_draft_searches_and_cites() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.4)}, opened={Q: ("Kedal", 0.99)})
    searcher = ScriptedSearcher(results={Q: ([GOLD], 1.0)})
    result = await make(answerer, searcher).ask(Q)
    assert result.path == ["draft", "search", "draft", "answer"]
    assert (result.outcome, result.answer, result.citations) == ("answered", "Kedal", ["p1"])
    assert answerer.calls == [(Q, 0), (Q, 1)]
    assert result.cost_usd == pytest.approx(2 * 0.000003 + 0.00003)
    assert result.ledger["searcher"] == {"calls": 1, "cost_usd": pytest.approx(0.00003)}
    assert "P(correct)=" in result.steps[1].reason  # the policy's reason travels with the step


async def test_confident_reading_of_an_unsupported_passage_goes_to_the_critic() -> None:
    wrong = Passage(id="p9", text="Ada Roth was born in Piton.", score=1.1, support=0.5)
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.4)}, opened={Q: ("Piton", 0.99)})
    critic = ScriptedCritic(verdicts={Q: ("revise", "Zaora", 0.999)})
    result = await make(answerer, ScriptedSearcher(results={Q: ([wrong], 0.5)}), critic).ask(Q)
    assert result.path == ["draft", "search", "draft", "refine", "answer"]
    assert (result.outcome, result.answer, result.citations) == ("answered", "Zaora", [])


async def test_nobody_knows_so_it_abstains() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)}, opened={Q: ("Badal", 0.2)})
    critic = ScriptedCritic(verdicts={Q: ("revise", "Neburg", 0.5)})
    result = await make(answerer, ScriptedSearcher(results={Q: ([GOLD], 1.0)}), critic).ask(Q)
    assert result.outcome == "abstained" and result.answer is None
    assert result.path == ["draft", "search", "draft", "refine", "abstain"]
    assert result.steps[-1].reason.startswith("P(correct)=")


async def test_a_search_is_bought_for_the_critic_to_read_when_drafts_from_it_are_never_trusted(
        ) -> None:
    # A fast model that reads badly: its drafts from evidence never succeed (rate 0), but the
    # critic reading the same evidence does more often than the critic from memory. One step
    # ahead, searching is worth nothing and the critic goes closed-book; two steps ahead the
    # search pays for the critic's reading.
    policy = Policy.load().model_copy(update={
        "success": Policy.load().success.model_copy(update={
            "search_first": 0.0, "refine_unsearched": 0.1, "refine_searched": 0.6}),
        "success_maps": {}, "search_first_below": None})
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)}, opened={Q: ("Badal", 0.3)})
    critic = ScriptedCritic(verdicts={Q: ("revise", "Kedal", 0.999)})
    searcher = ScriptedSearcher(results={Q: ([GOLD], 1.0)})
    result = await make(answerer, searcher, critic, policy=policy).ask(Q)
    assert result.path == ["draft", "search", "draft", "refine", "answer"]
    assert (result.outcome, result.answer) == ("answered", "Kedal")
    # With no critic round left after it, the same search is not worth its price.
    no_refine = policy.model_copy(update={"max_refines": 0})
    result = await make(answerer, ScriptedSearcher(results={Q: ([GOLD], 1.0)}), critic,
                        policy=no_refine).ask(Q)
    assert result.path == ["draft", "abstain"]


async def test_probe_signals_are_recorded() -> None:
    prober = ScriptedProber(signals={Q: {"query_top_prob": 0.99}})
    result = await make(ScriptedAnswerer(closed={Q: ("Kedal", 0.999)}), prober=prober).ask(Q)
    assert result.path == ["probe", "draft", "probe", "answer"]
    assert prober.calls == [(Q, None), (Q, "Kedal")]
    assert result.signals["query_top_prob"] == 0.99
    assert result.signals["answerer_confidence"] == 0.999


async def test_search_first_skips_the_answerer_when_the_query_probe_says_so() -> None:
    policy = Policy.load().model_copy(update={"search_first_below": 0.9})
    prober = ScriptedProber(signals={Q: {"query_top_prob": 0.1}})
    answerer = ScriptedAnswerer(opened={Q: ("Kedal", 0.99)})
    result = await make(answerer, ScriptedSearcher(results={Q: ([GOLD], 1.0)}),
                        prober=prober, policy=policy).ask(Q)
    assert result.path[:3] == ["probe", "search", "draft"]
    assert answerer.calls == [(Q, 1)]  # no closed-book call was paid for
    assert result.answer == "Kedal"


# --- faults: every failure ends in a typed outcome with the reason in the trace -------------


async def test_answerer_failure_falls_back_to_the_critic() -> None:
    answerer = ScriptedAnswerer(closed={Q: Fail("provider returned 500 after 2 retries")})
    critic = ScriptedCritic(verdicts={Q: ("revise", "Kedal", 0.999)})
    result = await make(answerer, critic=critic).ask(Q)
    assert result.outcome == "answered" and result.answer == "Kedal"
    failed = [s for s in result.steps if s.error]
    assert len(failed) == 1 and failed[0].action == "draft" and "500" in failed[0].reason
    assert "search" not in result.path  # reading needs the answerer, which is down


async def test_a_hanging_answerer_times_out() -> None:
    answerer = ScriptedAnswerer(closed={Q: Hang(30)})
    started = time.perf_counter()
    result = await make(answerer, timeout_s=0.2).ask(Q)
    assert time.perf_counter() - started < 5
    assert result.outcome in ("answered", "abstained")
    assert any(s.error and "within 0.2 s" in s.reason for s in result.steps)


async def test_search_backend_down_goes_to_the_critic() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)})
    searcher = ScriptedSearcher(results={Q: Fail("chromadb unreachable")})
    critic = ScriptedCritic(verdicts={Q: ("revise", "Kedal", 0.999)})
    result = await make(answerer, searcher, critic).ask(Q)
    assert result.path == ["draft", "search", "refine", "answer"]
    assert result.steps[1].error and "chromadb unreachable" in result.steps[1].reason
    assert result.answer == "Kedal"


async def test_critic_failure_ends_in_answer_or_abstain() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)}, opened={Q: ("Badal", 0.3)})
    critic = ScriptedCritic(verdicts={Q: Fail("timeout")})
    result = await make(answerer, ScriptedSearcher(results={Q: ([GOLD], 1.0)}), critic).ask(Q)
    assert result.outcome == "abstained"
    assert [s.action for s in result.steps if s.error] == ["refine"]


async def test_everything_down_still_abstains() -> None:
    result = await make(ScriptedAnswerer(closed={Q: Fail()}),
                        ScriptedSearcher(results={Q: Fail()}),
                        ScriptedCritic(verdicts={Q: Fail()}),
                        ScriptedProber(signals={Q: Fail()})).ask(Q)
    assert result.outcome == "abstained"
    assert {s.action for s in result.steps if s.error} == {"probe", "draft", "refine"}


async def test_budget_bounds_spending() -> None:
    policy = Policy.load().model_copy(update={"budget_usd": 0.00001})
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)})
    searcher, critic = ScriptedSearcher(results={Q: ([GOLD], 1.0)}), ScriptedCritic()
    result = await make(answerer, searcher, critic, policy=policy).ask(Q)
    assert result.path == ["draft", "abstain"]
    assert searcher.calls == [] and critic.calls == []
    assert result.cost_usd <= 0.00001


async def test_rounds_are_bounded() -> None:
    policy = Policy.load().model_copy(update={"max_searches": 0, "max_refines": 0})
    result = await make(ScriptedAnswerer(closed={Q: ("Badal", 0.3)}), policy=policy).ask(Q)
    assert result.path == ["draft", "abstain"]


# --- baselines, registry, drawings ---------------------------------------------------------


async def test_baselines_follow_their_fixed_paths() -> None:
    answerer = ScriptedAnswerer(closed={Q: ("Badal", 0.3)}, opened={Q: ("Kedal", 0.9)})
    searcher = ScriptedSearcher(results={Q: ([GOLD], 1.0)})
    critic = ScriptedCritic(verdicts={Q: ("abstain", "", 0.2)})
    kg = make(answerer, searcher, critic)
    fast = await kg.ask(Q, graph="fast-only")
    assert (fast.path, fast.answer) == (["draft", "answer"], "Badal")
    rag = await kg.ask(Q, graph="always-search")
    assert (rag.path, rag.answer) == (["search", "draft", "answer"], "Kedal")
    refine = await kg.ask(Q, graph="always-refine")
    assert (refine.path, refine.outcome) == (["draft", "refine", "abstain"], "abstained")


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_drawings_match_the_snapshots(name: str) -> None:
    shown = CliRunner().invoke(app, ["graph", "show", name])
    assert shown.exit_code == 0, shown.output
    assert shown.output == (SNAPSHOTS / f"graph-{name}.mmd").read_text()


def test_unknown_graph_is_a_user_error() -> None:
    shown = CliRunner().invoke(app, ["graph", "show", "nope"])
    assert shown.exit_code == 2 and "unknown graph" in shown.output


async def test_bad_questions_are_user_errors() -> None:
    kg = make()
    with pytest.raises(UserError, match="empty"):
        await kg.ask("   ")
    with pytest.raises(UserError, match="characters"):
        await kg.ask("x" * 9000)
    with pytest.raises(UserError, match="unknown graph"):
        await kg.ask(Q, graph="nope")


def test_policy_files_are_validated(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({"reward_usd": -1}))
    with pytest.raises(UserError, match="invalid policy"):
        Policy.load(bad)
    with pytest.raises(UserError, match="not found"):
        Policy.load(tmp_path / "missing.json")
    assert "calibration split" in Policy.load().source


async def test_runs_are_checkpointed_per_thread(tmp_path: Path) -> None:
    db = tmp_path / "threads.sqlite"
    answerer = ScriptedAnswerer(closed={Q: ("Kedal", 0.999), "Who?": ("Bo", 0.999)})
    kg = make(answerer, settings=load_settings(checkpoint_db=db))
    first = await kg.ask(Q, thread_id="t1")
    second = await kg.ask("Who?", thread_id="t1")
    assert first.thread_id == second.thread_id == "t1"
    assert second.path == ["draft", "answer"] and second.answer == "Bo"
    rows = sqlite3.connect(db).execute(
        "select count(*) from checkpoints where thread_id = 't1'").fetchone()[0]
    assert rows > 0


async def test_concurrent_questions_do_not_share_state() -> None:
    questions = {f"q{i}?": (f"a{i}", 0.999) for i in range(20)}
    kg = make(ScriptedAnswerer(closed=questions))
    results = await asyncio.gather(*(kg.ask(q) for q in questions))
    assert [r.answer for r in results] == [a for a, _ in questions.values()]


# --- composing: developers build their own graphs from the same nodes -----------------------


def _search_then_refine(checkpointer=None):
    from langgraph.graph import END, START, StateGraph

    from knowgate.graphs import nodes
    from knowgate.graphs.state import TriageState

    graph = StateGraph(TriageState, context_schema=TriageContext)
    for name in ("search", "refine", "answer", "abstain"):
        graph.add_node(name, getattr(nodes, name))
    graph.add_edge(START, "search")
    graph.add_edge("search", "refine")
    graph.add_conditional_edges("refine", nodes.answer_or_abstain)
    graph.add_edge("answer", END)
    graph.add_edge("abstain", END)
    return graph.compile(checkpointer=checkpointer)


async def test_a_composed_graph_registers_and_runs() -> None:
    from knowgate import register_graph

    register_graph("test-search-then-refine", _search_then_refine)
    try:
        critic = ScriptedCritic(verdicts={Q: ("revise", "Kedal", 0.99)})
        kg = make(searcher=ScriptedSearcher(results={Q: ([GOLD], 1.0)}), critic=critic)
        result = await kg.ask(Q, graph="test-search-then-refine")
        assert result.path == ["search", "refine", "answer"]
        assert (result.answer, result.citations) == ("Kedal", ["p1"])
        with pytest.raises(UserError, match="taken"):
            register_graph("test-search-then-refine", _search_then_refine)
    finally:
        GRAPHS.pop("test-search-then-refine")


async def test_node_updates_are_validated() -> None:
    from langgraph.graph import END, START, StateGraph
    from pydantic import ValidationError

    from knowgate.graphs.state import TriageState, validated

    @validated
    async def broken(state, runtime):
        return {"steps": ["not a step"]}

    graph = StateGraph(TriageState, context_schema=TriageContext)
    graph.add_node("broken", broken)
    graph.add_edge(START, "broken")
    graph.add_edge("broken", END)
    composed = make().graph("triage")
    with pytest.raises(ValidationError):
        await graph.compile().ainvoke(TriageState(question=Q), context=composed.context)


async def test_composed_graph_runs_to_a_final_state() -> None:
    composed = make(ScriptedAnswerer(closed={Q: ("Kedal", 0.999)})).graph("triage")
    final = await composed.run(Q)
    assert final.outcome is not None and final.outcome.answer == "Kedal"
    assert "decide" in composed.graph.get_graph().nodes
