"""Fit the default policy for the shipped world on its calibration split and write it.

For every calibration question it runs each role the triage graph can use (closed-book draft,
search, open-book draft, critic with and without the evidence, the prober before any answer and on
each draft) and records the features the policy sees and whether each candidate answer is right.
It then fits one logistic P(correct) map per kind of candidate (scikit-learn): among the candidate
feature sets of a map (``CANDIDATES``), the one of lowest cross-validated log loss wins, so a probe
signal enters a map only where it helps (the first set, without probe signals, is kept as the
map's fallback for a prober without trained probes). It measures the success rates of search and refine among
the questions the policy would not answer yet, and picks ``search_first_below`` (search before
drafting when the query-level P(correct) is low) as the threshold of highest estimated gain in
dollars on the calibration split among those that send at most ``MAX_RIGHT_ROUTED`` of the
questions the policy would answer right without help to search first. Run: ``python bench/fit_default_policy.py [--write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from knowgate.agents.roles import Signals
from knowgate.grading import is_correct
from knowgate.graphs.policy import (
    DEFAULT_POLICY,
    LogisticMap,
    Policy,
    Prices,
    SuccessRates,
    logit,
)
from knowgate.graphs.runtime import build_context, estimate_prices
from knowgate.settings import load_settings
from knowgate.worlds.world import World

# Feature sets each map may use; the first is the one used before the prober had trained probes.
CANDIDATES = {
    "query": [["query_top_prob"], ["query_combined_logit"], ["query_probe_logit"]],
    "closed_book": [["draft_logit"], ["combined_logit"], ["draft_logit", "combined_logit"]],
    "open_book": [["draft_logit", "search_support"],
                  ["draft_logit", "search_support", "combined_logit"]],
    "critic": [["critic_logit"]],
}
MAX_RIGHT_ROUTED = 0.01


async def gather_rows(context, questions, concurrency: int = 64) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)

    async def one(q) -> dict:
        async with gate:
            probed = await context.prober(q.question)
            closed = await context.answerer(q.question)
            probed_closed = await context.prober(q.question, closed.answer)
            evidence = await context.searcher(q.question)
            passages = evidence.passages[:context.evidence_passages]
            opened = await context.answerer(q.question, passages)
            probed_open = await context.prober(q.question, opened.answer)
            signals = Signals(values={"search_support": evidence.support})
            critic_open = await context.critic(q.question, opened, signals, passages)
            critic_closed = await context.critic(q.question, closed, Signals())
        right = is_correct(closed.answer, q.answers)
        return {
            "kind": q.kind.value,
            # Each candidate: the features the graph has at that point, and whether it is right.
            "query": [dict(probed.values), right],
            "closed": [{**probed_closed.values, "draft_logit": logit(closed.confidence)}, right],
            "open": [{**probed_open.values, "draft_logit": logit(opened.confidence),
                      "search_support": evidence.support}, is_correct(opened.answer, q.answers)],
            "critic_open": [{"critic_logit": logit(critic_open.confidence)},
                            critic_open.verdict != "abstain"
                            and is_correct(critic_open.answer, q.answers)],
            "critic_closed": [{"critic_logit": logit(critic_closed.confidence)},
                              critic_closed.verdict != "abstain"
                              and is_correct(critic_closed.answer, q.answers)],
        }

    return list(await asyncio.gather(*(one(q) for q in questions)))


def fit(x: np.ndarray, y: np.ndarray, names: list[str]) -> LogisticMap:
    model = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
    return LogisticMap(bias=round(float(model.intercept_[0]), 4),
                       weights={n: round(float(w), 4) for n, w in zip(names, model.coef_[0],
                                                                      strict=True)})


def matrix(pairs: list[list], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features (in ``names`` order) and labels of candidate rows."""
    x = np.array([[features[n] for n in names] for features, _ in pairs], dtype=float)
    return x, np.array([bool(right) for _, right in pairs], dtype=float)


def choose(pairs: list[list], candidates: list[list[str]]) -> tuple[list[str], dict[str, float]]:
    """The feature set of lowest 5-fold cross-validated log loss, and every set's loss."""
    from sklearn.model_selection import cross_val_score

    losses = {}
    for names in candidates:
        if not all(n in pairs[0][0] for n in names):
            continue  # a signal this prober does not give
        x, y = matrix(pairs, names)
        scores = cross_val_score(LogisticRegression(C=10.0, max_iter=1000), x, y, cv=5,
                                 scoring="neg_log_loss")
        losses[",".join(names)] = round(float(-scores.mean()), 5)
    best = min(losses, key=lambda k: losses[k])
    return best.split(","), losses


def search_first_threshold(rows: list[dict], maps: dict[str, LogisticMap], base: Policy,
                           prices: Prices, threshold: float) -> tuple[float | None, float, int]:
    """The ``search_first_below`` of highest estimated gain (dollars) on these rows.

    Searching first skips the closed-book draft. Where that draft would not have been trusted,
    the policy would have searched next anyway: the draft's price is saved. Where it would have
    been trusted, the question now lives or dies by the open-book draft instead, and pays the
    search. Returns (threshold or None when no threshold gains, total gain, questions routed).
    """
    def value(features: dict, right: bool, kind: str) -> float:
        if maps[kind].probability(features) < threshold:
            return 0.0  # not answered at this step; both paths go on alike
        return base.reward_usd if right else -base.penalty_usd

    gains = []
    for r in rows:
        closed_feats, closed_right = r["closed"]
        if maps["closed_book"].probability(closed_feats) < threshold:
            gain = prices.draft
        else:
            open_feats, open_right = r["open"]
            gain = (value(open_feats, open_right, "open_book") - prices.search
                    - value(closed_feats, closed_right, "closed_book"))
        trusted_right = bool(closed_right) and \
            maps["closed_book"].probability(closed_feats) >= threshold
        gains.append((maps["query"].probability(r["query"][0]), gain, trusted_right))
    # The fast path must stay the fast path: of the questions the policy would answer right with
    # no help, at most MAX_RIGHT_ROUTED may be sent to search first (each pays a search for
    # nothing, and the fast-known bound of the triage table counts answers without help).
    allowed = MAX_RIGHT_ROUTED * sum(g[2] for g in gains)
    best, best_gain, routed, total, right_routed = None, 0.0, 0, 0.0, 0
    gains.sort()
    for i, (p, gain, right) in enumerate(gains):
        total += gain
        right_routed += right
        if right_routed > allowed:
            break
        # Route every question with P(query) <= p: the threshold sits just above p.
        if total > best_gain and (i + 1 == len(gains) or gains[i + 1][0] > p):
            best, best_gain, routed = p + 1e-6, total, i + 1
    return (None if best is None else round(best, 6)), best_gain, routed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {DEFAULT_POLICY.name}")
    parser.add_argument("--rows", type=Path, help="reuse the role outputs saved in this JSON "
                        "file, or save them there when it does not exist yet")
    args = parser.parse_args()
    settings = load_settings()
    world = World(settings.world)
    if args.rows is not None and args.rows.is_file():
        rows = json.loads(args.rows.read_text(encoding="utf-8"))
    else:
        rows = asyncio.run(gather_rows(build_context(settings), world.questions("calibration")))
        if args.rows is not None:
            args.rows.write_text(json.dumps(rows), encoding="utf-8")
    base = Policy()
    threshold = base.penalty_usd / (base.reward_usd + base.penalty_usd)

    pairs = {"query": [r["query"] for r in rows], "closed_book": [r["closed"] for r in rows],
             "open_book": [r["open"] for r in rows],
             "critic": [r["critic_open"] for r in rows] + [r["critic_closed"] for r in rows]}
    maps, losses, fallback = {}, {}, {}
    for name, candidates in CANDIDATES.items():
        names, losses[name] = choose(pairs[name], candidates)
        maps[name] = fit(*matrix(pairs[name], names), names)
        print(f"{name}: cross-validated log loss {losses[name]} -> {names}", file=sys.stderr)
        if names != candidates[0]:
            # Without the prober's trained probes the map falls back to the signals of old.
            fallback[name] = fit(*matrix(pairs[name], candidates[0]), candidates[0])

    def p(name: str, pair: list) -> float:
        return maps[name].probability(pair[0])

    # Success = the action yields an answer the policy then trusts and it is right.
    untrusted = [r for r in rows if p("closed_book", r["closed"]) < threshold]
    searched_ok = [p("open_book", r["open"]) >= threshold and bool(r["open"][1])
                   for r in untrusted]
    after_search = [r for r in untrusted if p("open_book", r["open"]) < threshold]
    refine_s = [p("critic", r["critic_open"]) >= threshold and bool(r["critic_open"][1])
                for r in after_search]
    refine_u = [p("critic", r["critic_closed"]) >= threshold and bool(r["critic_closed"][1])
                for r in untrusted]
    success = SuccessRates(
        search_first=round(float(np.mean(searched_ok)), 4),
        search_again=base.success.search_again,
        refine_unsearched=round(float(np.mean(refine_u)), 4),
        refine_searched=round(float(np.mean(refine_s)), 4),
        refine_again=base.success.refine_again,
    )
    first, gain, routed = search_first_threshold(rows, maps, base, estimate_prices(settings),
                                                 threshold)
    print(f"search_first_below {first}: {routed} of {len(rows)} calibration questions searched "
          f"before drafting, estimated gain ${gain:.6f}", file=sys.stderr)
    chosen = {k: list(m.weights) for k, m in maps.items()}
    policy = base.model_copy(update={
        "maps": maps, "success": success, "search_first_below": first,
        "fallback_maps": fallback,
        "source": (f"bench/fit_default_policy.py on the {world.name} world's calibration split "
                   f"({len(rows)} questions): logistic maps fitted per candidate kind over the "
                   f"feature set of lowest cross-validated log loss ({chosen}), success "
                   f"rates measured among questions with P(correct) < {threshold:.3f}, "
                   f"search_first_below of highest estimated gain ({routed} questions routed)"),
    })
    print(json.dumps(json.loads(policy.model_dump_json()), indent=2))
    for kind in ("fast-known", "slow-known", "searchable", "unanswerable"):
        sub = [r for r in rows if r["kind"] == kind]
        print(f"{kind:13s} closed-book right {np.mean([r['closed'][1] for r in sub]):.3f}  "
              f"open-book right {np.mean([r['open'][1] for r in sub]):.3f}  "
              f"critic(open) right {np.mean([r['critic_open'][1] for r in sub]):.3f}  "
              f"critic(closed) right {np.mean([r['critic_closed'][1] for r in sub]):.3f}",
              file=sys.stderr)
    if args.write:
        DEFAULT_POLICY.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
        print(f"wrote {DEFAULT_POLICY}", file=sys.stderr)


if __name__ == "__main__":
    main()
