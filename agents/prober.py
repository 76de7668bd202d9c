"""The prober: a local transformers model read from the inside.

It runs one forward pass with hidden states per input and returns named signals:

* before any answer exists (``answer=None``): ``query_top_prob`` and ``query_entropy`` of the
  model's next-token distribution at the end of the prompt, i.e. how sure the model would be of
  the first answer token. This costs no generation and can route a question before the answerer
  is paid.
* for a question with a draft answer: the draft's tokens under the model, ``answer_mean_logprob``,
  ``answer_min_logprob`` and ``answer_mean_entropy`` (entropy of the model's distribution at each
  answer position), plus the query-level signals from the same pass.

Trained probes plug in as ``HiddenStateProbe`` objects: each gets the hidden states of the same
pass and returns one more named signal, so the state, the graph and the policy need no change.
The model may differ from the answerer's (a local open model checking a hosted answerer).
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from knowgate.agents.local_lm import LocalLM
from knowgate.agents.roles import RoleError, Signals

Stage = Literal["query", "answer"]


@dataclass(frozen=True)
class Pass:
    """What one forward pass exposes to a probe.

    Attributes:
        hidden_states: One tensor per layer (embeddings first), shape ``[tokens, hidden]``.
        prompt_tokens: How many leading tokens are the prompt (the rest is the answer).
    """

    hidden_states: tuple[Any, ...]
    prompt_tokens: int


class HiddenStateProbe(Protocol):
    """A trained probe: one signal from the hidden states of one pass."""

    name: str
    stage: Stage

    def __call__(self, forward: Pass) -> float:
        """The probe's score for this pass."""
        ...


def _render(lm: LocalLM, question: str) -> str:
    try:
        return lm.render([{"role": "user", "content": question}])
    except Exception:  # a base model without a chat template
        return f"Question: {question}\nAnswer:"


class TransformersProber:
    """The ``Prober`` role over any ``AutoModelForCausalLM``.

    Args:
        lm: The loaded model (``LocalLM(path_or_id, device)`` picks CUDA with bf16 when present).
        probes: Trained probes to run on the same passes.
        cache_size: Inputs whose signals are remembered (a replayed node costs nothing).
    """

    role = "prober"

    def __init__(self, lm: LocalLM, probes: Sequence[HiddenStateProbe] = (),
                 cache_size: int = 4096) -> None:
        self.lm = lm
        self.probes = list(probes)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str | None], Signals] = OrderedDict()

    async def __call__(self, question: str, answer: str | None = None) -> Signals:
        """Signals of ``question`` alone, or of ``question`` with ``answer`` (see the module)."""
        key = (question, answer)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            values = await asyncio.to_thread(self.signals, question, answer)
        except RoleError:
            raise
        except Exception as exc:  # torch/transformers failures (out of memory, bad input)
            raise RoleError(self.role, f"{type(exc).__name__}: {exc}") from exc
        signals = Signals(values=values)
        self._cache[key] = signals
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return signals

    def signals(self, question: str, answer: str | None = None) -> dict[str, float]:
        """The signals of one input, computed synchronously (one forward pass)."""
        import torch

        tokenizer = self.lm.tokenizer
        prompt_ids = tokenizer(_render(self.lm, question), add_special_tokens=False)["input_ids"]
        answer_ids: list[int] = []
        if answer is not None:
            answer_ids = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
        ids = prompt_ids + answer_ids
        if not prompt_ids:
            raise RoleError(self.role, "empty prompt")
        if len(ids) > self.lm.max_length:
            raise RoleError(self.role, f"input of {len(ids)} tokens exceeds the model's context "
                                       f"of {self.lm.max_length}")
        with self.lm.lock, torch.inference_mode():
            out = self.lm.model(torch.tensor([ids], device=self.lm.device),
                                output_hidden_states=True)
        logprobs = out.logits[0].float().log_softmax(dim=-1)
        # Position i predicts token i + 1: the last prompt position predicts the first answer token.
        start = len(prompt_ids) - 1
        first = logprobs[start]
        values = {
            "query_top_prob": float(first.max().exp()),
            "query_entropy": _entropy(first),
        }
        if answer_ids:
            rows = logprobs[start:start + len(answer_ids)]
            chosen = rows.gather(1, torch.tensor(answer_ids, device=rows.device)[:, None])[:, 0]
            values["answer_mean_logprob"] = float(chosen.mean())
            values["answer_min_logprob"] = float(chosen.min())
            values["answer_mean_entropy"] = sum(_entropy(r) for r in rows) / len(answer_ids)
        stage: Stage = "answer" if answer is not None else "query"
        forward = Pass(hidden_states=tuple(h[0] for h in out.hidden_states),
                       prompt_tokens=len(prompt_ids))
        for probe in self.probes:
            if probe.stage == stage:
                values[probe.name] = float(probe(forward))
        if any(math.isnan(v) for v in values.values()):
            raise RoleError(self.role, "the model produced NaN")
        # A zero-probability token gives -inf; clamp so signals stay valid JSON and comparable.
        return {k: max(-1e4, min(1e4, v)) for k, v in values.items()}


def _entropy(logprobs: Any) -> float:
    return float(-(logprobs.exp() * logprobs).sum())
