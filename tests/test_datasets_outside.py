"""Datasets from the world outside: integer ids, a single ``answer``, unknown fields into
``meta``, and questions with no right answer (``answers: []`` or ``kind: unanswerable``), where
abstaining is right and any answer is wrong in the records and every metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knowgate import load_settings
from knowgate.errors import UserError
from knowgate.evals.datasets import load_dataset, read_items
from knowgate.evals.metrics import summarize
from knowgate.evals.records import read_records
from knowgate.evals.runner import run_eval
from knowgate.grading import is_correct
from knowgate.graphs.nodes import TriageContext
from knowgate.graphs.policy import Policy, Prices
from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedProber, ScriptedSearcher

RECORDS = [
    {"id": 7, "question": "What is the capital of Chad?", "answer": "N'Djamena",
     "source": "quiz-2024", "difficulty": 3},
    {"id": "no-answer", "question": "Who was mayor of Ndjamena in 1931?", "answers": []},
    {"id": "labelled", "question": "What is the capital of Veltaria?", "kind": "unanswerable"},
    {"id": "both", "question": "What is the capital of Peru?", "answers": ["Lima"],
     "meta": {"region": "south-america"}, "topic": "capitals"},
]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_records_from_outside_are_read_as_they_come(tmp_path: Path) -> None:
    items = {i.id: i for i in read_items(write(tmp_path / "d.jsonl", RECORDS))}
    assert set(items) == {"7", "no-answer", "labelled", "both"}  # an integer id is text
    assert items["7"].answers == ["N'Djamena"] and items["7"].answerable
    assert items["7"].meta == {"source": "quiz-2024", "difficulty": 3}  # unknown fields
    assert items["no-answer"].answers == [] and items["no-answer"].kind == "unanswerable"
    assert not items["labelled"].answerable and items["labelled"].kind == "unanswerable"
    assert items["both"].meta == {"topic": "capitals", "region": "south-america"}


@pytest.mark.parametrize(("row", "problem"), [
    ({"id": "a", "question": "Q?"}, "needs `answers`"),
    ({"id": "a", "question": "Q?", "answer": "x", "answers": ["x"]}, "not both"),
])
def test_ambiguous_records_name_their_line(tmp_path: Path, row: dict, problem: str) -> None:
    path = write(tmp_path / "bad.jsonl", [RECORDS[0], row])
    with pytest.raises(UserError, match=problem) as caught:
        read_items(path)
    assert "bad.jsonl:2" in str(caught.value)


def test_grading_modes() -> None:
    assert is_correct("Ouagadougou", ["Ouagadougou"])
    assert not is_correct("Ouagadougou, the capital", ["Ouagadougou"])
    assert is_correct("Ouagadougou, the capital", ["Ouagadougou"], "contains")
    assert not is_correct("Ouagadougou", [], "contains")  # no right answer exists
    long = "it might be Ouagadougou or Bobo-Dioulasso or Koudougou or maybe Banfora in the end"
    assert not is_correct(long, ["Ouagadougou"], "contains")  # a list is no answer


async def test_no_answer_questions_in_a_run(tmp_path: Path) -> None:
    """Everything answers: the no-answer questions are graded wrong (no grader could say
    otherwise), and an abstention on them would be the right decision."""
    rows = [RECORDS[0], RECORDS[1], RECORDS[2]]
    path = write(tmp_path / "d.jsonl", rows)
    settings = load_settings(data_dir=tmp_path / "data", world="synthetic")
    dataset = load_dataset(str(path), settings)
    questions = [r["question"] for r in rows]
    answers = {q: ("N'Djamena", 0.99) for q in questions}
    context = TriageContext(
        answerer=ScriptedAnswerer(closed=answers, opened=answers),
        critic=ScriptedCritic(), searcher=ScriptedSearcher(),
        prober=ScriptedProber(), matcher=None, policy=Policy(),
        prices=Prices(draft=0.000003, search=0.00003, refine=0.00015),
        role_timeout_s=5.0, evidence_passages=1)
    await run_eval(dataset, "fast-only", tmp_path / "run", settings, concurrency=2,
                   context=context)
    records = {r.id: r for r in read_records(tmp_path / "run")}
    assert records["7"].right
    for rid in ("no-answer", "labelled"):
        assert records[rid].outcome == "answered" and records[rid].correct is False
        assert records[rid].wrong and not records[rid].rightly_abstained
    summary = summarize(list(records.values()), Policy(), resamples=0)
    assert summary["no_answer"] == {"n": 2, "abstained": 0.0, "answered_wrong": 1.0}
    assert summary["wrong_rate_answered"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["right_decisions"] == pytest.approx(1 / 3, abs=1e-4)
