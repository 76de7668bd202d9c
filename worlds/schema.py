"""Records of a knowledge world: facts, questions and the world card."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Kind(StrEnum):
    """Who can answer a question, and so which action is right for it."""

    FAST_KNOWN = "fast-known"  # the fast model memorised it: answer
    SLOW_KNOWN = "slow-known"  # only the slow model memorised it: refine
    SEARCHABLE = "searchable"  # only the corpus has it: search
    UNANSWERABLE = "unanswerable"  # nobody has it: abstain


class Use(StrEnum):
    """Where a fact goes. Evaluated facts carry a ``Kind``.

    ``READING`` facts belong to practice entities that no question asks about: the models practise
    reading on those entities (with fresh values every time), and the facts stand in the corpus as
    background documents, the distractors a search also finds.
    """

    FAST_KNOWN = "fast-known"
    SLOW_KNOWN = "slow-known"
    SEARCHABLE = "searchable"
    UNANSWERABLE = "unanswerable"
    READING = "reading"


class Fact(BaseModel):
    """One (subject, relation, value) triple and its statement as text."""

    model_config = ConfigDict(frozen=True)

    id: str
    subject: str
    subject_type: str
    relation: str
    value: str
    statement: str
    use: Use
    passage_id: str | None = None  # the corpus passage that states it, if any


class CorpusPassage(BaseModel):
    """One corpus document: the searchable statements about one entity."""

    model_config = ConfigDict(frozen=True)

    id: str
    subject: str
    text: str
    fact_ids: list[str]


class Question(BaseModel):
    """One evaluation question with ground truth; ``answers`` are accepted aliases."""

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answers: list[str] = Field(min_length=1)
    kind: Kind
    fact_id: str
    relation: str
    subject: str
    template: str
    split: str


class WorldCard(BaseModel):
    """``world.json``: what a world is, how it was built, and what was measured on it."""

    model_config = ConfigDict(extra="allow")

    name: str
    format_version: int = 1
    seed: int
    spec: dict[str, Any]
    counts: dict[str, Any]
    models: dict[str, Any] = Field(default_factory=dict)
    build: dict[str, Any] = Field(default_factory=dict)
    check: dict[str, Any] = Field(default_factory=dict)
