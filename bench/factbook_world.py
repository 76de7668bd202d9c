"""The factbook world end to end: explore, classes measured, calibrate, compare every graph.

1. ``explore`` on the calibration split (or a seeded sample of it) and on the test split: every
   role on every question, so each record holds every kind of candidate with its price;
2. ``knowgate calibrate`` (``--mode``: risk, alpha 0.05, delta 0.1 by default; or utility) on the
   calibration explore run only,
   written to ``--policy`` (``worlds/factbook/policy.json`` with ``--write``);
3. the test split's classes measured from its explore run, and the empirical oracle;
4. triage with that policy and every baseline on the test split, each beside the oracle, with
   the per-class table (classes from the explore run); every graph scored under the base terms
   (reward $0.01, penalty $0.02).

Run folders live under ``--runs`` and are resumed, so a long run can be stopped and continued
(a finished run of a graph that does not read the policy is reused after a refit);
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

from knowgate.composition import declared_signals, estimate_prices  # noqa: E402
from knowgate.evals.calibrate import calibrate  # noqa: E402
from knowgate.evals.datasets import Dataset, load_dataset  # noqa: E402
from knowgate.evals.metrics import summarize  # noqa: E402
from knowgate.evals.oracle import measured_class, oracle_records  # noqa: E402
from knowgate.evals.records import RECORDS, read_records  # noqa: E402
from knowgate.evals.runner import run_eval  # noqa: E402
from knowgate.graphs.policy import LogisticMap, Policy  # noqa: E402
from knowgate.runtime import Knowgate  # noqa: E402
from knowgate.settings import load_settings  # noqa: E402
from knowgate.worlds.world import World  # noqa: E402

GRAPHS = ("triage", "fast-only", "always-search", "always-refine", "fast-slow", "probe-gated")
# Graphs whose records do not depend on the policy: a finished run of one is reused as it is (a
# resume would refuse it once the policy it was started with has been refitted).
POLICY_FREE = ("explore", "fast-only", "always-search", "always-refine", "fast-slow")
COLUMNS = ("utility", "accuracy", "coverage", "wrong_rate_answered", "usd_per_q",
           "searches_per_q", "refines_per_q", "latency_p50_s", "latency_p95_s")


def base_policy() -> Policy:
    """The maps calibrate starts from: the signals the factbook prober gives (the fast model's
    token and lens signals, the critic model's question-only ones) and the search's, each map
    then keeping the subset of lowest cross-validated log loss; the fallbacks (no prober) read
    the stated confidences. Utility terms are the defaults; the answer threshold comes from
    calibrate (``--mode``)."""
    return Policy(
        maps={
            "query": LogisticMap(weights={"query_top_prob": 0.0, "query_entropy": 0.0}),
            "closed_book": LogisticMap(weights={"draft_logit": 1.0, "answer_min_logprob": 0.0,
                                                "answer_mean_entropy": 0.0,
                                                "query_top_prob": 0.0}),
            "open_book": LogisticMap(weights={"draft_logit": 1.0, "search_support": 0.0,
                                              "evidence_match": 0.0, "search_top_score": 0.0,
                                              "answer_min_logprob": 0.0}),
            "critic": LogisticMap(weights={"critic_logit": 1.0, "search_support": 0.0,
                                           "evidence_match": 0.0, "critic_evidence_match": 0.0,
                                           "critic_query_top_prob": 0.0}),
        },
        fallback_maps={
            "query": LogisticMap(weights={"query_top_prob": 0.0}),
            "closed_book": LogisticMap(weights={"draft_logit": 1.0}),
            "open_book": LogisticMap(weights={"draft_logit": 1.0, "search_support": 0.0}),
            "critic": LogisticMap(weights={"critic_logit": 1.0}),
        },
        success_maps={
            "refine_unsearched": LogisticMap(weights={"critic_query_top_prob": 0.0,
                                                      "critic_query_entropy": 0.0}),
            "refine_searched": LogisticMap(weights={"search_support": 0.0,
                                                    "search_top_score": 0.0,
                                                    "evidence_match": 0.0}),
        },
    )


def breakdown(records: list) -> dict:
    """Stale memory and the two kinds of unanswerable question, from the questions' ``meta``:
    of the time-sensitive questions, the share answered without a search (from memory) and how
    many of those were wrong; of each unanswerable kind, the share abstained."""
    timely = [r for r in records if r.meta.get("time_sensitive")]
    memory = [r for r in timely if r.outcome == "answered" and r.searches == 0]
    out: dict = {"time_sensitive": {
        "n": len(timely),
        "answered": sum(r.outcome == "answered" for r in timely),
        "answered_from_memory": len(memory),
        "wrong_from_memory": sum(r.wrong for r in memory),
        "wrong": sum(r.wrong for r in timely),
        "wrong_rate": round(sum(r.wrong for r in timely) / len(timely), 4) if timely else None,
    }}
    for kind in ("fictional", "missing-fact"):
        group = [r for r in records if r.meta.get("unanswerable") == kind]
        out[kind] = {"n": len(group),
                     "abstained": round(sum(r.outcome == "abstained" for r in group)
                                        / len(group), 4) if group else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=None)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--runs", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--graph", action="append", default=None)
    parser.add_argument("--mode", choices=("risk", "utility"), default="risk",
                        help="calibrate mode (risk: Learn-then-Test at --alpha, --delta)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--write", action="store_true",
                        help="write the fitted policy to the world's policy.json")
    args = parser.parse_args()
    world = World("factbook")
    settings = load_settings(world="factbook")
    runs = args.runs or settings.data_dir / "runs" / "factbook"
    calibration = load_dataset("calibration", settings, sample=args.sample, seed=args.seed)
    test = load_dataset("test", settings, sample=args.sample, seed=args.seed)
    kg: Knowgate | None = None  # the roles the fitted policy reads, built once it is fitted
    # Explore runs record every signal the prober can give, so that calibrate may try any of
    # them (``run_eval`` does this itself only when it builds the roles).
    explorer = Knowgate(settings.model_copy(update={"prober_signals": "all"}))

    def run(dataset: Dataset, graph: str, name: str, policy: Path | None = None) -> list:
        out = runs / name
        if graph in POLICY_FREE and (out / RECORDS).is_file():
            done = [r for r in read_records(out) if r.outcome != "error"]
            if len(done) == len(dataset.items):
                return read_records(out)
        run_settings = settings if policy is None else settings.model_copy(update={"policy": policy})
        # The roles are built once; a graph run with the fitted policy only swaps the policy.
        built = explorer if graph == "explore" or kg is None else kg
        context = built.context if policy is None else dataclasses.replace(
            built.context, policy=Policy.load(policy))
        asyncio.run(run_eval(dataset, graph, out, run_settings, concurrency=args.concurrency,
                             context=context))
        return read_records(out)

    explored_cal = run(calibration, "explore", "explore-calibration")
    # The world's probes declare their signals as they load (a reused explore run built no
    # prober): calibrate tries each declared signal in its maps.
    declared_signals(settings)
    policy, report = calibrate(runs / "explore-calibration", args.mode, base_policy(),
                               estimate_prices(settings), alpha=args.alpha, delta=args.delta)
    policy = policy.model_copy(update={"source": f"bench/factbook_world.py on "
                                                 f"{calibration.name}: {policy.source}"})
    policy_path = (world.path / "policy.json") if args.write else runs / "policy.json"
    policy_path.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
    # The roles the fitted policy weighs (a reader of the critic's readings only if it reads
    # them: ``knowgate.composition``), as a user running that policy gets them.
    kg = Knowgate(settings.model_copy(update={"policy": policy_path}))
    explored_test = run(test, "explore", "explore-test")
    classes = {r.id: measured_class(r) for r in explored_test}
    oracle = oracle_records(explored_test)
    # Every graph is scored under the base terms (reward $0.01, penalty $0.02): the fitted
    # policy writes its answer threshold as its penalty, which would move the yardstick.
    terms = base_policy()
    table = {"oracle": summarize(oracle, terms, alpha=args.alpha)}
    runs_by_graph = {"oracle": oracle}
    for graph in args.graph or GRAPHS:
        records = [r.model_copy(update={"kind": classes.get(r.id)})
                   for r in run(test, graph, graph, policy_path)]
        table[graph] = summarize(records, terms, alpha=args.alpha)
        runs_by_graph[graph] = records
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
                       "no_answer": s.get("no_answer"), "ci95": s.get("ci95")}
                   for g, s in table.items()},
        "stale_and_unanswerable": {g: breakdown(records) for g, records in runs_by_graph.items()},
        "load_average": os.getloadavg(),
    }
    print(json.dumps(out, indent=2))
    print(f"policy written to {policy_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
