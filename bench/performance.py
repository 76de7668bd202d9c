"""Performance figures side by side, measured in one run: ``python bench/performance.py --json``.

* ``probe_overhead_ratio``: a closed-book answer with probing (the prober reads the question,
  the answerer drafts, the prober reads the draft) over the answer alone, on the factbook world's
  fast model (SmolLM2-135M-Instruct through the ``local/fast`` litellm provider), one question
  at a time: total time over the same questions in both modes (``..._of_medians``: the ratio of
  each mode's median). ``probe_overhead_ratio_unshared`` is the same with the model's prefill
  cache off (``knowgate.agents.prefill``): every pass runs over the whole prompt.
* ``batched_speedup_16``: questions per second through that answer-with-probing pipeline at
  concurrency 16 over concurrency 1 (the prober's and the provider's micro-batches), the same
  32 questions at both.
* ``orchestration_ms_p50``: ``Knowgate.ask`` on the synthetic world with scripted roles that
  take no time (LangGraph, state validation, the policy, the trace).
* ``server_added_p99_ms_200``: ``bench/api_load.py``'s server-added latency at p99 under 200
  concurrent streams against a 50 ms loopback provider (``--server`` to include; it starts a
  server process).
* ``load_average``: the machine's 1-minute load average before and after.

Run: ``python bench/performance.py [--json] [--n 20] [--server] [--threads N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

for name, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "LITELLM_LOCAL_MODEL_COST_MAP": "True", "ANONYMIZED_TELEMETRY": "False",
                    "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(name, value)

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _questions(world: str, n: int) -> list[str]:
    from knowgate.worlds.world import World

    return [q.question for q in World(world).questions("test")[:n]]


async def _answer_probed(answerer: Any, prober: Any, question: str) -> None:
    await prober(question)
    draft = await answerer(question)
    await prober(question, draft.answer)


def real_model_figures(n: int) -> dict[str, Any]:
    """``probe_overhead_ratio`` (shared and unshared) and ``batched_speedup_16`` on the
    factbook world's fast model."""
    from knowgate.agents.prober import TransformersProber
    from knowgate.runtime import Knowgate
    from knowgate.settings import load_settings

    kg = Knowgate(load_settings(world="factbook"))
    answerer = kg.context.answerer
    main = getattr(kg.context.prober, "main", kg.context.prober)
    lm = main.lm
    questions = _questions("factbook", 3 + n + 32)
    warm, timed, batch = questions[:3], questions[3:3 + n], questions[3 + n:]

    def fresh_prober() -> TransformersProber:
        # The prober remembers signals per input: a new one per question computes them.
        return TransformersProber(lm, main.probes, combiners=main.combiners, lens=main.lens,
                                 answer_tokens=main.answer_tokens)

    for q in warm:
        asyncio.run(_answer_probed(answerer, fresh_prober(), q))
    bound = lm.prefills.max_bytes
    times: dict[str, list[float]] = {"alone": [], "probed": [], "probed_unshared": []}
    for i, q in enumerate(timed):
        modes = list(times) if i % 2 == 0 else list(reversed(times))
        for mode in modes:
            lm.prefills.clear()
            lm.prefills.max_bytes = 0 if mode == "probed_unshared" else bound
            started = time.perf_counter()
            if mode == "alone":
                asyncio.run(answerer(q))
            else:
                asyncio.run(_answer_probed(answerer, fresh_prober(), q))
            times[mode].append(time.perf_counter() - started)
    lm.prefills.max_bytes = bound
    median = {k: statistics.median(v) for k, v in times.items()}

    async def wave(items: list[str], concurrency: int) -> float:
        gate = asyncio.Semaphore(concurrency)
        prober = fresh_prober()

        async def one(q: str) -> None:
            async with gate:
                await _answer_probed(answerer, prober, q)

        started = time.perf_counter()
        await asyncio.gather(*(one(q) for q in items))
        return len(items) / (time.perf_counter() - started)

    # The same questions at both concurrencies: replies differ in length (5 to 24 tokens), and
    # a batch decodes until its longest reply ends, so two sets of questions would compare
    # their lengths as much as their concurrency.
    lm.prefills.clear()
    qps_1 = asyncio.run(wave(batch, 1))
    lm.prefills.clear()
    qps_16 = asyncio.run(wave(batch, 16))
    total = {k: sum(v) for k, v in times.items()}
    return {
        # Paired: the same questions in every mode. Answers differ in length from question to
        # question, so the ratio of per-mode medians can pair a short answer with a long one.
        "probe_overhead_ratio": round(total["probed"] / total["alone"], 3),
        "probe_overhead_ratio_unshared": round(total["probed_unshared"] / total["alone"], 3),
        "probe_overhead_ratio_of_medians": round(median["probed"] / median["alone"], 3),
        "answer_alone_s_p50": round(median["alone"], 4),
        "answer_probed_s_p50": round(median["probed"], 4),
        "answer_probed_unshared_s_p50": round(median["probed_unshared"], 4),
        "prefill_cache": {"hits": lm.prefills.hits, "misses": lm.prefills.misses,
                          "drafts_read_from_decoding": lm.prefills.decoded_hits,
                          "drafts_passed": lm.prefills.decoded_misses},
        "qps_concurrency_1": round(qps_1, 3),
        "qps_concurrency_16": round(qps_16, 3),
        "batched_speedup_16": round(qps_16 / qps_1, 3),
        "questions_timed": len(timed),
    }


def orchestration_ms(n: int) -> dict[str, Any]:
    """``Knowgate.ask`` wall time with roles that take no time, p50 and p95 in ms."""
    from knowgate.graphs.nodes import TriageContext
    from knowgate.graphs.policy import Policy, Prices
    from knowgate.roles import Passage
    from knowgate.runtime import Knowgate
    from knowgate.settings import load_settings
    from knowgate.testing import ScriptedAnswerer, ScriptedCritic, ScriptedProber, ScriptedSearcher

    questions = [f"Where was Ada Vell {i} born?" for i in range(n + 20)]
    # Half the questions are answered from the draft, half after a search.
    closed = {q: ("Kedal", 0.999 if i % 2 else 0.3) for i, q in enumerate(questions)}
    passage = Passage(id="p1", text="Ada Vell was born in Kedal.", score=1.5, support=1.0)
    context = TriageContext(
        answerer=ScriptedAnswerer(closed=closed, opened={q: ("Kedal", 0.99) for q in questions}),
        searcher=ScriptedSearcher(results={q: ([passage], 1.0) for q in questions}),
        critic=ScriptedCritic(), prober=ScriptedProber(), policy=Policy.load(),
        prices=Prices(draft=0.000003, search=0.00003, refine=0.0003), role_timeout_s=5.0)
    kg = Knowgate(load_settings(world="synthetic"), context=context)

    async def run() -> list[float]:
        out = []
        for i, q in enumerate(questions):
            started = time.perf_counter()
            await kg.ask(q)
            if i >= 20:  # after a warm-up
                out.append((time.perf_counter() - started) * 1000)
        return out

    times = sorted(asyncio.run(run()))
    return {"orchestration_ms_p50": round(statistics.median(times), 3),
            "orchestration_ms_p95": round(times[int(0.95 * (len(times) - 1))], 3),
            "orchestration_questions": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--n", type=int, default=20, help="questions timed one at a time")
    parser.add_argument("--server", action="store_true",
                        help="also run the 200-stream server load (bench/api_load.py)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    out.update(orchestration_ms(max(50, 10 * args.n)))
    out.update(real_model_figures(args.n))
    if args.server:
        from api_load import measure

        server = measure(200, 50.0, "triage", quiet=True)
        out["server_added_p50_ms_200"] = server.get("load_added_ms_p50")
        out["server_added_p99_ms_200"] = server.get("load_added_ms_p99")
        out["server"] = server
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:34s} {value}")


if __name__ == "__main__":
    main()
