"""JSON answers from hosted models: ask, validate with pydantic, repair once, then fail typed.

Hosted chat models are asked for one JSON object. Models wrap JSON in code fences or prose often
enough that the parser looks for the outermost object; anything that still fails validation gets
one repair turn quoting the error, and a second failure is a ``MalformedOutputError``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from knowgate.agents.llm import Completion, Deadline, complete
from knowgate.roles import MalformedOutputError

_Model = TypeVar("_Model", bound=BaseModel)


def parse_json_object(text: str, schema: type[_Model]) -> _Model:
    """Validate the outermost JSON object in ``text`` against ``schema``.

    Raises:
        ValueError: No JSON object in the text, or it does not match the schema.
    """
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("no JSON object in the reply")
    try:
        return schema.model_validate(json.loads(text[start:end + 1]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    except ValidationError as exc:
        raise ValueError(f"JSON does not match the schema: {exc.errors()[0]['msg']}") from exc


async def complete_json(router: Any, role: str, model: str, messages: Sequence[dict[str, str]],
                        schema: type[_Model], timeout_s: float, **params: Any
                        ) -> tuple[_Model, list[Completion]]:
    """Ask for a JSON object matching ``schema``, with one repair attempt.

    Returns:
        The parsed object and every completion made (so the caller can bill all of them).

    Raises:
        RoleError: The provider failed.
        MalformedOutputError: The reply was still not valid after the repair turn.
    """
    deadline = Deadline(timeout_s)  # the repair turn shares the role's time budget
    first = await complete(router, role, model, messages, deadline.left(), **params)
    try:
        return parse_json_object(first.text, schema), [first]
    except ValueError as exc:
        problem = str(exc)
    repair = [
        *messages,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": f"That reply was not usable ({problem}). "
                                    "Reply again with only the JSON object."},
    ]
    if deadline.left() <= 0:
        raise MalformedOutputError(role, f"{model} gave no valid JSON ({problem}) and no time "
                                         "was left for a repair", cost_usd=first.cost_usd)
    try:
        second = await complete(router, role, model, repair, deadline.left(), **params)
    except MalformedOutputError:
        raise
    except Exception as exc:
        if hasattr(exc, "cost_usd"):
            exc.cost_usd += first.cost_usd  # the first, unusable reply was still billed
        raise
    try:
        return parse_json_object(second.text, schema), [first, second]
    except ValueError as exc:
        raise MalformedOutputError(role, f"{model} gave no valid JSON after one repair: {exc}",
                                   cost_usd=first.cost_usd + second.cost_usd) from exc
