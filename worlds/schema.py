"""Records of a knowledge world: facts, questions and the world card."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from knowgate.agents.model_files import GGUFSource
from knowgate.agents.prompting import PromptStyle


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
    """One evaluation question with ground truth.

    Attributes:
        answers: Accepted answers (aliases); empty when no right answer exists (abstaining is
            right, any answer wrong).
        kind: The class, where the world constructs it; ``None`` where it is measured (who
            actually answers it right: an explore run labels it).
        meta: Anything else about the question (``time_sensitive``, ``since`` ...).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    question: str
    answers: list[str] = Field(default_factory=list)
    kind: Kind | None = None
    fact_id: str
    relation: str
    subject: str
    template: str
    split: str
    meta: dict[str, Any] = Field(default_factory=dict)


class LocalModelSpec(BaseModel):
    """How a world serves one of its local models (``local/<name>`` in litellm).

    Attributes:
        dir: The model directory, relative to the world (a trained world's ``models/fast``).
        gguf: Or a GGUF model shipped in packages, converted once into the model cache.
        prompt: The prompt style the model answers in (``knowgate.agents.prompting``).
        max_tokens: Longest reply the roles ask it for.
        prices: Dollars per million (input, output) tokens.
        licence: Under which terms the weights come.
        parameters: Parameter count, for the card.
        evidence_weight: As the critic: what an answer it reads from passages is weighted by
            (``support``: the search's support, for a tiny reader that copies from passages
            about the wrong entity; ``none``: its own probability, the policy weighs support;
            ``only``: with passages it answers from them alone, without a closed-book pass).
        abstain_below: As the critic: under which probability a different answer is an
            ``abstain`` verdict (0: it always stands behind its best answer and the calibrated
            policy decides).
    """

    model_config = ConfigDict(frozen=True)

    dir: str | None = None
    gguf: GGUFSource | None = None
    prompt: PromptStyle = "plain"
    max_tokens: int = Field(default=24, ge=1, le=512)
    prices: tuple[float, float] = (0.0, 0.0)
    licence: str = ""
    parameters: int | None = None
    evidence_weight: Literal["support", "none", "only"] = "support"
    abstain_below: float = Field(default=0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_source(self) -> LocalModelSpec:
        if (self.dir is None) == (self.gguf is None):
            raise ValueError("a local model needs exactly one of `dir` and `gguf`")
        return self


class WorldCard(BaseModel):
    """``world.json``: what a world is, how it was built, and what was measured on it.

    Attributes:
        local_models: The models the world serves (``fast``: the answerer, also read by the
            prober; ``slow``: the critic), by name.
        search_price_usd: Dollars per search of the world's corpus.
        search_lexical_weight: The searcher's word-overlap re-rank weight, tuned on the corpus
            with calibration questions.
        policy: The world's fitted policy file, relative to the world (``None``: knowgate's
            default policy).
        grading: ``exact`` (normalised exact match) or ``contains`` (a short reply that states
            an accepted answer as whole words; pretrained models add words).
        licence: Under which terms the world's text comes.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    format_version: int = 1
    seed: int
    spec: dict[str, Any]
    counts: dict[str, Any]
    models: dict[str, Any] = Field(default_factory=dict)
    build: dict[str, Any] = Field(default_factory=dict)
    check: dict[str, Any] = Field(default_factory=dict)
    local_models: dict[str, LocalModelSpec] = Field(default_factory=dict)
    search_price_usd: float = Field(default=0.00015, ge=0.0)
    search_lexical_weight: float = Field(default=1.0, ge=0.0, le=10.0)
    policy: str | None = None
    grading: Literal["exact", "contains"] = "exact"
    licence: str = ""
