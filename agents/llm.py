"""Every LLM call in knowgate goes through one litellm ``Router`` built from the settings.

The Router does what it is good at: retries with exponential backoff on 429s, 5xx and timeouts,
per-request timeouts, and fallbacks to other models. This module adds only what a role needs on
top: the text, the token logprobs, usage and cost of one call, and one typed error
(``RoleError``) whatever went wrong underneath.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from knowgate.agents.litellm_setup import import_litellm
from knowgate.agents.prompting import (
    SHORT_ANSWER_STOP,
    PromptStyle,
    answer_messages,
    short_answer,
)
from knowgate.errors import UserError
from knowgate.roles import RoleError, TokenLogprob, Usage
from knowgate.settings import Settings

Format = Literal["json", "logprobs"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    """What one chat completion returned."""

    text: str
    logprobs: list[TokenLogprob]
    usage: Usage
    cost_usd: float
    model: str

    @property
    def probability(self) -> float | None:
        """Probability of the whole generated sequence, when token logprobs came back."""
        if not self.logprobs:
            return None
        return math.exp(sum(t.logprob for t in self.logprobs))

    def span(self, start: int, end: int) -> Completion:
        """This completion cut to ``text[start:end]``, keeping the tokens that overlap it (so
        that ``probability`` scores the answer, not the words around it)."""
        joined = "".join(t.token for t in self.logprobs)
        offset = max(0, joined.find(self.text)) if self.text else 0
        kept, position = [], 0
        for token in self.logprobs:
            token_start, position = position, position + len(token.token)
            if position > offset + start and token_start < offset + end:
                kept.append(token)
        return replace(self, text=self.text[start:end], logprobs=kept or self.logprobs)


def bill(completions: Sequence[Completion]) -> tuple[Usage, float]:
    """Total usage and dollars of several completions (a repair turn, two critic passes)."""
    usage = Usage(prompt_tokens=sum(c.usage.prompt_tokens for c in completions),
                  completion_tokens=sum(c.usage.completion_tokens for c in completions))
    return usage, sum(c.cost_usd for c in completions)


def build_router(settings: Settings, models: Sequence[str]) -> Any:
    """A litellm ``Router`` with one deployment per model of ``models`` and of the settings'
    ``fallbacks``, whose ``model_name`` is the model id itself, so callers keep using ordinary
    litellm ids; timeouts, retries and ``litellm_params`` come from the settings. Prices among
    the ``litellm_params`` (``input_cost_per_token`` ...) go into litellm's cost map once.

    One configuration gets one Router per process, shared by every caller: each Router hooks
    its usage callbacks into litellm's process-wide callback lists, so every call would run the
    callbacks of every Router ever built with it (a fresh Router per ``Knowgate`` made a call
    cost about 1 ms more for each one built before).
    """
    litellm = import_litellm()
    names = list(models)
    for source, targets in settings.fallbacks.items():
        names += [source, *targets]
    try:
        model_list = []
        for name in dict.fromkeys(names):
            params = dict(settings.litellm_params.get(name, {}))
            _register_prices(name, {key: params.pop(key) for key in list(params)
                                    if key in _price_fields()})
            model_list.append({"model_name": name,
                               "litellm_params": {"model": name,
                                                  "timeout": settings.llm_timeout_s, **params}})
        config = {
            "model_list": model_list,
            "num_retries": settings.llm_retries,
            "timeout": settings.llm_timeout_s,
            "fallbacks": [{source: list(targets)}
                          for source, targets in settings.fallbacks.items()],
        }
        key = _config_key(config)
        if key not in _ROUTERS:
            # One deployment per name: cooling it down after a failure would only turn a
            # transient error into "no deployments available" for every request that follows.
            _ROUTERS[key] = litellm.Router(**config, disable_cooldowns=True)
        return _ROUTERS[key]
    except Exception as exc:  # litellm rejects model ids it cannot route
        raise UserError(f"cannot build the model router: {_first_line(exc)}") from exc


_ROUTERS: dict[str, Any] = {}  # configuration key -> its Router, shared within the process


def _config_key(config: dict[str, Any]) -> str:
    """A Router configuration as canonical JSON, with the environment variables its
    ``os.environ/NAME`` values name (the Router reads them when built) hashed in."""
    text = json.dumps(config, sort_keys=True, default=repr)
    named = sorted(set(re.findall(r'"os\.environ/([^"]+)"', text)))
    environ = hashlib.sha256(json.dumps([os.environ.get(n) for n in named]).encode())
    return f"{text}|{environ.hexdigest()}"


@functools.cache
def _price_fields() -> frozenset[str]:
    from litellm.types.router import CustomPricingLiteLLMParams

    return frozenset(CustomPricingLiteLLMParams.model_fields)


_REGISTERED: dict[str, dict[str, Any]] = {}  # model id -> the prices registered for it


def _register_prices(model: str, prices: dict[str, Any]) -> None:
    """Enter a model's prices from ``litellm_params`` into litellm's cost map, once.

    Left in a deployment's ``litellm_params``, prices make litellm re-register the model on
    every call, which empties its model-info caches and rebuilds its cost-map index (a Router
    call took 6.6 ms of CPU so, 4.0 ms with the prices registered once, measured on 300 calls).
    Registered once, cost is looked up as for a model in litellm's own map. The map is process-wide in litellm; two settings that price one model
    id differently leave the later prices in force, so that is warned of.
    """
    if not prices or _REGISTERED.get(model) == prices:
        return
    litellm = import_litellm()
    if model in _REGISTERED:
        _log.warning("model %s is priced differently by two settings in one process; litellm "
                     "keeps one price table per process, so the later prices apply", model)
    _, provider, _, _ = litellm.get_llm_provider(model)
    # Hosted models priced by the user have no prompt cache prices; saying so keeps litellm
    # from warning on every registration.
    litellm.register_model({model: {"cache_creation_input_token_cost": 0.0,
                                    "cache_read_input_token_cost": 0.0, **prices,
                                    "litellm_provider": provider, "mode": "chat"}})
    _REGISTERED[model] = prices


class Deadline:
    """One time budget shared by the several calls of one role (a repair turn, two passes)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self._ends - time.monotonic())


def _logprobs(choice: Any) -> list[TokenLogprob]:
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    out = []
    for item in content:
        token = getattr(item, "token", None)
        logprob = getattr(item, "logprob", None)
        if token is None or logprob is None:
            continue
        out.append(TokenLogprob(token=token, logprob=float(logprob)))
    return out


def _cost(response: Any) -> float:
    litellm = import_litellm()
    hidden = getattr(response, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is None:
        try:
            cost = litellm.completion_cost(completion_response=response)
        except Exception:  # a model without a price in litellm's map or in the settings
            cost = 0.0
    return max(0.0, float(cost or 0.0))


async def complete(router: Any, role: str, model: str, messages: Sequence[dict[str, str]],
                   timeout_s: float, **params: Any) -> Completion:
    """One chat completion through ``router``.

    Args:
        router: From ``build_router``.
        role: Who is calling (``answerer``, ``critic``), for error messages.
        model: The model id (a deployment name in the router).
        messages: OpenAI-style chat messages.
        timeout_s: Bound on the whole call, retries and fallbacks included.
        **params: Completion parameters (``max_tokens``, ``temperature``, ``logprobs`` ...).

    Raises:
        RoleError: The provider failed after retries and fallbacks, or timed out.
    """
    try:
        response = await asyncio.wait_for(
            router.acompletion(model=model, messages=list(messages), **params), timeout_s
        )
    except TimeoutError as exc:
        raise RoleError(role, f"{model} timed out after {timeout_s:.3g} s") from exc
    except Exception as exc:  # litellm maps every provider failure to its exception types
        raise RoleError(role, f"{model} failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    try:
        choice = response.choices[0]
        text = choice.message.content or ""
    except (AttributeError, IndexError) as exc:
        raise RoleError(role, f"{model} returned no choices") from exc
    usage = getattr(response, "usage", None)
    return Completion(
        text=text,
        logprobs=_logprobs(choice),
        usage=Usage(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                    completion_tokens=getattr(usage, "completion_tokens", 0) or 0),
        cost_usd=_cost(response),
        model=getattr(response, "model", None) or model,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


class LiteLLMRole:
    """What the litellm-backed roles share: where to call, how, and within what time.

    Args:
        router: A litellm Router (``build_router``).
        model: The model id to call.
        fmt: ``json`` (hosted models) or ``logprobs`` (confidence from token probabilities).
        timeout_s: Bound on one role call, retries and repair turns included.
        max_tokens: Longest answer.
        prompt_style: How a ``logprobs``-mode question is put (``knowgate.agents.prompting``):
            ``plain`` for models trained on that format, ``short-answer`` for pretrained ones.
    """

    role = "role"

    def __init__(self, router: Any, model: str, fmt: Format, timeout_s: float,
                 max_tokens: int = 24, prompt_style: PromptStyle = "plain") -> None:
        self.router = router
        self.model = model
        self.fmt = fmt
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.prompt_style: PromptStyle = prompt_style

    async def ask_plain(self, question: str, passages: Sequence[str] = (),
                        history: Sequence[dict[str, str]] = (), **params: Any) -> Completion:
        """One ``logprobs``-mode call: ``question`` in this role's prompt style, the reply cut to
        its answer (``short_answer``) in the ``short-answer`` style, token logprobs kept.

        Raises:
            RoleError: The provider failed.
        """
        messages = answer_messages(question, passages, self.prompt_style, history)
        extra: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0,
                                 "logprobs": True, **params}
        if self.prompt_style == "short-answer":
            extra.setdefault("stop", list(SHORT_ANSWER_STOP))
        done = await complete(self.router, self.role, self.model, messages,
                              extra.pop("timeout_s", self.timeout_s), **extra)
        if self.prompt_style == "short-answer":
            done = done.span(*short_answer(done.text, question))
        return done

    def probability(self, done: Completion, spent_usd: float) -> float:
        """The answer's probability in ``logprobs`` mode.

        Raises:
            RoleError: The provider sent no token logprobs (``spent_usd`` stays on the bill).
        """
        if done.probability is None:
            raise RoleError(self.role, f"{self.model} returned no token logprobs; "
                                       f"use {self.role}_format = 'json' for this model",
                            spent_usd)
        return done.probability
