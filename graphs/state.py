"""What flows through a knowgate graph: ``TriageState`` and the records it accumulates.

Nodes return partial updates; ``validated`` checks every returned field against its type here,
because LangGraph validates a pydantic state only on input, not the updates nodes return.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from knowgate.roles import Draft, Evidence, Signals, Turn, Verdict

# The stock nodes' actions; a developer's node declares its own (``knowgate.graphs.kinds``).
Action = Literal["probe", "draft", "search", "refine", "answer", "abstain"]
Choice = Literal["draft", "search", "refine", "answer", "abstain"]
# Steps of these stock actions count against the bound of the same name.
_COUNTED = ("probe", "draft", "search", "refine")


class Step(BaseModel):
    """One thing the graph did, and why.

    Attributes:
        action: What was done: a stock action (``Action``) or a developer's node's own
            (``NodeKind.action``, e.g. ``search_again``).
        reason: Why the policy chose it (or what went wrong, when ``error``).
        cost_usd: What it cost.
        latency_s: How long it took.
        role: The role that acted (``answerer``, ``prober``, ``searcher``, ``critic``), if any.
        error: True when the role failed; the graph carried on without it.
        counts_as: The round bound it counts against (``search``, ``refine``, or a developer's
            own, see ``Policy.rounds``); ``None`` counts against none. A step written without
            it by a stock action counts as that action.
        proposes: The source of the candidate answer the step proposed (``closed_book``,
            ``open_book``, ``critic``, a developer's node's own), also when it proposed none
            (a critic that abstains); the eval runner records a candidate for each such step.
        answer: The answer the step proposed (``None`` when it proposed none): the policy
            reads how many earlier proposals a candidate agrees with (``earlier_agreement``).
    """

    model_config = ConfigDict(frozen=True)

    action: str = Field(min_length=1)
    reason: str
    cost_usd: float = 0.0
    latency_s: float = 0.0
    role: str | None = None
    error: bool = False
    counts_as: str | None = None
    proposes: str | None = None
    answer: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _stock_bound(cls, data: Any) -> Any:
        # Records written before steps carried their bound: a stock action counts as itself.
        if isinstance(data, dict) and "counts_as" not in data and data.get("action") in _COUNTED:
            return {**data, "counts_as": data["action"]}
        return data


class Candidate(BaseModel):
    """The answer the graph would give now, and where it came from.

    Attributes:
        answer: The answer.
        source: What produced it: ``closed_book`` and ``open_book`` drafts, the ``critic``, or
            a developer's node's own name; the policy judges it with the map of that name
            (``Policy.maps``).
        citations: Ids of the passages that back it.
        confidence: The confidence its producer stated (``None`` when it stated none).
    """

    model_config = ConfigDict(frozen=True)

    answer: str
    source: str = Field(min_length=1)
    citations: list[str] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)


class Decision(BaseModel):
    """The policy's choice at one point, with its estimate and the values it compared."""

    model_config = ConfigDict(frozen=True)

    action: str = Field(min_length=1)  # a ``Choice`` for the policy; a developer's gate's own
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
        steps: Everything done for this question, in order. Nodes return only their new
            steps (the field's reducer appends them); a new question on a checkpointed thread
            starts from none (``knowgate.runtime`` overwrites the list).
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
    steps: Annotated[list[Step], operator.add] = Field(default_factory=list)
    outcome: Outcome | None = None

    @property
    def spent_usd(self) -> float:
        """Dollars spent so far."""
        return sum(s.cost_usd for s in self.steps)

    def count(self, bound: str) -> int:
        """How many steps counted against ``bound`` (``search``, ``refine``, a developer's own;
        failed attempts included)."""
        return sum(s.counts_as == bound for s in self.steps)

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
