"""Normalised exact match, as SQuAD and TriviaQA grade short answers."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def states(text: str, answer: str) -> bool:
    """True when ``text`` contains ``answer`` as whole words, both normalised (a blank answer is
    stated nowhere)."""
    wanted = normalize(answer)
    return bool(wanted) and f" {wanted} " in f" {normalize(text)} "


def is_correct(prediction: str, answers: Iterable[str]) -> bool:
    """True when ``prediction`` equals one of ``answers`` after normalisation."""
    guess = normalize(prediction)
    return bool(guess) and any(guess == normalize(a) for a in answers)
