"""``knowgate calibrate``: fit a policy from an explore run of any graph that uses it.

An explore run (``knowgate eval run --graph G --explore``, ``knowgate.evals.explore``) holds,
for every calibration question, the candidate answers of every branch the graph lets the policy
take (for the triage graph: closed book, critic first, critic after a draft, open book, critic
with evidence), with the features the policy saw and whether each was right, and the tape of
the role calls. Every policy tried below is replayed through ``G`` itself over that tape, so
what is optimised is what the graph does. From the run:

1. every P(correct) map of a *base* policy, and every one of its ``fallback_maps``, is refitted
   (logistic regression) on the candidates that carry all of its features, over the subset of
   the base map's feature names of lowest 5-fold cross-validated log loss (so a signal enters a
   map only where it helps). Names are read generically from the recorded features, so new
   signals need no change here: a base policy naming them is enough, and a signal declared for
   a map (``SignalSpec.maps``) is tried there too, a trained probe's in the main maps only
   (a fallback map judges when the prober runs without its probes);
2. the success rates of search and refine are measured (an action succeeds when it yields an
   answer the policy then trusts and that answer is right), and each success map of the base
   policy is fitted on the same cases (e.g. "the critic's answer will be trusted and right" from
   the critic model's own pre-generation signals), like the P(correct) maps;
3. ``search_first_below`` (search, or go to the critic when its success map says so, before any
   draft when the query-level P(correct) is below it) is set to the value of highest replayed
   utility, among those that send at most ``MAX_RIGHT_ROUTED`` of the questions the policy
   answers right without help away from the draft
   (the fast path stays the fast path), with the query map and with its fallback; ``None`` when
   no value gains;
4. the answer threshold is set, every replay routing by the ``search_first_below`` of step 3
   (utility mode then chooses ``search_first_below`` again at the threshold it settled on):

   * ``utility``: the threshold (0.5 to 0.995) whose replay on the calibration questions (see
     below) has the highest utility under the base policy's reward and penalty; with perfectly
     calibrated maps that is the threshold reward and penalty imply, and the replay corrects
     for maps that are not;
   * ``risk``: Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing. For
     thresholds from strict to loose, the policy is replayed through the graph on every
     calibration question; the null "the
     wrong-answer rate among answered exceeds alpha" is rejected with an exact binomial p-value
     at level delta, and the loosest threshold before the first non-rejection is kept
     (thresholds answering too few questions to be certified at all are skipped). Then, with
     probability at least 1 - delta over the calibration set, the wrong-answer rate among
     answered questions is at most alpha.

   Either way the threshold is written as the policy's penalty (answering then pays off exactly
   when P(correct) clears it); compare runs with ``eval summary`` under one policy's terms.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from knowgate.errors import KnowgateError, UserError
from knowgate.evals.explore import ExploredQuestion, Replayed, replay_trees
from knowgate.evals.records import CandidateRecord, Manifest, read_manifest, read_records
from knowgate.graphs.policy import LogisticMap, Policy, Prices, SuccessName
from knowgate.settings import Settings
from knowgate.signals import SIGNALS, TRAINED_PROBE, SignalRegistry

Mode = Literal["utility", "risk"]
# Which recorded candidates each map of the policy judges.
MAP_SOURCES = {"query": "closed_book", "closed_book": "closed_book", "open_book": "open_book",
               "critic": "critic"}
_LOGITS = ("draft_logit", "critic_logit")
# Of the questions the policy answers right with no help, the most that search-first routing may
# send to search (each pays a search for nothing, and answering fast ones fast is the point).
MAX_RIGHT_ROUTED = 0.01


def roles_changed(manifest: Manifest, settings: Settings) -> list[str]:
    """How the world and roles ``settings`` name differ from those the run was made with,
    one ``"critic: 'local/slow' in the run, 'second-opinion' now"`` per difference (role
    options compared as the manifest keeps them, secrets masked)."""
    from knowgate.composition import ROLES, role_specs
    from knowgate.evals.runner import redacted_settings
    from knowgate.worlds.world import DEFAULT_WORLD

    then, now = manifest.settings, redacted_settings(settings)
    specs = role_specs(settings)
    out = []
    for name in ("world", *specs, "role_options"):
        if name not in then:  # a run older than the setting ran its default
            continue
        old, new = then[name], now.get(name)
        if name == "world":  # unset is the default world
            old, new = old or DEFAULT_WORLD, new or DEFAULT_WORLD
        if name in specs:
            try:
                old = str(ROLES.parse(name, old))
            except KnowgateError:  # a factory not installed here any more: compare as written
                pass
            new = str(specs[name])
        if old != new:
            out.append(f"{name}: {old!r} in the run, {new!r} now")
    return out


def threshold_of(policy: Policy) -> float:
    """P(correct) above which answering beats abstaining under ``policy``'s utility."""
    return (policy.penalty_usd + policy.abstain_usd) / (policy.reward_usd + policy.penalty_usd)


def with_threshold(policy: Policy, threshold: float) -> Policy:
    """``policy`` with the penalty that makes ``threshold`` its answer threshold."""
    penalty = (threshold * policy.reward_usd - policy.abstain_usd) / (1.0 - threshold)
    return policy.model_copy(update={"penalty_usd": round(max(0.0, penalty), 8)})


def _p(policy: Policy, candidate: CandidateRecord | None) -> float:
    if candidate is None or not candidate.answer.strip():
        return 0.0
    return policy.map_for(candidate.source, candidate.features).probability(candidate.features)


def _model() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=1000)


def choose_features(x: np.ndarray, y: np.ndarray, names: list[str]) -> list[str]:
    """The non-empty subset of ``names`` (columns of ``x``) of lowest 5-fold cross-validated log
    loss, among the features that vary (a constant one says nothing, and would tie its way in);
    all of them when there are too few of either class to cross-validate."""
    from sklearn.model_selection import cross_val_score

    folds = min(5, int(y.sum()), int(len(y) - y.sum()))
    varying = [i for i in range(len(names)) if np.ptp(x[:, i]) > 0] or list(range(len(names)))
    x, names = x[:, varying], [names[i] for i in varying]
    if len(names) < 2 or folds < 2:
        return names
    losses: dict[tuple[str, ...], float] = {}
    # Largest subsets first, so that on a tie the map keeps every feature it was given.
    for size in range(len(names), 0, -1):
        for subset in itertools.combinations(range(len(names)), size):
            scores = cross_val_score(_model(), x[:, list(subset)], y, cv=folds,
                                     scoring="neg_log_loss")
            losses[tuple(names[i] for i in subset)] = float(-scores.mean())
    return list(min(losses, key=lambda k: losses[k]))


def with_declared(base: LogisticMap, name: str, candidates: Sequence[CandidateRecord],
                  signals: SignalRegistry, probes: bool = True) -> LogisticMap:
    """``base`` with every signal declared for the map ``name`` that ``candidates`` carry added
    as a feature to try (weight 0, on its declared scale); the base's own are kept as they are.
    ``probes=False`` leaves out the trained probes' signals: a fallback map is what judges when
    the prober runs without them."""
    seen = {f for c in candidates for f in c.features}
    added = [s for s in signals.all() if name in s.maps and s.name in seen
             and s.name not in base.weights and (probes or s.producer != TRAINED_PROBE)]
    if not added:
        return base
    return base.model_copy(update={
        "weights": {**base.weights, **{s.name: 0.0 for s in added}},
        "scales": {**base.scales, **{s.name: s.scale for s in added if s.scale != "raw"}}})


def recorded_only(base: LogisticMap, candidates: Sequence[CandidateRecord],
                  signals: SignalRegistry) -> LogisticMap:
    """``base`` without the declared signals no candidate carries, trained probes' excepted.

    Why: a stock or plugin signal the run did not record (its prober was not asked for it, see
    ``prober_signals``) would leave no candidate carrying every feature, and the map would stay
    at the base's weights, placeholders included, as if fitted. A trained probe's signal that
    is missing means the run had no probes: its main map cannot be fitted, and the fallback
    map (fitted without the probes) is what judges such a prober's answers. A name nothing
    declares (a typo, a probe or plugin not loaded here) is kept too: it does not vanish
    silently from the map (``Policy.undeclared`` names it).
    """
    seen = {f for c in candidates for f in c.features}
    kept = {n: w for n, w in base.weights.items() if n in seen
            or (spec := signals.get(n)) is None or spec.producer == TRAINED_PROBE}
    if len(kept) == len(base.weights):
        return base
    return base.model_copy(update={"weights": kept, "scales": {
        n: v for n, v in base.scales.items() if n in kept}})


def fit_map(candidates: Sequence[CandidateRecord], names: list[str], base: LogisticMap
            ) -> tuple[LogisticMap, int]:
    """Logistic regression of correctness over the best subset of ``names`` (see
    ``choose_features``), on the candidates that carry every one of them (a map only judges
    those: ``Policy.map_for`` falls back otherwise). See ``fit_cases``."""
    return fit_cases([(c.features, c.correct) for c in candidates if c.answer.strip()], names,
                     base)


def fit_cases(cases: Sequence[tuple[dict[str, float], bool]], names: list[str],
              base: LogisticMap) -> tuple[LogisticMap, int]:
    """Logistic regression of the outcome over the best subset of ``names``, on the cases whose
    features carry every one of them; ``base`` when there are too few or one outcome is absent.
    Returns the map and how many cases it was fitted on."""
    rows = [(f, ok) for f, ok in cases if all(n in f for n in names)]
    y = np.array([float(ok) for _, ok in rows])
    if not names or len(rows) < 10 or len(set(y)) < 2:
        return base, len(rows)
    # Each feature on the base map's scale for it: the fitted map reads it the same way.
    x = np.array([[base.value(n, f[n]) for n in names] for f, _ in rows], dtype=float)
    chosen = choose_features(x, y, names)
    model = _model().fit(x[:, [names.index(n) for n in chosen]], y)
    return LogisticMap(bias=round(float(model.intercept_[0]), 4),
                       weights={n: round(float(w), 4)
                                for n, w in zip(chosen, model.coef_[0], strict=True)},
                       scales={n: base.scales[n] for n in chosen if n in base.scales}), len(rows)


def _search_first_draft(e: ExploredQuestion) -> CandidateRecord | None:
    """The open-book draft of a search made before any draft (else any open-book draft)."""
    return e.candidate("open_book", True, drafted=False) or e.candidate("open_book", True)


def success_cases(policy: Policy, explored: Sequence[ExploredQuestion]
                  ) -> dict[SuccessName, list[tuple[dict[str, float], bool]]]:
    """For each action whose success the policy weighs: the features it is decided on and
    whether it yielded a trusted right answer, among the questions the policy would not answer
    yet (at ``policy``'s threshold). The stock actions' candidates: the closed-book draft, the
    critic asked first, the open-book draft, the critic reading the evidence."""
    t = threshold_of(policy)

    def good(c: CandidateRecord | None) -> bool:
        return c is not None and c.correct and _p(policy, c) >= t

    rows = [(e, e.candidate("closed_book", False), _search_first_draft(e)) for e in explored]
    untrusted = [(e, opened) for e, closed, opened in rows
                 if closed is not None and _p(policy, closed) < t]
    after_search = [(e, opened) for e, opened in untrusted
                    if opened is not None and not good(opened) and _p(policy, opened) < t]
    return {
        "search_first": [(e.query, good(opened)) for e, opened in untrusted],
        "refine_unsearched": [(e.query, good(e.candidate("critic", False, drafted=False)
                                              or e.candidate("critic", False)))
                              for e, _ in untrusted],
        # After a search the policy decides on the open-book draft's features.
        "refine_searched": [(opened.features, good(e.candidate("critic", True)))
                            for e, opened in after_search],
    }


def success_terms(policy: Policy, explored: Sequence[ExploredQuestion], base: Policy,
                  prices: Prices) -> dict[str, Any]:
    """``policy``'s success rates measured, and ``base``'s success maps fitted, on the same cases
    (``success_cases``): a ``model_copy`` update.

    A critic called after a search only meets the questions the policy did not send to the
    critic first, so ``refine_searched`` is fitted on those alone (where the search's support,
    not the critic's own knowledge, tells success apart), judged by the policy with the other
    maps already fitted.
    """
    cases = success_cases(policy, explored)
    rates = {name: round(float(np.mean([ok for _, ok in rows])), 4)
             for name, rows in cases.items() if rows}
    maps = {name: fitted for name, old in base.success_maps.items()
            if name != "refine_searched"
            and (fitted := _fitted_success_map(cases[name], old)) is not None}
    update: dict[str, Any] = {"success": base.success.model_copy(update=rates),
                              "success_maps": maps}
    old = base.success_maps.get("refine_searched")
    if old is not None:
        interim = policy.model_copy(update=update)
        skipped = {id(opened.features) for e in explored
                   if (opened := _search_first_draft(e)) is not None
                   and first_move(e.replay(interim, prices)) == "refine"}
        reached = [(f, ok) for f, ok in cases["refine_searched"] if id(f) not in skipped]
        fitted = _fitted_success_map(reached, old)
        update["success_maps"] = {**maps, **({"refine_searched": fitted} if fitted else {})}
    return update


def _fitted_success_map(cases: Sequence[tuple[dict[str, float], bool]], base: LogisticMap
                        ) -> LogisticMap | None:
    """The success map fitted on ``cases``, or ``None`` when none could be (too few cases, or
    one outcome only): the policy then weighs the measured rate. Keeping ``base`` there would
    weigh its placeholder weights as if fitted: the stock base maps (weights 0) say 0.5 where
    the measured rate is 0, which at strict thresholds sent every question to the critic first."""
    fitted, _ = fit_cases(cases, list(base.weights), base)
    return None if fitted is base else fitted


def first_move(replayed: Replayed) -> str | None:
    """The first action after the probes: what the policy chose before anything else."""
    return next((a for a in replayed.path if a != "probe"), None)


def replay_all(policy: Policy, prices: Prices, explored: Sequence[ExploredQuestion],
               terms: Policy | None = None) -> dict[str, float]:
    """Coverage, wrong-answer rate among answered and utility of ``policy`` replayed (the
    utility with the reward, penalty and abstain value of ``terms``, by default the policy's)."""
    terms = terms or policy
    outcomes = [e.replay(policy, prices) for e in explored]
    answered = [o for o in outcomes if o.answered]
    wrong = sum(not o.correct for o in answered)
    utility = np.mean([o.utility(terms) for o in outcomes])
    return {"n": len(outcomes), "answered": len(answered), "wrong": wrong,
            "coverage": round(len(answered) / max(1, len(outcomes)), 4),
            "wrong_rate_answered": round(wrong / max(1, len(answered)), 4),
            "usd_per_q": round(float(np.mean([o.cost_usd for o in outcomes])), 8),
            "utility": round(float(utility), 8)}


def choose_search_first(policy: Policy, prices: Prices, explored: Sequence[ExploredQuestion],
                        terms: Policy | None = None) -> tuple[float | None, dict[str, Any]]:
    """The ``search_first_below`` of highest replayed utility (under ``terms``, by default the
    policy's) that routes at most ``MAX_RIGHT_ROUTED`` of the questions ``policy`` answers right
    without help; ``None`` when routing none is best.

    The value only matters at the first decision, so each question is replayed twice, never and
    always routed, and any value's utility is the sum of the routed replays below it and the
    unrouted ones above: exact, with two replays per question instead of two per value. The
    guard also holds for the query map's fallback (a prober without trained probes), whose
    P(correct) of the same questions may sit lower.
    """
    terms = terms or policy
    never = policy.model_copy(update={"search_first_below": None})
    always = policy.model_copy(update={"search_first_below": 1.0})
    fallback = policy.fallback_maps.get("query")
    rows, fallback_right = [], []
    for e in explored:
        features = {k: v for k, v in e.query.items() if k not in _LOGITS}
        p = policy.query_probability(features)
        if p is None:
            continue
        direct, routed = e.replay(never, prices), e.replay(always, prices)
        rows.append((p, routed.utility(terms) - direct.utility(terms), direct.right_without_help))
        if direct.right_without_help and fallback is not None \
                and all(n in features for n in fallback.weights):
            fallback_right.append(fallback.probability(features))
    rows.sort(key=lambda r: r[0])
    fallback_right.sort()
    allowed = MAX_RIGHT_ROUTED * sum(r[2] for r in rows)
    best: float | None = None
    best_gain, routed_n, gain, right_routed = 0.0, 0, 0.0, 0
    for i, (p, delta, right) in enumerate(rows):
        gain, right_routed = gain + delta, right_routed + right
        if right_routed > allowed:
            break
        # Route every question up to this one: the value sits halfway to the next distinct p.
        if i + 1 < len(rows) and rows[i + 1][0] == p:
            continue
        value = (p + (rows[i + 1][0] if i + 1 < len(rows) else 1.0)) / 2
        if bisect.bisect_left(fallback_right, value) > MAX_RIGHT_ROUTED * len(fallback_right):
            break  # without trained probes this value would send fast questions to search
        if gain > best_gain + 1e-12:
            best, best_gain, routed_n = value, gain, i + 1
    n = max(1, len(explored))
    return best, {"search_first_below": best, "routed": routed_n, "with_query_signal": len(rows),
                  "utility_gain_per_q": round(best_gain / n, 8),
                  "right_without_help_routed_max": int(allowed)}


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p): the exact p-value of "the risk is at least p" after
    seeing k errors in n (computed in log space, so n in the thousands is fine)."""
    if k >= n:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
             + i * log_p + (n - i) * log_q for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def thresholds(start: float) -> list[float]:
    """Answer thresholds tried, from strict (0.995) down to ``start``."""
    return [float(t) for t in np.round(np.arange(0.995, start - 1e-9, -0.005), 4)]


def at_threshold(fitted: Policy, threshold: float, explored: Sequence[ExploredQuestion],
                 base: Policy, prices: Prices) -> Policy:
    """``fitted`` answering from ``threshold`` on, its success rates and maps fitted at it."""
    policy = with_threshold(fitted, threshold)
    return policy.model_copy(update=success_terms(policy, explored, base, prices))


def best_utility(fitted: Policy, prices: Prices, explored: Sequence[ExploredQuestion],
                 base: Policy) -> tuple[Policy, dict[str, Any]]:
    """The answer threshold (from 0.5 up) whose replayed utility on the calibration questions,
    scored with ``fitted``'s reward and penalty, is highest."""
    best: tuple[Policy, dict[str, Any]] | None = None
    for t in thresholds(0.5):
        policy = at_threshold(fitted, t, explored, base, prices)
        stats = replay_all(policy, prices, explored, terms=fitted)
        if best is None or stats["utility"] > best[1]["utility"]:
            best = policy, {**stats, "threshold": t}
    assert best is not None
    return best


def learn_then_test(fitted: Policy, prices: Prices, explored: Sequence[ExploredQuestion],
                    base: Policy, alpha: float, delta: float
                    ) -> tuple[Policy, dict[str, Any]]:
    """The loosest answer threshold whose replayed wrong-answer rate among answered is
    certified at most ``alpha`` with probability 1 - ``delta`` (fixed-sequence testing).

    Raises:
        UserError: Not even the strictest threshold can be certified with this data.
    """
    chosen: tuple[Policy, dict[str, Any]] | None = None
    # A threshold answering fewer questions than this cannot be certified whatever the answers
    # (even none wrong gives p = (1 - alpha)^n > delta), so it can make no false rejection
    # either: it is skipped rather than ending the sequence (Tarone 1990). On real models the
    # strictest thresholds answer a handful of questions, and the sequence would otherwise
    # stop before it reaches a testable one.
    testable = math.ceil(math.log(delta) / math.log(1.0 - alpha))
    stopped = f"no threshold answered {testable}"
    for t in thresholds(threshold_of(fitted)):
        candidate = at_threshold(fitted, t, explored, base, prices)
        stats = replay_all(candidate, prices, explored, terms=fitted)
        if stats["answered"] < testable:
            continue
        p_value = binomial_cdf(stats["wrong"], stats["answered"], alpha)
        if p_value > delta:
            stopped = (f"at threshold {t:.3f}, {stats['wrong']} of {stats['answered']} answered "
                       f"were wrong, p = {p_value:.3f}")
            break
        chosen = candidate, {**stats, "threshold": float(t), "p_value": round(p_value, 6)}
    if chosen is None:
        raise UserError(f"no answer threshold keeps the wrong-answer rate at most {alpha} with "
                        f"confidence {1 - delta} on this calibration run (certifying needs at "
                        f"least {testable} answered questions; {stopped}): use more questions, "
                        "or a larger alpha or delta")
    return chosen


def calibrate(run: Path, mode: Mode, base: Policy, prices: Prices, alpha: float = 0.05,
              delta: float = 0.1, signals: SignalRegistry = SIGNALS
              ) -> tuple[Policy, dict[str, Any]]:
    """A policy fitted on the explore run at ``run`` (of any graph), and a report of how.

    Each map is fitted over the base map's features and every signal ``signals`` declares for
    that map (``SignalSpec.maps``) that the candidates carry, each on its declared scale. Every
    policy tried is replayed through the run's own graph (``knowgate.evals.explore``).

    Raises:
        UserError: The run is not an explore run, its tape does not cover the graph's calls
            (``replay_trees``), or bad alpha / delta.
    """
    from knowgate.aio import run_sync
    from knowgate.evals.graphs import compile_eval_graph

    if not 0.0 < alpha < 1.0 or not 0.0 < delta < 1.0:
        raise UserError("alpha and delta must lie strictly between 0 and 1")
    manifest = read_manifest(run)
    if not manifest.explore:
        from knowgate.evals.runner import EXPLORE_ALIAS

        # A run of the old 'explore' pipeline graph kept no tape: the triage graph is explored.
        graph = "triage" if manifest.graph == EXPLORE_ALIAS else manifest.graph
        raise UserError(f"{run} is not an explore run: calibrate on a run made with --explore "
                        f"(knowgate eval run --graph {graph} --explore ...)")
    records = [r for r in read_records(run) if r.outcome != "error"]
    if not any(r.candidates for r in records):
        raise UserError(f"{run} records no candidate answers to fit on")
    explored = run_sync(replay_trees(compile_eval_graph(manifest.graph), records, base, prices))
    # The maps are fitted on the candidates the graph gives now from the recorded calls.
    candidates = [c for e in explored for c in e.candidates]

    def refit(maps: dict[str, LogisticMap], counts: dict[str, int], probes: bool
              ) -> dict[str, LogisticMap]:
        out = {}
        for name, old in maps.items():
            # A map a developer's node's source names is fitted on that source's candidates.
            pool = [c for c in candidates if c.source == MAP_SOURCES.get(name, name)]
            tried = recorded_only(with_declared(old, name, pool, signals, probes), pool, signals)
            out[name], counts[name] = fit_map(pool, list(tried.weights), tried)
            if out[name] is tried:  # nothing fitted: the base map as it was
                out[name] = old
        return out

    counts: dict[str, int] = {}
    fallback_counts: dict[str, int] = {}
    maps = refit(dict(base.maps), counts, probes=True)
    fallbacks = refit(dict(base.fallback_maps), fallback_counts, probes=False)
    fitted = base.model_copy(update={"maps": maps, "fallback_maps": fallbacks})
    fitted = fitted.model_copy(update=success_terms(fitted, explored, base, prices))
    first, routing = choose_search_first(fitted, prices, explored)
    fitted = fitted.model_copy(update={"search_first_below": first})
    report: dict[str, Any] = {"run": str(run), "graph": manifest.graph, "mode": mode,
                              "questions": len(records),
                              "fitted_on": counts, "fallbacks_fitted_on": fallback_counts,
                              "features": {k: list(m.weights) for k, m in maps.items()},
                              "search_first": routing}
    if mode == "risk":
        fitted, stats = learn_then_test(fitted, prices, explored, base, alpha, delta)
        report.update(alpha=alpha, delta=delta, calibration=stats)
        how = (f"risk mode (Learn-then-Test, alpha={alpha}, delta={delta}): answer threshold "
               f"{stats['threshold']:.3f} (binomial p={stats['p_value']:.4f})")
    else:
        fitted, stats = best_utility(fitted, prices, explored, base)
        # Routing is chosen again at the final threshold, where the guard must hold (risk mode
        # keeps the first choice: its guarantee is for the policy Learn-then-Test replayed).
        first, routing = choose_search_first(fitted, prices, explored, terms=base)
        fitted = fitted.model_copy(update={"search_first_below": first})
        stats = {**replay_all(fitted, prices, explored, terms=base), "threshold": stats["threshold"]}
        report.update(calibration=stats, search_first=routing)
        how = (f"utility mode: answer threshold {stats['threshold']:.3f}, the best replayed "
               f"utility at reward ${base.reward_usd} / penalty ${base.penalty_usd}")
    # Both modes refit the success maps at the threshold they settle on: report those.
    report["success_features"] = {k: list(m.weights) for k, m in fitted.success_maps.items()}
    first_how = "off" if first is None else \
        f"{first:.4f} ({routing['routed']} calibration questions routed)"
    source = (f"knowgate calibrate on {len(records)} questions of an explore run of "
              f"{manifest.graph!r} "
              f"({report['calibration']['n']} replayed): logistic maps (and fallbacks) over "
              f"the subset of the base policy's features of lowest cross-validated log loss "
              f"({report['features']}), success rates measured and success maps fitted the same way "
              f"({report['success_features']}); search_first_below {first_how}, "
              f"the best replayed utility routing at most {MAX_RIGHT_ROUTED:.0%} of the "
              f"questions answered right without help; {how}")
    return fitted.model_copy(update={"source": source}), report
