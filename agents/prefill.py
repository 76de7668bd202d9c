"""Shared prefill: a prompt's forward pass, kept so that the next reader of the prompt skips it.

The prober reads the answerer's own prompt (``knowgate.agents.hidden_states``) before the
answerer generates from it, and reads it again with the draft appended. Without sharing, a
question costs three passes over its prompt on the same model. With a ``PrefixCache`` on the
``LocalLM``, the prober's question pass keeps what it computed (the KV cache, the hidden states
of every layer, the logits at the last position); the answerer then decodes from that KV cache
(``LocalLM.generate`` recomputes only the prompt's last token, which ``generate`` needs as its
input). Decoding runs each token of the draft through the model, so the generation's steps are
kept with the prefill (``Decoded``) and the draft's pass is read from them; a draft the model
did not write as the start of its reply (a hosted answerer's, a critic's, one the answer
extraction cut from the middle of a sentence) runs over its few tokens on top of the kept pass.
Each reuse gives what a full pass gives, within float rounding (``tests/test_prefill.py``).

Entries are keyed by the prompt's token ids, bounded by bytes, and evicted least recently used
first. A stored cache is never decoded into: ``left_padded`` builds a new one for each reader.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class TokenRows:
    """The model's own next-token distributions where a draft is predicted, as the signals
    read them: row j is the distribution that predicts the draft's token j (row 0, at the
    prompt's last position, predicts the first answer token).

    Attributes:
        entropies: Each row's entropy (at least one row).
        top2: The first row's two highest log-probabilities.
        chosen: Each draft token's log-probability under its row.
        top: The first row's most likely token.
    """

    entropies: list[float]
    top2: tuple[float, float]
    chosen: list[float]
    top: int

    def prefix(self, k: int) -> TokenRows:
        """These rows cut to a draft of the first ``k`` tokens (at least one row)."""
        return TokenRows(self.entropies[:max(1, k)], self.top2, self.chosen[:k], self.top)


def token_rows(logprobs: Any, answer_ids: Sequence[int]) -> TokenRows:
    """``TokenRows`` from ``[rows, vocab]`` float log-probabilities (row 0 at the prompt's last
    position; the caller's log-softmax, which decoding already computes for its tokens), for
    the draft ``answer_ids`` (empty: the question alone, one row). The numbers become Python
    floats in one ``tolist`` (each torch op has a fixed cost larger than the arithmetic here)."""
    import torch

    span = max(1, len(answer_ids))
    logprobs = logprobs[:span]
    entropy = -(logprobs.exp() * logprobs).sum(dim=-1)
    vocab = logprobs.shape[-1]
    index = torch.tensor([j * vocab + t for j, t in enumerate(answer_ids)], dtype=torch.long,
                         device=logprobs.device)
    first = logprobs[0].topk(2).values
    numbers = torch.cat([entropy, first, logprobs.view(-1)[index]]).tolist()
    return TokenRows(numbers[:span], (numbers[span], numbers[span + 1]), numbers[span + 2:],
                     int(logprobs[0].argmax()))


@dataclass(frozen=True)
class Prefill:
    """One prompt's forward pass.

    Attributes:
        ids: The prompt's token ids.
        cache: The model's KV cache over every prompt token (a transformers ``Cache``).
        hidden: Per layer (embeddings first), the ``[prompt tokens, hidden]`` states.
        last_logits: ``[vocab]`` logits at the last prompt position.
    """

    ids: tuple[int, ...]
    cache: Any
    hidden: tuple[Any, ...]
    last_logits: Any
    decoded: tuple[Decoded, ...] = ()

    @property
    def nbytes(self) -> int:
        """Memory the entry holds (its tensors)."""
        tensors = [*self.hidden, self.last_logits, *kv_tensors(self.cache)]
        for done in self.decoded:
            tensors += done.hidden
        return sum(t.numel() * t.element_size() for t in tensors)



@dataclass(frozen=True)
class Decoded:
    """What one generation from a kept prefill computed, step by step: the draft's pass.

    Decoding a draft runs each of its tokens through the model, so the pass of the prompt with
    the draft appended is already done; the prober reads it from here instead of running it
    again (``knowgate.agents.hidden_states``).

    Attributes:
        ids: The generated token ids, up to the end-of-sequence token (excluded).
        hidden: Per layer (embeddings first), ``[steps, hidden]``: the states at each step's
            input position (step 0: the prompt's last token; step j: generated token j - 1).
        rows: The distributions of the steps that predicted ``ids`` (``TokenRows``; step j
            predicts token j), kept as the few numbers the signals read, not as logits.
    """

    ids: tuple[int, ...]
    hidden: tuple[Any, ...]
    rows: TokenRows


# Decodings kept per prompt (a sampled run makes several); the most recent are kept.
MAX_DECODED = 4


def kv_tensors(cache: Any) -> list[Any]:
    """Every key and value tensor of a transformers cache."""
    return [t for layer in cache.layers for t in (layer.keys, layer.values)
            if t is not None and hasattr(t, "numel")]


class PrefixCache:
    """A bounded least-recently-used store of ``Prefill`` entries, by prompt token ids.

    Args:
        max_bytes: Most memory the entries may hold together (0: keep nothing). An entry
            larger than this is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._entries: OrderedDict[tuple[int, ...], tuple[Prefill, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.decoded_hits = 0  # drafts read from a kept decoding
        self.decoded_misses = 0  # drafts with a kept prefill that ran a pass

    @property
    def enabled(self) -> bool:
        """Whether entries are kept at all."""
        return self.max_bytes > 0

    @property
    def nbytes(self) -> int:
        """Memory the entries hold now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, ids: Sequence[int]) -> Prefill | None:
        """The entry for these prompt ids, or ``None``, without counting or reordering."""
        with self._lock:
            found = self._entries.get(tuple(ids))
        return found[0] if found is not None else None

    def get(self, ids: Sequence[int]) -> Prefill | None:
        """The entry for these prompt ids, or ``None`` (counted as a hit or a miss)."""
        key = tuple(ids)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, prefill: Prefill) -> None:
        """Keep ``prefill``, evicting the least recently used entries beyond the bound."""
        size = prefill.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(prefill.ids, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[prefill.ids] = (prefill, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def decoding(self, prefill: Prefill, answer_ids: Sequence[int]) -> Decoded | None:
        """A decoding kept with ``prefill`` whose first tokens are ``answer_ids`` and that ran
        every one of them through the model (the last generated token never is), or ``None``
        (counted in ``decoded_hits`` / ``decoded_misses``)."""
        k = len(answer_ids)
        found = next((done for done in reversed(prefill.decoded)
                      if k and done.ids[:k] == tuple(answer_ids) and k < len(done.hidden[0])),
                     None)
        with self._lock:
            if found is None:
                self.decoded_misses += 1
            else:
                self.decoded_hits += 1
        return found

    def add_decoded(self, ids: Sequence[int], decoded: Decoded) -> None:
        """Keep ``decoded`` with the entry of prompt ``ids``, if that entry is still kept."""
        key = tuple(ids)
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return
            entry = replace(found[0], decoded=(*found[0].decoded, decoded)[-MAX_DECODED:])
            size = entry.nbytes
            self._entries[key] = (entry, size)
            self._bytes += size - found[1]
            while self._bytes > self.max_bytes and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def fits(model: Any, length: int) -> bool:
    """Whether a prompt of ``length`` tokens can be kept: a sliding-window layer's cache holds
    only the window's last positions, so a longer prompt could not be cut back."""
    window = getattr(model.config, "sliding_window", None)
    return length > 1 and (not window or length < int(window))


def row_cache(model: Any, cache: Any, row: int, length: int, start: int = 0) -> Any:
    """A new cache holding row ``row``'s positions ``start`` to ``start + length`` of a batched
    ``cache`` (by default its first ones: a batch padded on the right)."""
    from transformers import DynamicCache

    out = DynamicCache(config=model.config)
    for index, layer in enumerate(cache.layers):
        out.update(layer.keys[row:row + 1, :, start:start + length].clone(),
                   layer.values[row:row + 1, :, start:start + length].clone(), index)
    return out


@dataclass(frozen=True)
class Extension:
    """What a pass over new tokens on top of a kept prefill computed for one row.

    Attributes:
        hidden: Per layer (embeddings first), ``[new tokens, hidden]``.
        logits: ``[new tokens, vocab]``; row j predicts the token after new token j (``None``
            when the pass stopped early).
        cache: The KV cache over the prefill's and the new tokens (when asked for).
    """

    hidden: tuple[Any, ...]
    logits: Any
    cache: Any = None


def extend(model: Any, entries: Sequence[tuple[Prefill, Sequence[int]]], pad_id: int,
           device: Any, keep_cache: bool = False, depth: int | None = None) -> list[Extension]:
    """One batched pass over each entry's new tokens on top of its prefill: what a whole pass
    over the prefill's tokens and the new ones gives there, within float rounding.

    The kept caches are padded on the left to one width and the new tokens on the right (the
    attention is causal: real tokens never see the padding after them); each row's positions
    continue its own prefill's. The caller takes the model's lock, and checks with ``fits``
    that the longest row fits a sliding window.

    ``depth``: the pass stops where hidden state ``depth`` (the input of decoder layer
    ``depth``) is known: the extensions hold hidden states ``0..depth`` and no logits.
    ``None``, a depth at or past the last layer, or a model whose layers cannot be found: the
    whole model runs.
    """
    import torch

    lengths = [len(prefill.ids) for prefill, _ in entries]
    sizes = [len(ids) for _, ids in entries]
    width, span = max(lengths), max(sizes)
    inputs = {
        "input_ids": torch.tensor([[*new, *[pad_id] * (span - len(new))] for _, new in entries]),
        "attention_mask": torch.tensor([[0] * (width - n) + [1] * (n + k) + [0] * (span - k)
                                        for n, k in zip(lengths, sizes, strict=True)]),
        "position_ids": torch.tensor([list(range(n, n + span)) for n in lengths])}
    inputs = {name: value.to(device) for name, value in inputs.items()}
    with torch.inference_mode():
        layers = None if keep_cache or depth is None \
            or depth >= int(model.config.num_hidden_layers) else _decoder_layers(model)
        cache = left_padded(model, [prefill.cache for prefill, _ in entries], lengths, width,
                            layers=depth if layers is not None else None)
        if layers is not None:
            assert depth is not None
            hidden = _run_to(layers, depth,
                             lambda: model(**inputs, past_key_values=cache, use_cache=True))
            return [Extension(tuple(h[row, :k].float() for h in hidden), None)
                    for row, k in enumerate(sizes)]
        out = model(**inputs, past_key_values=cache, use_cache=True, output_hidden_states=True)
        return [Extension(
            tuple(h[row, :k].float() for h in out.hidden_states), out.logits[row, :k].float(),
            row_cache(model, out.past_key_values, row, n + k, width - n) if keep_cache else None)
            for row, (n, k) in enumerate(zip(lengths, sizes, strict=True))]


class _Stop(Exception):
    """Raised by the hook that ends a pass early (``_run_to``)."""


def _decoder_layers(model: Any) -> Any:
    """The model's decoder layers in order (``model.model.layers`` for most causal LMs,
    ``transformer.h`` for GPT-2), or ``None`` when they cannot be found."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else None
    for owner in (base, getattr(model, "base_model", None), model):
        for name in ("layers", "h"):
            layers = getattr(owner, name, None) if owner is not None else None
            if layers is not None and len(layers) == int(model.config.num_hidden_layers):
                return layers
    return None


def _run_to(layers: Any, depth: int, forward: Callable[[], Any]) -> list[Any]:
    """Hidden states ``0..depth`` of ``forward()`` run through decoder layers ``0..depth - 1``
    only: hooks record each layer's input (hidden state ``i`` is layer ``i``'s input, the
    embeddings first) and layer ``depth``'s hook ends the pass. On a probe that reads layer 10
    of 30 this skips two thirds of the model and its output head, most of what reading a draft
    costs on a CPU."""
    seen: list[Any] = []

    def record(index: int) -> Any:
        def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            seen.append(args[0] if args else kwargs["hidden_states"])
            if index == depth:
                raise _Stop

        return hook

    hooks = [layers[i].register_forward_pre_hook(record(i), with_kwargs=True)
             for i in range(depth + 1)]
    try:
        forward()
    except _Stop:
        return seen
    finally:
        for hook in hooks:
            hook.remove()
    # A model whose forward skipped the hooked layer: refuse rather than read it wrong.
    raise RuntimeError("the pass did not reach the layer it was to stop at")


def left_padded(model: Any, caches: Sequence[Any], lengths: Sequence[int], width: int,
                layers: int | None = None) -> Any:
    """A new batched cache from per-prompt caches, each cut to its first ``lengths[i]``
    positions and padded on the left with zeros to ``width`` (what ``generate``'s left-padded
    input expects: the attention mask hides the padding). The sources are left as they were.
    ``layers``: only the first ones are copied (a pass that stops there reads no other)."""
    import torch
    from transformers import DynamicCache

    out = DynamicCache(config=model.config)
    count = len(caches[0].layers)
    for index in range(count if layers is None else min(count, layers)):
        keys, values = [], []
        for cache, n in zip(caches, lengths, strict=True):
            layer = cache.layers[index]
            k, v = layer.keys[:, :, :n], layer.values[:, :, :n]
            pad = width - n
            if pad:
                k = torch.cat([k.new_zeros((*k.shape[:2], pad, k.shape[3])), k], dim=2)
                v = torch.cat([v.new_zeros((*v.shape[:2], pad, v.shape[3])), v], dim=2)
            keys.append(k)
            values.append(v)
        out.update(torch.cat(keys), torch.cat(values), index)
    return out
