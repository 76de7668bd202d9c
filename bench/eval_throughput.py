"""Benchmark: batch-eval throughput against the bound concurrency / latency.

A litellm custom provider (``sleepy/...``) answers every call after sleeping a fixed latency, so
the provider itself never limits throughput: with ``c`` questions in flight and one call per
question (the ``fast-only`` graph, prober off), the best possible rate is ``c / latency``. For
each concurrency the script runs fresh questions into a fresh run folder and response cache (no
cache hits) and prints questions per second, the bound and their ratio.

The simulated models carry a price per token, as a hosted model does in litellm's cost map (an
unpriced model makes litellm diagnose the zero cost of every call, several ms of CPU each). The
control row ``router only`` makes the same calls through the same litellm ``Router`` with
nothing of knowgate around them: the ceiling litellm's own per-call CPU leaves on this machine.
The load average is printed before and after.
Run: ``python bench/eval_throughput.py [--latency 0.2] [--per-slot 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def sleepy_provider(latency: float):
    """A litellm ``CustomLLM`` that sleeps ``latency`` seconds, then answers in JSON."""
    from knowgate.agents.litellm_setup import import_litellm

    litellm = import_litellm()

    class Sleepy(litellm.CustomLLM):
        calls = 0

        async def acompletion(self, model, messages, *args, **kwargs):
            Sleepy.calls += 1
            await asyncio.sleep(latency)
            content = json.dumps({"answer": "Oslo", "confidence": 0.9, "label": "sure"})
            return litellm.ModelResponse(
                model=model, choices=[{"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": content}}],
                usage={"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60})

    litellm.custom_provider_map = [e for e in litellm.custom_provider_map
                                   if e.get("provider") != "sleepy"] + [
        {"provider": "sleepy", "custom_handler": Sleepy()}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return Sleepy


# $/token of the simulated models (gpt-4o-mini's list price, as a hosted fast model would be).
PRICED = {"input_cost_per_token": 1.5e-7, "output_cost_per_token": 6e-7}


async def router_only(settings, n: int, concurrency: int) -> float:
    """Seconds for ``n`` answerer calls through the litellm Router alone, ``concurrency`` at a
    time (the control: no graph, no cache, no records)."""
    from knowgate.composition import Assembly

    router = Assembly(settings).router()
    gate = asyncio.Semaphore(concurrency)
    messages = [{"role": "user", "content": "Where was Ada Vell born?"}]

    async def one() -> None:
        async with gate:
            await router.acompletion(model=settings.answerer, messages=messages)

    await one()  # warm-up
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return time.perf_counter() - started


async def measure(settings, items, concurrency: int, root: Path) -> float:
    from knowgate.evals.datasets import Dataset
    from knowgate.evals.runner import run_eval
    from knowgate.runtime import Knowgate

    context = Knowgate(settings).context  # roles built before the clock starts
    out = root / f"c{concurrency}"
    started = time.perf_counter()
    await run_eval(Dataset(f"bench-c{concurrency}", items), "fast-only", out, settings,
                   concurrency=concurrency, cache_path=out / "cache.sqlite", context=context)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per provider call")
    parser.add_argument("--per-slot", type=int, default=8,
                        help="questions per concurrency slot (at least 32 per run)")
    args = parser.parse_args()

    from knowgate.evals.datasets import EvalItem
    from knowgate.settings import load_settings
    from knowgate.worlds.world import World

    provider = sleepy_provider(args.latency)
    settings = load_settings(world="synthetic", answerer="sleepy/fast", critic="sleepy/slow",
                             prober="off",
                             litellm_params={"sleepy/fast": PRICED, "sleepy/slow": PRICED})
    questions = World(settings.world).questions("test")
    print(f"load average {os.getloadavg()[0]:.2f}; fast-only graph, provider latency "
          f"{args.latency:.3f} s, one call per question")
    print(f"{'concurrency':>11} {'questions':>9} {'seconds':>8} {'q/s':>8} {'bound q/s':>9} "
          f"{'ratio':>6}")
    start = 0
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in (1, 4, 16, 64):
            n = max(32, concurrency * args.per_slot)
            items = [EvalItem(id=q.id, question=q.question, answers=q.answers)
                     for q in questions[start:start + n]]
            start += n  # fresh questions: nothing comes from the cache
            before = provider.calls
            seconds = asyncio.run(measure(settings, items, concurrency, Path(tmp)))
            n = len(items)  # the split may hold fewer
            assert provider.calls - before == n, "every question made exactly one paid call"
            rate, bound = n / seconds, concurrency / args.latency
            control = n / asyncio.run(router_only(settings, n, concurrency))
            print(f"{concurrency:>11} {n:>9} {seconds:>8.2f} {rate:>8.1f} {bound:>9.1f} "
                  f"{rate / bound:>6.2f}   router only {control:6.1f} q/s "
                  f"({control / bound:.2f} of the bound)")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
