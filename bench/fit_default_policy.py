"""Refit the default policy for the shipped world: ``knowgate calibrate`` on its calibration split.

The same as the two commands::

    knowgate eval run --dataset calibration --graph explore --out RUN --concurrency 64
    knowgate calibrate RUN --mode utility --out graphs/default_policy.json

The explore graph runs every role on every calibration question (closed-book draft, critic,
search, open-book draft, critic with evidence) and records each candidate's features and whether
it is right; calibration refits the maps over the shipped policy's feature names and measures the
success rates. Prints the policy, the calibration report and each role's accuracy per class.
Run: ``python bench/fit_default_policy.py [--run DIR] [--write]`` (a rerun reads the cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import numpy as np

from knowgate.evals.calibrate import Explored, calibrate
from knowgate.evals.datasets import load_dataset
from knowgate.evals.records import read_records
from knowgate.evals.runner import run_eval
from knowgate.graphs.policy import DEFAULT_POLICY, Policy
from knowgate.graphs.runtime import estimate_prices
from knowgate.settings import load_settings

KINDS = ("fast-known", "slow-known", "searchable", "unanswerable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", type=Path, default=None,
                        help="explore run folder (default: runs/explore-calibration in the "
                             "data dir); an existing one is resumed")
    parser.add_argument("--write", action="store_true", help=f"write {DEFAULT_POLICY.name}")
    args = parser.parse_args()
    settings = load_settings()
    run = args.run or settings.data_dir / "runs" / "explore-calibration"
    asyncio.run(run_eval(load_dataset("calibration", settings), "explore", run, settings,
                         concurrency=64))
    policy, report = calibrate(run, "utility", Policy.load(DEFAULT_POLICY),
                               estimate_prices(settings))
    print(policy.model_dump_json(indent=2))
    print(json.dumps(report, indent=2), file=sys.stderr)
    records = read_records(run)
    for kind in KINDS:
        rows = [Explored.of(r) for r in records if r.kind == kind]

        def right(attr: str, rows=rows) -> float:
            return float(np.mean([bool(getattr(e, attr) and getattr(e, attr).correct)
                                  for e in rows]))

        print(f"{kind:13s} closed-book right {right('closed'):.3f}  open-book right "
              f"{right('opened'):.3f}  critic(open) right {right('critic_open'):.3f}  "
              f"critic(closed) right {right('critic_closed'):.3f}", file=sys.stderr)
    if args.write:
        DEFAULT_POLICY.write_text(policy.model_dump_json(indent=2) + "\n", encoding="utf-8")
        print(f"wrote {DEFAULT_POLICY}", file=sys.stderr)


if __name__ == "__main__":
    main()
