"""Grading answers: normalised exact match against the aliases, or an LLM judge through litellm.

The judge answers CORRECT, INCORRECT or NOT_ATTEMPTED (SimpleQA's grades); an answer the judge
calls NOT_ATTEMPTED is not correct (the graph did answer). A reply that is none of them is a
grading error, recorded as such: never taken for an abstention or a wrong answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from knowgate.grading import GradingMode, is_correct

JUDGE_PROMPT = """You grade an answer to a question against the accepted gold answers.
Question: {question}
Gold answers: {answers}
Answer given: {answer}
Reply with exactly one word: CORRECT (it means the same as a gold answer), INCORRECT (it
contradicts them), or NOT_ATTEMPTED (it does not try to answer)."""
_GRADES = ("NOT_ATTEMPTED", "INCORRECT", "CORRECT")


@dataclass(frozen=True)
class Grade:
    """A grade: ``correct`` is None when the grader could not decide (see ``error``)."""

    correct: bool | None
    error: str | None = None


class Grader(Protocol):
    """Grades one answer."""

    async def __call__(self, question: str, answer: str, answers: list[str]) -> Grade:
        """The grade of ``answer``."""
        ...

    def match(self, answer: str, answers: list[str]) -> bool:
        """A free local grade, for the many candidate answers of a run (``calibrate``'s data)."""
        ...


class ExactMatch:
    """Alias matching: normalised exact match (SQuAD / TriviaQA style), or in ``contains`` mode
    a short reply stating an alias (``knowgate.grading.is_correct``)."""

    def __init__(self, mode: GradingMode = "exact") -> None:
        self.mode: GradingMode = mode

    async def __call__(self, question: str, answer: str, answers: list[str]) -> Grade:
        """Right when ``answer`` matches an alias."""
        return Grade(correct=self.match(answer, answers))

    def match(self, answer: str, answers: list[str]) -> bool:
        """Right when ``answer`` matches an alias."""
        return is_correct(answer, answers, self.mode)


def parse_grade(text: str) -> str | None:
    """``CORRECT``, ``INCORRECT`` or ``NOT_ATTEMPTED`` when the reply is exactly one of them
    (case, punctuation and surrounding space ignored), else None."""
    word = re.sub(r"[^A-Z_ ]", "", text.strip().upper()).strip().replace(" ", "_")
    return word if word in _GRADES else None


class LLMJudge:
    """An LLM judge called through a litellm Router (a ``CachedRouter`` in batch runs).

    Args:
        router: Router with a deployment named ``model``.
        model: The judge's litellm model id.
        timeout_s: Bound on one judgement.
    """

    def __init__(self, router: Any, model: str, timeout_s: float = 60.0,
                 mode: GradingMode = "exact") -> None:
        self.router = router
        self.model = model
        self.timeout_s = timeout_s
        self.mode: GradingMode = mode

    def match(self, answer: str, answers: list[str]) -> bool:
        """Candidates are graded by alias matching: a judge call for each would cost more than
        the run."""
        return is_correct(answer, answers, self.mode)

    async def __call__(self, question: str, answer: str, answers: list[str]) -> Grade:
        """The judge's grade; a failed call or an unparseable reply is a grading error."""
        from knowgate.agents.llm import complete
        from knowgate.roles import RoleError

        prompt = JUDGE_PROMPT.format(question=question, answers=" | ".join(answers),
                                     answer=answer)
        try:
            done = await complete(self.router, "judge", self.model,
                                  [{"role": "user", "content": prompt}], self.timeout_s,
                                  max_tokens=8, temperature=0.0)
        except RoleError as exc:
            return Grade(correct=None, error=f"judge failed: {exc}")
        grade = parse_grade(done.text)
        if grade is None:
            return Grade(correct=None, error=f"judge reply not understood: {done.text[:80]!r}")
        if grade == "NOT_ATTEMPTED":
            return Grade(correct=False, error=None)
        return Grade(correct=grade == "CORRECT")
