"""Serve local transformers models to litellm as a custom provider: ``local/<name>``.

Every LLM call in knowgate goes through litellm, whatever the model; the world's models are no
exception. The provider renders chat messages with the model's chat template (a base model without one gets
a ``Question: ... Answer:`` transcript, ``knowgate.agents.local_lm.transcript``), generates greedily
(or samples when ``temperature > 0``), and returns OpenAI-shaped responses with token logprobs and
usage. Concurrent async requests to one model are gathered into batched forward passes: on the
2-core development machine, 256 concurrent async calls ran 3.5x (fast) and 4.2x (slow) faster than
the same calls made one by one (``bench/local_provider.py``), with identical answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knowgate.agents.batching import MicroBatcher
from knowgate.agents.litellm_setup import import_litellm
from knowgate.agents.local_lm import Generation, LocalLM
from knowgate.agents.prompting import PromptStyle
from knowgate.errors import KnowgateError, UserError

PROVIDER = "local"
_ROLES = ("system", "user", "assistant")  # what the world models' chat template renders
_litellm = import_litellm()


@dataclass(frozen=True)
class _Params:
    max_new_tokens: int = 32
    temperature: float = 0.0
    top_logprobs: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @classmethod
    def from_optional(cls, optional: Mapping[str, Any]) -> _Params:
        """Validate litellm's optional params; misuse raises ``UserError`` (a 400)."""
        if optional.get("n") not in (None, 1):
            raise UserError("local models return one choice per request (n=1)")
        max_tokens = optional.get("max_tokens") or optional.get("max_completion_tokens") or 32
        temperature = float(optional.get("temperature") or 0.0)
        # logprobs=True without top_logprobs still returns each chosen token's logprob.
        top = int(optional.get("top_logprobs") or 0)
        if not 1 <= int(max_tokens) <= 4096:
            raise UserError(f"max_tokens must be between 1 and 4096, not {max_tokens}")
        if not 0.0 <= temperature <= 2.0:
            raise UserError(f"temperature must be between 0 and 2, not {temperature}")
        if not 0 <= top <= 20:
            raise UserError(f"top_logprobs must be between 0 and 20, not {top}")
        stop = optional.get("stop") or ()
        return cls(
            max_new_tokens=int(max_tokens),
            temperature=temperature,
            top_logprobs=top,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            seed=optional.get("seed"),
        )


class LocalProvider(_litellm.CustomLLM):
    """A litellm custom provider serving named local model directories.

    Args:
        models: ``{name: directory}``; ``local/<name>`` then resolves to that model.
        device: ``auto``, ``cpu`` or ``cuda``; see ``knowgate.agents.local_lm.pick_device``.
        batch_size: Most prompts per batched forward pass.
        batch_wait_ms: How long the first request of a batch waits for others.
        prompt_styles: Name -> the prompt style its model answers in, set on the loaded model
            so that a prober reading the same ``LocalLM`` (``model``) renders the answerer's
            prompt.
        prefill_cache_mb: Each loaded model's ``LocalLM.prefills`` bound: the prober's pass over
            a prompt is kept for the answerer to decode from.
    """

    def __init__(self, models: Mapping[str, Path | str] | None = None, device: str = "auto",
                 batch_size: int = 64, batch_wait_ms: float = 2.0,
                 prompt_styles: Mapping[str, PromptStyle] | None = None,
                 prefill_cache_mb: float = 256.0) -> None:
        super().__init__()
        self._paths: dict[str, Path] = {k: Path(v) for k, v in (models or {}).items()}
        self._styles: dict[str, PromptStyle] = dict(prompt_styles or {})
        self._loaded: dict[str, LocalLM] = {}
        self._batchers: dict[str, tuple[LocalLM, MicroBatcher[str, Generation]]] = {}
        self._load_lock = threading.Lock()
        self.device = device
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.prefill_cache_mb = prefill_cache_mb

    def add(self, name: str, path: Path | str) -> None:
        """Serve the model in ``path`` as ``local/<name>`` (replacing an earlier one)."""
        with self._load_lock:
            self._paths[name] = Path(path)
            self._loaded.pop(name, None)

    def remove(self, name: str) -> None:
        """Stop serving ``local/<name>``."""
        with self._load_lock:
            self._paths.pop(name, None)
            self._loaded.pop(name, None)

    @property
    def names(self) -> list[str]:
        """The model names served."""
        return sorted(self._paths)

    def model(self, name: str) -> LocalLM:
        """The loaded model behind ``local/<name>``, loading it on first use."""
        with self._load_lock:
            if name not in self._loaded:
                if name not in self._paths:
                    raise UserError(
                        f"unknown local model {name!r}; served: {', '.join(self.names) or 'none'}"
                    )
                self._loaded[name] = LocalLM(self._paths[name], device=self.device,
                                             prompt_style=self._styles.get(name, "plain"),
                                             prefill_cache_mb=self.prefill_cache_mb)
            return self._loaded[name]

    # -- litellm entry points -------------------------------------------------------------

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                   model_response: Any, print_verbose: Any, encoding: Any, api_key: Any,
                   logging_obj: Any, optional_params: dict, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        gen = self._generate(model, messages, optional_params)
        return _fill(model_response, model, gen, optional_params, started)

    async def acompletion(self, model: str, messages: list, api_base: str,
                          custom_prompt_dict: dict, model_response: Any, print_verbose: Any,
                          encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict,
                          *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        gen = await self._agenerate(model, messages, optional_params)
        return _fill(model_response, model, gen, optional_params, started)

    def streaming(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                  model_response: Any, print_verbose: Any, encoding: Any, api_key: Any,
                  logging_obj: Any, optional_params: dict, *args: Any,
                  **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield from _chunks(self._generate(model, messages, optional_params))

    async def astreaming(self, model: str, messages: list, api_base: str,
                         custom_prompt_dict: dict, model_response: Any, print_verbose: Any,
                         encoding: Any, api_key: Any, logging_obj: Any, optional_params: dict,
                         *args: Any, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        for chunk in _chunks(await self._agenerate(model, messages, optional_params)):
            yield chunk

    # -- helpers --------------------------------------------------------------------------

    def _generate(self, model: str, messages: list, optional: Mapping[str, Any]) -> Generation:
        with _as_provider_error():
            lm, prompt, params = self._prepare(model, messages, optional)
            return lm.generate([prompt], params.max_new_tokens, params.temperature,
                               params.top_logprobs, params.stop, params.seed)[0]

    async def _agenerate(self, model: str, messages: list,
                         optional: Mapping[str, Any]) -> Generation:
        with _as_provider_error():
            # Loading a model or rendering a long chat must not block the event loop.
            lm, prompt, params = await asyncio.to_thread(self._prepare, model, messages, optional)
            return await self._batcher(model, lm).submit(params, prompt)

    def _prepare(self, model: str, messages: list, optional: Mapping[str, Any]
                 ) -> tuple[LocalLM, str, _Params]:
        name = model.split("/", 1)[1] if model.startswith(f"{PROVIDER}/") else model
        lm = self.model(name)
        params = _Params.from_optional(optional)
        chat = []
        for m in messages:
            role = m.get("role") if isinstance(m, dict) else None
            if role not in _ROLES:
                raise UserError(f"local models take {', '.join(_ROLES)} messages, not {role!r}")
            chat.append({"role": role, "content": _text(m.get("content"))})
        return lm, lm.render(chat), params

    def _batcher(self, name: str, lm: LocalLM) -> MicroBatcher[str, Generation]:
        entry = self._batchers.get(name)
        if entry is None or entry[0] is not lm:  # a model replaced by ``add`` gets a new one
            def run(params: Hashable, prompts: Sequence[str]) -> list[Generation]:
                assert isinstance(params, _Params)
                return lm.generate(prompts, params.max_new_tokens, params.temperature,
                                   params.top_logprobs, params.stop, params.seed)

            entry = self._batchers[name] = (lm, MicroBatcher(
                run, self.batch_size, self.batch_wait_s, busy=lm.lock.locked))
        return entry[1]


def _text(content: Any) -> str:
    """Message content as text: a string, or the text parts of an OpenAI content list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(content):
            raise UserError("local models accept text content only")
        return "".join(parts)
    raise UserError(f"unsupported message content of type {type(content).__name__}")


class _as_provider_error:
    """Re-raise knowgate errors as litellm's CustomLLMError with a meaningful status code."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, KnowgateError):
            return False
        from litellm.llms.custom_llm import CustomLLMError

        status = 400 if isinstance(exc, UserError) else 500
        raise CustomLLMError(status_code=status, message=str(exc)) from exc


def _fill(response: Any, model: str, gen: Generation, optional: Mapping[str, Any],
          started: float) -> Any:
    from litellm.types.utils import (
        ChatCompletionTokenLogprob,
        ChoiceLogprobs,
        TopLogprob,
        Usage,
    )

    choice = response.choices[0]
    choice.message.content = gen.text
    choice.finish_reason = gen.finish_reason
    if optional.get("logprobs") or optional.get("top_logprobs"):
        choice.logprobs = ChoiceLogprobs(
            content=[
                ChatCompletionTokenLogprob(
                    token=t.token,
                    logprob=t.logprob,
                    bytes=list(t.token.encode("utf-8")),
                    top_logprobs=[
                        TopLogprob(token=a, logprob=lp, bytes=list(a.encode("utf-8")))
                        for a, lp in t.top
                    ],
                )
                for t in gen.tokens
            ]
        )
    response.model = f"{PROVIDER}/{model.split('/', 1)[-1]}"
    usage = Usage(
        prompt_tokens=gen.prompt_tokens,
        completion_tokens=gen.completion_tokens,
        total_tokens=gen.prompt_tokens + gen.completion_tokens,
    )
    response.usage = usage
    response._hidden_params["local_latency_s"] = round(time.perf_counter() - started, 6)
    return response


def _chunks(gen: Generation) -> Iterator[dict[str, Any]]:
    """Streaming chunks of a finished generation: one per token, then the usage."""
    pieces = [t.token for t in gen.tokens] or [""]
    pieces[0] = pieces[0].lstrip()
    for piece in pieces:
        yield {"text": piece, "tool_use": None, "is_finished": False, "finish_reason": "",
               "usage": None, "index": 0}
    yield {
        "text": "",
        "tool_use": None,
        "is_finished": True,
        "finish_reason": gen.finish_reason,
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens,
        },
        "index": 0,
    }


def register_local_provider(provider: LocalProvider,
                            prices: Mapping[str, tuple[float, float]] | None = None) -> None:
    """Make ``local/<name>`` resolve to ``provider`` in litellm (replacing an earlier one).

    litellm keeps custom providers in a process-wide list, so this is the one place knowgate
    touches litellm's global state. ``prices`` maps a model name to (input, output) dollars per
    token so that ``litellm.completion_cost`` works for local models.
    """
    _litellm.custom_provider_map = [
        entry for entry in _litellm.custom_provider_map if entry.get("provider") != PROVIDER
    ] + [{"provider": PROVIDER, "custom_handler": provider}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    for name in provider.names:
        cost_in, cost_out = (prices or {}).get(name, (0.0, 0.0))
        _litellm.register_model(
            {
                f"{PROVIDER}/{name}": {
                    "input_cost_per_token": cost_in,
                    "output_cost_per_token": cost_out,
                    # Local models have no prompt cache; saying so keeps litellm from warning.
                    "cache_creation_input_token_cost": 0.0,
                    "cache_read_input_token_cost": 0.0,
                    "litellm_provider": PROVIDER,
                    "mode": "chat",
                }
            }
        )
