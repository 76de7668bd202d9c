"""Fit the default policy for the shipped world on its calibration split and write it.

For every calibration question it runs each role the triage graph can use (closed-book draft,
search, open-book draft, critic with and without the evidence) and records the features the policy
sees and whether each candidate answer is right. It then fits one logistic P(correct) map per kind
of candidate (scikit-learn), and measures the success rates of search and refine among the
questions the policy would not answer yet. Run: ``python bench/fit_default_policy.py [--write]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression

from knowgate.agents.roles import Signals
from knowgate.grading import is_correct
from knowgate.graphs.policy import DEFAULT_POLICY, LogisticMap, Policy, SuccessRates, logit
from knowgate.graphs.runtime import build_context
from knowgate.settings import load_settings
from knowgate.worlds.world import World

FEATURES = {
    "query": ["query_top_prob"],
    "closed_book": ["draft_logit"],
    "open_book": ["draft_logit", "search_support"],
    "critic": ["critic_logit"],
}


async def gather_rows(context, questions, concurrency: int = 64) -> list[dict]:
    gate = asyncio.Semaphore(concurrency)

    async def one(q) -> dict:
        async with gate:
            probed = await context.prober(q.question)
            closed = await context.answerer(q.question)
            evidence = await context.searcher(q.question)
            passages = evidence.passages[:context.evidence_passages]
            opened = await context.answerer(q.question, passages)
            signals = Signals(values={"search_support": evidence.support})
            critic_open = await context.critic(q.question, opened, signals, passages)
            critic_closed = await context.critic(q.question, closed, Signals())
        return {
            "kind": q.kind.value,
            "query": [probed.values["query_top_prob"], is_correct(closed.answer, q.answers)],
            "closed": [logit(closed.confidence), is_correct(closed.answer, q.answers)],
            "open": [logit(opened.confidence), evidence.support,
                     is_correct(opened.answer, q.answers)],
            "critic_open": [logit(critic_open.confidence),
                            critic_open.verdict != "abstain"
                            and is_correct(critic_open.answer, q.answers)],
            "critic_closed": [logit(critic_closed.confidence),
                              critic_closed.verdict != "abstain"
                              and is_correct(critic_closed.answer, q.answers)],
        }

    return list(await asyncio.gather(*(one(q) for q in questions)))


def fit(x: np.ndarray, y: np.ndarray, names: list[str]) -> LogisticMap:
    model = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
    return LogisticMap(bias=round(float(model.intercept_[0]), 4),
                       weights={n: round(float(w), 4) for n, w in zip(names, model.coef_[0],
                                                                      strict=True)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {DEFAULT_POLICY.name}")
    args = parser.parse_args()
    settings = load_settings()
    world = World(settings.world)
    questions = world.questions("calibration")
    rows = asyncio.run(gather_rows(build_context(settings), questions))
    base = Policy()
    threshold = base.penalty_usd / (base.reward_usd + base.penalty_usd)

    query = np.array([r["query"] for r in rows], dtype=float)
    closed = np.array([r["closed"] for r in rows], dtype=float)
    opened = np.array([r["open"] for r in rows], dtype=float)
    critic = np.array([r["critic_open"] for r in rows] + [r["critic_closed"] for r in rows],
                      dtype=float)
    maps = {
        "query": fit(query[:, :1], query[:, 1], FEATURES["query"]),
        "closed_book": fit(closed[:, :1], closed[:, 1], FEATURES["closed_book"]),
        "open_book": fit(opened[:, :2], opened[:, 2], FEATURES["open_book"]),
        "critic": fit(critic[:, :1], critic[:, 1], FEATURES["critic"]),
    }

    def p(name: str, row: list[float]) -> float:
        feats = dict(zip(FEATURES[name], row, strict=False))
        return maps[name].probability(feats)

    # Success = the action yields an answer the policy then trusts and it is right.
    untrusted = [r for r in rows if p("closed_book", r["closed"]) < threshold]
    searched_ok = [p("open_book", r["open"]) >= threshold and bool(r["open"][2])
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
    policy = base.model_copy(update={
        "maps": maps, "success": success,
        "source": (f"bench/fit_default_policy.py on the {world.name} world's calibration split "
                   f"({len(rows)} questions): logistic maps fitted per candidate kind, success "
                   f"rates measured among questions with P(correct) < {threshold:.3f}"),
    })
    print(json.dumps(json.loads(policy.model_dump_json()), indent=2))
    for kind in ("fast-known", "slow-known", "searchable", "unanswerable"):
        sub = [r for r in rows if r["kind"] == kind]
        print(f"{kind:13s} closed-book right {np.mean([r['closed'][1] for r in sub]):.3f}  "
              f"open-book right {np.mean([r['open'][2] for r in sub]):.3f}  "
              f"critic(open) right {np.mean([r['critic_open'][1] for r in sub]):.3f}  "
              f"critic(closed) right {np.mean([r['critic_closed'][1] for r in sub]):.3f}",
              file=sys.stderr)
    if args.write:
        DEFAULT_POLICY.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
        print(f"wrote {DEFAULT_POLICY}", file=sys.stderr)


if __name__ == "__main__":
    main()
