"""The prober: a local transformers model read from the inside.

It runs one forward pass with hidden states per input (``knowgate.agents.hidden_states``) and
returns named signals. On the answerer's own model the question's pass is shared: it is the
prefill the answerer decodes from, and the draft's pass is read from that decoding's steps, or
runs over the draft's tokens on top of it (``knowgate.agents.prefill``). The signals:

* before any answer exists (``answer=None``): ``query_top_prob`` and ``query_entropy`` of the
  model's next-token distribution at the end of the prompt, i.e. how sure the model would be of
  the first answer token, and ``query_lens_consistency`` (how much the middle layers, decoded with
  the logit lens, already agree). This costs no generation and can route a question before the
  answerer is paid.
* for a question with a draft answer: the draft's tokens under the model, ``answer_mean_logprob``,
  ``answer_min_logprob`` and ``answer_mean_entropy`` (entropy of the model's distribution at each
  answer position), ``answer_lens_consistency``, plus the query-level signals from the same pass.

Trained probes plug in as ``HiddenStateProbe`` objects: each gets the hidden states of the same
pass and returns one more named signal; combiners (``knowgate.agents.probes.Combiner``) then map
the signals of the pass to one calibrated signal. Query-level probes also run on a pass with an
answer (the prompt's positions are the same), so the answer-level combiner can read them. The
state, the graph and the policy need no change: the policy uses a signal by its name. The model may
differ from the answerer's (a local open model checking a hosted answerer).

``JointProber`` reads several models as one prober: the answerer's model reads the question and
the draft, and each further model reads the question alone, its signals under a prefix. With the
critic's own weights (``critic_query_entropy`` ...) that tells, before the critic is paid, whether
the critic knows the answer: the policy can then send a question the fast model cannot answer
straight to the critic, or skip a critic that would only abstain.

``EvidenceReader`` reads a model's answer given from evidence: the prompt with the passages the
model read, then its answer. With the critic's model and a probe set trained on its readings
(``reads: evidence``), it scores the critic's answer after a search (``critic_reading_probe``),
the answer whose rightness the token confidence and the answer's text judge least well.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

from knowgate.agents.batching import MicroBatcher
from knowgate.agents.hidden_states import Pass, PassInput, PassResult, Stage, run_passes
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.probes import Combiner, ProbeSet
from knowgate.errors import UserError
from knowgate.roles import Passage, Prober, RoleError, Signals

__all__ = ["EvidenceReader", "HiddenStateProbe", "JointProber", "Pass", "Stage",
           "TransformersProber"]

# A prober's input: the question, the draft (or ``None``) and the passages in the prompt.
_Key = tuple[str, str | None, tuple[str, ...]]


class HiddenStateProbe(Protocol):
    """A trained probe: one signal from the hidden states of one pass."""

    name: str
    stage: Stage
    # A probe may also say ``layer``: the deepest hidden state it reads (the prober then need
    # not run the model past it on a draft); one that does not is taken to read the last.

    def __call__(self, forward: Pass) -> float:
        """The probe's score for this pass."""
        ...


class TransformersProber:
    """The ``Prober`` role over any ``AutoModelForCausalLM``.

    A model without an output head (an encoder loaded with ``AutoModel``, wrapped with
    ``LocalLM.from_objects``) works too: it gives no token or logit-lens signals, only what
    hidden-state probes read.

    Args:
        lm: The loaded model (``LocalLM(path_or_id, device)`` picks CUDA with bf16 when present).
        probes: Trained probes to run on the same passes.
        combiners: Combined signals computed from the pass's other signals, in order.
        cache_size: Inputs whose signals are remembered (a replayed node costs nothing).
        batch_size: Most inputs per forward pass: concurrent calls (an eval run's questions,
            the server's requests) are gathered into one batched pass.
        batch_wait_ms: How long the first call of a batch waits for others.
        lens: Compute the logit-lens consistency signals (``*_lens_consistency``). They decode
            every middle layer at every answer position with the model's head, the prober's
            largest cost on a real vocabulary: the runtime turns them off when nothing reads
            them (``knowgate.composition``).
        answer_tokens: Compute the draft's token signals (``answer_mean_logprob``,
            ``answer_min_logprob``, ``answer_mean_entropy``). Off (and the lens off), a draft's
            pass on top of its prompt's kept pass runs only as deep as the answer-level probes
            read (``layer``; a probe that does not say reads the last), skipping the rest of
            the model and its output head; combiners that read the token signals then give
            nothing. The runtime turns them off when nothing reads them.
    """

    role = "prober"

    def __init__(self, lm: LocalLM, probes: Sequence[HiddenStateProbe] = (),
                 cache_size: int = 4096, combiners: Sequence[Combiner] = (),
                 batch_size: int = 32, batch_wait_ms: float = 2.0, lens: bool = True,
                 answer_tokens: bool = True) -> None:
        self.lm = lm
        self.lens = lens
        self.answer_tokens = answer_tokens
        self.probes = list(probes)
        self.combiners = list(combiners)
        self.cache_size = cache_size
        self._cache: OrderedDict[_Key, Signals] = OrderedDict()
        self._batcher: MicroBatcher[_Key, dict[str, float] | Exception] = (
            MicroBatcher(lambda _, inputs: self.signals_many(inputs), batch_size,
                         batch_wait_ms / 1000.0, busy=lm.lock.locked))

    async def __call__(self, question: str, answer: str | None = None,
                       passages: Sequence[str] = ()) -> Signals:
        """Signals of ``question`` alone, or of ``question`` with ``answer`` (see the module);
        with ``passages``, of the prompt that holds them (the prompt a model reading the
        evidence answers from)."""
        key = (question, answer, tuple(passages))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            values = await self._batcher.submit(None, key)
        except Exception as exc:  # torch/transformers failures (out of memory, bad input)
            values = exc
        if isinstance(values, RoleError):
            raise values
        if isinstance(values, Exception):
            raise RoleError(self.role, f"{type(values).__name__}: {values}") from values
        signals = Signals(values=values)
        self._cache[key] = signals
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return signals

    @classmethod
    def with_probes(cls, lm: LocalLM, probes: ProbeSet, lens: bool = True,
                    answer_tokens: bool = True) -> TransformersProber:
        """A prober running a saved ``ProbeSet`` (``knowgate probe train`` writes one)."""
        return cls(lm, probes.probes, combiners=probes.combiners, lens=lens,
                   answer_tokens=answer_tokens)

    def signals(self, question: str, answer: str | None = None,
                passages: Sequence[str] = ()) -> dict[str, float]:
        """The signals of one input, computed synchronously (one forward pass).

        Raises:
            RoleError: The input is empty or too long for the model, or the model gave NaN.
        """
        (values,) = self.signals_many([(question, answer, tuple(passages))])
        if isinstance(values, Exception):
            raise values
        return values

    def signals_many(self, inputs: Sequence[PassInput]) -> list[dict[str, float] | Exception]:
        """The signals of several inputs (``(question, answer[, passages])``) from one batched
        forward pass; an input the model cannot take (empty, too long) or whose signals are NaN
        gets its ``RoleError`` in its place without failing the others."""
        inputs = [(q, a if a is not None and a.strip() else None, tuple(rest[0]) if rest else ())
                  for q, a, *rest in inputs]
        # The lens probes' features are computed in the pass, with its own signals.
        reads = [read for probe in self.probes
                 if (read := getattr(probe, "lens_read", None)) is not None]
        try:
            passes = run_passes(self.lm, inputs, lens=self.lens, lens_reads=reads,
                                answer_depth=self._answer_depth())
        except UserError as exc:
            if len(inputs) == 1:
                return [RoleError(self.role, str(exc))]
            # Find the input at fault: the others still get their signals.
            return [out for one in inputs for out in self.signals_many([one])]
        return [self._named(result, one[1]) for result, one in zip(passes, inputs, strict=True)]

    def _answer_depth(self) -> int | None:
        """The deepest hidden state read at a draft's positions (``None``: the whole model)."""
        if self.answer_tokens or self.lens:
            return None
        layers = [getattr(p, "layer", None) for p in self.probes if p.stage == "answer"]
        return None if None in layers else max(layers, default=0)

    def _named(self, result: PassResult, answer: str | None) -> dict[str, float] | RoleError:
        stages = {"query", "answer"} if answer is not None else {"query"}
        values = dict(result.signals)
        for probe in self.probes:
            if probe.stage in stages:
                values[probe.name] = float(probe(result.forward))
        for combiner in self.combiners:
            if combiner.stage in stages:
                combined = combiner(values)
                if combined is not None:
                    values[combiner.name] = combined
        if any(math.isnan(v) for v in values.values()):
            return RoleError(self.role, "the model produced NaN")
        # A zero-probability token gives -inf; clamp so signals stay valid JSON and comparable.
        return {k: max(-1e4, min(1e4, v)) for k, v in values.items()}


class JointProber:
    """The ``Prober`` role over several models at once.

    Args:
        main: Reads the question, and the draft when there is one (signals keep their names).
        question_readers: Prefix -> a prober of another model that reads the question alone;
            its signals come back as ``<prefix>_<name>`` (e.g. ``critic_query_entropy``).

    The readers run concurrently; one failing fails the call (the graph then goes on without
    signals, as for any prober failure). A reader's question-only signals are the same on every
    call for one question, so a ``TransformersProber`` serves the repeats from its cache.
    """

    role = "prober"

    def __init__(self, main: Prober, question_readers: dict[str, Prober]) -> None:
        self.main = main
        self.question_readers = dict(question_readers)

    async def __call__(self, question: str, answer: str | None = None) -> Signals:
        """The main prober's signals of ``question`` (with ``answer``), and every reader's of
        ``question`` alone, under its prefix."""
        *read, main = await asyncio.gather(
            *(reader(question) for reader in self.question_readers.values()),
            self.main(question, answer))
        values = dict(main.values)
        for prefix, result in zip(self.question_readers, read, strict=True):
            values.update({f"{prefix}_{name}": v for name, v in result.values.items()})
        return Signals(values=values, cost_usd=main.cost_usd + sum(r.cost_usd for r in read))


class EvidenceReader:
    """Signals of an answer a model gave from evidence, read from that model's hidden states.

    The refine node calls it with the critic's answer and the passages the critic read
    (``knowgate.graphs.nodes.TriageContext.reader``). On the critic's own loaded copy the
    reading's prompt pass is usually kept from the critic's decoding (``LocalLM.prefills``), so
    only the answer's tokens run.

    Args:
        prober: A prober of the reading model whose probes read the evidence (a ``ProbeSet``
            with ``reads: evidence``); its token and lens signals are left out.
    """

    def __init__(self, prober: TransformersProber) -> None:
        if not prober.probes and not prober.combiners:
            raise UserError("an evidence reader needs probes of the reading (reads: evidence)")
        self.prober = prober
        self.names: tuple[str, ...] = (*(p.name for p in prober.probes),
                                       *(c.name for c in prober.combiners))

    @classmethod
    def with_probes(cls, lm: LocalLM, probes: ProbeSet) -> EvidenceReader:
        """A reader running a saved set of reading probes on ``lm``.

        Raises:
            UserError: The set was not trained on readings of evidence.
        """
        if probes.reads != "evidence":
            raise UserError("these probes read the question, not a reading of evidence")
        return cls(TransformersProber.with_probes(lm, probes, lens=False, answer_tokens=False))

    async def __call__(self, question: str, answer: str, passages: Sequence[Passage]) -> Signals:
        """The probes' signals of ``answer`` given to ``question`` from ``passages``.

        Raises:
            RoleError: The reading cannot be read (too long for the model, NaN, a failure).
        """
        read = await self.prober(question, answer, [p.text for p in passages])
        return Signals(values={n: read.values[n] for n in self.names if n in read.values},
                       cost_usd=read.cost_usd)
