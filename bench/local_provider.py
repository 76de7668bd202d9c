"""Benchmark: the local litellm provider, sequential sync calls vs concurrent batched async calls.

Run: ``.venv/bin/python bench/local_provider.py [--n 256] [--model fast]``. Prints calls per second
for both paths and their ratio, measured in one run on the same questions of the shipped world.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256, help="questions per path")
    parser.add_argument("--model", default="fast", choices=["fast", "slow"])
    args = parser.parse_args()

    from knowgate.agents.litellm_setup import import_litellm
    from knowgate.settings import load_settings
    from knowgate.worlds.world import World

    litellm = import_litellm()
    world = World("synthetic")
    world.serve_models(load_settings(world="synthetic", device="cpu"))
    questions = [q.question for q in world.questions("test")][: args.n]
    model = f"local/{args.model}"

    def messages(q: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": q}]

    litellm.completion(model=model, messages=messages(questions[0]), max_tokens=12)  # load
    started = time.perf_counter()
    sync = [litellm.completion(model=model, messages=messages(q), max_tokens=12,
                               temperature=0).choices[0].message.content for q in questions]
    sync_s = time.perf_counter() - started

    async def batched() -> list[str]:
        responses = await asyncio.gather(*(
            litellm.acompletion(model=model, messages=messages(q), max_tokens=12, temperature=0)
            for q in questions
        ))
        return [r.choices[0].message.content for r in responses]

    started = time.perf_counter()
    concurrent = asyncio.run(batched())
    async_s = time.perf_counter() - started

    print(f"model {model}, {len(questions)} questions")
    print(f"sequential sync : {sync_s:7.2f} s  {len(questions) / sync_s:8.1f} calls/s")
    print(f"concurrent async: {async_s:7.2f} s  {len(questions) / async_s:8.1f} calls/s")
    print(f"speed-up        : {sync_s / async_s:7.2f}x")
    print(f"same answers    : {sync == concurrent}")


if __name__ == "__main__":
    main()
