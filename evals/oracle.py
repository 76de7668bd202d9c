"""Classes measured, not constructed: who actually answers each question right, and the
empirical oracle that is the ceiling of every graph.

An explore run (``knowgate eval run --explore``) holds, for each question, the candidate answer
of every branch its graph can take, each with the path to it and what the question had cost by
then: for the triage graph the fast model closed-book, the critic asked first or after a draft,
and (after one search) the fast model and the critic reading the evidence. From that record
alone:

* the question's **measured class** is the kind of help behind the cheapest right answer:
  ``fast-known`` (an answer without a search or the critic), ``slow-known`` (the critic's,
  without a search), ``searchable`` (one read after a search), else ``unanswerable`` (nobody
  here answers it; for a question with no right answer that is its class by definition);
* the **empirical oracle** takes exactly that path and pays exactly what the explore run paid
  for it, and abstains for free on the rest. No graph that uses the same roles can do better on
  those questions, so its utility is the ceiling the others are reported against.
"""

from __future__ import annotations

from collections.abc import Sequence

from knowgate.evals.records import CandidateRecord, EvalRecord

MEASURED_CLASSES = ("fast-known", "slow-known", "searchable", "unanswerable")
ORACLE_GRAPH = "empirical-oracle"


def class_of(candidate: CandidateRecord) -> str:
    """The kind of help behind ``candidate``: a search, else the critic, else none."""
    if candidate.searched:
        return "searchable"
    return "slow-known" if candidate.source == "critic" else "fast-known"


def paths(record: EvalRecord) -> list[CandidateRecord]:
    """Every recorded candidate answer, cheapest path first (ties keep the order of the
    classes, then the record's)."""
    found = [c for c in record.candidates if c.answer]
    return sorted(found, key=lambda c: (c.spent_usd, MEASURED_CLASSES.index(class_of(c))))


def cheapest_right(record: EvalRecord) -> CandidateRecord | None:
    """The candidate of an explore record with the cheapest path to a right answer, if any."""
    if not record.answerable:
        return None
    return next((c for c in paths(record) if c.correct), None)


def measured_class(record: EvalRecord) -> str:
    """Who answers this question right, cheapest first (see the module)."""
    best = cheapest_right(record)
    return class_of(best) if best is not None else "unanswerable"


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
        kind = class_of(best) if best is not None else "unanswerable"
        if best is None:
            out.append(EvalRecord(**base, kind=kind, outcome="abstained", path=["abstain"]))
            continue
        out.append(EvalRecord(
            **base, kind=kind, outcome="answered", answer=best.answer, correct=True,
            confidence=best.confidence, path=[*best.path, "answer"], cost_usd=best.spent_usd,
            searches=best.path.count("search"), refines=best.path.count("refine")))
    return out
