"""The unit of retrieval: a passage with its id and, when it came from a search, its scores."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
