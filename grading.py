"""Grading short answers against accepted aliases: normalised exact match (SQuAD, TriviaQA) or,
for pretrained models that add words, a short reply that states an alias as whole words."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Literal

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


GradingMode = Literal["exact", "contains"]
CONTAINS_MAX_WORDS = 10
"""Longest reply (in words) the ``contains`` mode grades: a longer one lists or hedges."""


def is_correct(prediction: str, answers: Iterable[str], mode: GradingMode = "exact") -> bool:
    """True when ``prediction`` matches one of ``answers`` (never for an empty list: no right
    answer exists).

    Args:
        prediction: The answer given.
        answers: Accepted aliases.
        mode: ``exact``: equal after normalisation. ``contains``: a reply of at most
            ``CONTAINS_MAX_WORDS`` words that states an alias as whole words ("Ouagadougou,
            the capital" for "Ouagadougou").
    """
    guess = normalize(prediction)
    if not guess:
        return False
    if mode == "contains":
        return len(guess.split()) <= CONTAINS_MAX_WORDS and any(states(guess, a) for a in answers)
    return any(guess == normalize(a) for a in answers)
