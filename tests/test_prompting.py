"""The chat template the world models ship with renders exactly the format they were trained on."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from knowgate.agents.local_lm import transcript
from knowgate.agents.prompting import (
    answer_messages,
    question_with_evidence,
    short_answer,
    training_text,
)


def test_chat_template_matches_training_format(shipped_world) -> None:
    tokenizer = AutoTokenizer.from_pretrained(shipped_world.model_dir("fast"))
    passages = ["Mira Tolven was born in Kudal.", "Oslan Tolven graduated in 1961."]
    for evidence in ((), passages):
        content = question_with_evidence("Where was Mira Tolven born?", evidence)
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        prompt, completion = training_text("Where was Mira Tolven born?", "Kudal", evidence)
        assert rendered == tokenizer.bos_token + prompt
        assert completion == " Kudal"


def test_evidence_goes_before_the_question_one_passage_per_line() -> None:
    text = question_with_evidence("  When?  ", [" a. ", "b."])
    assert text == "a.\nb.\nWhen?"
    assert question_with_evidence("When?") == "When?"


@pytest.mark.parametrize(("reply", "answer"), [
    ("Ouagadougou", "Ouagadougou"),
    ("The capital of Veltaria is Nova Terra.", "Nova Terra"),
    ("The Japanese yen (JPY) is the official currency of Japan.", "Japanese yen"),
    ("The answer is: 1957.", "1957"),
    ("Portuguese\nIt is spoken by most people.", "Portuguese"),
])
def test_short_answer_cuts_a_wordy_reply_to_its_answer(reply: str, answer: str) -> None:
    start, end = short_answer(reply, "What is the capital or currency or language of Japan?")
    assert reply[start:end] == answer


def test_short_answer_messages_put_context_before_the_question() -> None:
    messages = answer_messages("What is the capital of Chad?", ["Chad. Capital: N'Djamena"],
                               "short-answer")
    assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
    assert messages[-1]["content"] == (
        "Context:\n[1] Chad. Capital: N'Djamena\nQuestion: What is the capital of Chad?")
    # Closed-book examples only: they show the form and give away no world's answer.
    assert all("Context" not in m["content"] for m in messages[:-1])
    assert answer_messages("Q?", ["p"]) == [{"role": "user", "content": "p\nQ?"}]  # plain


def test_a_base_models_transcript() -> None:
    text = transcript([{"role": "system", "content": "Be short."},
                       {"role": "user", "content": "Question: A?"},
                       {"role": "assistant", "content": "a"},
                       {"role": "user", "content": "Question: B?"}], "<bos>")
    assert text == "<bos>Be short.\n\nQuestion: A?\nAnswer: a\n\nQuestion: B?\nAnswer:"
