"""Policies compared on an explore run without calling a model: each replayed through the run's
graph (``knowgate.evals.explore``), beside the run's empirical oracle.

A policy fitted on the calibration split's explore run can be scored on the test split's this
way in seconds, where a live run takes many minutes; ``bench/factbook_world.py`` checks that a
live run of the shipped policy equals its replay. Every policy is scored under the same terms
(reward $0.01, penalty $0.02, the base terms of ``bench/factbook_world.py``), with the bootstrap
check of a risk guarantee at ``--alpha`` (the share of resamples whose wrong-among-answered is
at most alpha) and the per-class outcome (classes measured on the run).

Run: ``python bench/replay_policies.py RUNS/explore-test POLICY.json [POLICY.json ...]``
(``--calibrate utility|risk`` also fits one on ``--fit RUN`` and replays it with the others).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowgate.aio import run_sync  # noqa: E402
from knowgate.composition import declared_signals, estimate_prices  # noqa: E402
from knowgate.evals.calibrate import calibrate  # noqa: E402
from knowgate.evals.explore import ExploredQuestion, replay_trees  # noqa: E402
from knowgate.evals.graphs import compile_eval_graph  # noqa: E402
from knowgate.evals.metrics import summarize  # noqa: E402
from knowgate.evals.oracle import measured_class, oracle_records  # noqa: E402
from knowgate.evals.records import EvalRecord, read_manifest, read_records  # noqa: E402
from knowgate.graphs.policy import Policy  # noqa: E402
from knowgate.settings import load_settings  # noqa: E402

BASE_TERMS = Policy(reward_usd=0.01, penalty_usd=0.02)
COLUMNS = ("utility", "accuracy", "coverage", "wrong_rate_answered", "usd_per_q",
           "searches_per_q", "refines_per_q")


def replayed_records(policy: Policy, explored: list[ExploredQuestion], prices) -> list[EvalRecord]:
    """Each explored question as the record a live run of ``policy`` would have written
    (outcome, grade, cost and path; the answer text is not kept by a replay)."""
    out = []
    for e in explored:
        r = e.replay(policy, prices)
        path = list(r.path)
        out.append(e.record.model_copy(update={
            "graph": "triage", "outcome": "answered" if r.answered else "abstained",
            "correct": r.correct if r.answered else None, "cost_usd": r.cost_usd,
            "path": path, "searches": path.count("search"), "refines": path.count("refine"),
            "kind": measured_class(e.record), "candidates": [], "tape": None}))
    return out


def scored(records: list[EvalRecord], ceiling: float, alpha: float) -> dict:
    """The columns of one policy's replay, its share of the oracle and the per-class outcome."""
    s = summarize(records, BASE_TERMS, alpha=alpha)
    by_class: dict[str, Counter] = {}
    for r in records:
        key = "right" if r.right else "wrong" if r.wrong else "abstained"
        by_class.setdefault(r.kind or "?", Counter())[key] += 1
    return {**{c: s[c] for c in COLUMNS},
            "utility_over_oracle": round(s["utility"] / ceiling, 4) if ceiling > 0 else None,
            "right": sum(r.right for r in records), "wrong": sum(r.wrong for r in records),
            "guarantee": s["guarantee"], "ci95": s["ci95"],
            "by_class": {k: dict(v) for k, v in sorted(by_class.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="an explore run (knowgate eval run --explore)")
    parser.add_argument("policies", type=Path, nargs="*")
    parser.add_argument("--world", default="factbook")
    parser.add_argument("--fit", type=Path, default=None,
                        help="an explore run to fit a policy on (with --calibrate)")
    parser.add_argument("--calibrate", choices=("utility", "risk"), default=None)
    parser.add_argument("--base", type=Path, default=None,
                        help="the policy calibrate starts from (default: the factbook bench's)")
    parser.add_argument("--out", type=Path, default=None, help="where the fitted policy goes")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    settings = load_settings(world=args.world)
    prices = estimate_prices(settings)
    declared_signals(settings)
    policies = {str(p): Policy.load(p) for p in args.policies}
    report = None
    if args.calibrate:
        if args.base is not None:
            base = Policy.load(args.base)
        else:
            from factbook_world import base_policy  # the bench beside this one

            base = base_policy()
        fitted, report = calibrate(args.fit or args.run, args.calibrate, base, prices,
                                   alpha=args.alpha)
        if args.out:
            args.out.write_text(fitted.model_dump_json(indent=2) + "\n", encoding="utf-8")
        policies[f"calibrated ({args.calibrate})"] = fitted
    manifest = read_manifest(args.run)
    records = [r for r in read_records(args.run) if r.outcome != "error"]
    graph = compile_eval_graph(manifest.graph)
    oracle = oracle_records(records)
    ceiling = summarize(oracle, BASE_TERMS, resamples=0)["utility"]
    out = {"run": args.run.name, "n": len(records), "oracle_utility": ceiling, "policies": {}}
    for name, policy in policies.items():
        # The walk was explored under the base policy's bounds; each policy replays its own.
        explored = run_sync(replay_trees(graph, records, policy, prices))
        out["policies"][name] = scored(replayed_records(policy, explored, prices), ceiling,
                                       args.alpha)
    if report is not None:
        out["calibrate"] = {k: report[k] for k in ("features", "calibration", "search_first")
                            if k in report}
    out["load_average"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
