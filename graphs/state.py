"""What flows through a knowgate graph: ``TriageState`` and the records it accumulates.

Nodes return partial updates; ``validated`` checks every returned field against its type here,
because LangGraph validates a pydantic state only on input, not the updates nodes return.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from knowgate.roles import Draft, Evidence, Signals, Turn, Verdict

Action = Literal["probe", "draft", "search", "refine", "answer", "abstain"]
Choice = Literal["draft", "search", "refine", "answer", "abstain"]


class Step(BaseModel):
    """One thing the graph did, and why.

    Attributes:
        action: What was done.
        reason: Why the policy chose it (or what went wrong, when ``error``).
        cost_usd: What it cost.
        latency_s: How long it took.
        role: The role that acted (``answerer``, ``prober``, ``searcher``, ``critic``), if any.
        error: True when the role failed; the graph carried on without it.
    """

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str
    cost_usd: float = 0.0
    latency_s: float = 0.0
    role: str | None = None
    error: bool = False


class Candidate(BaseModel):
    """The answer the graph would give now, and where it came from."""

    model_config = ConfigDict(frozen=True)

    answer: str
    source: Literal["closed_book", "open_book", "critic"]
    citations: list[str] = Field(default_factory=list)


class Decision(BaseModel):
    """The policy's choice at one point, with its estimate and the values it compared."""

    model_config = ConfigDict(frozen=True)

    action: Choice
    reason: str
    p_correct: float = 0.0
    values: dict[str, float] = Field(default_factory=dict)


class Outcome(BaseModel):
    """How a question ended."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["answered", "abstained"]
    answer: str | None = None
    confidence: float = 0.0
    citations: list[str] = Field(default_factory=list)


class TriageState(BaseModel):
    """The state of one question as it moves through a graph.

    Attributes:
        question: The question, as the graph sees it.
        history: Earlier turns of the conversation.
        draft: The answerer's latest draft.
        signals: Every signal gathered so far, by name (later values replace earlier ones).
        evidence: The latest search result.
        verdict: The critic's latest verdict.
        candidate: The answer the graph would give now.
        decision: The policy's latest choice.
        failed: Roles that failed during this question (the policy stops asking them).
        steps: Everything done for this question, in order. Nodes return the whole list (no
            reducer), so a new question on a checkpointed thread starts with none.
        outcome: Set when the graph ends.
    """

    question: str
    history: list[Turn] = Field(default_factory=list)
    draft: Draft | None = None
    signals: Signals = Field(default_factory=Signals)
    evidence: Evidence | None = None
    verdict: Verdict | None = None
    candidate: Candidate | None = None
    decision: Decision | None = None
    failed: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def spent_usd(self) -> float:
        """Dollars spent so far."""
        return sum(s.cost_usd for s in self.steps)

    def count(self, action: Action) -> int:
        """How many times ``action`` was taken (failed attempts included)."""
        return sum(s.action == action for s in self.steps)

    def ledger(self) -> dict[str, dict[str, float]]:
        """Dollars and calls by role."""
        out: dict[str, dict[str, float]] = {}
        for step in self.steps:
            if step.role is None:
                continue
            entry = out.setdefault(step.role, {"calls": 0, "cost_usd": 0.0})
            entry["calls"] += 1
            entry["cost_usd"] += step.cost_usd
        return out


_ADAPTERS = {name: TypeAdapter(field.annotation) for name, field in
             TriageState.model_fields.items()}

Node = Callable[[TriageState, Any], Awaitable[dict[str, Any]]]


def validated(node: Node) -> Node:
    """Wrap a node so that the partial update it returns is type-checked field by field.

    Raises:
        TypeError: The node returned a field the state does not have.
        pydantic.ValidationError: A returned value does not match its field's type.
    """

    @functools.wraps(node)
    async def wrapper(state: TriageState, runtime: Any) -> dict[str, Any]:
        update = await node(state, runtime)
        unknown = set(update) - set(_ADAPTERS)
        if unknown:
            raise TypeError(f"node {node.__name__} returned unknown fields {sorted(unknown)}")
        return {k: _ADAPTERS[k].validate_python(v) for k, v in update.items()}

    return wrapper
