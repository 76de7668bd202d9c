"""How questions and evidence are put to local models answering in plain text.

Two prompt styles, one definition each, shared by the answerer, the critic and the prober (the
prober must read exactly the prompt the answerer is given):

* ``plain``: the question as the user turn, with passages first, one per line. The synthetic
  world's tiny models are trained on exactly this format (``training_text``).
* ``short-answer``: for real pretrained models. A system instruction asks for a short answer,
  three closed-book examples show the form, and passages come as numbered context before the
  question. A model with a chat template gets these as chat turns; a base model without one
  gets the same turns as a ``Question: ... Answer: ...`` transcript (``LocalLM.render``).
  Instruct models are wordy all the same, so ``short_answer`` cuts a reply down to its answer.

Hosted models get their own prompts (with JSON output) elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from knowgate.roles import Passage

PromptStyle = Literal["plain", "short-answer"]
PROMPT_STYLES: tuple[PromptStyle, ...] = ("plain", "short-answer")

SHORT_ANSWER_INSTRUCTION = (
    "Answer the question with a short answer only: a name, a place, a number or a date, never "
    "a sentence. When context is given, answer from the context."
)
# General knowledge no world asks about, so that the examples give away no answer.
SHORT_ANSWER_EXAMPLES = (
    ("What is the capital of Italy?", "Rome"),
    ("Who wrote Hamlet?", "William Shakespeare"),
    ("In what year did the Second World War end?", "1945"),
)
SHORT_ANSWER_STOP = ("\n",)

# A Jinja chat template in the Hugging Face format, stored with each world model's tokenizer so
# that ``tokenizer.apply_chat_template`` (and any serving stack that honours it) renders turns the
# way the model was trained: "User: ...\nAssistant: <answer></s>".
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}System: {{ m['content'] }}\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def question_with_evidence(question: str, passages: Sequence[str] = ()) -> str:
    """The user turn for ``question``, with passages first, one per line, when there are any."""
    question = question.strip()
    if not passages:
        return question
    return "\n".join([*(p.strip() for p in passages), question])


def training_text(question: str, answer: str, passages: Sequence[str] = ()) -> tuple[str, str]:
    """(prompt, completion) of one training example, in the chat template's rendering."""
    prompt = f"User: {question_with_evidence(question, passages)}\nAssistant:"
    return prompt, f" {answer}"


def listed_passages(passages: Sequence[Passage]) -> str:
    """Passages one per line with their ids in brackets, for prompts to hosted models."""
    return "\n".join(f"[{p.id}] {p.text}" for p in passages)


def answer_messages(question: str, passages: Sequence[str] = (), style: PromptStyle = "plain",
                    history: Sequence[dict[str, str]] = ()) -> list[dict[str, str]]:
    """The chat messages that ask a local model ``question`` in ``style``.

    Args:
        question: The question.
        passages: Evidence texts, best first.
        style: ``plain`` or ``short-answer`` (see the module).
        history: Earlier turns (``{"role", "content"}``), placed before the question.
    """
    if style == "plain":
        return [*history, {"role": "user", "content": question_with_evidence(question, passages)}]
    if style != "short-answer":
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(PROMPT_STYLES)}")
    messages = [{"role": "system", "content": SHORT_ANSWER_INSTRUCTION}]
    for example, answer in SHORT_ANSWER_EXAMPLES:
        messages += [{"role": "user", "content": f"Question: {example}"},
                     {"role": "assistant", "content": answer}]
    messages += list(history)
    text = f"Question: {question.strip()}"
    if passages:
        context = "\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, start=1))
        text = f"Context:\n{context}\n{text}"
    messages.append({"role": "user", "content": text})
    return messages


_LEAD_INS = re.compile(r"^(?:answer|the answer is|the answer to (?:this|the) question is)\s*[:,-]?"
                       r"\s*", re.IGNORECASE)
_COPULA = re.compile(r"\s+(?:is|are|was|were)\s+", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")


def short_answer(reply: str, question: str) -> tuple[int, int]:
    """The span ``(start, end)`` of the answer inside a model's ``reply``.

    A short reply is its own answer. A sentence that restates the question around a copula
    ("The capital of Chad is N'Djamena.") keeps the side that shares fewer words with the
    question; lead-ins ("The answer is"), a trailing period and an explanation after a comma or
    a parenthesis ("Yen (JPY), the currency of Japan") are dropped. The span lets the caller
    score exactly the tokens of the answer.
    """
    start, end = 0, len(reply)
    first_line = reply.find("\n")
    if first_line >= 0:
        end = first_line
    lead = _LEAD_INS.match(reply[start:end])
    if lead:
        start += lead.end()
    asked = {w.lower() for w in _WORD.findall(question)}
    copula = _COPULA.search(reply, start, end)
    if copula is not None:
        left, right = (start, copula.start()), (copula.end(), end)
        overlap = [len({w.lower() for w in _WORD.findall(reply[a:b])} & asked)
                   for a, b in (left, right)]
        start, end = right if overlap[1] <= overlap[0] else left
    for mark in (" (", ", ", "; "):
        cut = reply.find(mark, start, end)
        if cut > start:
            end = cut
    while end > start and reply[end - 1] in " .!?;:,":
        end -= 1
    while start < end and reply[start] in " \"'":
        start += 1
    for article in ("The ", "the ", "A ", "An "):
        if reply.startswith(article, start) and end - start > len(article):
            start += len(article)
            break
    return start, end
