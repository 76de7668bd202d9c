"""What reading the critic's answer from the inside costs, next to the critic's own call.

On the factbook world: for a seeded sample of calibration questions, one at a time, the search,
the critic's reading of the top passage (Gemma decodes, and its prompt's pass is kept), then the
``EvidenceReader`` (``critic_reading_probe``) on that answer, on the critic's own loaded copy
(the prompt's kept pass is reused: only the answer's tokens run, up to the probe's layer), and
on a second copy of the model that keeps no pass (the whole prompt runs: the control). Prints
one JSON object: median milliseconds of each, their ratio, the reader's share of the critic's
time, whether both copies give the same signal, and the load average.

Run: ``python bench/reading_cost.py [--questions 24]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from knowgate.agents.local_lm import LocalLM  # noqa: E402
from knowgate.agents.prober import EvidenceReader  # noqa: E402
from knowgate.agents.probes import ProbeSet  # noqa: E402
from knowgate.composition import READING_PROBES, build_context  # noqa: E402
from knowgate.evals.datasets import load_dataset  # noqa: E402
from knowgate.roles import Signals  # noqa: E402
from knowgate.settings import load_settings  # noqa: E402
from knowgate.worlds.world import World  # noqa: E402


async def measure(questions: int, seed: int) -> dict:
    settings = load_settings(world="factbook", prober_signals="all")
    context = build_context(settings)
    reader = context.reader
    assert isinstance(reader, EvidenceReader), "the factbook world ships reading probes"
    world = World("factbook")
    spec = world.local_model("slow")
    cold = EvidenceReader.with_probes(
        LocalLM(world.model_dir("slow", settings.model_cache), "cpu", prompt_style=spec.prompt,
                prefill_cache_mb=0), ProbeSet.load(world.path / READING_PROBES))
    items = load_dataset("calibration", settings, sample=questions, seed=seed).items
    timings: dict[str, list[float]] = {"critic": [], "reader_kept": [], "reader_cold": []}
    gaps = []
    for item in items:
        evidence = await context.searcher(item.question)
        passages = evidence.passages[:settings.evidence_passages]
        if not passages:
            continue
        started = time.perf_counter()
        verdict = await context.critic(item.question, None, Signals(), passages)
        timings["critic"].append(time.perf_counter() - started)
        if not verdict.answer.strip():
            continue
        values = {}
        for name, which in (("reader_kept", reader), ("reader_cold", cold)):
            started = time.perf_counter()
            values[name] = (await which(item.question, verdict.answer, passages)).values
            timings[name].append(time.perf_counter() - started)
        gaps += [abs(values["reader_kept"][n] - values["reader_cold"][n]) for n in reader.names]
    ms = {k: round(1000 * statistics.median(v), 1) for k, v in timings.items() if v}
    return {"questions": len(items), "readings": len(timings["reader_kept"]),
            "median_ms": ms,
            "cold_over_kept": round(ms["reader_cold"] / ms["reader_kept"], 2),
            "kept_share_of_critic": round(ms["reader_kept"] / ms["critic"], 3),
            "largest_signal_gap": round(max(gaps), 5) if gaps else None,
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.questions, args.seed)), indent=1))


if __name__ == "__main__":
    sys.exit(main())
