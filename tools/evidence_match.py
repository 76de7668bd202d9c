"""Does the evidence state the answer *to this question*? The ``evidence_match`` signal.

A small reader given a passage copies a value from it whether or not the passage answers the
question: asked where someone works, it reads "X was born in Y." and answers Y. The search's
``support`` cannot see this (the passage is about the right entity), and neither can the reader's
own confidence. ``evidence_match`` looks at the sentence the answer was copied from: it is the
cosine similarity between the question and the evidence sentence that contains the answer (the
best one when several do), and 0 when no sentence contains it. "Where does X work?" is close to
"X works for Z." and far from "X was born in Y.".

On the default world's calibration split, adding it to the open-book map's features raised the
cross-validated AUROC of "the open-book draft is right" from 0.973 to 0.990.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from knowgate.agents.batching import MicroBatcher
from knowgate.grading import states
from knowgate.roles import Passage

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

Embed = Callable[[list[str]], Any]
_Input = tuple[str, str, Sequence[Passage]]


def answer_sentences(answer: str, passages: Sequence[Passage]) -> list[str]:
    """The sentences of ``passages`` that contain ``answer`` as whole words (normalised)."""
    return [sentence for p in passages for sentence in _SENTENCE_END.split(p.text.strip())
            if states(sentence, answer)]


class EvidenceMatcher:
    """Scores how well the evidence sentence carrying an answer matches the question.

    Args:
        embed: A sentence embedder: a list of texts in, one vector per text out (a chromadb
            embedding function, e.g. ``ChromaSearcher.embed``).
    """

    def __init__(self, embed: Embed) -> None:
        self.embed = embed
        self._batcher: MicroBatcher[_Input, float] = MicroBatcher(
            lambda _, inputs: self.score_many(inputs), size=32)

    def score(self, question: str, answer: str, passages: Sequence[Passage]) -> float:
        """``evidence_match`` of ``answer`` read from ``passages`` (0 to 1; 0 when no sentence
        contains the answer)."""
        return self.score_many([(question, answer, passages)])[0]

    def score_many(self, inputs: Sequence[_Input]) -> list[float]:
        """``score`` of several ``(question, answer, passages)``, embedded in one call."""
        texts: list[str] = []
        spans: list[tuple[int, int] | None] = []
        for question, answer, passages in inputs:
            sentences = answer_sentences(answer, passages)
            if not sentences:
                spans.append(None)
                continue
            spans.append((len(texts), len(texts) + 1 + len(sentences)))
            texts += [question.strip(), *sentences]
        if not texts:
            return [0.0] * len(inputs)
        vectors = np.asarray(self.embed(texts), dtype=float)
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0.0] = 1.0
        unit = vectors / norms[:, None]
        out = []
        for span in spans:
            if span is None:
                out.append(0.0)
                continue
            start, end = span
            out.append(float(np.clip((unit[start + 1:end] @ unit[start]).max(), 0.0, 1.0)))
        return out

    async def __call__(self, question: str, answer: str, passages: Sequence[Passage]) -> float:
        """``score`` in a worker thread (embedding is CPU work), batched with the concurrent
        calls of other questions."""
        return await self._batcher.submit(None, (question, answer, tuple(passages)))
