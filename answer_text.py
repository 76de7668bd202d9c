"""Features read from the answers' words alone: ``answer_echo``, ``critic_echo`` and
``critic_agreement`` (``Policy.features`` adds them to the signals it weighs).

Two failures of small models show in the text of their answers, with no model pass:

* **Echo.** Asked "North Korea is located on which continent?", SmolLM2-135M answers "North
  Korea", at a token confidence of 0.96; a small critic asked about something no passage holds
  answers with the question's own words. An answer made of the question's words is rarely
  right, however sure the model is of it (its token probabilities point the wrong way).
* **Disagreement.** Two models that read the same passage, or that both remember, and give the
  same answer are right more often than either alone; when the critic answers otherwise than
  the draft, one of them is wrong.
"""

from __future__ import annotations

from knowgate.grading import normalize, states


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
