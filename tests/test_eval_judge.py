"""Grading with an LLM judge through litellm (a loopback provider on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

from knowgate import load_settings
from knowgate.evals.grading import parse_grade
from knowgate.evals.metrics import summarize
from knowgate.evals.records import read_records
from knowgate.graphs.policy import Policy
from knowgate.tests.loopback_openai import LoopbackLLM, Seen
from knowgate.tests.test_eval_runs import context, run, synthetic

JUDGE = "openai/gpt-4o-mini"
REPLIES = {0: "CORRECT", 1: "incorrect.", 2: "NOT_ATTEMPTED", 3: "It depends on the source"}


def judge_reply(seen: Seen) -> str:
    number = int(seen.last_user.split("Person", 1)[1].split(" ", 1)[0])
    return REPLIES[number % 4]


def test_grades_are_parsed_strictly() -> None:
    assert parse_grade(" Correct ") == "CORRECT" and parse_grade("NOT ATTEMPTED") == "NOT_ATTEMPTED"
    assert parse_grade("INCORRECT.") == "INCORRECT"
    assert parse_grade("CORRECT, mostly") is None and parse_grade("") is None


async def test_an_unparseable_judgement_is_a_grading_error_not_an_abstention(
        tmp_path: Path) -> None:
    items, scripts = synthetic(8)
    with LoopbackLLM(default=judge_reply) as server:
        settings = load_settings(data_dir=tmp_path / "data", llm_retries=0,
                                 litellm_params={JUDGE: {"api_base": server.api_base,
                                                         "api_key": "k"}})
        await run(items, "fast-only", tmp_path / "a", context(scripts), tmp_path,
                  settings=settings, judge=JUDGE)
        asked = len(server.requests)
        await run(items, "fast-only", tmp_path / "b", context(scripts), tmp_path,
                  settings=settings, judge=JUDGE)
        assert len(server.requests) == asked == 8  # judgements are cached like any paid call
    records = {int(r.id[1:]): r for r in read_records(tmp_path / "a")}
    assert all(r.outcome == "answered" for r in records.values())
    for number, record in records.items():
        grade = REPLIES[number % 4]
        if grade == "CORRECT":
            assert record.correct is True and record.grading_error is None
        elif grade in ("incorrect.", "NOT_ATTEMPTED"):
            assert record.correct is False and record.grading_error is None
        else:
            assert record.correct is None and "not understood" in (record.grading_error or "")
    summary = summarize(list(records.values()), Policy.load(), resamples=0)
    assert summary["grading_errors"] == 2 and summary["abstained"] == 0.0
    assert summary["coverage"] == 1.0 and summary["accuracy"] == 0.25
