"""The factbook world end to end: explore, classes measured, calibrate, compare every graph.

1. ``explore`` on the calibration split (or a seeded sample of it) and on the test split: every
   role on every question, so each record holds every kind of candidate with its price;
2. ``knowgate calibrate`` (risk mode, alpha 0.05, delta 0.1) on the calibration explore run only,
   written to ``--policy`` (``worlds/factbook/policy.json`` with ``--write``);
3. the test split's classes measured from its explore run, and the empirical oracle;
4. triage with that policy and every baseline on the test split, each beside the oracle, with
   the per-class table (classes from the explore run).

Run folders live under ``--runs`` and are resumed, so a long run can be stopped and continued;
``--sample N`` takes a seeded random N of each split (the same N for every graph) when the
machine cannot afford the whole split. Prints one JSON object.

Run: ``python bench/factbook_world.py [--sample 200] [--runs DIR] [--write]``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowgate.evals.calibrate import calibrate  # noqa: E402
from knowgate.evals.datasets import Dataset, load_dataset  # noqa: E402
from knowgate.evals.metrics import summarize  # noqa: E402
from knowgate.evals.oracle import measured_class, oracle_records  # noqa: E402
from knowgate.evals.records import read_records  # noqa: E402
from knowgate.evals.runner import run_eval  # noqa: E402
from knowgate.graphs.policy import Policy  # noqa: E402
from knowgate.graphs.runtime import Knowgate, estimate_prices  # noqa: E402
from knowgate.settings import load_settings  # noqa: E402
from knowgate.worlds.world import World  # noqa: E402

GRAPHS = ("triage", "fast-only", "always-search", "always-refine", "fast-slow", "probe-gated")
COLUMNS = ("utility", "accuracy", "coverage", "wrong_rate_answered", "usd_per_q",
           "searches_per_q", "refines_per_q", "latency_p50_s", "latency_p95_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--graph", action="append", default=None)
    parser.add_argument("--write", action="store_true",
                        help="write the fitted policy to the world's policy.json")
    args = parser.parse_args()
    world = World("factbook")
    settings = load_settings(world="factbook")
    runs = args.runs or settings.data_dir / "runs" / "factbook"
    calibration = load_dataset("calibration", settings, sample=args.sample, seed=args.seed)
    test = load_dataset("test", settings, sample=args.sample, seed=args.seed)
    kg = Knowgate(settings)

    def run(dataset: Dataset, graph: str, name: str, policy: Path | None = None) -> list:
        out = runs / name
        run_settings = settings if policy is None else settings.model_copy(update={"policy": policy})
        # The roles are built once; a graph run with the fitted policy only swaps the policy.
        context = kg.context if policy is None else dataclasses.replace(
            kg.context, policy=Policy.load(policy))
        asyncio.run(run_eval(dataset, graph, out, run_settings, concurrency=args.concurrency,
                             context=context))
        return read_records(out)

    explored_cal = run(calibration, "explore", "explore-calibration")
    defaults = Policy()
    base = Policy.load(None).model_copy(update={
        "reward_usd": defaults.reward_usd, "penalty_usd": defaults.penalty_usd,
        "abstain_usd": defaults.abstain_usd})
    policy, report = calibrate(runs / "explore-calibration", "risk", base,
                               estimate_prices(settings), alpha=0.05, delta=0.1)
    policy = policy.model_copy(update={"source": f"bench/factbook_world.py on "
                                                 f"{calibration.name}: {policy.source}"})
    policy_path = (world.path / "policy.json") if args.write else runs / "policy.json"
    policy_path.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
    explored_test = run(test, "explore", "explore-test")
    classes = {r.id: measured_class(r) for r in explored_test}
    oracle = oracle_records(explored_test)
    table = {"oracle": summarize(oracle, policy, alpha=0.05)}
    for graph in args.graph or GRAPHS:
        records = [r.model_copy(update={"kind": classes.get(r.id)})
                   for r in run(test, graph, graph, policy_path)]
        table[graph] = summarize(records, policy, alpha=0.05)
    ceiling = table["oracle"]["utility"]
    out = {
        "calibration": {"n": len(explored_cal), "report": report},
        "test": {"n": len(explored_test),
                 "classes": {k: sum(v == k for v in classes.values())
                             for k in sorted(set(classes.values()))}},
        "policy": str(policy_path),
        "graphs": {g: {**{c: s.get(c) for c in COLUMNS},
                       "utility_over_oracle": round(s["utility"] / ceiling, 4)
                       if ceiling > 0 else None,
                       "guarantee": s.get("guarantee"), "by_class": s.get("by_class"),
                       "no_answer": s.get("no_answer")}
                   for g, s in table.items()},
        "load_average": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    print(f"policy written to {policy_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
