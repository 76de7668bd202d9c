"""One forward pass per input, batched: hidden states, token signals and the logit lens.

The prober (``knowgate.agents.prober``) and probe training (``knowgate.agents.probe_training``)
both read inputs through ``run_passes``, so a probe is trained on exactly the features it sees at
run time. An input is a question, optionally with a draft answer appended after the prompt; the
prompt's positions are identical with or without the answer (the model is causal), so one pass of
question + answer serves both the query-level and the answer-level signals.

Batches are padded on the right: the real tokens keep their positions and, the attention being
causal, padding after them changes nothing they see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from knowgate.agents.local_lm import LocalLM
from knowgate.errors import UserError

Stage = Literal["query", "answer"]
POOLINGS: dict[Stage, tuple[str, ...]] = {
    # last: the final prompt token (where the first answer token is predicted);
    # mean: the mean over the prompt's tokens after the first (the question itself).
    "query": ("last", "mean"),
    # last: the draft's final token; mean: the mean over the draft's tokens.
    "answer": ("last", "mean"),
}
# The phrase the self-evaluation asks the model to complete (Internal-Confidence style).
SELF_EVAL_SUFFIX = " Can you answer this question correctly? Yes or No?"


@dataclass(frozen=True)
class Pass:
    """What one forward pass exposes to a probe.

    Attributes:
        hidden_states: One tensor per layer (embeddings first), shape ``[tokens, hidden]``.
        prompt_tokens: How many leading tokens are the prompt (the rest is the answer).
    """

    hidden_states: tuple[Any, ...]
    prompt_tokens: int
    decode: Callable[[int, Any], Any] | None = None

    def lens(self, layer: int, vector: Any) -> Any:
        """Logit-lens features of a pooled ``vector`` of ``layer`` (see ``lens_features``).

        Raises:
            UserError: The model has no output head to decode with.
        """
        if self.decode is None:
            raise UserError("this model has no output head: lens probes cannot read it")
        return lens_features(self.decode(layer, vector))

    def pooled(self, stage: Stage, layer: int, pooling: str) -> Any:
        """The ``[hidden]`` vector a probe of ``stage`` reads at ``layer`` with ``pooling``."""
        states = self.hidden_states[layer]
        if stage == "query":
            span = states[1:self.prompt_tokens] if self.prompt_tokens > 1 else \
                states[:self.prompt_tokens]
        else:
            span = states[self.prompt_tokens:]
            if len(span) == 0:
                raise UserError("an answer-level probe needs an answer")
        if pooling == "last":
            return span[-1]
        if pooling == "mean":
            return span.mean(dim=0)
        raise UserError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS[stage])}")


def render(lm: LocalLM, question: str) -> str:
    """The prompt the model sees for ``question`` (its chat template, else a plain Q/A form)."""
    try:
        return lm.render([{"role": "user", "content": question}])
    except Exception:  # a base model without a chat template
        return f"Question: {question}\nAnswer:"


def encode(lm: LocalLM, question: str, answer: str | None = None) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one input, checked against the model's context.

    Raises:
        UserError: The prompt is empty or the input is longer than the model's context.
    """
    tokenizer = lm.tokenizer
    prompt_ids = tokenizer(render(lm, question), add_special_tokens=False)["input_ids"]
    answer_ids: list[int] = []
    if answer is not None and answer.strip():
        answer_ids = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise UserError("empty prompt")
    if len(prompt_ids) + len(answer_ids) > lm.max_length:
        raise UserError(f"input of {len(prompt_ids) + len(answer_ids)} tokens exceeds the "
                        f"model's context of {lm.max_length}")
    return prompt_ids, answer_ids


LENS_FEATURES = ("top_logprob", "entropy", "margin")


def lens_features(logits: Any) -> Any:
    """``[..., 3]``: the decoded distribution's top log-probability, entropy and top-2 margin."""
    logprobs = logits.float().log_softmax(dim=-1)
    top2 = logprobs.topk(2, dim=-1).values
    entropy = -(logprobs.exp() * logprobs).sum(dim=-1)
    return _stack([top2[..., 0], entropy, top2[..., 0] - top2[..., 1]])


def _stack(columns: list[Any]) -> Any:
    import torch

    return torch.stack(columns, dim=-1)


def decoder(model: Any) -> Callable[[int, Any], Any] | None:
    """``(layer, hidden) -> logits`` with the final norm and output head (the logit lens).

    The last layer's hidden state already went through the final norm (transformers applies it
    before recording the last entry), so it is decoded by the head alone.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    base = getattr(model, "base_model", model)
    norm = next((getattr(base, n) for n in ("norm", "final_layernorm", "ln_f")
                 if hasattr(base, n)), None)
    last = int(model.config.num_hidden_layers)

    def decode(layer: int, hidden: Any) -> Any:
        if layer >= last or norm is None:
            return head(hidden)
        return head(norm(hidden))

    return decode


@dataclass(frozen=True)
class PassResult:
    """One input's pass: the probe view and the signals computed from its logits."""

    forward: Pass
    signals: dict[str, float]


def run_passes(lm: LocalLM, inputs: Sequence[tuple[str, str | None]],
               lens: bool = True) -> list[PassResult]:
    """One batched forward pass with hidden states over ``(question, answer)`` inputs.

    Args:
        lm: The model read from the inside.
        inputs: Questions with an optional draft answer (``None``: the question alone).
        lens: Also compute the logit-lens consistency signals.

    Returns:
        Per input, the ``Pass`` (float32 hidden states on the model's device) and the token signals:
        ``query_top_prob``, ``query_entropy`` (and ``query_lens_consistency``); with an answer
        also ``answer_mean_logprob``, ``answer_min_logprob``, ``answer_mean_entropy`` (and
        ``answer_lens_consistency``).

    Raises:
        UserError: An input is empty or too long for the model.
    """
    import torch

    if not inputs:
        return []
    encoded = [encode(lm, q, a) for q, a in inputs]
    width = max(len(p) + len(a) for p, a in encoded)
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (p, a) in enumerate(encoded):
        ids[row, :len(p) + len(a)] = torch.tensor(p + a)
        mask[row, :len(p) + len(a)] = 1
    with lm.lock, torch.inference_mode():
        out = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                       output_hidden_states=True)
        # An encoder without an output head (AutoModel) gives hidden states only.
        logits = getattr(out, "logits", None)
        decode = decoder(lm.model) if logits is not None else None
        results = []
        for row, (p, a) in enumerate(encoded):
            n = len(p) + len(a)
            hidden = tuple(h[row, :n].float() for h in out.hidden_states)
            signals = _token_signals(logits[row, :n].float(), len(p), a) \
                if logits is not None else {}
            if lens and decode is not None:
                signals.update(_lens_signals(decode, hidden, logits[row, :n].float(), len(p),
                                             a))
            results.append(PassResult(Pass(hidden, len(p), decode), signals))
    return results


def _token_signals(logits: Any, prompt_tokens: int, answer_ids: list[int]) -> dict[str, float]:
    import torch

    # Position i predicts token i + 1: the last prompt position predicts the first answer token.
    start = prompt_tokens - 1
    first = logits[start].log_softmax(dim=-1)
    values = {"query_top_prob": float(first.max().exp()), "query_entropy": _entropy(first)}
    if answer_ids:
        rows = logits[start:start + len(answer_ids)].log_softmax(dim=-1)
        chosen = rows.gather(1, torch.tensor(answer_ids, device=rows.device)[:, None])[:, 0]
        values["answer_mean_logprob"] = float(chosen.mean())
        values["answer_min_logprob"] = float(chosen.min())
        values["answer_mean_entropy"] = float(-(rows.exp() * rows).sum(dim=-1).mean())
    return values


def _lens_signals(decode: Callable[[int, Any], Any], hidden: tuple[Any, ...], logits: Any,
                  prompt_tokens: int, answer_ids: list[int]) -> dict[str, float]:
    """Logit-lens consistency: how much the middle layers already predict the final choice.

    For each layer strictly between the embeddings and the last, its hidden state is decoded with
    the final norm and output head. Query level: the mean probability the decoded layers give the
    last layer's top next token. Answer level: the mean log-probability they give the draft's
    tokens, over layers and answer positions.
    """
    import torch

    middle = hidden[1:-1]
    if not middle:
        return {}
    start = prompt_tokens - 1
    span = max(1, len(answer_ids))
    # Every middle layer is decoded the same way (final norm, then head): one call for all.
    block = torch.stack([h[start:start + span] for h in middle])  # [layers, span, hidden]
    logprobs = decode(1, block).float().log_softmax(dim=-1)
    top = int(logits[start].argmax())
    values = {"query_lens_consistency": float(logprobs[:, 0, top].exp().mean())}
    if answer_ids:
        index = torch.tensor(answer_ids, device=logprobs.device)
        chosen = logprobs[:, torch.arange(len(answer_ids), device=logprobs.device), index]
        values["answer_lens_consistency"] = float(chosen.mean())
    return values


def self_evaluation(lm: LocalLM, questions: Sequence[str]) -> list[float | None]:
    """Training-free self-evaluation (after Internal Confidence, "Knowing Before Saying").

    The question is asked with ``SELF_EVAL_SUFFIX``; at every layer after the embeddings the last
    few positions are decoded with the logit lens and ``P(Yes) / (P(Yes) + P(No))`` is taken;
    the score is their mean, weighted towards later layers and later tokens. It is ``None`` for
    every question when the model cannot express the answer (``Yes`` and ``No`` do not start
    with distinct tokens), and meaningful only for a model trained to follow such a request.

    Raises:
        UserError: A question is too long for the model.
    """
    import torch

    yes = lm.tokenizer(" Yes", add_special_tokens=False)["input_ids"]
    no = lm.tokenizer(" No", add_special_tokens=False)["input_ids"]
    if not yes or not no or yes[0] == no[0]:
        return [None for _ in questions]
    passes = run_passes(lm, [(q.strip() + SELF_EVAL_SUFFIX, None) for q in questions], lens=False)
    decode = decoder(lm.model)
    if decode is None:
        return [None for _ in questions]
    scores: list[float | None] = []
    with torch.inference_mode():
        for result in passes:
            layers = result.forward.hidden_states[1:]
            tokens = min(4, result.forward.prompt_tokens)
            total, weight_sum = 0.0, 0.0
            for li, h in enumerate(layers, start=1):
                logits = decode(li, h[-tokens:]).float()
                pair = logits[:, [yes[0], no[0]]].softmax(dim=-1)[:, 0]
                for ti, p in enumerate(pair.tolist(), start=1):
                    weight = math.exp(li / len(layers) + ti / tokens)
                    total, weight_sum = total + weight * p, weight_sum + weight
            scores.append(total / weight_sum)
    return scores


def _entropy(logprobs: Any) -> float:
    return float(-(logprobs.exp() * logprobs).sum())
