"""From settings to answers: build the roles once, run any registered graph, return a trace.

``Knowgate`` is the long-lived object (the server and batch runs hold one); ``knowgate.ask`` is the
one-call convenience over a ``Knowgate`` kept per settings in this process. The roles come from
the composition root (``knowgate.composition``); the graphs from their registry.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from knowgate.composition import build_context
from knowgate.errors import KnowgateError, UserError
from knowgate.graphs.compose import compile_graph, require_graph
from knowgate.graphs.direct import NodeHooks, run_graph, with_hooks
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.state import Step, TriageState
from knowgate.roles import Turn
from knowgate.settings import Settings, load_settings

MAX_QUESTION_CHARS = 8000


class AskResult(BaseModel):
    """What one question came to.

    Attributes:
        question: The question asked.
        graph: The graph that ran.
        outcome: ``answered``, ``abstained``, or ``error`` (the graph itself could not run).
        answer: The answer, when answered.
        confidence: Calibrated P(correct) of the answer (or of the best rejected one).
        steps: What was done, with reasons, dollars and seconds.
        cost_usd: Dollars spent in total.
        latency_s: Wall-clock seconds.
        citations: Ids of the passages that back the answer.
        signals: Every signal gathered, by name.
        ledger: Dollars and calls by role.
        error: What went wrong, for ``error`` outcomes.
        thread_id: The checkpointer thread, when one was used.
    """

    question: str
    graph: str
    outcome: Literal["answered", "abstained", "error"]
    answer: str | None = None
    confidence: float = 0.0
    steps: list[Step] = Field(default_factory=list)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    citations: list[str] = Field(default_factory=list)
    signals: dict[str, float] = Field(default_factory=dict)
    ledger: dict[str, dict[str, float]] = Field(default_factory=dict)
    error: str | None = None
    thread_id: str | None = None

    @property
    def path(self) -> list[str]:
        """The actions taken, in order."""
        return [step.action for step in self.steps]


def _check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise UserError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise UserError(f"the question has {len(question)} characters; at most "
                        f"{MAX_QUESTION_CHARS} are accepted")
    return question.strip()


@dataclass(frozen=True)
class ComposedGraph:
    """A compiled graph together with the roles it runs with.

    Attributes:
        name: The registered name.
        graph: The compiled LangGraph graph (``graph.get_graph().draw_mermaid()``, streaming ...).
        context: The roles, policy and prices every run gets as its runtime context.
    """

    name: str
    graph: Any
    context: TriageContext

    async def run(self, question: str, history: Sequence[Turn] = (),
                  config: dict[str, Any] | None = None,
                  hooks: NodeHooks | None = None) -> TriageState:
        """Run one question to the end and return the final state (steps, outcome ...);
        ``hooks`` are told about every node (``knowgate.graphs.direct.NodeHooks``)."""
        state = TriageState(question=_check_question(question), history=list(history))
        final = await run_graph(self.graph, state, context=self.context, config=config,
                                hooks=hooks)
        return TriageState.model_validate(final)


class Knowgate:
    """Roles built once from settings, ready to run any registered graph many times.

    Args:
        settings: Settings to build roles from (``load_settings()`` when omitted).
        context: Prebuilt roles (fakes from ``knowgate.testing``, or your own); skips building.
        checkpointer: An open LangGraph checkpointer (``AsyncSqliteSaver``,
            ``AsyncPostgresSaver`` ...) to checkpoint every run to, instead of opening
            ``settings.checkpoint_db`` per run; the caller owns its connection.
    """

    def __init__(self, settings: Settings | None = None,
                 context: TriageContext | None = None, checkpointer: Any = None) -> None:
        self.settings = settings or load_settings()
        self._context = context
        self.checkpointer = checkpointer
        self._graphs: dict[str, Any] = {}
        self._checkpointed_graphs: dict[str, Any] = {}

    @property
    def context(self) -> TriageContext:
        """The roles, built on first use."""
        if self._context is None:
            self._context = build_context(self.settings)
        return self._context

    def graph(self, name: str) -> ComposedGraph:
        """The registered graph ``name`` with these roles (compiled once, no checkpointer).

        Raises:
            UserError: No graph has that name.
        """
        if name not in self._graphs:
            self._graphs[name] = compile_graph(name)
        return ComposedGraph(name, self._graphs[name], self.context)

    async def ask(self, question: str, graph: str = "triage", history: Sequence[Turn] = (),
                  thread_id: str | None = None,
                  config: dict[str, Any] | None = None,
                  hooks: NodeHooks | None = None) -> AskResult:
        """Run ``question`` through ``graph`` and return the outcome with its trace.

        With a ``checkpointer`` or ``settings.checkpoint_db``, the run is checkpointed under
        ``thread_id`` (a new id when omitted), so it can be inspected or resumed later.
        ``config`` adds LangGraph run-config entries (``callbacks`` for tracing, ``tags`` ...;
        callbacks run the graph on Pregel). ``hooks`` are told about every node whichever
        engine runs it (``knowgate.graphs.direct.NodeHooks``).

        Raises:
            UserError: The question is empty or too long, or the graph is unknown.
        """
        question = _check_question(question)
        require_graph(graph)  # an unknown name is a UserError before any model loads
        started = time.perf_counter()
        try:
            composed = self.graph(graph)
            if self.checkpointer is None and self.settings.checkpoint_db is None:
                final = await composed.run(question, history, config, hooks)
            else:
                thread_id = thread_id or uuid.uuid4().hex
                final = await self._checkpointed(composed, question, history, thread_id,
                                                 with_hooks(config, hooks))
        except UserError:
            raise
        except KnowgateError as exc:  # roles failing is handled in the graph; this is setup
            return AskResult(question=question, graph=graph, outcome="error",
                             error=str(exc), latency_s=round(time.perf_counter() - started, 6))
        return _result(final, graph, time.perf_counter() - started, thread_id)

    async def _checkpointed(self, composed: ComposedGraph, question: str,
                            history: Sequence[Turn], thread_id: str,
                            extra: dict[str, Any]) -> TriageState:
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        config = {**extra, "configurable": {**extra.get("configurable", {}),
                                            "thread_id": thread_id}}
        state = TriageState(question=question, history=list(history))
        # Every field is passed explicitly so that a new question on an old thread starts
        # from a clean slate rather than the last question's draft and steps (the steps'
        # reducer would append to the old ones: they are overwritten).
        from langgraph.types import Overwrite

        fresh = {name: getattr(state, name) for name in TriageState.model_fields}
        fresh["steps"] = Overwrite([])
        if self.checkpointer is not None:
            if composed.name not in self._checkpointed_graphs:  # compiled once per graph
                self._checkpointed_graphs[composed.name] = compile_graph(
                    composed.name, checkpointer=self.checkpointer)
            compiled = self._checkpointed_graphs[composed.name]
            final = await compiled.ainvoke(fresh, config=config, context=composed.context)
            return TriageState.model_validate(final)
        path = self.settings.checkpoint_db
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(str(path)) as conn:
            saver = AsyncSqliteSaver(conn, serde=checkpoint_serde())
            compiled = compile_graph(composed.name, checkpointer=saver)
            final = await compiled.ainvoke(fresh, config=config, context=composed.context)
        return TriageState.model_validate(final)


def checkpoint_serde() -> Any:
    """LangGraph's serializer, allowed to restore knowgate's own state types (and only them)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from knowgate import roles
    from knowgate.graphs import state

    allowed = [(module.__name__, name) for module, names in (
        (roles, ("Draft", "Signals", "Evidence", "Verdict", "Turn", "TokenLogprob", "Usage",
                 "Passage")),
        (state, ("Step", "Candidate", "Decision", "Outcome")),
    ) for name in names]
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


def _result(state: TriageState, graph: str, seconds: float,
            thread_id: str | None) -> AskResult:
    steps = state.steps
    outcome = state.outcome
    if outcome is None:  # a composed graph that ended without answer/abstain
        return AskResult(question=state.question, graph=graph, outcome="error", steps=steps,
                         error="the graph ended without an outcome",
                         cost_usd=round(sum(s.cost_usd for s in steps), 10),
                         latency_s=round(seconds, 6), thread_id=thread_id)
    return AskResult(
        question=state.question,
        graph=graph,
        outcome=outcome.kind,
        answer=outcome.answer,
        confidence=outcome.confidence,
        steps=steps,
        cost_usd=round(sum(s.cost_usd for s in steps), 10),
        latency_s=round(seconds, 6),
        citations=outcome.citations,
        signals=state.signals.values,
        ledger=state.ledger(),
        thread_id=thread_id,
    )
