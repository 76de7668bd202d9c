"""The four roles as protocols, and the pydantic results (passages included) they return.

Graphs know roles only through these protocols, so a hosted model, a served open model, a
scripted fake (``knowgate.testing``) or a user's own class can stand in for any of them. Every
call is async and returns a result that carries its own price, so the graph can keep the ledger.
Failures are raised as ``RoleError`` subclasses; the graph turns them into a traced step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from knowgate.errors import KnowgateError


class Passage(BaseModel):
    """A corpus document as the searcher stores and returns it.

    Attributes:
        id: The document's id in its collection.
        text: The passage text.
        score: Ranking score from a search (higher is better).
        support: Share of the query's distinguishing words the passage contains (0 to 1).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    score: float | None = None
    support: float | None = None


RoleName = Literal["answerer", "critic", "prober", "searcher"]
ROLE_NAMES: tuple[str, ...] = get_args(RoleName)

Label = Literal["sure", "unsure"]
VerdictKind = Literal["accept", "revise", "abstain"]


class RoleError(KnowgateError):
    """A role could not do its job (provider down, timeout, unusable output).

    Attributes:
        role: Which role failed.
        reason: One line on what went wrong.
        cost_usd: What was spent before it failed (a repair attempt is still billed).
    """

    def __init__(self, role: str, reason: str, cost_usd: float = 0.0) -> None:
        super().__init__(f"{role}: {reason}")
        self.role = role
        self.reason = reason
        self.cost_usd = cost_usd


class MalformedOutputError(RoleError):
    """The model's output could not be parsed, even after one repair attempt."""


class Usage(BaseModel):
    """Tokens a model call consumed."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0


class TokenLogprob(BaseModel):
    """One generated token with its log-probability."""

    model_config = ConfigDict(frozen=True)

    token: str
    logprob: float


class Sampling(BaseModel):
    """How an answerer samples: greedy and once (``GREEDY``) unless a node asks otherwise, e.g.
    several answers at a temperature above 0 for a consistency signal.

    Attributes:
        temperature: 0 is greedy; above 0 samples (at most 2).
        n: How many answers to sample (``Draft.samples`` holds them all).
        seed: Makes sampling repeatable where the provider honours seeds; sample ``i`` of ``n``
            uses ``seed + i``.
    """

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=16)
    seed: int | None = None


GREEDY = Sampling()


class Draft(BaseModel):
    """The answerer's answer to one question.

    Attributes:
        answer: The answer text.
        confidence: The answerer's probability that the answer is right, in [0, 1].
        label: ``sure`` or ``unsure``, as the model stated it (or derived from ``confidence``).
        logprobs: The answer's tokens with their log-probabilities, when the provider gives them.
        with_evidence: Whether passages were in the prompt.
        model: The model that answered (after any fallback).
        usage: Tokens consumed, repair attempts included.
        cost_usd: What the call cost.
        samples: Every answer sampled when the call asked for ``n > 1`` (``answer`` is the
            first); empty for a single answer.
    """

    model_config = ConfigDict(frozen=True)

    answer: str
    confidence: float = Field(ge=0.0, le=1.0)
    label: Label
    logprobs: list[TokenLogprob] = Field(default_factory=list)
    with_evidence: bool = False
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = Field(default=0.0, ge=0.0)
    samples: list[str] = Field(default_factory=list)


class Signals(BaseModel):
    """Named scalar signals about a question or a draft (higher means more likely correct,
    except where a name says otherwise, e.g. ``*_entropy``).

    Trained probes (next to the training-free signals) add their own names; the policy refers
    to signals by name, so a new signal needs no change to the state or the graph.
    """

    model_config = ConfigDict(frozen=True)

    values: dict[str, float] = Field(default_factory=dict)
    cost_usd: float = Field(default=0.0, ge=0.0)

    def describe(self) -> str:
        """``name=value`` pairs, sorted by name (for traces and prompts)."""
        return ", ".join(f"{k}={v:.3f}" for k, v in sorted(self.values.items()))


class Evidence(BaseModel):
    """The result of one search.

    Attributes:
        query: What was searched.
        passages: Best first, with ids and scores.
        support: How much of the query's distinguishing terms the top passage contains (0..1);
            a low value means the passage is probably about something else.
        cached: True when the result came from the cache (and cost nothing).
        cost_usd: What the call cost.
    """

    model_config = ConfigDict(frozen=True)

    query: str
    passages: list[Passage]
    support: float = Field(default=0.0, ge=0.0, le=1.0)
    cached: bool = False
    cost_usd: float = Field(default=0.0, ge=0.0)


class Verdict(BaseModel):
    """The critic's judgement of a draft.

    Attributes:
        verdict: ``accept`` the draft, ``revise`` it (``answer`` is the revision), or ``abstain``.
        answer: The answer the critic stands behind (the draft when accepted).
        confidence: The critic's probability that ``answer`` is right, in [0, 1].
        model: The model that judged (after any fallback).
        usage: Tokens consumed.
        cost_usd: What the call(s) cost.
    """

    model_config = ConfigDict(frozen=True)

    verdict: VerdictKind
    answer: str = ""
    confidence: float = Field(ge=0.0, le=1.0)
    model: str = ""
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = Field(default=0.0, ge=0.0)


class Turn(BaseModel):
    """One earlier message of the conversation."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    content: str


@runtime_checkable
class Answerer(Protocol):
    """The fast model: answers with a confidence."""

    async def __call__(self, question: str, evidence: Sequence[Passage] = (),
                       history: Sequence[Turn] = (), sampling: Sampling = GREEDY) -> Draft:
        """Answer ``question``, reading ``evidence`` when given; ``sampling`` other than
        ``GREEDY`` samples ``n`` answers at its temperature (stock nodes never pass it, so an
        answerer written without it still serves them).

        Raises:
            RoleError: The provider failed or the output was unusable.
        """
        ...


@runtime_checkable
class Prober(Protocol):
    """A white-box local model that reads hidden states and returns signals."""

    async def __call__(self, question: str, answer: str | None = None) -> Signals:
        """Signals of ``question`` alone (before any answer exists) or of ``question`` + ``answer``.

        Raises:
            RoleError: The model could not run.
        """
        ...


@runtime_checkable
class Searcher(Protocol):
    """Retrieval with a price per call."""

    async def __call__(self, query: str) -> Evidence:
        """The top passages for ``query``.

        Raises:
            RoleError: The search backend failed.
        """
        ...


@runtime_checkable
class Critic(Protocol):
    """The slow model: checks and refines an uncertain draft."""

    async def __call__(self, question: str, draft: Draft | None, signals: Signals,
                       evidence: Sequence[Passage] = ()) -> Verdict:
        """Judge ``draft`` (``None`` when the answerer failed) given signals and evidence.

        Raises:
            RoleError: The provider failed or the output was unusable.
        """
        ...
