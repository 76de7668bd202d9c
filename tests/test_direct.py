"""Graphs run directly (``knowgate.graphs.direct``) give the states Pregel gives, node by node."""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langgraph.errors import GraphRecursionError, InvalidUpdateError
from langgraph.graph import END, START
from langgraph.types import Command, RetryPolicy
from pydantic import BaseModel

from knowgate.evals.graphs import EVAL_GRAPHS, ORACLE_ROUTES, compile_eval_graph
from knowgate.graphs.compose import GRAPHS
from knowgate.graphs.direct import MachineGraph, direct_plan, run_graph, run_values
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.graphs.state import TriageState
from knowgate.roles import Passage
from knowgate.testing import (
    Fail,
    ScriptedAnswerer,
    ScriptedCritic,
    ScriptedProber,
    ScriptedSearcher,
)

GOLD = Passage(id="p1", text="Ada Vell was born in Kedal.", score=1.5, support=1.0)
# One question per path the policy can take, with the oracle's class for each.
SCENARIOS = {
    "Where was Ada Vell born?": "fast-known",          # a sure draft
    "Where was Bo Rinn born?": "searchable",           # unsure, the passage makes it sure
    "Where was Cy Tal born?": "slow-known",            # unsure, nothing found, the critic knows
    "Where was Di Omer born?": "unanswerable",         # nobody knows
    "Where was Ed Vasq born?": "searchable",           # the searcher is down
}


def context() -> TriageContext:
    qs = list(SCENARIOS)
    answerer = ScriptedAnswerer(
        closed={qs[0]: ("Kedal", 0.999), qs[1]: ("Badal", 0.4), qs[2]: ("Tarn", 0.3),
                qs[3]: ("Mott", 0.2), qs[4]: ("Oslo", 0.35)},
        opened={qs[1]: ("Kedal", 0.99), qs[4]: ("Oslo", 0.9)})
    searcher = ScriptedSearcher(results={qs[1]: ([GOLD], 1.0), qs[4]: Fail("index down")})
    critic = ScriptedCritic(verdicts={qs[2]: ("revise", "Lund", 0.97)})
    prober = ScriptedProber(signals={q: {"query_entropy": 0.5 + i / 10}
                                     for i, q in enumerate(qs)})
    return TriageContext(answerer=answerer, searcher=searcher, critic=critic, prober=prober,
                         policy=Policy.load(),
                         prices=Prices(draft=0.000003, search=0.00003, refine=0.0003),
                         role_timeout_s=5.0)


def _comparable(state: BaseModel) -> dict[str, Any]:
    """The state without wall-clock latencies, which differ between two runs."""
    values = state.model_dump()
    for step in values.get("steps", []):
        step.pop("latency_s", None)
    return values


async def _pregel(graph: Any, state: BaseModel, ctx: Any, config: dict[str, Any]) -> list:
    return [_comparable(type(state).model_validate(v)) async for v in
            graph.astream(state, config=config, context=ctx, stream_mode="values")]


async def _direct(graph: Any, state: BaseModel, ctx: Any, config: dict[str, Any]) -> list:
    assert direct_plan(graph, config) is not None
    return [_comparable(v) async for v in run_values(graph, state, context=ctx, config=config)]


@pytest.mark.parametrize("name", sorted({*GRAPHS, *EVAL_GRAPHS}))
async def test_every_registered_graph_gives_pregels_states_when_run_directly(name: str) -> None:
    graph = compile_eval_graph(name)
    assert direct_plan(graph) is not None, f"{name} would fall back to Pregel"
    paths = set()
    for question, kind in SCENARIOS.items():
        config = {"configurable": {"kind": kind}}
        state = TriageState(question=question)
        expected = await _pregel(graph, state, context(), config)
        got = await _direct(graph, state, context(), config)
        assert got == expected, (name, question)
        paths.add(tuple(s["action"] for s in got[-1]["steps"]))
        assert got[-1]["outcome"] is not None
    if name in ("triage", "oracle"):
        assert len(paths) >= 4, paths  # the scenarios take different ways through the graph


async def test_an_oracle_record_without_a_class_fails_alike_on_both_engines() -> None:
    graph = compile_eval_graph("oracle")
    assert "nobody" not in ORACLE_ROUTES
    state = TriageState(question="Where was Ada Vell born?")
    config = {"configurable": {"kind": "nobody"}}
    for run in (_pregel, _direct):
        with pytest.raises(Exception, match="the oracle needs a class label"):
            await run(graph, state, context(), config)


class Tally(BaseModel):
    n: int = 0
    seen: Annotated[list[str], operator.add] = []


async def count(state: Tally) -> dict[str, Any]:
    return {"n": state.n + 1, "seen": [f"count{state.n}"]}


def again(state: Tally) -> str:
    return "count" if state.n < 3 else END


def tally_graph(**node_options: Any) -> Any:
    graph = MachineGraph(Tally)
    graph.add_node("count", count, **node_options)
    graph.add_edge(START, "count")
    graph.add_conditional_edges("count", again, ["count", END])
    return graph.compile()


async def test_a_reducer_field_and_a_loop_run_as_on_pregel() -> None:
    graph = tally_graph()
    direct = [v.model_dump() async for v in run_values(graph, Tally(), config={})]
    pregel = [Tally.model_validate(v).model_dump()
              async for v in graph.astream(Tally(), stream_mode="values")]
    assert direct == pregel
    assert direct[-1] == {"n": 3, "seen": ["count0", "count1", "count2"]}


async def test_a_loop_past_the_recursion_limit_raises_on_both_engines() -> None:
    graph = tally_graph()
    config = {"recursion_limit": 2}
    with pytest.raises(GraphRecursionError):
        await run_graph(graph, Tally(), config=config)
    with pytest.raises(GraphRecursionError):
        await graph.ainvoke(Tally(), config=config)


async def test_graphs_that_need_pregel_run_on_pregel() -> None:
    # A node option, fan-out, a checkpointer or callbacks: run_values hands over to Pregel.
    from langchain_core.callbacks import AsyncCallbackHandler
    from langgraph.checkpoint.memory import InMemorySaver

    retried = tally_graph(retry_policy=RetryPolicy(max_attempts=2))
    assert direct_plan(retried) is None
    assert (await run_graph(retried, Tally())).n == 3

    fan = MachineGraph(Tally)
    fan.add_node("a", count)
    fan.add_node("b", count)
    fan.add_edge(START, "a")
    fan.add_edge(START, "b")
    assert direct_plan(fan.compile()) is None

    builder = MachineGraph(Tally)
    builder.add_node("count", count)
    builder.add_edge(START, "count")
    assert direct_plan(builder.compile()) is not None
    assert direct_plan(builder.compile(checkpointer=InMemorySaver())) is None

    class Nodes(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.names: list[str] = []

        async def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
            self.names.append(kwargs.get("name") or "")

    handler = Nodes()
    config = {"callbacks": [handler]}
    assert direct_plan(tally_graph(), config) is None
    assert (await run_graph(tally_graph(), Tally(), config=config)).n == 3
    assert handler.names.count("count") == 3  # the callbacks saw every node


async def test_a_node_that_routes_itself_runs_on_pregel_and_an_unannotated_one_is_an_error() -> None:
    async def annotated(state: Tally) -> Command[str]:
        return Command(update={"n": 7}, goto=END)

    async def unannotated(state: Tally):  # noqa: ANN202 - the point: no annotation says Command
        return Command(update={"n": 7}, goto=END)

    def graph_of(node: Any) -> Any:
        graph = MachineGraph(Tally)
        graph.add_node("jump", node)
        graph.add_edge(START, "jump")
        return graph.compile()

    assert direct_plan(graph_of(annotated)) is None
    assert (await run_graph(graph_of(annotated), Tally())).n == 7
    with pytest.raises(InvalidUpdateError, match="return dict updates"):
        await run_graph(graph_of(unannotated), Tally())


class Recorder:
    """``NodeHooks`` that write down what they are told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []

    async def node_started(self, node: str, state: Any) -> None:
        steps = getattr(state, "steps", None)
        if steps is None and isinstance(state, dict):
            steps = state.get("steps", [])
        self.events.append(("started", node, len(steps or [])))

    async def node_finished(self, node: str, update: dict[str, Any]) -> None:
        self.events.append(("finished", node, sorted(update)))

    async def node_failed(self, node: str, error: BaseException) -> None:
        self.events.append(("failed", node, type(error).__name__))


async def test_node_hooks_hear_the_same_nodes_and_updates_from_both_engines() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from knowgate.graphs.compose import build_triage_graph

    question = "Where was Bo Rinn born?"  # unsure, searched, read: several nodes
    direct, pregel = Recorder(), Recorder()
    state = TriageState(question=question)
    await run_graph(compile_eval_graph("triage"), state, context=context(), hooks=direct)
    checkpointed = build_triage_graph(checkpointer=InMemorySaver())
    assert direct_plan(checkpointed) is None  # a checkpointer: Pregel
    await run_graph(checkpointed, state, context=context(), hooks=pregel,
                    config={"configurable": {"thread_id": "t1"}})
    assert direct.events == pregel.events
    nodes = [node for kind, node, _ in direct.events if kind == "started"]
    assert nodes[:4] == ["probe", "decide", "draft", "probe"] and nodes[-1] == "answer"
    assert ("finished", "search", ["evidence", "signals", "steps"]) in direct.events
    assert ("started", "answer", 6) in direct.events  # the state it started from: six steps

    async def boom(state: Tally) -> dict[str, Any]:
        raise RuntimeError("node down")

    graph = MachineGraph(Tally)
    graph.add_node("boom", boom)
    graph.add_edge(START, "boom")
    failed = Recorder()
    with pytest.raises(RuntimeError, match="node down"):
        await run_graph(graph.compile(), Tally(), hooks=failed)
    assert failed.events == [("started", "boom", 0), ("failed", "boom", "RuntimeError")]


async def test_a_failing_hook_is_logged_and_the_run_goes_on(caplog) -> None:
    class Broken(Recorder):
        async def node_finished(self, node: str, update: dict[str, Any]) -> None:
            raise RuntimeError("tracer down")

    hooks = Broken()
    final = await run_graph(tally_graph(), Tally(), hooks=hooks)
    assert final.n == 3
    assert [kind for kind, _, _ in hooks.events] == ["started"] * 3
    assert caplog.text.count("node hook node_finished('count') failed") == 3
