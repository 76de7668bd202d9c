"""The policy: choose the next action by expected utility, within rounds and a dollar budget.

At each decision the policy estimates P(correct) of the current candidate answer with a
calibrated logistic map of the signals (one map per kind of candidate), then compares, in dollars:

* answer now:  ``reward * p - penalty * (1 - p)``
* abstain:     ``abstain_usd`` (0 by default)
* search:      ``s * reward + (1 - s) * after - price(search + draft)``
* refine:      ``s * reward + (1 - s) * abstain_usd - price(critic)``

where ``s`` is the chance that the action produces an answer the policy will then trust (a rate
measured on a calibration run, by what was tried already; or, where ``success_maps`` has a map for
it and the signals it reads are there, a calibrated map of those signals, e.g. of the critic's own
pre-generation confidence). A search from an answer not yet trusted (or from none) looks two
steps ahead: when its draft is not trusted the critic can still read the evidence, so ``after``
is the better of abstaining and refining after a search (``refine_searched``'s rate, less the
critic's price) while a critic round and its price remain, else ``abstain_usd``. Without that,
a fast model that reads badly makes every search look worthless, even where the critic reading
the same evidence is right most of the time. An action is available only while its rounds last,
its role has not failed, and its price fits the remaining budget; when nothing else is left the
choice is answer-or-abstain, never an error. Before any answer exists the query-level map can send a
question the answerer will not know straight to search, or, when a success map of the critic says
the critic knows it, straight to the critic (``search_first_below``).

Policy files are JSON of ``Policy``. A world may ship its own (``policy`` in its card, e.g.
``worlds/factbook/policy.json``, fitted by ``bench/factbook_world.py``); the built-in defaults,
for the synthetic world, are in ``graphs/default_policy.json``, fitted by
``bench/fit_default_policy.py`` on its calibration split. Either records how in its ``source``
field; both are fitted with ``knowgate calibrate``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from knowgate.answer_text import agreement, clause_overlap, earlier_agreement, echo
from knowgate.errors import UserError
from knowgate.graphs.kinds import REFINE, SEARCH, NodeKind
from knowgate.graphs.state import Candidate, Decision, TriageState
from knowgate.signal_scales import Scale, rescale
from knowgate.signals import SIGNALS, SignalRegistry

MapName = Literal["query", "closed_book", "open_book", "critic"]
SuccessName = Literal["search_first", "refine_unsearched", "refine_searched"]
DEFAULT_POLICY = Path(__file__).resolve().parent / "default_policy.json"
_EPS = 1e-6

def logit(p: float) -> float:
    """log(p / (1 - p)), clamped so that 0 and 1 stay finite."""
    p = min(1.0 - _EPS, max(_EPS, p))
    return math.log(p / (1.0 - p))

def _earlier_answers(state: TriageState, candidate: Candidate) -> list[str]:
    """The answers steps proposed for this question before ``candidate``'s own step."""
    proposed: list[tuple[str | None, str]] = [(s.proposes, s.answer) for s in state.steps
                                               if s.answer and not s.error]
    own = (candidate.source, candidate.answer)
    mine = max((at for at, item in enumerate(proposed) if item == own), default=len(proposed))
    return [answer for _, answer in proposed[:mine]]


class LogisticMap(BaseModel):
    """P(correct) = sigmoid(bias + sum(weight * feature)); a missing feature adds nothing.

    A feature named in ``scales`` is read on that scale (``knowgate.signal_scales.rescale``,
    e.g. the log of an entropy) before it is weighed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bias: float = 0.0
    weights: dict[str, float] = Field(default_factory=dict)
    scales: dict[str, Scale] = Field(default_factory=dict)

    def probability(self, features: dict[str, float]) -> float:
        """The calibrated probability for these features."""
        z = self.bias + sum(w * self.value(name, features[name])
                            for name, w in self.weights.items() if name in features)
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def value(self, name: str, raw: float) -> float:
        """Feature ``name`` on its scale."""
        scale = self.scales.get(name)
        return raw if scale is None else float(rescale(raw, scale))

class SuccessRates(BaseModel):
    """Chance that an action yields an answer the policy then trusts, by what was tried."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    search_first: float = Field(default=0.3, ge=0.0, le=1.0)
    search_again: float = Field(default=0.02, ge=0.0, le=1.0)
    refine_unsearched: float = Field(default=0.3, ge=0.0, le=1.0)
    refine_searched: float = Field(default=0.4, ge=0.0, le=1.0)
    refine_again: float = Field(default=0.02, ge=0.0, le=1.0)

class Prices(BaseModel):
    """Expected dollars of one call of each role (from the cost map and the settings)."""

    model_config = ConfigDict(frozen=True)

    draft: float = 0.0
    search: float = 0.0
    refine: float = 0.0

class Policy(BaseModel):
    """Everything the policy decides with.

    Attributes:
        reward_usd: Value of a correct answer.
        penalty_usd: Cost of a wrong answer.
        abstain_usd: Value of abstaining (0, or a small negative number to discourage it).
        max_searches: Search rounds per question.
        max_refines: Critic rounds per question.
        budget_usd: Most a question may spend.
        search_first_below: Do not draft first when the query-level P(correct) is below this
            (``None``: always draft first): search, or refine when a ``refine_unsearched``
            success map applies and refining is worth more.
        maps: P(correct) maps: ``query`` (before any answer), ``closed_book`` and ``open_book``
            drafts, and ``critic`` answers. Features are signal names plus ``draft_logit`` and
            ``critic_logit`` (logits of the stated confidences).
        success: See ``SuccessRates``.
        success_maps: Per-question success probabilities replacing a rate of ``success`` when
            every signal the map reads is present (no map, or a missing signal: the rate).
        rounds: Bounds of developers' own kinds of step (``NodeKind.counts_as``), e.g.
            ``{"sample": 1}``; ``search`` and ``refine`` are bounded by ``max_searches`` and
            ``max_refines``, a kind named nowhere is unbounded (the budget still applies).
        source: How these numbers were set.
        fallback_maps: Maps used instead of ``maps`` when a signal the main map reads is
            missing (no prober, a prober without trained probes, one that failed, a critic that
            answered before any draft or search).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reward_usd: float = Field(default=0.01, gt=0.0)
    penalty_usd: float = Field(default=0.02, ge=0.0)
    abstain_usd: float = 0.0
    max_searches: int = Field(default=1, ge=0, le=10)
    max_refines: int = Field(default=1, ge=0, le=10)
    budget_usd: float = Field(default=0.01, gt=0.0)
    search_first_below: float | None = Field(default=None, ge=0.0, le=1.0)
    # Keyed by ``Candidate.source``: the stock ``MapName``s, and a developer's node's own source.
    maps: dict[str, LogisticMap] = Field(default_factory=lambda: {
        "query": LogisticMap(weights={"query_top_prob": 0.0}),
        "closed_book": LogisticMap(weights={"draft_logit": 1.0}),
        "open_book": LogisticMap(weights={"draft_logit": 1.0}),
        "critic": LogisticMap(weights={"critic_logit": 1.0}),
    })
    success: SuccessRates = Field(default_factory=SuccessRates)
    success_maps: dict[SuccessName, LogisticMap] = Field(default_factory=dict)
    source: str = "built-in defaults (uncalibrated)"
    fallback_maps: dict[str, LogisticMap] = Field(default_factory=dict)
    rounds: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None = None) -> Policy:
        """Read a policy file; ``None`` means the defaults fitted for the shipped world.

        Raises:
            UserError: The file is missing or invalid.
        """
        path = Path(path) if path is not None else DEFAULT_POLICY
        if not path.is_file():
            raise UserError(f"policy file not found: {path}")
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise UserError(f"{path}: invalid policy: {exc}") from exc

    def features(self, state: TriageState) -> dict[str, float]:
        """Signals plus what the policy reads off the answers themselves: the logits of the
        stated confidences, and the answers' words (``knowgate.answer_text``: ``answer_echo``,
        ``critic_echo``, ``critic_agreement``, ``earlier_agreement``, and against the evidence
        ``answer_clause_overlap``, ``critic_clause_overlap``). The latter are computed here, not written
        into the state's signals, because the critic is shown those."""
        out = dict(state.signals.values)
        evidence = [p.text for p in state.evidence.passages] if state.evidence else []
        if state.draft is not None:
            out["draft_logit"] = logit(state.draft.confidence)
            out["answer_echo"] = echo(state.question, state.draft.answer)
            if evidence:
                out["answer_clause_overlap"] = clause_overlap(state.question,
                                                              state.draft.answer, evidence)
        if state.verdict is not None:
            out["critic_logit"] = logit(state.verdict.confidence)
            out["critic_echo"] = echo(state.question, state.verdict.answer)
            if state.draft is not None:
                out["critic_agreement"] = agreement(state.verdict.answer, state.draft.answer)
            if evidence:
                out["critic_clause_overlap"] = clause_overlap(state.question,
                                                              state.verdict.answer, evidence)
        candidate = state.candidate
        if candidate is not None and candidate.answer.strip():
            out["earlier_agreement"] = earlier_agreement(candidate.answer,
                                                         _earlier_answers(state, candidate))
        return out

    def p_correct(self, state: TriageState, features: dict[str, float] | None = None) -> float:
        """Calibrated P(correct) of the current candidate: 0 when there is none, or when the
        policy has no map for its source (a developer's node's answers are trusted only once
        ``knowgate calibrate`` has fitted a map for them); ``features``:
        ``self.features(state)`` when the caller has them already."""
        candidate = state.candidate
        if candidate is None or not candidate.answer.strip() or candidate.source not in self.maps:
            return 0.0
        features = self.features(state) if features is None else features
        return self.map_for(candidate.source, features).probability(features)

    def map_for(self, name: str, features: dict[str, float]) -> LogisticMap:
        """The ``name`` map, or its fallback when a feature the map reads is missing.

        Raises:
            KeyError: The policy has no map of that name.
        """
        main = self.maps[name]
        fallback = self.fallback_maps.get(name)
        if fallback is not None and any(f not in features for f in main.weights):
            return fallback
        return main

    def undeclared(self, signals: SignalRegistry = SIGNALS) -> list[str]:
        """Features the maps weigh that no signal declares (``knowgate.signals``): a typo, or
        the signal of a plugin that is not installed. The logits of stated confidences are the
        policy's own."""
        maps = [*self.maps.values(), *self.fallback_maps.values(), *self.success_maps.values()]
        return sorted({f for m in maps for f in m.weights if signals.get(f) is None})

    def rounds_left(self, state: TriageState, bound: str | None) -> int | None:
        """Rounds of ``bound`` (``NodeKind.counts_as``) left to this question; ``None`` when it
        is unbounded."""
        limit = {"search": self.max_searches, "refine": self.max_refines}.get(
            bound or "", self.rounds.get(bound or ""))
        return None if bound is None or limit is None else max(0, limit - state.count(bound))

    def allows(self, state: TriageState, kind: NodeKind, prices: Prices, extra_usd: float = 0.0
               ) -> bool:
        """Whether a node of ``kind`` may run now: a
        round of its bound is left, its role has not failed, and its price (plus
        ``extra_usd``, e.g. the draft that reads a search) fits the budget left."""
        left = self.rounds_left(state, kind.counts_as)
        return ((left is None or left > 0) and kind.role not in state.failed
                and kind.price(prices) + extra_usd <= self.budget_usd - state.spent_usd)

    def query_probability(self, features: dict[str, float]) -> float | None:
        """The query-level P(correct) before any answer, or ``None`` when the prober did not
        give every signal the query map (or its fallback) reads."""
        query = self.map_for("query", features)
        if not query.weights or any(name not in features for name in query.weights):
            return None
        return query.probability(features)

    def decide(self, state: TriageState, prices: Prices, can_search: bool = True,
               can_refine: bool = True) -> Decision:
        """The next action for ``state``.

        Args:
            state: The question so far.
            prices: Expected price of each action.
            can_search: Whether the graph has a searcher (and an answerer to read with).
            can_refine: Whether the graph has a critic.
        """
        left = self.budget_usd - state.spent_usd
        searched, refined = state.count("search"), state.count("refine")
        first, search_ok, refine_ok = self._open(state, prices, can_search, can_refine)
        features = self.features(state)
        if first:
            return self._first(features, prices, left, search_ok, refine_ok)

        p = self.p_correct(state, features)
        values = {"answer": self.reward_usd * p - self.penalty_usd * (1.0 - p),
                  "abstain": self.abstain_usd}
        if state.candidate is None or not state.candidate.answer.strip():
            values.pop("answer")
        # Success rates and maps are measured on questions whose answer is not trusted yet; a
        # trusted draft keeps the one-step rates (a critic that knows the answer adds little
        # there, and a search would trade a trusted answer for a gamble).
        trusted = "answer" in values and values["answer"] >= values["abstain"]
        if search_ok:
            s = self.success_of("search_first", features) if searched == 0 \
                else self.success.search_again
            values["search"] = self._search_value(s, prices, left, refine_ok and not trusted)
        if refine_ok:
            name: SuccessName = "refine_searched" if searched else "refine_unsearched"
            s = (self.success.refine_again if refined else
                 getattr(self.success, name) if trusted else self.success_of(name, features))
            values["refine"] = self._gamble(s) - prices.refine
        # Highest value wins; on a tie the cheaper, more final action (dict order) wins.
        action = max(values, key=lambda a: values[a])
        rounded = {k: round(v, 8) for k, v in values.items()}
        shown = ", ".join(f"{k} {v:+.5f}" for k, v in sorted(rounded.items(), key=lambda kv: -kv[1]))
        return Decision(action=action, p_correct=round(p, 6), values=rounded,
                        reason=f"P(correct)={p:.3f}; expected value: {shown}")

    def options(self, state: TriageState, prices: Prices, can_search: bool = True,
                can_refine: bool = True) -> list[str]:
        """Every action ``decide`` may choose in ``state``, whatever the maps say: what an
        explore run walks (``knowgate.evals.explore``), so that the replay of any policy with
        these bounds and this budget finds each of its choices explored."""
        first, search_ok, refine_ok = self._open(state, prices, can_search, can_refine)
        if first:
            if prices.draft > self.budget_usd - state.spent_usd:
                return ["abstain"]
            return ["draft", *(["search"] if search_ok else []),
                    *(["refine"] if refine_ok else [])]
        has_answer = state.candidate is not None and bool(state.candidate.answer.strip())
        return [*(["answer"] if has_answer else []), "abstain",
                *(["search"] if search_ok else []), *(["refine"] if refine_ok else [])]

    def _open(self, state: TriageState, prices: Prices, can_search: bool, can_refine: bool
              ) -> tuple[bool, bool, bool]:
        """Whether this is the first decision (nothing drafted yet), and whether a search and
        a critic round are possible and paid for."""
        failed = set(state.failed)
        # A search is read by a draft: both must be possible and paid for.
        search_ok = (can_search and "answerer" not in failed
                     and self.allows(state, SEARCH, prices, extra_usd=prices.draft))
        refine_ok = can_refine and self.allows(state, REFINE, prices)
        first = (state.draft is None and state.candidate is None and state.count("draft") == 0
                 and "answerer" not in failed)
        return first, search_ok, refine_ok

    def success_of(self, name: SuccessName, features: dict[str, float]) -> float:
        """Chance that the action ``name`` yields a trusted right answer: its success map's
        probability when the map applies to ``features``, else the measured rate.

        The ``refine_searched`` map is fitted on the questions critic-first routing left to
        search (``knowgate calibrate``), so it applies only where that routing could run, i.e.
        where the ``refine_unsearched`` map applies too: without the critic's signal, a question
        the critic knows reaches the after-search decision, and the rate is the honest guess.
        """
        model = self._success_map(name, features)
        return getattr(self.success, name) if model is None else model.probability(features)

    def _success_map(self, name: SuccessName, features: dict[str, float]) -> LogisticMap | None:
        """The success map of ``name`` when it applies to ``features`` (see ``success_of``)."""
        needed = [name] if name != "refine_searched" else ["refine_unsearched", name]
        maps = [self.success_maps.get(n) for n in needed]
        if all(m is not None and m.weights and all(f in features for f in m.weights)
               for m in maps):
            return maps[-1]
        return None

    def _gamble(self, success: float) -> float:
        return success * self.reward_usd + (1.0 - success) * self.abstain_usd

    def _search_value(self, success: float, prices: Prices, left: float,
                      refine_ok: bool) -> float:
        """Expected value of searching (and drafting from the evidence): a trusted draft with
        chance ``success``; otherwise the better of abstaining and a critic round reading the
        evidence, when ``refine_ok`` (a round remains, the current answer is not trusted) and
        the budget still pays it after the search."""
        spent = prices.search + prices.draft
        after = self.abstain_usd
        if refine_ok and spent + prices.refine <= left:
            after = max(after, self._gamble(self.success.refine_searched) - prices.refine)
        return success * self.reward_usd + (1.0 - success) * after - spent

    def _first(self, features: dict[str, float], prices: Prices, left: float,
               search_ok: bool, refine_ok: bool) -> Decision:
        """Before any draft: draft, unless the query-level P(correct) says the answerer will not
        know; then search, or go straight to the critic when its success map says the critic
        knows and that is worth more."""
        p_query = self.query_probability(features)
        shown = f"query-level P(correct)={p_query:.3f}" if p_query is not None \
            else "no query-level signal"
        if prices.draft > left:
            return Decision(action="abstain", reason=f"budget left ${left:.6f} cannot pay a draft")
        if p_query is None or self.search_first_below is None or p_query >= self.search_first_below:
            return Decision(action="draft", p_correct=round(p_query or 0.0, 6),
                            reason=f"{shown}: ask the answerer")
        below = f"{shown} < {self.search_first_below:.3f}"
        values: dict[str, float] = {}
        if search_ok:
            values["search"] = self._search_value(self.success_of("search_first", features),
                                                  prices, left, refine_ok)
        critic_map = self._success_map("refine_unsearched", features)
        if refine_ok and critic_map is not None:
            s = critic_map.probability(features)
            values["refine"] = self._gamble(s) - prices.refine
            below += f", the critic's P(success)={s:.3f}"
        if not values:
            return Decision(action="draft", p_correct=round(p_query, 6),
                            reason=f"{below}, but nothing else is available: ask the answerer")
        action = max(values, key=lambda a: values[a])
        rounded = {k: round(v, 8) for k, v in values.items()}
        what = "search before drafting" if action == "search" else "ask the critic first"
        return Decision(action=action, p_correct=round(p_query, 6), values=rounded,  # type: ignore[arg-type]
                        reason=f"{below}: {what}")
