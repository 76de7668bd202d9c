"""Reading user and world files: UTF-8 text, and JSONL records validated line by line.

One place for what every reader of a JSONL file owes its caller: blank lines skipped, a
byte-order mark dropped, and a bad line reported with its file and line number and pydantic's
problems on one line (the CLI prints one line).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from knowgate.errors import UserError

_Model = TypeVar("_Model", bound=BaseModel)


def read_text(path: Path, error: type[UserError] = UserError) -> str:
    """The file as text (utf-8; a byte-order mark, as some Windows editors write, is dropped).

    Raises:
        error: The file is not UTF-8.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def read_jsonl(path: Path, model: type[_Model], what: str,
               error: type[UserError] = UserError) -> Iterator[tuple[int, _Model]]:
    """``(line number, record)`` for each non-blank line of a JSONL file, validated as ``model``.

    Raises:
        error: The file is not UTF-8, or a line is not a valid ``what`` (file and line named).
    """
    for number, line in enumerate(read_text(path, error).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, model.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
                for e in exc.errors())
            raise error(f"{path}:{number}: invalid {what}: {problems}") from exc
