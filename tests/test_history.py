"""History resolves what a question refers to, and never reaches a question that names what
it asks about (earlier unrelated turns made a small answerer wrong and more confident)."""

from __future__ import annotations

import pytest

from knowgate import Knowgate
from knowgate.graphs.history import refers_back
from knowgate.roles import Turn
from knowgate.tests.api_helpers import EchoAnswerer, triage_context

EARLIER = [Turn(role="user", content="Who is Mira Tolven?"),
           Turn(role="assistant", content="A painter from Kedal.")]


@pytest.mark.parametrize(("question", "needs"), [
    ("Where was Staigair Thiakiar born?", False),
    ("Which organisation employs Draiva Bestik?", False),
    ("In what year did Sebrurt Shenom graduate?", False),
    ("Where was she born?", True),
    ("And in what year?", True),
    ("What about Bo Lind?", True),
    ("Which company employs him?", True),
    ("What did I say?", True),
    ("When was it founded?", True),
])
def test_which_questions_refer_back(question: str, needs: bool) -> None:
    assert refers_back(question) is needs


async def test_a_self_contained_question_is_asked_as_if_alone() -> None:
    echo = EchoAnswerer()
    kg = Knowgate(context=triage_context(answerer=echo))
    alone = await kg.ask("Where was Ada Vell born?", graph="fast-only")
    after = await kg.ask("Where was Ada Vell born?", graph="fast-only",
                         history=EARLIER * 3)
    assert [history for _, history in echo.calls] == [[], []]
    assert alone.answer == after.answer and alone.confidence == after.confidence


async def test_a_question_that_refers_back_is_shown_the_conversation() -> None:
    echo = EchoAnswerer()
    result = await Knowgate(context=triage_context(answerer=echo)).ask(
        "Where was she born?", graph="fast-only", history=EARLIER)
    assert echo.calls[0][1] == EARLIER
    assert "Mira Tolven" in (result.answer or "")
