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
from typing import Any, Literal, TypeVar

from langgraph.runtime import Runtime

from knowgate.grading import states
from knowgate.graphs.history import refers_back
from knowgate.graphs.policy import Policy, Prices
from knowgate.graphs.state import Candidate, Choice, Outcome, Step, TriageState, validated
from knowgate.roles import Answerer, Critic, Passage, Prober, RoleError, Searcher, Signals

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


async def _call(role: str, impl: Callable[..., Awaitable[_Result]] | None, timeout_s: float,
                *args: Any) -> tuple[_Result | None, RoleError | None, float]:
    """Call the role ``impl(*args)``, bounded in time.

    A missing role, a failure or a timeout comes back as a ``RoleError``, never raised.
    """
    if impl is None:
        return None, RoleError(role, f"no {role} configured"), 0.0
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(impl(*args), timeout_s)
    except RoleError as exc:
        return None, exc, time.perf_counter() - started
    except TimeoutError:
        error = RoleError(role, f"no answer within {timeout_s:g} s")
        return None, error, time.perf_counter() - started
    except Exception as exc:  # a user's role raising anything else still only fails that role
        error = RoleError(role, f"{type(exc).__name__}: {exc}")
        return None, error, time.perf_counter() - started
    return result, None, time.perf_counter() - started


def _failure(state: TriageState, action: Any, error: RoleError, latency: float) -> dict[str, Any]:
    step = Step(action=action, role=error.role, error=True, reason=f"failed: {error.reason}",
                cost_usd=error.cost_usd, latency_s=round(latency, 6))
    return {"failed": sorted({*state.failed, error.role}), "steps": [*state.steps, step]}


def _merge(state: TriageState, **values: float) -> Signals:
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
    signals, error, latency = await _call("prober", ctx.prober, ctx.role_timeout_s,
                                          state.question, answer)
    if error is not None:
        return _failure(state, "probe", error, latency)
    assert signals is not None
    what = "the draft" if answer is not None else "the question, before any answer"
    step = Step(action="probe", role="prober", cost_usd=signals.cost_usd,
                latency_s=round(latency, 6), reason=f"signals of {what}: {signals.describe()}")
    return {"signals": _merge(state, **signals.values), "steps": [*state.steps, step]}


@validated
async def draft(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Ask the answerer, with the latest evidence in the prompt when there is some."""
    ctx = _context(runtime)
    passages = _passages(state, ctx)
    # Earlier turns only for a question that refers back to them: they degrade one that
    # does not (knowgate.graphs.history).
    history = state.history if refers_back(state.question) else []
    result, error, latency = await _call("answerer", ctx.answerer, ctx.role_timeout_s,
                                         state.question, passages, history)
    if error is not None:
        return _failure(state, "draft", error, latency)
    assert result is not None
    reason = (f"read {len(passages)} passage(s) found by the search" if passages
              else _why(state, "answer closed-book"))
    step = Step(action="draft", role="answerer", cost_usd=result.cost_usd,
                latency_s=round(latency, 6),
                reason=f"{reason} -> {result.answer!r} ({result.label}, {result.confidence:.3f})")
    candidate = Candidate(answer=result.answer,
                          source="open_book" if passages else "closed_book",
                          citations=citations(result.answer, passages))
    signals = {**state.signals.values, "answerer_confidence": result.confidence}
    signals.pop("evidence_match", None)  # it belongs to the draft it was read from
    if passages and ctx.matcher is not None:
        step = await _matched(ctx, state.question, result.answer, passages, "evidence_match",
                              signals, step, latency)
    return {"draft": result, "candidate": candidate, "steps": [*state.steps, step],
            "signals": Signals(values=signals)}


@validated
async def search(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Search for the question; the passages go to the next draft."""
    ctx = _context(runtime)
    result, error, latency = await _call("searcher", ctx.searcher, ctx.role_timeout_s,
                                         state.question)
    if error is not None:
        return _failure(state, "search", error, latency)
    assert result is not None
    top = result.passages[0] if result.passages else None
    found = (f"{len(result.passages)} passage(s), top {top.id} (support {result.support:.2f})"
             if top else "nothing found")
    cached = " [cached]" if result.cached else ""
    step = Step(action="search", role="searcher", cost_usd=result.cost_usd,
                latency_s=round(latency, 6), reason=f"{_why(state, 'search')} -> {found}{cached}")
    signals = _merge(state, search_support=result.support,
                     search_top_score=float(top.score or 0.0) if top else 0.0)
    return {"evidence": result, "signals": signals, "steps": [*state.steps, step]}


@validated
async def refine(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """Ask the critic to check the draft with the signals and evidence gathered so far."""
    ctx = _context(runtime)
    passages = _passages(state, ctx)
    result, error, latency = await _call("critic", ctx.critic, ctx.role_timeout_s,
                                         state.question, state.draft, state.signals, passages)
    if error is not None:
        return _failure(state, "refine", error, latency)
    assert result is not None
    step = Step(action="refine", role="critic", cost_usd=result.cost_usd,
                latency_s=round(latency, 6),
                reason=f"{_why(state, 'check the draft')} -> {result.verdict} "
                       f"{result.answer!r} ({result.confidence:.3f})")
    signals = {**state.signals.values, "critic_confidence": result.confidence}
    signals.pop("critic_evidence_match", None)  # it belongs to the verdict it was read from
    if passages and ctx.matcher is not None and result.answer.strip():
        # Does the evidence state the critic's answer to this question? A small critic asked
        # about something no passage holds answers with the question's own words.
        step = await _matched(ctx, state.question, result.answer, passages,
                              "critic_evidence_match", signals, step, latency)
    update: dict[str, Any] = {"verdict": result, "steps": [*state.steps, step],
                              "signals": Signals(values=signals)}
    if result.verdict != "abstain" and result.answer.strip():
        update["candidate"] = Candidate(answer=result.answer, source="critic",
                                        citations=citations(result.answer, passages))
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
    step = Step(action="answer", reason=_why(state, f"P(correct)={p:.3f}"))
    return {"outcome": outcome, "steps": [*state.steps, step]}


@validated
async def abstain(state: TriageState, runtime: Runtime[TriageContext]) -> dict[str, Any]:
    """End without an answer."""
    ctx = _context(runtime)
    p = ctx.policy.p_correct(state)
    reason = _why(state, "no answer to stand behind")
    if state.decision is None and state.failed:
        reason = f"{', '.join(state.failed)} failed; no answer to stand behind"
    step = Step(action="abstain", reason=reason)
    outcome = Outcome(kind="abstained", confidence=round(p, 6))
    return {"outcome": outcome, "steps": [*state.steps, step]}


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
