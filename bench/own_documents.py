"""Your own documents with a world's models: index a folder, ask its questions, print figures.

The shipped example (``examples/own_documents``) is a library FAQ page and a technical note on a
flow meter, written for knowgate (no model has seen them), with 17 answerable questions and 5
that the documents do not answer (``answers: []``). Each graph runs over the world's models with
the documents as the searcher's collection; the figures are right / wrong / abstained among the
answerable questions and abstained among the unanswerable ones.

Run: ``python bench/own_documents.py [--world factbook] [--graph triage --graph always-search]
[--runs DIR]``
(``--json`` prints one object).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowgate import load_settings  # noqa: E402
from knowgate.aio import run_sync  # noqa: E402
from knowgate.composition import open_collection  # noqa: E402
from knowgate.evals.datasets import load_dataset  # noqa: E402
from knowgate.evals.records import read_records  # noqa: E402
from knowgate.evals.runner import run_eval  # noqa: E402
from knowgate.runtime import Knowgate  # noqa: E402
from knowgate.tools.ingest import read_documents  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own_documents"


def figures(records: list) -> dict[str, float]:
    """Shares among the answerable and the unanswerable questions."""
    answerable = [r for r in records if r.answerable]
    none = [r for r in records if not r.answerable]
    n = max(1, len(answerable))
    return {
        "answerable": len(answerable),
        "right": round(sum(r.right for r in answerable) / n, 3),
        "wrong": round(sum(r.wrong for r in answerable) / n, 3),
        "abstained": round(sum(r.outcome == "abstained" for r in answerable) / n, 3),
        "errors": sum(r.outcome == "error" for r in records),
        "unanswerable": len(none),
        "unanswerable_abstained": round(sum(r.rightly_abstained for r in none)
                                        / max(1, len(none)), 3),
        "usd_per_q": round(sum(r.cost_usd for r in records) / max(1, len(records)), 8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="factbook")
    parser.add_argument("--docs", type=Path, default=EXAMPLE / "docs")
    parser.add_argument("--questions", type=Path, default=EXAMPLE / "questions.jsonl")
    parser.add_argument("--graph", action="append", default=None)
    parser.add_argument("--chunk-chars", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--runs", type=Path, default=None,
                        help="keep each graph's run folder here (default: a temporary one)")
    args = parser.parse_args()
    graphs = args.graph or ["triage", "always-search"]
    with tempfile.TemporaryDirectory(prefix="knowgate-own-docs-") as tmp:
        settings = load_settings(world=args.world, data_dir=Path(tmp),
                                 collection="own-documents")
        open_collection(settings, create=True).add(read_documents(args.docs, args.chunk_chars))
        dataset = load_dataset(str(args.questions), settings)
        kg = Knowgate(settings)
        out: dict[str, object] = {"world": args.world, "load_average": os.getloadavg()}
        for graph in graphs:
            started = time.perf_counter()
            run_dir = (args.runs or Path(tmp)) / graph
            run_sync(run_eval(dataset, graph, run_dir, settings, concurrency=4,
                              context=kg.context))
            out[graph] = {**figures(read_records(run_dir)),
                          "seconds": round(time.perf_counter() - started, 1)}
            if not args.json:
                print(graph, out[graph], flush=True)
        if args.json:
            print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
