"""Does conversation history degrade a self-contained question?

Each of N test questions of the default world is asked through the triage graph alone, after
one, and after three earlier unrelated turns (other questions of the split with their gold
answers as the assistant's replies, as a chat client would send them). Printed: accuracy
(right answers / N) per condition and its difference from asking alone; issue 14's bar is
within 2 points. Run: ``python bench/history.py [--n N] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

import knowgate
from knowgate.grading import is_correct
from knowgate.roles import Turn
from knowgate.worlds.world import World

TURNS = (0, 1, 3)


def earlier_turns(questions: list, i: int, n: int) -> list[Turn]:
    """``n`` unrelated turns before question ``i``: the next questions of other subjects."""
    turns: list[Turn] = []
    j = i
    while len(turns) < 2 * n:
        j = (j + 7) % len(questions)
        other = questions[j]
        if other.subject == questions[i].subject:
            continue
        turns += [Turn(role="user", content=other.question),
                  Turn(role="assistant", content=other.answers[0])]
    return turns


async def accuracy(kg: knowgate.Knowgate, questions: list, n_turns: int,
                   concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> bool:
        async with gate:
            result = await kg.ask(questions[i].question,
                                  history=earlier_turns(questions, i, n_turns))
        return result.outcome == "answered" and is_correct(result.answer or "",
                                                           questions[i].answers)

    right = await asyncio.gather(*(one(i) for i in range(len(questions))))
    return sum(right) / len(questions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="knowgate-history-"))
    settings = knowgate.load_settings(data_dir=data_dir, world="synthetic")
    questions = World(settings.world).questions("test")[:args.n]
    kg = knowgate.Knowgate(settings)

    async def every_condition() -> dict[int, float]:  # one event loop for the local provider
        return {n: await accuracy(kg, questions, n, args.concurrency) for n in TURNS}

    figures = asyncio.run(every_condition())
    print(json.dumps({"n": len(questions), "accuracy": figures}))
    for n in TURNS:
        print(f"{n} earlier turn(s): accuracy {100 * figures[n]:.1f}% "
              f"({100 * (figures[n] - figures[0]):+.1f} points against none)")


if __name__ == "__main__":
    main()
