"""Scripted stand-ins for the four roles (and a reader of the critic's answers), for tests and
for developers trying graphs offline.

They implement the role protocols exactly (async ``__call__``, pydantic results, ``RoleError`` on
failure), so a graph cannot tell them from real roles. A script maps a question to what the role
does: return a value, raise a ``RoleError``, or hang (to exercise timeouts). Every call is recorded
in ``calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class Fail:
    """Make a scripted role raise ``RoleError(role, reason)``."""

    reason: str = "scripted failure"


@dataclass(frozen=True)
class Hang:
    """Make a scripted role sleep this long before answering (a timeout test)."""

    seconds: float = 3600.0


def _act(role: str, action: Any) -> Any:
    if isinstance(action, Fail):
        raise RoleError(role, action.reason)
    return action


async def _perform(role: str, script: Mapping[Any, Any], key: Any, default: Any) -> Any:
    action = script.get(key, default)
    if isinstance(action, Hang):
        await asyncio.sleep(action.seconds)
        return default
    return _act(role, action)


@dataclass
class ScriptedAnswerer:
    """An ``Answerer``: ``closed[question]`` without evidence, ``opened[question]`` with it.

    Values are ``(answer, confidence)`` pairs, ``Fail`` or ``Hang``. A call that samples
    (temperature above 0) answers from ``sampled[question]``, a list of answers taken in turn
    (a question not listed samples its greedy answer every time); each sample is billed.
    """

    closed: dict[str, Any] = field(default_factory=dict)
    opened: dict[str, Any] = field(default_factory=dict)
    sampled: dict[str, list[str]] = field(default_factory=dict)
    price_usd: float = 0.000003
    calls: list[tuple[str, int]] = field(default_factory=list)
    _taken: dict[str, int] = field(default_factory=dict, repr=False)  # samples drawn so far

    async def __call__(self, question: str, evidence: Sequence[Passage] = (),
                       history: Sequence[Turn] = (), sampling: Sampling = GREEDY) -> Draft:
        self.calls.append((question, len(evidence)))
        script = self.opened if evidence else self.closed
        answer, confidence = await _perform("answerer", script, question, ("no idea", 0.2))
        samples: list[str] = []
        if sampling.temperature > 0 and question in self.sampled:
            pool, taken = self.sampled[question], self._taken.get(question, 0)
            samples = [pool[(taken + i) % len(pool)] for i in range(sampling.n)]
            self._taken[question] = taken + sampling.n
            answer = samples[0]
        elif sampling.n > 1:
            samples = [answer] * sampling.n
        return Draft(answer=answer, confidence=confidence,
                     label="sure" if confidence >= 0.5 else "unsure",
                     with_evidence=bool(evidence), model="scripted/fast",
                     cost_usd=self.price_usd * sampling.n,
                     samples=samples if sampling.n > 1 else [])


@dataclass
class ScriptedSearcher:
    """A ``Searcher``: ``results[question]`` is ``(passages, support)``, ``Fail`` or ``Hang``."""

    results: dict[str, Any] = field(default_factory=dict)
    price_usd: float = 0.00003
    calls: list[str] = field(default_factory=list)

    async def __call__(self, query: str) -> Evidence:
        self.calls.append(query)
        passages, support = await _perform("searcher", self.results, query, ([], 0.0))
        return Evidence(query=query, passages=list(passages), support=support,
                        cost_usd=self.price_usd)


@dataclass
class ScriptedCritic:
    """A ``Critic``: ``verdicts[question]`` is ``(verdict, answer, confidence)``, ``Fail``
    or ``Hang``."""

    verdicts: dict[str, Any] = field(default_factory=dict)
    price_usd: float = 0.00015
    calls: list[str] = field(default_factory=list)

    async def __call__(self, question: str, draft: Draft | None, signals: Signals,
                       evidence: Sequence[Passage] = ()) -> Verdict:
        self.calls.append(question)
        verdict, answer, confidence = await _perform("critic", self.verdicts, question,
                                                     ("abstain", "", 0.1))
        return Verdict(verdict=verdict, answer=answer, confidence=confidence,
                       model="scripted/slow", cost_usd=self.price_usd)


@dataclass
class ScriptedProber:
    """A ``Prober``: ``signals[question]`` is a dict of signal values, ``Fail`` or ``Hang``."""

    signals: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(self, question: str, answer: str | None = None) -> Signals:
        self.calls.append((question, answer))
        values = await _perform("prober", self.signals, question, {})
        return Signals(values=dict(values))


@dataclass
class ScriptedReader:
    """A reader of answers given from evidence (``TriageContext.reader``):
    ``values[(question, answer)]`` is a dict of signal values, ``Fail`` or ``Hang``; ``names``
    are the signals it writes."""

    values: dict[tuple[str, str], Any] = field(default_factory=dict)
    names: tuple[str, ...] = ("critic_reading_probe",)
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    async def __call__(self, question: str, answer: str,
                       passages: Sequence[Passage]) -> Signals:
        self.calls.append((question, answer, len(passages)))
        values = await _perform("reader", self.values, (question, answer), {})
        return Signals(values=dict(values))
