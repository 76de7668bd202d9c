"""Classes measured, not constructed: who actually answers each question right, and the
empirical oracle that is the ceiling of every graph.

An ``explore`` run holds, for each question, every kind of candidate answer with its price: the
fast model closed-book, the critic closed-book, and (after one search) the fast model and the
critic reading the evidence. From that record alone:

* the question's **measured class** is the cheapest kind of help that produced a right answer:
  ``fast-known`` (the fast model closed-book), ``slow-known`` (the critic closed-book),
  ``searchable`` (a reading of the evidence), else ``unanswerable`` (nobody here answers it; for
  a question with no right answer that is its class by definition);
* the **empirical oracle** takes exactly that path and pays exactly what the explore run paid
  for it (a search and the reading, for a searchable question), and abstains for free on the
  rest. No graph that uses the same roles can do better on those questions, so its utility is
  the ceiling the others are reported against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from knowgate.evals.calibrate import Explored
from knowgate.evals.records import CandidateRecord, EvalRecord

MEASURED_CLASSES = ("fast-known", "slow-known", "searchable", "unanswerable")
ORACLE_GRAPH = "empirical-oracle"


@dataclass(frozen=True)
class Path:
    """One way to a candidate answer, with what it costs."""

    kind: str
    actions: tuple[str, ...]
    candidate: CandidateRecord
    cost_usd: float


def paths(explored: Explored) -> list[Path]:
    """Every recorded way to an answer, cheapest first (ties keep the order of the classes)."""
    options = [
        ("fast-known", ("draft",), explored.closed, 0.0),
        ("slow-known", ("refine",), explored.critic_closed, 0.0),
        ("searchable", ("search", "draft"), explored.opened, explored.search_usd),
        ("searchable", ("search", "refine"), explored.critic_open, explored.search_usd),
    ]
    found = [Path(kind, actions, c, round(extra + c.cost_usd, 10))
             for kind, actions, c, extra in options if c is not None and c.answer]
    return sorted(found, key=lambda p: (p.cost_usd, MEASURED_CLASSES.index(p.kind)))


def cheapest_right(record: EvalRecord) -> Path | None:
    """The cheapest path of an explore record that produced a right answer, if any did."""
    if not record.answerable:
        return None
    return next((p for p in paths(Explored.of(record)) if p.candidate.correct), None)


def measured_class(record: EvalRecord) -> str:
    """Who answers this question right, cheapest first (see the module)."""
    best = cheapest_right(record)
    return best.kind if best is not None else "unanswerable"


def oracle_records(explored: Sequence[EvalRecord]) -> list[EvalRecord]:
    """The empirical oracle's record of each explore record, classed by measurement.

    Errors in the explore run stay errors: nothing was measured for them.
    """
    out = []
    for record in explored:
        base = {"id": record.id, "question": record.question, "answers": record.answers,
                "meta": {**record.meta, "constructed_kind": record.kind},
                "graph": ORACLE_GRAPH}
        if record.outcome == "error":
            out.append(EvalRecord(**base, outcome="error", error=record.error))
            continue
        best = cheapest_right(record)
        kind = best.kind if best is not None else "unanswerable"
        if best is None:
            out.append(EvalRecord(**base, kind=kind, outcome="abstained", path=["abstain"]))
            continue
        out.append(EvalRecord(
            **base, kind=kind, outcome="answered", answer=best.candidate.answer, correct=True,
            confidence=best.candidate.confidence, path=[*best.actions, "answer"],
            cost_usd=best.cost_usd, searches=best.actions.count("search"),
            refines=best.actions.count("refine")))
    return out
