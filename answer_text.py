"""Features read from the answers' words: ``answer_echo``, ``critic_echo``,
``critic_agreement``, ``earlier_agreement``, ``answer_clause_overlap`` and
``critic_clause_overlap`` (``Policy.features`` adds them to the signals it weighs).

Two failures of small models show in the text of their answers, with no model pass:

* **Echo.** Asked "North Korea is located on which continent?", SmolLM2-135M answers "North
  Korea", at a token confidence of 0.96; a small critic asked about something no passage holds
  answers with the question's own words. An answer made of the question's words is rarely
  right, however sure the model is of it (its token probabilities point the wrong way).
* **Disagreement.** Two models that read the same passage, or that both remember, and give the
  same answer are right more often than either alone; when the critic answers otherwise than
  the draft, one of them is wrong. The same holds for every answer proposed earlier for the
  question (the fast model closed-book, the critic before a search): ``earlier_agreement``
  counts those the current answer agrees with.
* **The wrong clause.** A reader given the right passage may copy the value of a neighbouring
  field: asked for Sweden's chief of state, it reads "chief of state: King CARL XVI GUSTAF ...;
  head of government: Prime Minister Ulf KRISTERSSON ..." and answers the prime minister. The
  clause that states that answer shares none of the question's words. A sentence embedding
  (``evidence_match``) hardly sees this; a word overlap at the clause does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from knowgate.grading import normalize, states

_CLAUSE_END = re.compile(r"(?<=[.!?;])\s+")
# Words that say nothing about which fact is asked for.
_FUNCTION_WORDS = frozenset(
    "a an and are as at be been by current currently did do does for from how in is it its of "
    "on or that the this to was were what when where which who whom whose with".split())
# Words are compared by their first letters: a crude stemmer ("heads" and "head" differ, but
# "government" and "governs" meet), language-independent and enough for the overlap.
_STEM = 5


def echo(question: str, answer: str) -> float:
    """Share of the answer's words (normalised) that the question holds: 1.0 for an answer
    that only repeats the question's words, 0.0 for one the question does not suggest (and for
    a blank answer)."""
    words = normalize(answer).split()
    if not words:
        return 0.0
    asked = set(normalize(question).split())
    return sum(w in asked for w in words) / len(words)


def agreement(first: str, second: str) -> float:
    """1.0 when either answer states the other as whole words (normalised: "Ouagadougou" and
    "The capital is Ouagadougou."), else 0.0 (also when either is blank)."""
    return float(states(first, second) or states(second, first))


def earlier_agreement(answer: str, earlier: Iterable[str]) -> float:
    """How many of the ``earlier`` answers agree with ``answer`` (``agreement``)."""
    return float(sum(agreement(answer, other) for other in earlier))


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in normalize(text).split() if w not in _FUNCTION_WORDS}


def clause_overlap(question: str, answer: str, passages: Iterable[str]) -> float:
    """Share of the question's content words (the answer's own left out) held by the clause
    of ``passages`` that states ``answer`` (the best one when several do; clauses end at
    ``.!?;``); 0.0 when no clause states it or the question has no other content word."""
    asked = _stems(question) - _stems(answer)
    clauses = [c for text in passages for c in _CLAUSE_END.split(text.strip())
               if states(c, answer)]
    if not asked or not clauses:
        return 0.0
    return max(len(asked & _stems(c)) for c in clauses) / len(asked)
