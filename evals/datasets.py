"""Evaluation datasets: JSONL records ``{id, question, answers, kind?, meta?}``.

A user's file and the world's splits load into the same ``EvalItem`` list, so every run, metric
and baseline sees one shape. A bad line is a ``UserError`` that names the file and the line.
Records from elsewhere are taken as they come: an integer id, a single ``answer`` string, and
fields knowgate does not know (they go into ``meta``). ``answers: []``, or no answer with
``kind: "unanswerable"``, means no right answer exists: abstaining is right and any answer is
graded wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from knowgate.errors import UserError
from knowgate.jsonl import read_jsonl
from knowgate.settings import Settings

UNANSWERABLE = "unanswerable"


class EvalItem(BaseModel):
    """One question to evaluate.

    Attributes:
        id: Unique within the dataset (resume skips finished ids); an integer is read as text.
        question: The question text.
        answers: Accepted answers (aliases); graded by alias matching or a judge. Empty when no
            right answer exists. A record may give one ``answer`` string instead.
        kind: The question's class when known (the world's classes drive the oracle);
            ``unanswerable`` for a record without answers. (The synthetic world's unanswerable
            questions keep their gold: it exists, only no role here knows it.)
        meta: Anything else, carried into the records unchanged (unknown fields land here).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: list[str] = Field(default_factory=list)
    kind: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_outside(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool):
            data["id"] = str(data["id"])
        if "answer" in data:
            if "answers" in data:
                raise ValueError("give `answers` (a list) or `answer` (one string), not both")
            answer = data.pop("answer")
            data["answers"] = [] if answer is None else [answer]
        if "answers" not in data and data.get("kind") != UNANSWERABLE:
            raise ValueError("a record needs `answers` (a list; [] when no right answer "
                             "exists), `answer`, or `kind: \"unanswerable\"`")
        known = set(cls.model_fields)
        extra = {k: v for k, v in data.items() if k not in known}
        if extra:
            meta = data.get("meta") or {}
            if not isinstance(meta, dict):
                raise ValueError("`meta` must be an object")
            data = {k: v for k, v in data.items() if k in known}
            data["meta"] = {**extra, **meta}
        if not data.get("answers") and data.get("kind") is None:
            data["kind"] = UNANSWERABLE
        return data

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value

    @property
    def answerable(self) -> bool:
        """Whether a right answer exists."""
        return bool(self.answers)


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


def load_dataset(spec: str, settings: Settings, limit: int | None = None,
                 sample: int | None = None, seed: int = 5) -> Dataset:
    """A dataset file, or a split of the settings' world (``test``, ``calibration`` ...).

    Args:
        spec: A path to a JSONL file, or a split name of the world.
        settings: Where the world is.
        limit: Keep only the first ``limit`` items.
        sample: Keep a random ``sample`` of the items, drawn with ``seed`` (the same items for
            every graph, in file order), when a whole split costs more than the machine has.
        seed: The sample's seed.

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
                          kind=q.kind.value if q.kind is not None else None,
                          meta={**q.meta, "relation": q.relation, "template": q.template,
                                "subject": q.subject})
                 for q in world.questions(spec)]
        name = f"{world.name}:{spec}"
    if sample is not None:
        if sample < 1:
            raise UserError("--sample must be at least 1")
        if sample < len(items):
            import random

            keep = set(random.Random(seed).sample(range(len(items)), sample))
            items = [item for n, item in enumerate(items) if n in keep]
            name = f"{name}[sample {sample}, seed {seed}]"
    if limit is not None:
        if limit < 1:
            raise UserError("--limit must be at least 1")
        items = items[:limit]
    return Dataset(name=name, items=items)
