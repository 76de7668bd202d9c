"""``/healthz``: each dependency the server needs, probed with a short timeout.

A dependency that is down makes ``/healthz`` answer 503 (so an orchestrator's health check and
a load balancer see it), with a one-line reason per check; the server itself keeps serving what
it still can (stateless requests while the thread store is down, for instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

_PROBE_TIMEOUT_S = 3.0


async def _probe(check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await check()
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {_PROBE_TIMEOUT_S:g} s"}
    except Exception as exc:  # any failure of a dependency is its check's result
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return {"ok": True}


async def check_health(svc: Any) -> dict[str, dict[str, Any]]:
    """``{name: {"ok": bool, "error"?: str}}`` for the thread store, the spend store (when
    budgets are on) and the search backend (when it can be probed)."""

    async def threads() -> None:
        # A read of a thread that does not exist: a round trip to the database, no write.
        await svc.threads.checkpointer.aget_tuple(
            {"configurable": {"thread_id": "knowgate-healthz", "checkpoint_ns": ""}})

    checks: dict[str, Callable[[], Awaitable[Any]]] = {"threads": threads}
    ledger = svc.gate.ledger
    if ledger is not None:
        checks["spend"] = lambda: asyncio.to_thread(ledger.spent, "knowgate-healthz")
    searcher = svc.stateless.context.searcher
    backend = getattr(searcher, "backend", None)
    count = getattr(backend, "count", None)
    if callable(count):
        checks["search"] = lambda: asyncio.to_thread(count)
    names = list(checks)
    results = await asyncio.gather(*(_probe(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))
