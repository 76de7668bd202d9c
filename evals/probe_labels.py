"""Probe labels from a run already made: the closed-book drafts an explore run recorded.

``knowgate probe label`` asks the answerer every question of a split; an explore run has done
exactly that already (its first candidate is the fast model's closed-book draft, graded), so
``knowgate probe label --from-run RUN`` turns those drafts into labelled records without a
single model call. On real models on CPU that saves the split's whole generation time.
``readings_from_run`` does the same for the critic's readings after a search (the passages it
read come from the run's taped search): the data of a probe of those readings.
"""

from __future__ import annotations

from pathlib import Path

from knowgate.agents.probe_training import ProbeRecord
from knowgate.errors import UserError
from knowgate.evals.records import read_manifest, read_records


def labels_from_run(run: Path) -> list[ProbeRecord]:
    """One record per question of ``run`` with a closed-book draft: the draft and whether it
    was right, grouped by the question's subject, with its relation (from ``meta``).

    Raises:
        UserError: ``run`` is not a run folder, or no record has a closed-book draft.
    """
    graph = read_manifest(run).graph
    records = []
    for record in read_records(run):
        draft = next((c for c in record.candidates
                      if c.source == "closed_book" and c.searched == 0), None)
        if draft is None or record.outcome == "error":
            continue
        meta = record.meta
        records.append(ProbeRecord(
            id=record.id, question=record.question, answer=draft.answer, correct=draft.correct,
            group=str(meta.get("subject") or record.id), relation=meta.get("relation"),
            kind=record.kind))
    if not records:
        raise UserError(f"{run} (a run of {graph!r}) records no closed-book draft: label from "
                        "an explore run (knowgate eval run --explore ...)")
    return records


def readings_from_run(run: Path) -> list[ProbeRecord]:
    """One record per question of ``run`` whose critic answered after a search (on the
    shortest such path): its answer, whether it was right, and the passages it read (the taped
    search, cut to those put in front of a model), grouped and related as ``labels_from_run``.

    Raises:
        UserError: ``run`` is not a run folder, or records no critic reading with its search.
    """
    graph = read_manifest(run).graph
    records = []
    for record in read_records(run):
        if record.outcome == "error" or record.tape is None:
            continue
        read = [c for c in record.candidates if c.source == "critic" and c.searched and c.answer]
        search = next((c.result for c in record.tape.calls if c.role == "searcher"), None)
        if not read or not search or not search["passages"]:
            continue
        critic = min(read, key=lambda c: len(c.path))
        shown = search["passages"][:record.tape.evidence_passages]
        meta = record.meta
        records.append(ProbeRecord(
            id=record.id, question=record.question, answer=critic.answer,
            correct=critic.correct, passages=[p["text"] for p in shown],
            group=str(meta.get("subject") or record.id), relation=meta.get("relation"),
            kind=record.kind))
    if not records:
        raise UserError(f"{run} (a run of {graph!r}) records no critic reading after a search: "
                        "label from an explore run (knowgate eval run --explore ...)")
    return records
