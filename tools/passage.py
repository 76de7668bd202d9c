"""The unit of retrieval: a passage with its id and, when it came from a search, its score."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Passage(BaseModel):
    """A corpus document as the searcher stores and returns it."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    score: float | None = None
