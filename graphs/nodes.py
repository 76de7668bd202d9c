"""The nodes every knowgate graph is built from, and the routers between them.

Each node is an async function ``(state, runtime) -> partial update`` that calls at most one
role through its protocol (roles travel in ``runtime.context``, a ``TriageContext``). A role that
fails or times out does not end the question: the node records a step with ``error=True`` and the
reason, adds the role to ``failed``, and the policy carries on without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from langgraph.runtime import Runtime

from knowgate.grading import states
from knowgate.graphs.history import refers_back
from knowgate.graphs.kinds import ABSTAIN, ANSWER, DRAFT, PROBE, REFINE, SEARCH, NodeKind
from knowgate.graphs.policy import Policy, Prices
from knowgate.graphs.state import Candidate, Choice, Node, Outcome, Step, TriageState, validated
from knowgate.roles import (
    Answerer,
    Critic,
    Draft,
    Evidence,
    Passage,
    Prober,
    RoleError,
    Searcher,
    Signals,
    Verdict,
)
from knowgate.signals import SIGNALS

_Result = TypeVar("_Result")


@dataclass(frozen=True)
class TriageContext:
    """The dependencies of a graph run: roles, policy, prices and limits (immutable).

    A role left as ``None`` is absent: graphs that need it skip it and the policy never picks it.
    """

    answerer: Answerer | None
    policy: Policy
    prices: Prices = Prices()
    searcher: Searcher | None = None
    critic: Critic | None = None
    prober: Prober | None = None
    role_timeout_s: float = 120.0
    evidence_passages: int = 1
    # Scores an open-book draft against the evidence sentence it came from (``evidence_match``;
    # ``knowgate.tools.evidence_match.EvidenceMatcher``); ``None``: the signal is not read.
    matcher: Callable[[str, str, Sequence[Passage]], Awaitable[float]] | None = None
    # Reads the critic's answer after a search from the inside: the critic model's hidden
    # states over the passages and its answer (``knowgate.agents.prober.EvidenceReader``);
    # ``None``: those signals are not read.
    reader: Reader | None = None


class Reader(Protocol):
    """Signals of an answer given from evidence (``TriageContext.reader``).

    Attributes:
        names: The signals it writes (a new verdict's reading replaces the last one's).
    """

    names: tuple[str, ...]

    async def __call__(self, question: str, answer: str,
                       passages: Sequence[Passage]) -> Signals:
        """The signals of ``answer``, given to ``question`` from ``passages``."""
        ...


async def _call(role: str, impl: Callable[..., Awaitable[_Result]] | None, timeout_s: float,
                *args: Any, **kwargs: Any) -> tuple[_Result | None, RoleError | None, float]:
    """Call the role ``impl(*args, **kwargs)``, bounded in time.

    A missing role, a failure or a timeout comes back as a ``RoleError``, never raised.
    """
    if impl is None:
        return None, RoleError(role, f"no {role} configured"), 0.0
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(impl(*args, **kwargs), timeout_s)
    except RoleError as exc:
        return None, exc, time.perf_counter() - started
    except TimeoutError:
        error = RoleError(role, f"no answer within {timeout_s:g} s")
        return None, error, time.perf_counter() - started
    except Exception as exc:  # a user's role raising anything else still only fails that role
        error = RoleError(role, f"{type(exc).__name__}: {exc}")
        return None, error, time.perf_counter() - started
    return result, None, time.perf_counter() - started


@dataclass(frozen=True)
class RoleCall:
    """What calling a node's role came to (``call_role``).

    Attributes:
        result: What the role returned (``None`` when it failed).
        failure: The state update that records the failure (``None`` when it worked): the
            role joins ``failed`` and a step with ``error=True`` says why.
        seconds: How long the call took.
    """

    result: Any
    failure: dict[str, Any] | None
    seconds: float


async def call_role(state: TriageState, ctx: TriageContext, kind: NodeKind, *args: Any,
                    **kwargs: Any) -> RoleCall:
    """Call the role ``kind.role`` of ``ctx`` with ``args``, bounded by the role timeout, as the
    stock nodes do: a role that is absent, raises or times out comes back as
    ``RoleCall.failure``, never raised."""
    assert kind.role is not None, f"{kind.action} calls no role"
    result, error, seconds = await _call(kind.role, getattr(ctx, kind.role, None),
                                         ctx.role_timeout_s, *args, **kwargs)
    if error is not None:
        return RoleCall(None, failure_update(state, kind, error, seconds), seconds)
    return RoleCall(result, None, seconds)


def failure_update(state: TriageState, kind: NodeKind, error: RoleError,
                   seconds: float) -> dict[str, Any]:
    """The update recording that a ``kind`` node's role failed (what it spent stays billed)."""
    step = kind.step(f"failed: {error.reason}", cost_usd=error.cost_usd, latency_s=seconds,
                     error=True)
    return {"failed": sorted({*state.failed, error.role}), "steps": [step]}


def merge_signals(state: TriageState, **values: float) -> Signals:
    """The state's signals with ``values`` added (a name given again replaces its value); a
    name no declaration holds is warned about once (``SignalRegistry.check``)."""
    SIGNALS.check(values)
    return Signals(values={**state.signals.values, **values})


async def _matched(ctx: TriageContext, question: str, answer: str, passages: list[Passage],
                   name: str, signals: dict[str, float], step: Step, latency: float) -> Step:
    """Score ``answer`` against the evidence (``ctx.matcher``) into ``signals[name]`` and return
    ``step`` with the score in its reason; its time is the role's ``latency`` and the
    matcher's, both spent before the next decision. A failing matcher costs only the signal
    (the policy then reads a map's fallback)."""
    match, error, seconds = await _call("matcher", ctx.matcher, ctx.role_timeout_s,
                                        question, answer, passages)
    if match is not None:
        signals[name] = match
    said = f"evidence match {match:.3f}" if match is not None else str(error)
    return step.model_copy(update={"reason": f"{step.reason}; {said}",
                                   "latency_s": round(latency + seconds, 6)})


async def _read(ctx: TriageContext, question: str, answer: str, passages: list[Passage],
                signals: dict[str, float], step: Step, latency: float) -> Step:
    """Read ``answer`` given from ``passages`` (``ctx.reader``) into ``signals`` and return
    ``step`` with the reading's signals, price and time added. A failing reader costs only its
    signals (the policy then reads a map's fallback)."""
    assert ctx.reader is not None
    read, error, seconds = await _call("reader", ctx.reader, ctx.role_timeout_s,
                                       question, answer, passages)
    if read is not None:
        SIGNALS.check(read.values)
        signals.update(read.values)
    said = f"reading {read.describe()}" if read is not None else str(error)
    cost = read.cost_usd if read is not None else error.cost_usd if error is not None else 0.0
    return step.model_copy(update={"reason": f"{step.reason}; {said}",
                                   "cost_usd": step.cost_usd + cost,
                                   "latency_s": round(latency + seconds, 6)})


def _passages(state: TriageState, ctx: TriageContext) -> list[Passage]:
    """The latest search's passages that go in front of a model."""
    return state.evidence.passages[:ctx.evidence_passages] if state.evidence else []


def _why(state: TriageState, default: str) -> str:
    return state.decision.reason if state.decision is not None else default


def citations(answer: str, passages: Sequence[Passage]) -> list[str]:
    """Ids of the passages that contain ``answer`` (normalised), i.e. that back it up."""
    return [p.id for p in passages if states(p.text, answer)]


def _context(runtime: Runtime[TriageContext]) -> TriageContext:
    return runtime.context


@validated
async def probe(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Read the prober's signals: of the question before a draft exists, else of the draft."""
    ctx = _context(runtime)
    if ctx.prober is None or "prober" in state.failed:
        return {}
    answer = state.draft.answer if state.draft is not None else None
    call = await call_role(state, ctx, PROBE, state.question, answer)
    if call.failure is not None:
        return call.failure
    signals: Signals = call.result
    what = "the draft" if answer is not None else "the question, before any answer"
    step = PROBE.step(f"signals of {what}: {signals.describe()}", signals.cost_usd, call.seconds)
    return {"signals": merge_signals(state, **signals.values), "steps": [step]}


@validated
async def draft(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Ask the answerer, with the latest evidence in the prompt when there is some."""
    ctx = _context(runtime)
    passages = _passages(state, ctx)
    # Earlier turns only for a question that refers back to them: they degrade one that
    # does not (knowgate.graphs.history).
    history = state.history if refers_back(state.question) else []
    call = await call_role(state, ctx, DRAFT, state.question, passages, history)
    if call.failure is not None:
        return call.failure
    result: Draft = call.result
    reason = (f"read {len(passages)} passage(s) found by the search" if passages
              else _why(state, "answer closed-book"))
    source = "open_book" if passages else "closed_book"
    step = DRAFT.step(f"{reason} -> {result.answer!r} ({result.label}, {result.confidence:.3f})",
                      result.cost_usd, call.seconds, proposes=source, answer=result.answer)
    candidate = Candidate(answer=result.answer, source=source,
                          citations=citations(result.answer, passages),
                          confidence=result.confidence)
    signals = {**state.signals.values, "answerer_confidence": result.confidence}
    signals.pop("evidence_match", None)  # it belongs to the draft it was read from
    if passages and ctx.matcher is not None:
        step = await _matched(ctx, state.question, result.answer, passages, "evidence_match",
                              signals, step, call.seconds)
    return {"draft": result, "candidate": candidate, "steps": [step],
            "signals": Signals(values=signals)}


def make_search(kind: NodeKind = SEARCH,
                query: Callable[[TriageState], str] | None = None) -> Node:
    """A search node of ``kind`` that searches for ``query(state)`` (the question when
    ``None``): e.g. a second search with a reformulated query, declared to count against the
    search bound and priced as a search. The passages go to the next draft."""

    @validated
    async def search(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
        ctx = _context(runtime)
        text = state.question if query is None else query(state)
        call = await call_role(state, ctx, kind, text)
        if call.failure is not None:
            return call.failure
        result: Evidence = call.result
        top = result.passages[0] if result.passages else None
        found = (f"{len(result.passages)} passage(s), top {top.id} "
                 f"(support {result.support:.2f})" if top else "nothing found")
        cached = " [cached]" if result.cached else ""
        searched = "" if query is None else f"{text!r}: "
        step = kind.step(f"{_why(state, 'search')} -> {searched}{found}{cached}",
                         result.cost_usd, call.seconds)
        signals = merge_signals(state, search_support=result.support,
                                search_top_score=float(top.score or 0.0) if top else 0.0)
        return {"evidence": result, "signals": signals, "steps": [step]}

    search.__name__ = search.__qualname__ = kind.action.replace("-", "_")
    search.__doc__ = f"Search ({kind.action}); the passages go to the next draft."
    return search


search = make_search()
search.__doc__ = "Search for the question; the passages go to the next draft."


@validated
async def refine(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Ask the critic to check the draft with the signals and evidence gathered so far."""
    ctx = _context(runtime)
    passages = _passages(state, ctx)
    call = await call_role(state, ctx, REFINE, state.question, state.draft, state.signals,
                           passages)
    if call.failure is not None:
        return call.failure
    result: Verdict = call.result
    stands = result.verdict != "abstain" and bool(result.answer.strip())
    step = REFINE.step(f"{_why(state, 'check the draft')} -> {result.verdict} "
                       f"{result.answer!r} ({result.confidence:.3f})", result.cost_usd,
                       call.seconds, proposes="critic", answer=result.answer if stands else None)
    signals = {**state.signals.values, "critic_confidence": result.confidence}
    signals.pop("critic_evidence_match", None)  # it belongs to the verdict it was read from
    latency = call.seconds
    if passages and ctx.matcher is not None and result.answer.strip():
        # Does the evidence state the critic's answer to this question? A small critic asked
        # about something no passage holds answers with the question's own words.
        step = await _matched(ctx, state.question, result.answer, passages,
                              "critic_evidence_match", signals, step, latency)
        latency = step.latency_s
    if ctx.reader is not None:
        for name in ctx.reader.names:  # they belong to the verdict they were read from
            signals.pop(name, None)
        if passages and stands:
            step = await _read(ctx, state.question, result.answer, passages, signals, step,
                               latency)
    update: dict[str, Any] = {"verdict": result, "steps": [step],
                              "signals": Signals(values=signals)}
    if stands:
        update["candidate"] = Candidate(answer=result.answer, source="critic",
                                        citations=citations(result.answer, passages),
                                        confidence=result.confidence)
    else:
        update["candidate"] = None
    return update


@validated
async def decide(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Let the policy choose the next action."""
    ctx = _context(runtime)
    decision = ctx.policy.decide(
        state, ctx.prices,
        can_search=ctx.searcher is not None and ctx.answerer is not None,
        can_refine=ctx.critic is not None,
    )
    return {"decision": decision}


@validated
async def answer(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """End with the candidate answer and its calibrated confidence."""
    ctx = _context(runtime)
    assert state.candidate is not None  # routers only come here with a candidate
    p = ctx.policy.p_correct(state)
    outcome = Outcome(kind="answered", answer=state.candidate.answer, confidence=round(p, 6),
                      citations=state.candidate.citations)
    step = ANSWER.step(_why(state, f"P(correct)={p:.3f}"))
    return {"outcome": outcome, "steps": [step]}


@validated
async def abstain(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """End without an answer."""
    ctx = _context(runtime)
    p = ctx.policy.p_correct(state)
    reason = _why(state, "no answer to stand behind")
    if state.decision is None and state.failed:
        reason = f"{', '.join(state.failed)} failed; no answer to stand behind"
    step = ABSTAIN.step(reason)
    outcome = Outcome(kind="abstained", confidence=round(p, 6))
    return {"outcome": outcome, "steps": [step]}


def route(state: TriageState) -> Choice:
    """Follow the policy's decision."""
    assert state.decision is not None
    return state.decision.action


def after_search(state: TriageState) -> Literal["draft", "decide"]:
    """Read what a search found, unless it failed or found nothing."""
    found = state.evidence is not None and bool(state.evidence.passages)
    return "draft" if found and not state.steps[-1].error else "decide"


def answer_or_abstain(state: TriageState) -> Literal["answer", "abstain"]:
    """For fixed pipelines: answer when there is a candidate answer, else abstain."""
    has = state.candidate is not None and bool(state.candidate.answer.strip())
    return "answer" if has else "abstain"
