"""Micro-batching: concurrent prober calls share one forward pass and get the same signals."""

from __future__ import annotations

import asyncio

import pytest

from knowgate.agents.batching import MicroBatcher
from knowgate.agents.local_lm import LocalLM
from knowgate.agents.prober import TransformersProber
from knowgate.roles import RoleError
from knowgate.worlds.world import World


async def test_batches_gather_concurrent_calls_by_key_and_keep_order() -> None:
    calls: list[tuple[object, list[int]]] = []

    def run(key: object, items: list[int]) -> list[int]:
        calls.append((key, list(items)))
        if key == "bad":
            raise ValueError("bad batch")
        return [i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, size=3, wait_s=0.01)
    good = asyncio.gather(*(batcher.submit("a", i) for i in range(5)))
    bad = asyncio.gather(*(batcher.submit("bad", i) for i in range(2)), return_exceptions=True)
    assert await good == [0, 10, 20, 30, 40]
    assert [type(e) for e in await bad] == [ValueError, ValueError]
    # Five items of one key at most three a batch: two batches; the other key its own.
    assert sorted(len(items) for key, items in calls if key == "a") == [2, 3]
    assert [items for key, items in calls if key == "bad"] == [[0, 1]]


async def test_a_batch_keeps_gathering_while_its_resource_is_busy() -> None:
    batches: list[list[int]] = []
    taken = True

    def run(_: object, items: list[int]) -> list[int]:
        batches.append(list(items))
        return list(items)

    batcher: MicroBatcher[int, int] = MicroBatcher(run, size=8, wait_s=0.001,
                                                   busy=lambda: taken)
    first = asyncio.ensure_future(batcher.submit(None, 0))
    await asyncio.sleep(0.05)  # the resource is still taken: the batch has not run
    later = [asyncio.ensure_future(batcher.submit(None, i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.05)
    assert batches == []
    taken = False
    assert await asyncio.gather(first, *later) == [0, 1, 2, 3]
    assert batches == [[0, 1, 2, 3]]


def test_a_batcher_serves_successive_event_loops() -> None:
    batcher: MicroBatcher[int, int] = MicroBatcher(lambda _, items: [i + 1 for i in items])
    assert asyncio.run(batcher.submit(None, 1)) == 2
    assert asyncio.run(batcher.submit(None, 2)) == 3  # a new loop, a new queue


@pytest.fixture(scope="module")
def prober() -> TransformersProber:
    world = World("synthetic")
    return TransformersProber(LocalLM(world.model_dir("fast"), "cpu"), batch_size=8)


async def test_concurrent_prober_calls_equal_separate_passes(prober: TransformersProber) -> None:
    world = World("synthetic")
    items = [(q.question, q.answers[0] if i % 2 else None)
             for i, q in enumerate(world.questions("test")[:6])]
    alone = [prober.signals(q, a) for q, a in items]
    fresh = TransformersProber(prober.lm, batch_size=8)  # computes: nothing cached yet
    together = await asyncio.gather(*(fresh(q, a) for q, a in items))
    for one, batched in zip(alone, together, strict=True):
        assert one.keys() == batched.values.keys()
        for name, value in one.items():
            assert batched.values[name] == pytest.approx(value, rel=1e-4, abs=1e-4), name


async def test_an_input_too_long_fails_alone(prober: TransformersProber) -> None:
    world = World("synthetic")
    fine = world.questions("test")[0].question
    too_long = "word " * (prober.lm.max_length + 10)
    results = await asyncio.gather(prober(fine), prober(too_long), return_exceptions=True)
    assert "query_top_prob" in results[0].values
    assert isinstance(results[1], RoleError)
