"""``--backend ray``: shard a run over a Ray cluster and merge into the same run folder.

Each Ray actor builds the roles once (from the same settings) and runs shards of questions with
the local runner; the driver appends each shard's records as it comes back, so a run resumes at
shard granularity like a local one. Workers share the SQLite response cache, so a question gives
the same record whichever backend or worker ran it. Without ``RAY_ADDRESS`` a local cluster is
started (no dashboard) and shut down afterwards.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from knowgate.errors import MissingExtraError
from knowgate.evals.datasets import EvalItem
from knowgate.evals.records import EvalRecord
from knowgate.evals.runner import OnRecord
from knowgate.settings import Settings


class _ShardWorker:
    """Holds the roles of one Ray worker process; runs shards on its own event loop."""

    def __init__(self, settings: dict[str, Any], cache_path: str, graph: str,
                 concurrency: int, judge: str | None, explore: bool = False) -> None:
        from knowgate.evals.cache import ResponseCache
        from knowgate.evals.runner import build_run_context, make_grader

        self.settings = Settings(**settings)
        self.cache = ResponseCache(Path(cache_path))
        self.context = build_run_context(self.settings, self.cache)
        self.grader = make_grader(self.settings, self.cache, judge)
        self.graph = graph
        self.concurrency = concurrency
        self.explore = explore

    async def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Records (as JSON dicts) of these items."""
        from knowgate.evals.runner import evaluate

        done: list[EvalRecord] = []
        await evaluate([EvalItem(**i) for i in items], self.graph, self.context,
                       self.concurrency, done.append, self.grader, self.explore)
        return [r.model_dump(mode="json") for r in done]


async def _result(ref: Any) -> Any:
    return await ref


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MissingExtraError("--backend ray needs Ray: pip install 'knowgate[distributed]'") from exc
    return ray


async def run_on_ray(items: Sequence[EvalItem], graph: str, settings: Settings, cache_path: Path,
               concurrency: int, on_record: OnRecord, workers: int = 2,
               shard_size: int | None = None, judge: str | None = None,
               explore: bool = False) -> None:
    """Run ``items`` on ``workers`` Ray actors, ``shard_size`` questions per task (by default
    enough shards for four per worker, at most 64 questions each); every record goes to
    ``on_record`` in the driver as its shard finishes."""
    ray = _import_ray()
    shard_size = shard_size or max(1, min(64, math.ceil(len(items) / (4 * workers))))
    started_here = not ray.is_initialized()
    if started_here:
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(num_cpus=1)(_ShardWorker)
        pool = [actor.remote(settings.model_dump(mode="json"), str(cache_path), graph,
                             concurrency, judge, explore) for _ in range(workers)]
        shards = [[i.model_dump(mode="json") for i in items[k:k + shard_size]]
                  for k in range(0, len(items), shard_size)]
        refs = [pool[n % workers].run.remote(shard) for n, shard in enumerate(shards)]
        # Ray's object refs are awaitable: the driver's event loop waits, no thread needed.
        for finished in asyncio.as_completed([_result(ref) for ref in refs]):
            for record in await finished:
                on_record(EvalRecord.model_validate(record))
    finally:
        if started_here:
            ray.shutdown()
