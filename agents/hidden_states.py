"""One forward pass per input, batched: hidden states, token signals and the logit lens.

The prober (``knowgate.agents.prober``) and probe training (``knowgate.agents.probe_training``)
both read inputs through ``run_passes``, so a probe is trained on exactly the features it sees at
run time. An input is a question, optionally with a draft answer appended after the prompt, and
optionally with passages in the prompt (the prompt a model reading evidence answers from: a probe
of that reading); the prompt's positions are identical with or without the answer (the model is
causal), so one pass of question + answer serves both the query-level and the answer-level
signals.

Batches are padded on the right: the real tokens keep their positions and, the attention being
causal, padding after them changes nothing they see.

When the model keeps prefills (``LocalLM.prefills``, ``knowgate.agents.prefill``), a pass keeps
each prompt's KV cache, hidden states and last logits: the answerer then decodes from them. A
later input with a draft the model decoded from there is read from the decoding's steps (no
pass runs); any other draft runs over its own tokens only, on top of its prompt's kept pass.
"""

from __future__ import annotations

import inspect
import math
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from knowgate.agents.local_lm import LocalLM
from knowgate.agents.prefill import TokenRows, token_rows
from knowgate.agents.prompting import answer_messages
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


# The draft's token signals: read from the model's own distributions at the draft's positions
# (``answer_lens_consistency``, the middle layers' ones, comes with the lens).
ANSWER_TOKEN_SIGNALS = frozenset({"answer_mean_logprob", "answer_min_logprob",
                                  "answer_mean_entropy"})

# What a lens probe reads: (stage, layer, pooling). ``run_passes`` computes the lens features of
# the reads it is given with its own signals, in one set of ops, instead of one set per probe.
LensRead = tuple[Stage, int, str]

# One input: ``(question, answer)`` or ``(question, answer, passages)``; ``answer`` ``None``: the
# question alone; ``passages``: the evidence texts in the prompt, best first.
PassInput = tuple[str, str | None] | tuple[str, str | None, Sequence[str]]


@dataclass(frozen=True)
class Pass:
    """What one forward pass exposes to a probe.

    Attributes:
        hidden_states: One tensor per layer (embeddings first), shape ``[tokens, hidden]``.
        prompt_tokens: How many leading tokens are the prompt (the rest is the answer).
        decode: ``(layer, hidden) -> logits`` (the logit lens), ``None`` without an output head.
        lens_cache: Lens features ``run_passes`` already computed (Python floats), by read.
    """

    hidden_states: tuple[Any, ...]
    prompt_tokens: int
    decode: Callable[[int, Any], Any] | None = None
    lens_cache: Mapping[LensRead, list[float]] = field(default_factory=dict)

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
        return _pool(self.hidden_states[layer], self.prompt_tokens, stage, pooling)


def _pool(states: Any, prompt_tokens: int, stage: Stage, pooling: str) -> Any:
    """One layer's ``[tokens, hidden]`` states pooled over the span ``stage`` reads."""
    if stage == "query":
        span = states[1:prompt_tokens] if prompt_tokens > 1 else states[:prompt_tokens]
    else:
        span = states[prompt_tokens:]
        if len(span) == 0:
            raise UserError("an answer-level probe needs an answer")
    if pooling == "last":
        return span[-1]
    if pooling == "mean":
        return span.mean(dim=0)
    raise UserError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS[stage])}")


def render(lm: LocalLM, question: str, passages: Sequence[str] = ()) -> str:
    """The prompt the model sees for ``question``: the answerer's, in the model's prompt style
    (``LocalLM.prompt_style``), closed-book or with ``passages`` (what a local model answering
    from evidence is given, so its kept pass serves the probe)."""
    return lm.render(answer_messages(question, passages, lm.prompt_style))


def encode(lm: LocalLM, question: str, answer: str | None = None,
           passages: Sequence[str] = ()) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of one input, checked against the model's context.

    Raises:
        UserError: The prompt is empty or the input is longer than the model's context.
    """
    tokenizer = lm.tokenizer
    prompt_ids = tokenizer(render(lm, question, passages), add_special_tokens=False)["input_ids"]
    answer_ids: list[int] = []
    if answer is not None and answer.strip():
        # With a leading space, as the signals, the probes and the shipped policies were
        # measured. Where the model writes its reply's first word without one (SmolLM2 after
        # its chat template's new line), a draft therefore never matches the decoding it came
        # from, and its pass runs (README, Performance).
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


# Fewest positions the model's head runs on. BLAS libraries (MKL on CPU) multiply 1 to 3 rows with
# other kernels than a larger product, and those round differently: from 4 rows on, each kept
# position's logits are those of the whole pass, so the signals do not depend on how many are kept.
MIN_LOGITS_KEPT = 4


@dataclass(frozen=True)
class _Forward:
    """Which options of the prober's pass the model's forward takes (looked up once per model).

    ``logits_to_keep`` (most causal LMs): only the positions read get logits; ``use_cache``.
    """

    keeps_logits: bool
    use_cache: bool


_FORWARDS: weakref.WeakKeyDictionary[Any, _Forward] = weakref.WeakKeyDictionary()


def _forward_options(model: Any) -> _Forward:
    options = _FORWARDS.get(model)
    if options is None:
        try:
            parameters = set(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):  # a forward without a readable signature
            parameters = set()
        options = _Forward("logits_to_keep" in parameters, "use_cache" in parameters)
        _FORWARDS[model] = options
    return options


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


def run_passes(lm: LocalLM, inputs: Sequence[PassInput], lens: bool = True,
               lens_reads: Sequence[LensRead] = (), answer_depth: int | None = None
               ) -> list[PassResult]:
    """One batched forward pass with hidden states over ``(question, answer)`` inputs.

    Args:
        lm: The model read from the inside.
        inputs: Questions with an optional draft answer (``None``: the question alone) and
            optional passages in the prompt (``PassInput``).
        lens: Also compute the logit-lens consistency signals.
        lens_reads: Lens features to compute with the signals (what the prober's lens probes
            read; each lands in ``Pass.lens_cache``). Answer-level reads of an input without an
            answer are skipped: the probe reports that itself.
        answer_depth: The deepest hidden state read at a draft's positions (the answer-level
            probes' layers), when nothing reads the draft's token signals or the lens: a
            draft's pass on top of its prompt's kept pass then stops there
            (``knowgate.agents.prefill.extend``), and no input gets ``answer_*`` token signals
            (whichever way its pass ran, so that a signal's presence never depends on the
            cache). Hidden states deeper than it hold the prompt's positions only.
            ``None``: the whole model, every signal.

    Returns:
        Per input, the ``Pass`` (float32 hidden states on the model's device) and the token signals:
        ``query_top_prob``, ``query_entropy`` (and ``query_lens_consistency``); with an answer
        also ``answer_mean_logprob``, ``answer_min_logprob``, ``answer_mean_entropy`` (and
        ``answer_lens_consistency``).

    Raises:
        UserError: An input is empty or too long for the model.
    """
    if not inputs:
        return []
    encoded = [encode(lm, *one) for one in inputs]
    reads = list(lens_reads)
    # A prompt that starts with the model's shared prefix gets its pass on top of that one's
    # (``LocalLM.prefill_shared``); a question alone is then read from its kept pass, and a
    # draft whose prompt's pass is kept (``knowgate.agents.prefill``) runs over its own tokens
    # only. Every other input goes into one batched pass over prompt and draft.
    lm.prefill_shared([p for p, _ in encoded])
    kept = [(lm.prefills.get(p) if a else lm.prefills.peek(p)) if lm.prefills.enabled else None
            for p, a in encoded]
    results: list[PassResult | None] = [None] * len(encoded)
    for i, prefill in enumerate(kept):
        if prefill is not None and not encoded[i][1]:
            results[i] = _prompt_pass(lm, prefill, lens, reads)
    rest = [i for i, k in enumerate(kept) if k is None]
    for chunk in _logit_chunks(lm, rest, encoded):
        for i, result in zip(chunk, _full_pass(lm, [encoded[i] for i in chunk], lens, reads),
                             strict=True):
            results[i] = result
    drafts = []  # (input, its kept prefill) of drafts the model did not decode there
    for i, prefill in enumerate(kept):
        if prefill is not None and encoded[i][1]:
            answer_ids = encoded[i][1]
            decoded = lm.prefills.decoding(prefill, answer_ids)
            if decoded is None:
                drafts.append((i, prefill))
            else:
                results[i] = _decoded_pass(lm, prefill, decoded, answer_ids, lens, reads)
    if drafts:
        for (i, _), result in zip(drafts, _draft_passes(
                lm, [(prefill, encoded[i][1]) for i, prefill in drafts], lens, reads,
                answer_depth), strict=True):
            results[i] = result
    done = [r for r in results if r is not None]
    if answer_depth is None or lens:
        return done
    return [replace(r, signals={k: v for k, v in r.signals.items()
                                if k not in ANSWER_TOKEN_SIGNALS}) for r in done]


# Most bytes of logits one whole pass may hold. A batch keeps logits from its shortest prompt's
# end to its longest input's end in every row, so prompts of unequal lengths (with passages of
# unequal lengths in them) on a large vocabulary (Gemma's 262k) would hold gigabytes.
MAX_LOGITS_BYTES = 256 * 2**20


def _logit_chunks(lm: LocalLM, indices: Sequence[int],
                  encoded: Sequence[tuple[list[int], list[int]]]) -> list[list[int]]:
    """``indices`` grouped into whole passes, by prompt length, each keeping at most
    ``MAX_LOGITS_BYTES`` of logits (one input alone may keep more)."""
    vocab = int(getattr(getattr(lm.model, "config", None), "vocab_size", 0) or 0)
    keeps = _forward_options(lm.model).keeps_logits
    chunks: list[list[int]] = []
    chunk: list[int] = []
    for i in sorted(indices, key=lambda i: len(encoded[i][0])):
        grown = [*chunk, i]
        width = max(len(p) + len(a) for p, a in (encoded[j] for j in grown))
        kept = width - len(encoded[grown[0]][0]) + 1 if keeps else width
        if chunk and len(grown) * max(kept, MIN_LOGITS_KEPT) * vocab * 4 > MAX_LOGITS_BYTES:
            chunks.append(chunk)
            grown = [i]
        chunk = grown
    return [*chunks, chunk] if chunk else chunks


def _full_pass(lm: LocalLM, encoded: Sequence[tuple[list[int], list[int]]], lens: bool,
               lens_reads: Sequence[LensRead]) -> list[PassResult]:
    """One batched pass over whole inputs; each prompt's pass is kept for reuse when the model
    keeps prefills."""
    import torch

    from knowgate.agents.prefill import Prefill, fits, row_cache

    width = max(len(p) + len(a) for p, a in encoded)
    pad = lm.tokenizer.pad_token_id or 0
    ids = torch.tensor([p + a + [pad] * (width - len(p) - len(a)) for p, a in encoded])
    mask = torch.tensor([[1] * (len(p) + len(a)) + [0] * (width - len(p) - len(a))
                         for p, a in encoded])
    options = _forward_options(lm.model)
    extra: dict[str, Any] = {}
    if options.keeps_logits:
        # The signals read the logits from the last prompt position on: the head (a [vocab,
        # hidden] product per position) need not run over the whole prompt.
        extra["logits_to_keep"] = min(width, max(MIN_LOGITS_KEPT,
                                                 width - min(len(p) for p, _ in encoded) + 1))
    # ``logits_to_keep`` keeps every prompt's last position: it starts at the shortest one's.
    keep = options.use_cache and lm.prefills.enabled
    if options.use_cache:
        # The KV cache is built only when it is kept: the answerer then decodes from it.
        extra["use_cache"] = keep
    with lm.lock, torch.inference_mode():
        out = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                       output_hidden_states=True, **extra)
        # An encoder without an output head (AutoModel) gives hidden states only.
        logits = getattr(out, "logits", None)
        decode = decoder(lm.model) if logits is not None else None
        offset = width - logits.shape[1] if logits is not None else 0  # position of logits[:, 0]
        results = []
        for row, (p, a) in enumerate(encoded):
            n = len(p) + len(a)
            # .float() copies only a half-precision model's states (it is a no-op on float32).
            hidden = tuple((h[row] if n == width else h[row, :n]).float()
                           for h in out.hidden_states)
            signals: dict[str, float] = {}
            cache: dict[LensRead, list[float]] = {}
            if logits is not None:
                signals, cache = _signals(
                    _token_rows(logits[row, len(p) - 1 - offset:n - offset], a), hidden, len(p), a,
                    decode, lens, [r for r in lens_reads if r[0] == "query" or a])
                if keep and fits(lm.model, len(p)):
                    lm.prefills.put(Prefill(
                        tuple(p), row_cache(lm.model, out.past_key_values, row, len(p)),
                        tuple(h[:len(p)].clone() for h in hidden),
                        logits[row, len(p) - 1 - offset].clone()))
            results.append(PassResult(Pass(hidden, len(p), decode, cache), signals))
    return results


def _draft_passes(lm: LocalLM, drafts: Sequence[tuple[Any, list[int]]], lens: bool,
                  lens_reads: Sequence[LensRead], depth: int | None = None) -> list[PassResult]:
    """The passes of prompts with drafts, one batched pass over the drafts' tokens on top of
    the prompts' kept passes (``knowgate.agents.prefill.extend``): the hidden states and
    logits a whole pass gives, within float rounding; up to hidden state ``depth`` only, and
    no draft token signals, when the pass can stop there (``run_passes``'s ``answer_depth``)."""
    import torch

    from knowgate.agents.prefill import extend, fits

    width = max(len(prefill.ids) for prefill, _ in drafts)
    if len(drafts) > 1 and not fits(lm.model, width + max(len(ids) for _, ids in drafts)):
        # Padded to one width, the batch would outgrow a sliding window: one pass each.
        return [result for draft in drafts
                for result in _draft_passes(lm, [draft], lens, lens_reads, depth)]
    depth = None if lens else depth  # the lens reads every layer's answer positions
    with lm.lock:
        extensions = extend(lm.model, drafts, lm.tokenizer.pad_token_id or 0, lm.device,
                            depth=depth)
    decode = decoder(lm.model)
    results = []
    with torch.inference_mode():
        for (prefill, answer_ids), new in zip(drafts, extensions, strict=True):
            # Layers the pass did not reach keep the prompt's positions alone.
            hidden = tuple(torch.cat([kept, new.hidden[i]]) if i < len(new.hidden) else kept
                           for i, kept in enumerate(prefill.hidden))
            if new.logits is None:  # query-level token signals only, from the kept pass
                rows, scored = _token_rows(prefill.last_logits[None], []), []
            else:
                rows = _token_rows(torch.cat([prefill.last_logits[None].float(), new.logits]),
                                   answer_ids)
                scored = answer_ids
            signals, cache_reads = _signals(rows, hidden, len(prefill.ids), scored, decode,
                                            lens, list(lens_reads))
            results.append(PassResult(Pass(hidden, len(prefill.ids), decode, cache_reads),
                                      signals))
    return results


def _prompt_pass(lm: LocalLM, prefill: Any, lens: bool,
                 lens_reads: Sequence[LensRead]) -> PassResult:
    """The pass of a question alone, read from its prompt's kept pass (no model pass runs)."""
    import torch

    decode = decoder(lm.model)
    with torch.inference_mode():
        signals, cache_reads = _signals(_token_rows(prefill.last_logits[None], []), prefill.hidden,
                                        len(prefill.ids), [], decode, lens,
                                        [r for r in lens_reads if r[0] == "query"])
    return PassResult(Pass(prefill.hidden, len(prefill.ids), decode, cache_reads), signals)


def _decoded_pass(lm: LocalLM, prefill: Any, decoded: Any, answer_ids: list[int], lens: bool,
                  lens_reads: Sequence[LensRead]) -> PassResult:
    """The pass of a prompt with a draft the model decoded from the prompt's kept pass, read
    from the decoding's own steps (``Decoded``): no model pass runs. It equals the pass over
    prompt and draft within float rounding, as ``_draft_passes`` does."""
    import torch

    n, k = len(prefill.ids), len(answer_ids)
    with torch.inference_mode():
        # Step j + 1's input is the draft's token j; step j's distribution predicts it.
        hidden = tuple(torch.cat([kept, steps[1:k + 1]])
                       for kept, steps in zip(prefill.hidden, decoded.hidden, strict=True))
        decode = decoder(lm.model)
        signals, cache_reads = _signals(decoded.rows.prefix(k), hidden, n, answer_ids, decode,
                                        lens, list(lens_reads))
    return PassResult(Pass(hidden, n, decode, cache_reads), signals)


def _token_rows(logits: Any, answer_ids: Sequence[int]) -> TokenRows:
    """``token_rows`` of a pass's logits from the prompt's last position."""
    return token_rows(logits[:max(1, len(answer_ids))].float().log_softmax(dim=-1), answer_ids)


def _signals(rows: TokenRows, hidden: tuple[Any, ...], prompt_tokens: int,
             answer_ids: list[int], decode: Callable[[int, Any], Any] | None, lens: bool,
             reads: Sequence[LensRead]) -> tuple[dict[str, float], dict[LensRead, list[float]]]:
    """Token and logit-lens signals of one input, and the lens features of ``reads``.

    Args:
        rows: The model's own distributions at the answer-predicting positions.
        decode: The model's logit lens (``None``: no lens signals or reads).
        lens: Compute the lens consistency signals.
        reads: Lens features wanted (``lens_features`` of ``Pass.pooled``, as Python floats).

    On a small model the fixed cost of each torch op, not the arithmetic, is most of what the
    prober adds to the forward pass. So every decoded distribution (the middle layers' at the
    answer-predicting positions, the reads') goes through one log-softmax and one entropy, the
    few numbers the signals need become Python floats in one ``tolist``, and the means over a
    handful of them are taken in Python. Each decoding keeps the product shape it had when every
    signal and probe did its own (BLAS rounds a one-vector product differently from a row of a
    larger one): only the last means and the probes' dot products, now in double precision
    instead of float32, round differently (by 1e-6 at most).
    """
    import torch

    span = max(1, len(answer_ids))
    values = {"query_top_prob": math.exp(rows.top2[0]), "query_entropy": rows.entropies[0]}
    if answer_ids:
        chosen = rows.chosen[:len(answer_ids)]
        values["answer_mean_logprob"] = sum(chosen) / len(chosen)
        values["answer_min_logprob"] = min(chosen)
        values["answer_mean_entropy"] = sum(rows.entropies[:span]) / span
    start = prompt_tokens - 1
    middle = hidden[1:-1] if lens and decode is not None else ()
    reads = reads if decode is not None else ()
    if not middle and not reads:
        return values, {}
    assert decode is not None
    # The distributions, one per row: each middle layer's at the answer-predicting positions
    # (position i predicts token i + 1), decoded in one product (the logit lens); then each
    # read's.
    parts = []
    if middle:
        block = torch.cat([h[start:start + span] for h in middle])  # [layers * span, hidden]
        parts.append(decode(1, block).float())
    if reads:
        parts.append(torch.stack([
            decode(layer, _pool(hidden[layer], prompt_tokens, stage, pooling))
            for stage, layer, pooling in reads]).float())
    logprobs = (torch.cat(parts) if len(parts) > 1 else parts[0]).log_softmax(dim=-1)
    entropy = -(logprobs.exp() * logprobs).sum(dim=-1)
    # What is read: the reads' entropies and top two log-probabilities; for each middle layer
    # the log-probabilities of the model's top next token and of the draft's tokens.
    first_read = span * len(middle)
    pairs = []
    for row in range(0, first_read, span):
        pairs += [(row, rows.top), *((row + j, t) for j, t in enumerate(answer_ids))]
    vocab = logprobs.shape[-1]
    index = torch.tensor([r * vocab + t for r, t in pairs], dtype=torch.long,
                         device=logprobs.device)
    top_rows = list(range(first_read, first_read + len(reads)))
    numbers = torch.cat([entropy[first_read:],
                         logprobs[top_rows].topk(2, dim=-1).values.flatten(),
                         logprobs.view(-1)[index]]).tolist()
    entropies, tops = numbers[:len(reads)], numbers[len(reads):3 * len(reads)]
    picked = numbers[3 * len(reads):]
    if middle:
        # Query level: the mean probability the decoded layers give the model's top next token;
        # answer level: the mean log-probability they give the draft's tokens.
        group = 1 + len(answer_ids)
        layers = [picked[i:i + group] for i in range(0, len(picked), group)]
        values["query_lens_consistency"] = sum(math.exp(g[0]) for g in layers) / len(layers)
        if answer_ids:
            values["answer_lens_consistency"] = (sum(sum(g[1:]) for g in layers)
                                                 / (len(layers) * len(answer_ids)))
    # ``lens_features`` of each read: top log-probability, entropy, top-2 margin.
    cache = {read: [tops[2 * k], entropies[k], tops[2 * k] - tops[2 * k + 1]]
             for k, read in enumerate(reads)}
    return values, cache


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

