"""Evaluation datasets: JSONL records ``{id, question, answers, kind?, meta?}``.

A user's file and the world's splits load into the same ``EvalItem`` list, so every run, metric
and baseline sees one shape. A bad line is a ``UserError`` that names the file and the line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from knowgate.errors import UserError
from knowgate.jsonl import read_jsonl
from knowgate.settings import Settings


class EvalItem(BaseModel):
    """One question to evaluate.

    Attributes:
        id: Unique within the dataset (resume skips finished ids).
        question: The question text.
        answers: Accepted answers (aliases); graded by normalised exact match or a judge.
        kind: The question's class when known (the world's classes drive the oracle).
        meta: Anything else, carried into the records unchanged.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)
    kind: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value


@dataclass(frozen=True)
class Dataset:
    """Items with where they came from and a hash of their content (for the run manifest)."""

    name: str
    items: list[EvalItem]

    @property
    def digest(self) -> str:
        """sha256 over the items, in order."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(item.model_dump_json().encode("utf-8") + b"\n")
        return h.hexdigest()


def read_items(path: Path) -> list[EvalItem]:
    """Read a JSONL dataset file.

    Raises:
        UserError: The file is missing, a line is not a valid record, or an id repeats.
    """
    if not path.is_file():
        raise UserError(f"dataset not found: {path}")
    items: list[EvalItem] = []
    seen: set[str] = set()
    for number, item in read_jsonl(path, EvalItem, "record"):
        if item.id in seen:
            raise UserError(f"{path}:{number}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise UserError(f"{path}: no records")
    return items


def load_dataset(spec: str, settings: Settings, limit: int | None = None) -> Dataset:
    """A dataset file, or a split of the settings' world (``test``, ``calibration`` ...).

    Args:
        spec: A path to a JSONL file, or a split name of the world.
        settings: Where the world is.
        limit: Keep only the first ``limit`` items.

    Raises:
        UserError: Neither a readable file nor a split of the world; a bad record.
    """
    from knowgate.worlds.world import SPLITS, World

    path = Path(spec)
    if path.exists() or spec not in SPLITS:
        if not path.exists():
            raise UserError(f"dataset {spec!r} is neither a file nor a world split "
                            f"({', '.join(SPLITS)})")
        items, name = read_items(path), str(path)
    else:
        world = World(settings.world)
        items = [EvalItem(id=q.id, question=q.question, answers=list(q.answers),
                          kind=q.kind.value,
                          meta={"relation": q.relation, "template": q.template})
                 for q in world.questions(spec)]
        name = f"{world.name}:{spec}"
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be at least 1")
        items = items[:limit]
    return Dataset(name=name, items=items)
