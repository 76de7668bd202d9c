"""A tape of role calls: what an explore run's roles answered, to replay any graph without them.

An explore run (``knowgate.evals.explore``) wraps each role of the run in a recorder: a call
whose inputs were seen before on this question returns what it returned then (the explore walk
reaches the same call by many paths), a new one calls the real role and is written down. The
tape is kept in the question's record. ``knowgate calibrate`` then runs the very graph again over
roles that only read the tape, so what it replays is what the graph does; a call the tape does
not hold is a ``TapeMiss`` that names it, never a silent guess.

A call is keyed by everything the role is given: the question or query, the draft, the evidence
(by passage id), the history, the sampling options, and for the critic the signals it is shown
(a critic may read them). Only successful calls are kept: a question on which a role failed is
an outage, recorded as an ``error`` and retried, never calibrated on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from knowgate.graphs.nodes import TriageContext
from knowgate.roles import (
    GREEDY,
    Draft,
    Evidence,
    Passage,
    RoleError,
    Sampling,
    Signals,
    Turn,
    Verdict,
)

# What each taped role returns, to read its results back.
RESULTS: dict[str, type[BaseModel] | None] = {"answerer": Draft, "prober": Signals,
                                              "searcher": Evidence, "critic": Verdict,
                                              "matcher": None, "reader": Signals}
TAPED = tuple(RESULTS)


class TapeEntry(BaseModel):
    """One role call: who, with what (``key``, canonical JSON) and what came back."""

    model_config = ConfigDict(frozen=True)

    role: str
    key: str
    result: Any


class Tape(BaseModel):
    """The role calls of one question's explore walk.

    Attributes:
        roles: The roles the run had (an absent one stays absent in the replay).
        evidence_passages: Passages put in front of a model (``TriageContext``).
        calls: Every distinct call, in the order first made.
        policy_reads: Policy methods the graph called outside ``Policy.decide`` that read the
            maps (a choice made by them is not walked: ``calibrate`` refuses such a graph).
        reader_names: The signals the run's reader of the critic's answers writes
            (``TriageContext.reader``), which the replayed refine node clears as the live one
            does.
    """

    roles: list[str]
    evidence_passages: int = 1
    reader_names: list[str] = Field(default_factory=list)
    calls: list[TapeEntry] = Field(default_factory=list)
    policy_reads: list[str] = Field(default_factory=list)


class TapeMiss(RoleError):
    """A replayed graph made a call its explore run did not record."""


def _ids(passages: Sequence[Passage]) -> list[str]:
    return [p.id for p in passages]


def call_key(role: str, *args: Any, **kwargs: Any) -> str:
    """The canonical key of a call of ``role`` with the arguments the stock nodes pass."""
    if role == "answerer":
        question, evidence, history, sampling = _answerer_args(*args, **kwargs)
        data: dict[str, Any] = {"question": question, "evidence": _ids(evidence),
                                "history": [t.model_dump(mode="json") for t in history]}
        if sampling != GREEDY:
            data["sampling"] = sampling.model_dump(mode="json")
    elif role == "prober":
        question, answer = _prober_args(*args, **kwargs)
        data = {"question": question, "answer": answer}
    elif role == "searcher":
        data = {"query": args[0] if args else kwargs["query"]}
    elif role == "critic":
        question, draft, signals, evidence = _critic_args(*args, **kwargs)
        data = {"question": question, "evidence": _ids(evidence), "signals": signals.values,
                "draft": None if draft is None else
                draft.model_dump(mode="json", include={"answer", "confidence", "label"})}
    elif role in ("matcher", "reader"):
        question, answer, passages = args
        data = {"question": question, "answer": answer, "evidence": _ids(passages)}
    else:  # pragma: no cover - TAPED lists every role the nodes call
        raise ValueError(f"no tape for role {role!r}")
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


# The arguments of each role's call as its protocol (``knowgate.roles``) names them, however the
# node passed them.
def _answerer_args(question: str, evidence: Sequence[Passage] = (),
                   history: Sequence[Turn] = (), sampling: Sampling = GREEDY
                   ) -> tuple[str, Sequence[Passage], Sequence[Turn], Sampling]:
    return question, evidence, history, sampling


def _prober_args(question: str, answer: str | None = None) -> tuple[str, str | None]:
    return question, answer


def _critic_args(question: str, draft: Draft | None, signals: Signals,
                 evidence: Sequence[Passage] = ()) -> tuple[str, Draft | None, Signals,
                                                            Sequence[Passage]]:
    return question, draft, signals, evidence


def _dump(role: str, result: Any) -> Any:
    return result.model_dump(mode="json") if RESULTS[role] is not None else float(result)


def _load(role: str, data: Any) -> Any:
    kind = RESULTS[role]
    return kind.model_validate(data) if kind is not None else float(data)


@dataclass
class Recorder:
    """The tape of one question being recorded: roles wrapped by ``wrap`` write to it."""

    tape: Tape
    seen: dict[tuple[str, str], Any] = field(default_factory=dict)

    def wrap(self, context: TriageContext) -> TriageContext:
        """``context`` with each role recording into the tape (an absent role stays absent)."""
        if context.reader is not None:
            self.tape.reader_names = list(context.reader.names)
        return replace(context, **{role: _Taped(role, self, getattr(context, role))
                                   for role in TAPED if getattr(context, role) is not None})

    async def call(self, role: str, impl: Callable[..., Awaitable[Any]], *args: Any,
                   **kwargs: Any) -> Any:
        key = call_key(role, *args, **kwargs)
        if (role, key) in self.seen:
            return self.seen[role, key]
        # Stock nodes call the answerer without sampling: an answerer written without the
        # parameter still serves them.
        result = await impl(*args, **kwargs)
        self.seen[role, key] = result
        self.tape.calls.append(TapeEntry(role=role, key=key, result=_dump(role, result)))
        return result


@dataclass
class Player:
    """Roles that answer from a recorded tape; ``misses`` names every call it did not hold."""

    tape: Tape
    misses: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.results = {(e.role, e.key): _load(e.role, e.result) for e in self.tape.calls}

    def wrap(self, context: TriageContext) -> TriageContext:
        """``context`` with the roles the run had replaying the tape, and the others absent."""
        return replace(context, evidence_passages=self.tape.evidence_passages,
                       **{role: _Taped(role, self) if role in self.tape.roles else None
                          for role in TAPED})

    async def call(self, role: str, impl: Any, *args: Any, **kwargs: Any) -> Any:
        key = call_key(role, *args, **kwargs)
        if (role, key) not in self.results:
            self.misses.append(f"{role} {key}")
            raise TapeMiss(role, f"the explore run recorded no {role} call {key}")
        return self.results[role, key]


class _Taped:
    """One role going through a ``Recorder`` or a ``Player`` (a reader keeps its ``names``)."""

    def __init__(self, role: str, tape: Recorder | Player, impl: Any = None) -> None:
        self.role, self.tape, self.impl = role, tape, impl
        self.names: tuple[str, ...] = tuple(tape.tape.reader_names) if role == "reader" else ()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self.tape.call(self.role, self.impl, *args, **kwargs)
