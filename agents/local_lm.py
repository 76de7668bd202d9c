"""A local causal LM loaded with transformers: batched generation with token log-probabilities.

This is what serves the world's models to litellm (``knowgate.agents.local_provider``) and what
the trainer uses to measure memorisation. It loads any ``AutoModelForCausalLM`` directory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from knowgate.agents.prefill import Decoded, Prefill, PrefixCache, left_padded, token_rows
from knowgate.agents.prompting import PromptStyle
from knowgate.errors import ModelLoadError, UserError


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability, and the most likely alternatives."""

    token: str
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Generation:
    """One completion: text, per-token log-probabilities, token counts, why it stopped."""

    text: str
    tokens: list[TokenLogprob]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"


_CPU_LOCK = threading.Lock()
_UNSET = object()
# Fewest tokens every prompt must share for their common start to be computed once and kept.
MIN_SHARED_PREFIX = 16


def pick_device(device: str = "auto") -> tuple[str, Any]:
    """(device, dtype): CUDA with bf16 when present and asked for, else CPU with fp32."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("device 'cuda' was asked for but no CUDA device is available")
        return device, torch.bfloat16
    return "cpu", torch.float32


class LocalLM:
    """A causal LM and its tokenizer from a local directory (or a cached hub id).

    Args:
        path: Directory with ``config.json``, weights and tokenizer files.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        prompt_style: How questions are put to this model (``knowgate.agents.prompting``):
            whoever reads the model from the inside (the prober) renders the same prompt the
            answerer sends.
        prefill_cache_mb: Memory for prompts' forward passes kept for reuse
            (``knowgate.agents.prefill``: the prober's pass over a prompt is the prefill the
            answerer decodes from); 0 keeps none.

    Raises:
        ModelLoadError: The directory does not hold a loadable model and tokenizer.
    """

    def __init__(self, path: str | Path, device: str = "auto",
                 prompt_style: PromptStyle = "plain", prefill_cache_mb: float = 256) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = str(path)
        self.prompt_style: PromptStyle = prompt_style
        self.device, dtype = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype)
        except Exception as exc:  # transformers raises OSError, ValueError, ... for a bad dir
            raise ModelLoadError(f"cannot load a causal LM from {self.path}: {exc}") from exc
        self.model.to(self.device)
        self._prepare(prefill_cache_mb)

    @classmethod
    def from_objects(cls, model: Any, tokenizer: Any, prefill_cache_mb: float = 0) -> LocalLM:
        """Wrap a model and tokenizer already in memory (the trainer measures with this)."""
        self = cls.__new__(cls)
        self.path = str(getattr(model.config, "_name_or_path", "") or "<memory>")
        self.prompt_style = "plain"
        self.device = str(next(model.parameters()).device)
        self.model, self.tokenizer = model, tokenizer
        self._prepare(prefill_cache_mb)
        return self

    def _prepare(self, prefill_cache_mb: float) -> None:
        self.prefills = PrefixCache(int(prefill_cache_mb * 2**20))
        self._shared: Prefill | None | object = _UNSET
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # One forward pass at a time: generate() is not re-entrant on a shared model, and other
        # readers of the model (the prober) take the lock too. On the CPU every model shares
        # one lock: torch already spreads one pass over every core, and two passes at once
        # (the answerer's and the critic's model) oversubscribe them (measured on 2 busy cores:
        # a 24-token generation with 2 torch threads took 30 s, with 1 thread 4 s).
        self.lock = _CPU_LOCK if str(self.device).startswith("cpu") else threading.Lock()

    def shared_prefill(self) -> Prefill | None:
        """The pass over what every prompt of this model starts with (a chat template's system
        turn and few-shot examples: 110 of SmolLM2's 125 closed-book tokens), computed once;
        ``None`` when prompts share fewer than ``MIN_SHARED_PREFIX`` tokens or prefills are
        not kept."""
        if self._shared is not _UNSET:
            return self._shared
        import torch

        from knowgate.agents.prefill import fits
        from knowgate.agents.prompting import answer_messages

        # Two closed-book questions and one with a passage: the start all three share.
        rows = [self.tokenizer(self.render(answer_messages(q, passages, self.prompt_style)),
                               add_special_tokens=False)["input_ids"]
                for q, passages in (("Who founded Quux?", ()),
                                    ("In what year did the Bar river flood?", ()),
                                    ("Where is Quux?", ("Quux is a town on the Bar river.",)))]
        common = min(len(r) for r in rows)
        for row in rows[1:]:
            common = next((i for i, (a, b) in enumerate(zip(rows[0], row, strict=False))
                           if a != b), common)
        shared = None
        if self.prefills.enabled and common >= MIN_SHARED_PREFIX and fits(self.model, common):
            ids = rows[0][:common]
            with self.lock, torch.inference_mode():
                out = self.model(input_ids=torch.tensor([ids], device=self.device),
                                 use_cache=True, output_hidden_states=True)
            shared = Prefill(tuple(ids), out.past_key_values,
                             tuple(h[0].float().clone() for h in out.hidden_states),
                             out.logits[0, -1].float().clone())
        self._shared = shared
        return shared

    def prefill_shared(self, rows: Sequence[Sequence[int]]) -> None:
        """Keep the passes of the prompts among ``rows`` that start with the shared prefix and
        are not kept yet, computed over their own tokens on top of the shared prefix's pass
        (one batch): what a whole pass gives, within float rounding."""
        from knowgate.agents.prefill import extend, fits

        shared = self.shared_prefill() if self.prefills.enabled else None
        if shared is None:
            return
        n = len(shared.ids)
        todo = list({tuple(r): None for r in rows
                     if len(r) > n and tuple(r[:n]) == shared.ids and fits(self.model, len(r))
                     and self.prefills.peek(r) is None})
        if not todo:
            return
        import torch

        with self.lock:
            extensions = extend(self.model, [(shared, r[n:]) for r in todo],
                                self.tokenizer.pad_token_id or 0, self.device, keep_cache=True)
        for row, new in zip(todo, extensions, strict=True):
            self.prefills.put(Prefill(
                row, new.cache,
                tuple(torch.cat([a, b]) for a, b in zip(shared.hidden, new.hidden, strict=True)),
                new.logits[-1].clone()))

    @property
    def max_length(self) -> int:
        """Longest sequence (prompt + completion) the model accepts."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer brings a chat template (instruct models do, base models not)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text for a chat: the tokenizer's chat template, or for a base model
        without one a plain transcript (``transcript``)."""
        if not messages:
            raise UserError("a chat needs at least one message")
        if not self.has_chat_template:
            return transcript(messages, self._bos_text)
        return self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=True
        )

    @cached_property
    def _bos_text(self) -> str:
        """The BOS token's text when the tokenizer puts one before plain text (Gemma does, and
        answers nonsense without it), else nothing: prompts are encoded without special
        tokens, so a transcript carries it itself."""
        bos = self.tokenizer.bos_token
        ids = self.tokenizer("x")["input_ids"]
        return bos if bos and ids and ids[0] == self.tokenizer.bos_token_id else ""

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int = 24,
        temperature: float = 0.0,
        top_logprobs: int = 0,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> list[Generation]:
        """Complete each rendered prompt; greedy when ``temperature`` is 0.

        Raises:
            UserError: A prompt plus ``max_new_tokens`` exceeds the model's context.
        """
        if not prompts:
            return []
        rows = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        longest = max(len(r) for r in rows)
        if longest + max_new_tokens > self.max_length:
            raise UserError(
                f"prompt of {longest} tokens + {max_new_tokens} new tokens exceeds the "
                f"model's context of {self.max_length}"
            )
        # Prompts whose prefill is kept decode from it; the others run as one batch of their own.
        self.prefill_shared(rows)
        kept = [self.prefills.get(r) if self.prefills.enabled else None for r in rows]
        out: list[Generation | None] = [None] * len(prompts)
        for cached in (True, False):
            picked = [i for i, k in enumerate(kept) if (k is not None) == cached]
            if picked:
                gens = self._generate_batch(
                    [rows[i] for i in picked], [kept[i] for i in picked] if cached else None,
                    max_new_tokens, temperature, top_logprobs, stop, seed)
                for i, gen in zip(picked, gens, strict=True):
                    out[i] = gen
        return [gen for gen in out if gen is not None]

    def _generate_batch(self, rows: Sequence[list[int]], prefills: Sequence[Prefill] | None,
                        max_new_tokens: int, temperature: float, top_logprobs: int,
                        stop: Sequence[str], seed: int | None) -> list[Generation]:
        """One ``generate`` over prompts' token ids (padded on the left), decoding from their
        kept prefills when given. Greedy, the first token is the kept pass's own prediction
        and decoding starts from it; sampling, each prompt's last token is run again as
        ``generate``'s input (its sampler draws the first token)."""
        import torch

        if prefills is not None and temperature == 0:
            return self._greedy_on(rows, prefills, max_new_tokens, top_logprobs, stop)
        enc = self.tokenizer.pad({"input_ids": list(rows)}, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        width = enc["input_ids"].shape[1]
        options: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            options = {"do_sample": True, "temperature": temperature, "top_k": 0}
        with self.lock, torch.inference_mode():
            if prefills is not None:
                options["past_key_values"] = left_padded(
                    self.model, [p.cache for p in prefills], [len(p.ids) - 1 for p in prefills],
                    width - 1)
            if seed is not None:
                torch.manual_seed(seed)
            out = self._run_generate(enc, max_new_tokens, prefills is not None, options)
        sequences = out.sequences[:, width:].cpu()
        step_logits = torch.stack(out.logits, dim=1).float()
        steps = [self._steps(out.hidden_states, row) for row in range(len(rows))] \
            if prefills is not None else None
        return self._finish(rows, prefills, [sequences[i] for i in range(len(rows))],
                            [step_logits[i] for i in range(len(rows))], steps,
                            top_logprobs, stop)

    def _greedy_on(self, rows: Sequence[list[int]], prefills: Sequence[Prefill],
                   max_new_tokens: int, top_logprobs: int, stop: Sequence[str]
                   ) -> list[Generation]:
        """Greedy decoding from kept prefills, starting from each prefill's predicted first
        token: the kept pass already holds its logits, so no prompt token runs again."""
        import torch

        eos = self.tokenizer.eos_token_id
        firsts = [int(p.last_logits.argmax()) for p in prefills]
        # A reply that ends at its first token needs no decoding (and would not stop a batch).
        live = [i for i, t in enumerate(firsts)
                if t != eos and not _stops(self.tokenizer.decode([t]), stop)] \
            if max_new_tokens > 1 else []
        sequences = [torch.tensor([t]) for t in firsts]
        logits = [p.last_logits[None].float() for p in prefills]
        steps = [tuple(h[-1:] for h in p.hidden) for p in prefills]
        if live:
            enc = self.tokenizer.pad({"input_ids": [[*rows[i], firsts[i]] for i in live]},
                                     return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            width = enc["input_ids"].shape[1]
            with self.lock, torch.inference_mode():
                cache = left_padded(self.model, [prefills[i].cache for i in live],
                                    [len(prefills[i].ids) for i in live], width - 1)
                decoded = self._greedy_steps(enc, cache, max_new_tokens - 1,
                                             [self.tokenizer.decode([firsts[i]]) for i in live],
                                             stop)
            for i, (ids, row_logits, row_steps) in zip(live, decoded, strict=True):
                sequences[i] = torch.cat([sequences[i], ids])
                logits[i] = torch.cat([logits[i], row_logits])
                steps[i] = tuple(torch.cat([a, b]) for a, b in
                                 zip(steps[i], row_steps, strict=True))
        return self._finish(rows, prefills, sequences, logits, steps, top_logprobs, stop)

    def _greedy_steps(self, enc: dict[str, Any], cache: Any, max_new_tokens: int,
                      texts: list[str], stop: Sequence[str]
                      ) -> list[tuple[Any, Any, tuple[Any, ...]]]:
        """Greedy decoding of a left-padded batch whose every token but the last is in
        ``cache``: per row its new tokens, their logits (``[steps, vocab]``) and per layer the
        states at each step's input (``[steps, hidden]``).

        A row leaves the batch once it ends (the end-of-sequence token, or one of ``stop`` in
        its text, which starts as ``texts``), so every later step runs over the rows still
        writing: on a CPU a step's cost grows with its rows, and ``generate`` would decode
        every row until the longest reply ends. What a row gets equals ``generate``'s greedy
        decoding up to its end, within float rounding.
        """
        import torch

        eos = self.tokenizer.eos_token_id
        mask = enc["attention_mask"]
        tokens = enc["input_ids"][:, -1:]
        positions = mask.sum(dim=1, keepdim=True) - 1
        rows = list(range(len(tokens)))  # batch position -> row
        new: list[list[int]] = [[] for _ in rows]
        row_logits: list[list[Any]] = [[] for _ in rows]
        states: list[list[tuple[Any, ...]]] = [[] for _ in rows]
        for _ in range(max_new_tokens):
            # As ``generate`` does: the step's place in the (left-padded) cache, given.
            place = torch.tensor([mask.shape[1] - 1], device=mask.device)
            out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                             cache_position=place, past_key_values=cache, use_cache=True,
                             output_hidden_states=True)
            step_logits = out.logits[:, -1].float()
            picked = step_logits.argmax(dim=-1)
            going = []
            for j, (row, token) in enumerate(zip(rows, picked.tolist(), strict=True)):
                new[row].append(token)
                row_logits[row].append(step_logits[j])
                states[row].append(tuple(h[j, -1] for h in out.hidden_states))
                if token != eos:
                    texts[row] += self.tokenizer.decode([token]) if stop else ""
                    if not _stops(texts[row], stop):
                        going.append(j)
            if not going:
                break
            if len(going) < len(rows):
                index = torch.tensor(going, device=mask.device)
                for layer in cache.layers:
                    layer.batch_select_indices(index)
                mask, picked, positions = mask[index], picked[index], positions[index]
                rows = [rows[j] for j in going]
            tokens, positions = picked[:, None], positions + 1
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        return [(torch.tensor(new[r], dtype=torch.long), torch.stack(row_logits[r]),
                 tuple(torch.stack(layer).float() for layer in zip(*states[r], strict=True)))
                for r in range(len(new))]

    def _run_generate(self, enc: dict[str, Any], max_new_tokens: int, keep_steps: bool,
                      options: dict[str, Any]) -> Any:
        return self.model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            output_logits=True,
            # Decoding from a kept prefill, the steps' states are the draft's pass: kept, the
            # prober reads them instead of running it (``Decoded``).
            output_hidden_states=keep_steps,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **options,
        )

    @staticmethod
    def _steps(step_hidden: Any, row: int) -> tuple[Any, ...]:
        """Per layer, ``[steps, hidden]``: row ``row``'s states at each step's input."""
        import torch

        return tuple(torch.cat([step[layer][row] for step in step_hidden]).float()
                     for layer in range(len(step_hidden[0])))

    def _finish(self, rows: Sequence[list[int]], prefills: Sequence[Prefill] | None,
                sequences: Sequence[Any], logits: Sequence[Any],
                steps: Sequence[tuple[Any, ...]] | None, top_logprobs: int,
                stop: Sequence[str]) -> list[Generation]:
        """Each row's ``Generation``; decoding from a kept prefill, its steps are kept with it
        (``Prefill.decoded``)."""
        eos = self.tokenizer.eos_token_id
        out = []
        for i, (ids, row_logits) in enumerate(zip(sequences, logits, strict=True)):
            logprobs = row_logits.log_softmax(dim=-1)
            if prefills is not None and steps is not None:
                generated = ids.tolist()
                if eos in generated:
                    generated = generated[:generated.index(eos)]
                self.prefills.add_decoded(prefills[i].ids, Decoded(
                    tuple(generated), steps[i], token_rows(logprobs, generated)))
            out.append(self._decode(ids, logprobs.cpu(), len(rows[i]), top_logprobs, stop))
        return out

    def _decode(self, ids: Any, logprobs: Any, prompt_tokens: int, top: int,
                stop: Sequence[str]) -> Generation:
        eos = self.tokenizer.eos_token_id
        tokens: list[TokenLogprob] = []
        finish = "length"
        for step, token_id in enumerate(ids.tolist()):
            if token_id == eos:
                finish = "stop"
                break
            alternatives: list[tuple[str, float]] = []
            if top:
                values, indices = logprobs[step].topk(top)
                alternatives = [
                    (self.tokenizer.decode([j]), float(v))
                    for v, j in zip(values.tolist(), indices.tolist(), strict=True)
                ]
            tokens.append(
                TokenLogprob(self.tokenizer.decode([token_id]), float(logprobs[step, token_id]),
                             alternatives)
            )
        text = "".join(t.token for t in tokens)
        for marker in stop:
            cut = text.find(marker)
            if cut >= 0:
                text, finish = text[:cut], "stop"
                tokens = _tokens_within(tokens, len(text))
        return Generation(
            text=text.strip(),
            tokens=tokens,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens) + (1 if finish == "stop" else 0),
            finish_reason=finish,
        )


def _stops(text: str, stop: Sequence[str]) -> bool:
    """Whether ``text`` holds one of the stop strings (the reply is cut there)."""
    return any(marker in text for marker in stop)


def transcript(messages: Sequence[dict[str, str]], prefix: str = "") -> str:
    """A chat as a base model's few-shot prompt: the system text, then each user turn followed
    by ``Answer:`` and the assistant's reply, ending on an open ``Answer:``. Generation should
    stop at a newline."""
    parts = [prefix]
    for m in messages:
        content = str(m.get("content") or "").strip()
        if m.get("role") == "system":
            parts.append(f"{content}\n\n")
        elif m.get("role") == "assistant":
            parts.append(f" {content}\n\n")
        else:
            parts.append(f"{content}\nAnswer:")
    return "".join(parts)


def _tokens_within(tokens: list[TokenLogprob], length: int) -> list[TokenLogprob]:
    kept: list[TokenLogprob] = []
    used = 0
    for token in tokens:
        if used >= length:
            break
        kept.append(token)
        used += len(token.token)
    return kept
