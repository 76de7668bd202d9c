"""The triage graph on the default world's test split: the per-class table, latency, overhead.

Part 1 runs every test question through the triage graph with the batch runner (``knowgate eval
run --dataset test --graph triage``, 64 in flight; a rerun reads the response cache) and prints,
per class, how questions ended and the bounds issue 3 sets. Part 2 asks questions one at a
time after a warm-up and splits each question's wall time into role time (the steps' latencies:
model calls, search, probing) and orchestration overhead (everything else: LangGraph, state
validation, the policy). Run: ``python bench/triage_world.py [--limit N] [--latency N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import knowgate
from knowgate.evals.datasets import load_dataset
from knowgate.evals.records import EvalRecord, read_records
from knowgate.evals.runner import run_eval
from knowgate.worlds.world import World

KINDS = ("fast-known", "slow-known", "searchable", "unanswerable")


def classify(record: EvalRecord) -> dict[str, bool]:
    """What the issue's bounds count for one question."""
    path = record.path
    return {
        "answered": record.outcome == "answered",
        "right": record.right,
        "wrong": record.wrong,
        "abstained": record.outcome == "abstained",
        "right_without_help": record.right and "search" not in path and "refine" not in path,
        "right_after_search": record.right and "search" in path and "refine" not in path,
        "right_after_critic": record.right and "refine" in path,
    }


def run_split(settings: knowgate.Settings, limit: int | None, out: Path,
              concurrency: int = 64) -> list[EvalRecord]:
    """The test split through the triage graph with the batch runner (its own response cache,
    so the timing is of paid calls, not of cache hits)."""
    dataset = load_dataset("test", settings, limit)
    asyncio.run(run_eval(dataset, "triage", out, settings, concurrency=concurrency,
                         cache_path=out / "cache.sqlite"))
    return read_records(out)


def table(records: list[EvalRecord]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    cost: dict[str, float] = defaultdict(float)
    for record in records:
        flags = classify(record)
        kind = record.kind or "unlabelled"
        counts[kind].update({k: int(v) for k, v in flags.items()})
        counts[kind]["n"] += 1
        totals.update({k: int(v) for k, v in flags.items()})
        totals["n"] += 1
        cost[kind] += record.cost_usd
    rows = {kind: {k: c[k] / c["n"] for k in c if k != "n"} | {"n": c["n"],
                   "usd_per_q": cost[kind] / c["n"]} for kind, c in counts.items()}
    overall = {k: totals[k] / totals["n"] for k in totals if k != "n"} | {"n": totals["n"]}
    return rows, overall


def print_utility(settings: knowgate.Settings, records: list[EvalRecord]) -> None:
    """Utility in the policy's own dollars, and the role calls the questions took."""
    from knowgate.graphs.policy import Policy

    policy = Policy.load(settings.policy)
    n = len(records)
    utility = sum(policy.reward_usd * r.right - policy.penalty_usd * r.wrong
                  + policy.abstain_usd * (r.outcome == "abstained") - r.cost_usd
                  for r in records)
    calls: Counter = Counter()
    for r in records:
        calls.update(s.action for s in r.steps if not s.error)
    first = sum(1 for r in records if next((a for a in r.path if a != "probe"), None) == "search")
    print(f"utility (reward ${policy.reward_usd} right, -${policy.penalty_usd} wrong, minus cost): "
          f"${utility / n:.6f} per question, ${utility:.4f} in all; search_first_below "
          f"{policy.search_first_below}")
    print(f"calls: answerer (draft) {calls['draft']}, prober {calls['probe']}, search "
          f"{calls['search']}, critic {calls['refine']}; questions searched before any draft: "
          f"{first}")


async def latency(settings: knowgate.Settings, n: int) -> None:
    questions = World(settings.world).questions("test")
    for q in questions[:20]:  # warm-up: caches, lazy imports, first-call allocations
        await knowgate.ask(q.question, settings)
    walls, overheads = [], []
    for q in questions[-n:]:  # not the warm-up questions, so no cached searches or probes
        started = time.perf_counter()
        result = await knowgate.ask(q.question, settings)
        wall = time.perf_counter() - started
        roles = sum(s.latency_s for s in result.steps)
        walls.append(wall)
        overheads.append(max(0.0, wall - roles))
    walls.sort()
    print(f"\nask latency, one question at a time, after warm-up (n={n}):")
    print(f"  p50 {statistics.median(walls) * 1000:.1f} ms   "
          f"p95 {walls[int(0.95 * (n - 1))] * 1000:.1f} ms   mean {statistics.mean(walls) * 1000:.1f} ms")
    share = sum(overheads) / sum(walls)
    print(f"  orchestration overhead (wall - role time): mean "
          f"{statistics.mean(overheads) * 1000:.2f} ms per question = {share:.1%} of the total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="first N test questions")
    parser.add_argument("--latency", type=int, default=100, help="questions timed one by one")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: a fresh temporary one)")
    args = parser.parse_args()
    settings = knowgate.load_settings(world="synthetic")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        records = run_split(settings, args.limit, args.out or Path(tmp) / "triage")
    seconds = time.perf_counter() - started
    rows, overall = table(records)
    print(f"test split: {overall['n']} questions through the triage graph in {seconds:.0f} s")
    header = ("class", "n", "right", "wrong", "abstained", "no-help", "after-search",
              "after-critic", "$/question")
    print("  ".join(f"{h:>12s}" for h in header))
    for kind in KINDS:
        r = rows.get(kind)
        if r:
            print("  ".join([f"{kind:>12s}", f"{r['n']:>12d}"] + [f"{r[k]:>12.3f}" for k in (
                "right", "wrong", "abstained", "right_without_help", "right_after_search",
                "right_after_critic")] + [f"{r['usd_per_q']:>12.6f}"]))
    bounds = [
        ("fast-known right without search or critic", rows["fast-known"]["right_without_help"], ">=", 0.90),
        ("searchable right after a search", rows["searchable"]["right_after_search"], ">=", 0.80),
        ("slow-known right after the critic", rows["slow-known"]["right_after_critic"], ">=", 0.80),
        ("unanswerable abstained", rows["unanswerable"]["abstained"], ">=", 0.80),
        ("wrong answers overall", overall["wrong"], "<=", 0.10),
    ]
    for name, value, op, limit in bounds:
        ok = value >= limit if op == ">=" else value <= limit
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value:.3f} ({op} {limit})")
    print_utility(settings, records)
    if args.latency:
        asyncio.run(latency(settings, args.latency))


if __name__ == "__main__":
    main()
