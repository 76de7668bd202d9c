"""Signals declared once: name, stage, scale, what produces it, and one line of meaning.

Every signal a role or node writes into ``TriageState.signals`` is declared here (the stock
ones), by a trained probe set when it loads (``knowgate.agents.probes``), or by a package under
the entry-point group ``knowgate.signals`` (a ``SignalSpec`` or a list of them)::

    [project.entry-points."knowgate.signals"]
    sample_agreement = "my_package.signals:SAMPLE_AGREEMENT"

What reads the declarations: the probe combiners and ``knowgate calibrate`` (the scale a signal
is weighed on; calibrate also tries a declared signal in the policy maps its ``maps`` names, so a
plugin's signal is fitted without editing knowgate), the policy (``undeclared`` names a map
feature nothing produces, a typo), the chat API's trace (``KnowgateTrace.signal_notes``, shown on
the trace page) and ``knowgate signal list``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from knowgate.plugins import SIGNAL_GROUP, PluginFailure, load_entry_points
from knowgate.signal_scales import Scale

Stage = Literal["question", "draft", "evidence", "verdict"]


TRAINED_PROBE = "trained probe"  # the producer of every trained probe's and combiner's signal


class SignalSpec(BaseModel):
    """The declaration of one signal.

    Attributes:
        name: The name it is written under (``query_top_prob``).
        stage: What it describes: the ``question`` before any answer, a ``draft``, the
            ``evidence`` a search found, or the critic's ``verdict``.
        scale: The scale a linear map weighs it on (``knowgate.signal_scales``).
        producer: What writes it (``prober``, ``searcher``, a package's node ...).
        meaning: One line: what it measures, and which way is better.
        prefixes: Prefixes under which the same signal is read on another model
            (``critic`` for ``critic_query_top_prob``: the critic's model read by the prober).
        maps: Policy maps (``closed_book``, ``open_book``, ``critic``, ``query``) that
            ``knowgate calibrate`` tries it in, beside the features the base policy names.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$")
    stage: Stage
    scale: Scale = "raw"
    producer: str = Field(min_length=1)
    meaning: str = Field(min_length=1)
    prefixes: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()


def _stock() -> list[SignalSpec]:
    def q(name: str, scale: Scale, meaning: str) -> SignalSpec:
        return SignalSpec(name=name, stage="question", scale=scale, producer="prober",
                          meaning=meaning, prefixes=("critic",))

    def d(name: str, scale: Scale, meaning: str, producer: str = "prober") -> SignalSpec:
        return SignalSpec(name=name, stage="draft", scale=scale, producer=producer,
                          meaning=meaning)

    return [
        q("query_top_prob", "logit", "probability of the likeliest first answer token, before "
          "any answer is generated (higher: the model knows)"),
        q("query_entropy", "log", "entropy of the first answer token's distribution before "
          "generation (lower: the model knows)"),
        q("query_lens_consistency", "raw", "mean probability the middle layers (logit lens) "
          "give the last layer's top next token, before generation (higher: settled early)"),
        d("answer_mean_logprob", "neglog", "mean log-probability of the draft's tokens under "
          "the prober's model (higher: surer)"),
        d("answer_min_logprob", "neglog", "lowest log-probability among the draft's tokens "
          "(higher: no token was a guess)"),
        d("answer_mean_entropy", "log", "mean entropy of the next-token distributions over "
          "the draft (lower: surer)"),
        d("answer_lens_consistency", "raw", "mean log-probability the middle layers (logit "
          "lens) give the draft's tokens (higher: settled early)"),
        d("answerer_confidence", "raw", "the answerer's stated probability that its draft is "
          "right", producer="answerer"),
        d("draft_logit", "raw", "logit of the answerer's stated confidence (the policy's own "
          "feature)", producer="policy"),
        SignalSpec(name="search_support", stage="evidence", producer="searcher",
                   meaning="share of the query's distinguishing words the top passage holds "
                           "(low: the passage is about something else)"),
        SignalSpec(name="search_top_score", stage="evidence", producer="searcher",
                   meaning="ranking score of the top passage (higher: closer to the query)"),
        SignalSpec(name="evidence_match", stage="evidence", producer="matcher",
                   meaning="similarity of the open-book draft to the evidence sentence it came "
                           "from (low: the draft is not what the passage says)"),
        SignalSpec(name="critic_confidence", stage="verdict", producer="critic",
                   meaning="the critic's stated probability that its answer is right"),
        SignalSpec(name="critic_logit", stage="verdict", producer="policy",
                   meaning="logit of the critic's stated confidence (the policy's own feature)"),
        SignalSpec(name="critic_evidence_match", stage="verdict", producer="matcher",
                   meaning="similarity of the critic's answer to the evidence (low: the critic "
                           "answered with words no passage states)"),
        SignalSpec(name="answer_echo", stage="draft", producer="policy",
                   meaning="share of the draft's words the question holds (high: the draft "
                           "repeats the question, e.g. its subject)",
                   maps=("closed_book", "open_book")),
        SignalSpec(name="critic_echo", stage="verdict", producer="policy",
                   meaning="share of the critic's answer's words the question holds (high: "
                           "it repeats the question)", maps=("critic",)),
        SignalSpec(name="critic_agreement", stage="verdict", producer="policy",
                   meaning="1 when the critic's answer and the draft state each other, else 0 "
                           "(0: one of the two models is wrong)", maps=("critic",)),
        SignalSpec(name="earlier_agreement", stage="draft", producer="policy",
                   meaning="how many answers proposed earlier for the question (another "
                           "model's, another prompt's) state the current one (higher: surer)",
                   maps=("open_book", "critic")),
        SignalSpec(name="answer_clause_overlap", stage="evidence", producer="policy",
                   meaning="share of the question's words the evidence clause stating the draft "
                           "holds (low: the draft is another field's value)",
                   maps=("open_book",)),
        SignalSpec(name="critic_clause_overlap", stage="verdict", producer="policy",
                   meaning="share of the question's words the evidence clause stating the "
                           "critic's answer holds (low: another field's value)",
                   maps=("critic",)),
    ]


# Signal names a registry remembers having checked; past that each new name is checked (and
# warned about) every time, rather than remembered without bound.
MAX_CHECKED = 10_000
_log = logging.getLogger("knowgate.signals")


class SignalRegistry:
    """Signals by name: the stock ones, trained probes' as they load, and installed packages'
    ``knowgate.signals`` entry points (loaded once, on first use)."""

    def __init__(self, specs: Iterable[SignalSpec] = ()) -> None:
        self._specs: dict[str, SignalSpec] = {}
        self.failures: dict[str, PluginFailure] = {}
        self._loaded = False
        self._checked: set[str] = set()  # names already checked (bounded: MAX_CHECKED)
        for spec in specs:
            self.declare(spec)

    def declare(self, spec: SignalSpec) -> None:
        """Add ``spec``; declaring the same spec again is a no-op.

        Raises:
            ValueError: Another declaration already holds the name.
        """
        held = self._specs.get(spec.name)
        if held is not None and held != spec:
            raise ValueError(f"the signal {spec.name!r} is already declared "
                             f"(by {held.producer}: {held.meaning})")
        self._specs[spec.name] = spec

    def load_plugins(self) -> list[PluginFailure]:
        """Declare every installed ``knowgate.signals`` entry point (once) and return those
        that failed, each naming its plugin."""
        if not self._loaded:
            self._loaded = True
            loaded, failures = load_entry_points(SIGNAL_GROUP, self._prepare)
            self.failures.update({f.name: f for f in failures})
            for name, specs in loaded.items():
                for spec in specs:
                    try:
                        self.declare(spec)
                    except ValueError as exc:
                        self.failures[name] = PluginFailure(SIGNAL_GROUP, name, spec.name,
                                                            None, str(exc))
        return list(self.failures.values())

    @staticmethod
    def _prepare(name: str, value: Any) -> list[SignalSpec]:
        specs = list(value) if isinstance(value, list | tuple) else [value]
        if not specs or not all(isinstance(s, SignalSpec) for s in specs):
            raise TypeError("not a knowgate.signals.SignalSpec (or a list of them)")
        return specs

    def get(self, name: str) -> SignalSpec | None:
        """The declaration of ``name``; a prefixed name (``critic_query_top_prob``) is the
        declaration it prefixes, renamed, with that prefix's model named as its producer."""
        self.load_plugins()
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        for base in self._specs.values():
            for prefix in base.prefixes:
                if name == f"{prefix}_{base.name}":
                    return base.model_copy(update={
                        "name": name, "prefixes": (), "producer": f"{base.producer} "
                        f"({prefix}'s model)", "meaning": f"{base.meaning}, on the {prefix}'s "
                                                         "model"})
        return None

    def all(self) -> list[SignalSpec]:
        """Every declaration (prefixed variants included), sorted by name."""
        self.load_plugins()
        out = dict(self._specs)
        for base in self._specs.values():
            for prefix in base.prefixes:
                variant = self.get(f"{prefix}_{base.name}")
                assert variant is not None
                out[variant.name] = variant
        return [out[name] for name in sorted(out)]

    def scale(self, name: str) -> Scale:
        """The declared scale of ``name`` (``raw`` for an undeclared signal)."""
        spec = self.get(name)
        return spec.scale if spec is not None else "raw"

    def check(self, names: Iterable[str]) -> list[str]:
        """The names among ``names``, not seen here before, that nothing declares; each is
        logged as a warning (``knowgate.signals``), once: calibrate will not try it in any map,
        and traces and reports cannot say what it is."""
        undeclared = []
        for name in names:
            if name in self._checked:
                continue
            if self.get(name) is None:
                undeclared.append(name)
                _log.warning("signal %r is not declared (knowgate.signals): calibrate will not "
                             "try it, and traces and reports cannot say what it is", name)
            if len(self._checked) < MAX_CHECKED:
                self._checked.add(name)
        return undeclared

    def note(self, name: str) -> str | None:
        """One line on ``name`` for a trace: stage, scale, producer and meaning."""
        spec = self.get(name)
        if spec is None:
            return None
        return f"{spec.stage} · {spec.scale} · {spec.producer}: {spec.meaning}"


SIGNALS = SignalRegistry(_stock())
"""The signals of this process."""
